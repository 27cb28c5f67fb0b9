//! Legacy mode's Nginx, the real one, started from the real `detect | flowctl` plan by
//! `launcher --hop nginx`: what it serves (nothing outside the app, whatever the app's
//! directory is named) and whom it lets in (basic-auth pairs read by one rule).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use testkit::{bin, free_ports, http_get, wait_for_port, ProcessGuard, Response};

const ADMIN: &str = "Basic YWRtaW46cGE6c3M="; // admin:pa:ss
const CUT: &str = "Basic YWRtaW46cGE="; // admin:pa
const MALLORY: &str = "Basic bWFsbG9yeTpldmls"; // mallory:evil
/// What the links lead to, outside the app: it must never come out of Nginx.
const OUTSIDE: &str = "bytes from outside the app";

/// PATH with Nginx on it (Debian puts it in /usr/sbin).
fn path() -> String {
    format!(
        "{}:/usr/sbin:/sbin",
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A legacy app in a directory whose name holds what Nginx's syntax treats specially, with
/// static files, and links from its static directory to a file and a directory outside it.
fn app(tmp: &Path) -> PathBuf {
    let app = tmp.join("shop$x \"q';{b}#");
    std::fs::create_dir_all(app.join("static")).unwrap();
    std::fs::write(app.join("requirements.txt"), "").unwrap();
    std::fs::write(app.join("static/hello.txt"), "hello static\n").unwrap();
    let outside = tmp.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), OUTSIDE).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), app.join("static/shadow")).unwrap();
    std::os::unix::fs::symlink(&outside, app.join("static/elsewhere")).unwrap();
    app
}

/// `detect | flowctl` for `app` in legacy mode on `public` (Nginx) and `public + 1` (the app
/// server, never started: Nginx answers the static files itself).
fn plan(app: &Path, public: u16, vars: &[(&str, &str)]) -> Result<PathBuf, Output> {
    let mut detect = Command::new(bin("detect"));
    testkit::cleared(&mut detect)
        .env("PATH", path())
        .env("CC_PYTHON_MODULE", "app:app")
        .envs(vars.iter().copied())
        .arg(app)
        .args(["--public-port", &public.to_string()])
        .args(["--app-port", &(public + 1).to_string()]);
    let mut detect = detect.output().unwrap();
    if !detect.status.success() {
        return Err(detect);
    }
    let state = app.parent().unwrap().join("state$y");
    let plan_file = app.parent().unwrap().join("plan.json");
    let mut flowctl = Command::new(bin("flowctl"));
    testkit::cleared(&mut flowctl)
        .env("PATH", path())
        .envs(vars.iter().copied())
        .arg("--state-dir")
        .arg(&state)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = flowctl.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::mem::take(&mut detect.stdout))
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        return Err(out);
    }
    std::fs::write(&plan_file, &out.stdout).unwrap();
    Ok(plan_file)
}

/// `launcher --hop nginx`, with `vars` (the pairs) in its environment.
fn nginx(plan: &Path, vars: &[(&str, &str)]) -> Command {
    let mut launcher = Command::new(bin("launcher"));
    testkit::cleared(&mut launcher)
        .env("PATH", path())
        .envs(vars.iter().copied())
        .args(["--hop", "nginx", "--plan"])
        .arg(plan);
    launcher
}

fn started(plan: &Path, public: u16, vars: &[(&str, &str)]) -> ProcessGuard {
    let guard = ProcessGuard::spawn(&mut nginx(plan, vars));
    assert!(
        wait_for_port(public, Duration::from_secs(20)),
        "Nginx listens on {public}"
    );
    guard
}

fn never_outside(response: &Response, what: &str) {
    assert!(
        matches!(response.status, 403 | 404 | 502),
        "{what}: {response:?}"
    );
    assert!(!response.body.contains(OUTSIDE), "{what}: {response:?}");
}

#[test]
fn nginx_serves_the_apps_files_and_nothing_a_link_leads_to_outside_it() {
    let tmp = testkit::shared_tempdir();
    let app = app(tmp.path());
    let public = free_ports(2);
    let plan = plan(
        &app,
        public,
        &[
            ("STATIC_FILES_PATH", "static"),
            ("STATIC_URL_PREFIX", "/static"),
        ],
    )
    .unwrap();
    let _nginx = started(&plan, public, &[]);
    // A `$`, quotes, `;`, braces, `#` and a space in the app's directory: served all the same.
    let hello = http_get(public, "/static/hello.txt", &[]).unwrap();
    assert_eq!((hello.status, hello.body.as_str()), (200, "hello static\n"));
    never_outside(
        &http_get(public, "/static/shadow", &[]).unwrap(),
        "a link to a file",
    );
    never_outside(
        &http_get(public, "/static/elsewhere/secret.txt", &[]).unwrap(),
        "a link to a directory",
    );
}

/// The `/` prefix (files first, the app as the fallback), and a static directory that
/// leads out of the app.
#[test]
fn nor_under_the_root_prefix_nor_through_a_static_directory_out_of_the_app() {
    let tmp = testkit::shared_tempdir();
    let app = app(tmp.path());
    std::os::unix::fs::symlink(tmp.path().join("outside"), app.join("linked")).unwrap();
    let public = free_ports(2);
    let root = plan(
        &app,
        public,
        &[("STATIC_FILES_PATH", "static"), ("STATIC_URL_PREFIX", "/")],
    )
    .unwrap();
    {
        let _nginx = started(&root, public, &[]);
        let hello = http_get(public, "/hello.txt", &[]).unwrap();
        assert_eq!((hello.status, hello.body.as_str()), (200, "hello static\n"));
        // Not a file Nginx may serve: to the app (not running here: 502), never the link's.
        never_outside(&http_get(public, "/shadow", &[]).unwrap(), "a link at /");
    }
    // A static directory that leads out of the app, by a link or by `..`: refused before
    // anything runs.
    for static_dir in ["linked", "static/../.."] {
        let out = plan_error(
            &app,
            public,
            &[
                ("STATIC_FILES_PATH", static_dir),
                ("STATIC_URL_PREFIX", "/static"),
            ],
        );
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with(&format!(
                "error: STATIC_FILES_PATH `{static_dir}` resolves outside the application"
            )),
            "{err}"
        );
    }
}

#[test]
fn a_password_may_hold_a_colon_and_a_line_break_adds_no_user() {
    let tmp = testkit::shared_tempdir();
    let app = app(tmp.path());
    let public = free_ports(2);
    let pair = [("CC_HTTP_BASIC_AUTH", "admin:pa:ss")];
    let mut vars = vec![
        ("STATIC_FILES_PATH", "static"),
        ("STATIC_URL_PREFIX", "/static"),
    ];
    vars.extend(pair);
    let plan = plan(&app, public, &vars).unwrap();
    {
        let _nginx = started(&plan, public, &pair);
        let get = |auth: &[(&str, &str)]| http_get(public, "/static/hello.txt", auth).unwrap();
        assert_eq!(get(&[]).status, 401);
        let admin = get(&[("Authorization", ADMIN)]);
        assert_eq!((admin.status, admin.body.as_str()), (200, "hello static\n"));
        assert_eq!(
            get(&[("Authorization", CUT)]).status,
            401,
            "not cut at the `:`"
        );
        assert_eq!(get(&[("Authorization", MALLORY)]).status, 401);
    }
    // (That Nginx's workers die with it, a moment after.)
    assert!(testkit::wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", public)).is_err()
    }));

    // A line break would add a user: refused by detect, and by launcher, which writes the
    // password file, naming the variable, never showing the value.
    let injected = "admin:pa:ss\nmallory:evil";
    let mut bad = vars.clone();
    bad.pop();
    bad.push(("CC_HTTP_BASIC_AUTH", injected));
    let out = plan_error(&app, public, &bad);
    for (tool, out) in [
        ("detect", out),
        (
            "launcher",
            nginx(&plan, &[("CC_HTTP_BASIC_AUTH", injected)])
                .output()
                .unwrap(),
        ),
    ] {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{tool}: {err}");
        assert!(err.contains("CC_HTTP_BASIC_AUTH"), "{tool}: {err}");
        assert!(err.contains("line break"), "{tool}: {err}");
        assert!(
            !err.contains("evil") && !err.contains("pa:ss"),
            "{tool}: {err}"
        );
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", public)).is_err(),
        "no Nginx started"
    );
    let htpasswd =
        std::fs::read_to_string(tmp.path().join(format!("state$y/nginx-{public}/htpasswd")))
            .unwrap_or_default();
    assert!(!htpasswd.contains("mallory"), "{htpasswd}");
}

fn plan_error(app: &Path, public: u16, vars: &[(&str, &str)]) -> Output {
    plan(app, public, vars).expect_err("the plan is refused")
}
