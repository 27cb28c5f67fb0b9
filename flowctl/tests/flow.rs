//! `flowctl` on plans made by `detect`, and real chains started from its hops.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use testkit::{
    bin, copy_example, custom_proxy_command, free_ports, http_get, wait_for_port, ProcessGuard,
    HIT_MARKING_VCL,
};

/// A hello app with a platform-style VCL, in a readable temp dir.
fn app_with_vcl() -> (tempfile::TempDir, PathBuf) {
    let (tmp, app) = copy_example("hello");
    std::fs::create_dir_all(app.join("clevercloud")).unwrap();
    std::fs::write(app.join("clevercloud/varnish.vcl"), HIT_MARKING_VCL).unwrap();
    (tmp, app)
}

/// `detect APP [PORT FLAGS] | flowctl ARGS` with `vars` in a cleared environment; the state
/// dir next to the app. `--public-port`/`--app-port` in `args` go to `detect`, which lays the
/// chain out.
fn flow(app: &Path, vars: &[(&str, &str)], args: &[&str]) -> Output {
    let mut detect = Command::new(bin("detect"));
    let (mut detect_args, mut flowctl_args) = (Vec::new(), Vec::new());
    let mut words = args.iter();
    while let Some(&word) = words.next() {
        if word == "--public-port" || word == "--app-port" {
            detect_args.extend([word, words.next().unwrap()]);
        } else {
            flowctl_args.push(word);
        }
    }
    detect
        .arg(app)
        .args(&detect_args)
        .env_clear()
        .env(
            "HOME",
            std::env::var("HOME").unwrap_or_else(|_| "/root".into()),
        )
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CC_PYTHON_UV_RUN_COMMAND", "python3 app.py")
        .envs(vars.iter().copied());
    let plan = detect.output().unwrap();
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let state = app.parent().unwrap().join("state");
    let mut flowctl = Command::new(bin("flowctl"));
    testkit::cleared(&mut flowctl)
        .envs(vars.iter().copied())
        .arg("--state-dir")
        .arg(&state)
        .args(&flowctl_args);
    assert_cmd::Command::from_std(flowctl)
        .write_stdin(plan.stdout)
        .output()
        .unwrap()
}

fn plan(app: &Path, vars: &[(&str, &str)], args: &[&str]) -> Value {
    let out = flow(app, vars, args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// (name, listen, forward) of each hop.
/// A hop as (name, listen, forward).
type HopPorts = (String, u64, Option<u64>);

fn chain(plan: &Value) -> Vec<HopPorts> {
    plan["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_string(),
                h["listen"].as_u64().unwrap(),
                h["forward"].as_u64(),
            )
        })
        .collect()
}

fn hop(name: &str, listen: u64, forward: u64) -> HopPorts {
    (name.to_string(), listen, Some(forward))
}

const SECRET: (&str, &str) = ("OTOROSHI_CHALLENGE_SECRET", "otoroshi-secret-value");
const KEY: (&str, &str) = ("CC_REDIRECTIONIO_PROJECT_KEY", "rio-key-value");

#[test]
fn every_combination_gets_its_chain_of_ports() {
    let (_tmp, app) = app_with_vcl();
    let (_tmp2, plain) = copy_example("hello");
    let custom = custom_proxy_command();
    let none = plan(&plain, &[], &[]);
    assert_eq!(chain(&none), vec![]);
    assert_eq!(
        none["ports"],
        serde_json::json!({"public": 8080, "app": 8080})
    );

    type Case<'a> = (&'a Path, Vec<(&'a str, &'a str)>, Vec<HopPorts>);
    let cases: Vec<Case> = vec![
        (
            &plain,
            vec![SECRET],
            vec![hop("otoroshi-challenge", 8080, 9000)],
        ),
        (&app, vec![], vec![hop("varnish", 8080, 9000)]),
        (&plain, vec![KEY], vec![hop("redirectionio", 8080, 9000)]),
        (
            &app,
            vec![SECRET, KEY],
            vec![
                hop("otoroshi-challenge", 8080, 8081),
                hop("varnish", 8081, 8082),
                hop("redirectionio", 8082, 9000),
            ],
        ),
        (
            &app,
            vec![KEY, ("CC_REQUEST_FLOW", "redirectionio,varnish")],
            vec![hop("redirectionio", 8080, 8081), hop("varnish", 8081, 9000)],
        ),
        (
            &app,
            vec![
                SECRET,
                ("CC_REQUEST_FLOW", "otoroshi-challenge,custom,varnish"),
                ("CC_REQUEST_FLOW_CUSTOM", &custom),
            ],
            vec![
                hop("otoroshi-challenge", 8080, 8081),
                hop("custom", 8081, 8082),
                hop("varnish", 8082, 9000),
            ],
        ),
        (&app, vec![SECRET, ("CC_REQUEST_FLOW", "disable")], vec![]),
        (
            &app,
            vec![SECRET, ("CC_REQUEST_FLOW", "block")],
            vec![("block".to_string(), 8080, None)],
        ),
    ];
    for (dir, vars, expected) in &cases {
        let plan = plan(dir, vars, &[]);
        assert_eq!(&chain(&plan), expected, "{vars:?}");
        let app_port = if expected.is_empty() { 8080 } else { 9000 };
        assert_eq!(plan["ports"]["app"], app_port, "{vars:?}");
    }
}

#[test]
fn hops_carry_argv_env_and_files_but_no_secret() {
    let (_tmp, app) = app_with_vcl();
    let custom = custom_proxy_command();
    let out = flow(
        &app,
        &[
            SECRET,
            KEY,
            (
                "CC_REQUEST_FLOW",
                "otoroshi-challenge,custom,varnish,redirectionio",
            ),
            ("CC_REQUEST_FLOW_CUSTOM", &custom),
        ],
        &[],
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains("otoroshi-secret-value") && !text.contains("rio-key-value"),
        "{text}"
    );
    let plan: Value = serde_json::from_str(&text).unwrap();
    let hops = plan["hops"].as_array().unwrap();

    let otoroshi = &hops[0];
    assert!(otoroshi["argv"][0]
        .as_str()
        .unwrap()
        .ends_with("otoroshi-challenge"));
    assert_eq!(
        otoroshi["argv"].as_array().unwrap()[1..],
        ["--listen", "8080", "--forward", "8081"]
    );
    assert_eq!(
        otoroshi["env"]["OTOROSHI_CHALLENGE_SECRET"],
        serde_json::json!({"from_env": "OTOROSHI_CHALLENGE_SECRET"})
    );

    let script = hops[1]["argv"][2].as_str().unwrap();
    assert!(
        script.starts_with("exec python3 ") && script.ends_with("proxy.py 8081 8082"),
        "{script}"
    );

    let varnish = &hops[2];
    let argv: Vec<&str> = varnish["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(argv[0].ends_with("varnishd"));
    assert_eq!(argv[1..4], ["-F", "-a", "0.0.0.0:8082"]);
    assert!(argv.contains(&"malloc,1G"));
    let vcl = varnish["files"][0]["content"].as_str().unwrap();
    assert!(
        vcl.starts_with("vcl 4.1;\nbackend default { .host = \"127.0.0.1\"; .port = \"8083\"; }\n"),
        "{vcl}"
    );

    let rio = &hops[3];
    assert_eq!(rio["argv"][0], "redirectionio-agent");
    let config = rio["files"][0]["content"].as_str().unwrap();
    assert!(config.contains("instance_name: \"hello\""), "{config}");
    assert!(
        config.contains("listen: \"0.0.0.0:8083\"")
            && config.contains("forward: \"http://127.0.0.1:9000\"")
    );
    assert!(config.contains("project_key: \"${CC_REDIRECTIONIO_PROJECT_KEY}\""));
    assert_eq!(
        rio["env"]["CC_REDIRECTIONIO_PROJECT_KEY"],
        serde_json::json!({"from_env": "CC_REDIRECTIONIO_PROJECT_KEY"})
    );

    for hop in hops {
        for file in hop["files"].as_array().unwrap() {
            assert!(
                !file["path"]
                    .as_str()
                    .unwrap()
                    .starts_with(app.to_str().unwrap()),
                "files stay outside the app"
            );
        }
    }
}

#[test]
fn shifted_ports_and_the_text_chain() {
    let (_tmp, app) = app_with_vcl();
    let plan = plan(
        &app,
        &[KEY],
        &["--public-port", "18080", "--app-port", "19000"],
    );
    assert_eq!(
        chain(&plan),
        vec![
            hop("varnish", 18080, 18081),
            hop("redirectionio", 18081, 19000)
        ]
    );
    let out = flow(&app, &[KEY], &["--format", "text"]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        ":8080 varnish → :8081 redirectionio → :9000 app (python3 app.py)\n"
    );
}

#[test]
fn the_rendered_vcl_compiles_with_the_real_varnishd() {
    let varnishd = flowctl::varnish::find_varnishd("")
        .expect("varnishd is installed (scripts/test installs it)");
    let (_tmp, app) = app_with_vcl();
    let plan = plan(&app, &[("CC_HEALTH_CHECK_PATH", "/health")], &[]);
    flowctl::varnish::compile(
        &varnishd,
        plan["hops"][0]["files"][0]["content"].as_str().unwrap(),
        "x",
    )
    .unwrap();
    let block = plan_block(&app);
    flowctl::varnish::compile(&varnishd, &block, "block").unwrap();
}

fn plan_block(app: &Path) -> String {
    let plan = plan(
        app,
        &[
            ("CC_REQUEST_FLOW", "block"),
            ("CC_HEALTH_CHECK_PATH", "/health"),
        ],
        &[],
    );
    plan["hops"][0]["files"][0]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn errors_are_one_line_and_exit_2() {
    let (_tmp, app) = app_with_vcl();
    std::fs::write(
        app.join("clevercloud/varnish.vcl"),
        "sub vcl_recv { nonsense }\n",
    )
    .unwrap();
    let out = flow(&app, &[], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(
            "error: the Varnish configuration `clevercloud/varnish.vcl` does not compile\n  "
        ),
        "{err}"
    );

    std::fs::write(app.join("clevercloud/varnish.vcl"), HIT_MARKING_VCL).unwrap();
    // A busy port is not flowctl's business: the plan is made, and launcher checks the port
    // just before it binds.
    let busy = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let out = flow(&app, &[], &["--public-port", &port.to_string()]);
    assert_eq!(out.status.code(), Some(0));

    let out = flow(
        &app,
        &[],
        &["--state-dir", app.join("state").to_str().unwrap()],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "a state dir inside the app is refused"
    );
    // Also through a link that leads into the app.
    let link = app.parent().unwrap().join("link-into-app");
    std::os::unix::fs::symlink(&app, &link).unwrap();
    let out = flow(
        &app,
        &[],
        &["--state-dir", link.join("state").to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "a link into the app is refused");
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: the state directory"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut plan: Value = serde_json::from_str(testkit::EXAMPLE_PLAN).unwrap();
    plan.as_object_mut().unwrap().remove("request_flow");
    let out = assert_cmd::Command::new(bin("flowctl"))
        .write_stdin(plan.to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing field `request_flow`"));

    let mut plan: Value = serde_json::from_str(testkit::EXAMPLE_PLAN).unwrap();
    plan["request_flow"]["middlewares"][0]["name"] = "varnsh".into();
    let out = assert_cmd::Command::new(bin("flowctl"))
        .write_stdin(plan.to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown variant `varnsh`"));
}

/// Starts the app and every hop of the plan file with `launcher`, and waits for the public port.
fn start_chain(plan_file: &Path, plan: &Value, cwd: &Path) -> Vec<ProcessGuard> {
    let mut guards = Vec::new();
    let launch = |args: &[&str]| {
        let mut cmd = Command::new(bin("launcher"));
        cmd.arg("--plan").arg(plan_file).args(args).current_dir(cwd);
        ProcessGuard::spawn(&mut cmd)
    };
    guards.push(launch(&["--app"]));
    for hop in plan["hops"].as_array().unwrap() {
        guards.push(launch(&["--hop", hop["name"].as_str().unwrap()]));
    }
    let app = plan["ports"]["app"].as_u64().unwrap() as u16;
    assert!(
        wait_for_port(app, Duration::from_secs(20)),
        "the app listens on {app}"
    );
    for hop in plan["hops"].as_array().unwrap() {
        let port = hop["listen"].as_u64().unwrap() as u16;
        assert!(
            wait_for_port(port, Duration::from_secs(20)),
            "hop {} listens on {port}",
            hop["name"]
        );
    }
    guards
}

#[test]
fn a_real_varnish_and_a_custom_proxy_carry_traffic_to_the_app() {
    let (tmp, app) = app_with_vcl();
    let base = free_ports(3);
    let app_port = free_ports(1);
    let custom = custom_proxy_command();
    let plan = plan(
        &app,
        &[
            ("CC_REQUEST_FLOW", "custom,varnish"),
            ("CC_REQUEST_FLOW_CUSTOM", &custom),
        ],
        &[
            "--public-port",
            &base.to_string(),
            "--app-port",
            &app_port.to_string(),
        ],
    );
    let plan_file = tmp.path().join("plan.json");
    std::fs::write(&plan_file, plan.to_string()).unwrap();
    let _chain = start_chain(&plan_file, &plan, tmp.path());

    let first = http_get(base, "/cached", &[]).unwrap();
    assert_eq!(first.status, 200);
    assert!(
        first.body.starts_with("cached body"),
        "the app answered: {first:?}"
    );
    assert_eq!(
        first.header("X-Custom-Proxy"),
        Some(base.to_string().as_str()),
        "through the custom proxy"
    );
    assert_eq!(first.header("X-Cache"), Some("MISS"));
    let second = http_get(base, "/cached", &[]).unwrap();
    assert_eq!(second.header("X-Cache"), Some("HIT"), "{second:?}");
    assert_eq!(
        second
            .header("X-Varnish")
            .unwrap()
            .split_whitespace()
            .count(),
        2,
        "a hit names two transactions"
    );
    assert_eq!(second.body, first.body);
}

#[test]
fn block_answers_200_everywhere_and_keeps_the_app_out_of_reach() {
    let (tmp, app) = copy_example("hello");
    let public = free_ports(1);
    let app_port = free_ports(1);
    let plan = plan(
        &app,
        &[("CC_REQUEST_FLOW", "block")],
        &[
            "--public-port",
            &public.to_string(),
            "--app-port",
            &app_port.to_string(),
        ],
    );
    let plan_file = tmp.path().join("plan.json");
    std::fs::write(&plan_file, plan.to_string()).unwrap();
    let _chain = start_chain(&plan_file, &plan, tmp.path());
    for path in ["/", "/count", "/nowhere"] {
        let response = http_get(public, path, &[]).unwrap();
        assert_eq!(
            (response.status, response.body.as_str()),
            (200, "OK"),
            "{path}"
        );
    }
    let count = http_get(app_port, "/count", &[]).unwrap();
    assert_eq!(
        count.body.trim(),
        "1",
        "only this direct request reached the app"
    );
}

#[test]
fn by_hand_flowctl_plans_an_app_directory_itself() {
    let (_tmp, app) = app_with_vcl();
    let out = assert_cmd::Command::new(bin("flowctl"))
        .arg(&app)
        .args([
            "--format",
            "text",
            "--env",
            "CC_PYTHON_UV_RUN_COMMAND=python3 app.py",
        ])
        .arg("--state-dir")
        .arg(app.parent().unwrap().join("state"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        ":8080 varnish → :9000 app (python3 app.py)\n"
    );
    // What detect would warn about, flowctl APP_DIR says too.
    let out = assert_cmd::Command::new(bin("flowctl"))
        .arg(&app)
        .args([
            "--format",
            "text",
            "--env",
            "CC_PYTHON_UV_RUN_COMMAND=python3 app.py",
        ])
        .args([
            "--env",
            "CC_PYTHON_MODULE=app:app",
            "--env",
            "ENVIRONMENT=Development",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("flowctl: warning: ENVIRONMENT is `Development`"),
        "{err}"
    );
    assert!(
        err.contains(
            "flowctl: warning: CC_PYTHON_MODULE is set but has no effect in this deployment"
        ),
        "{err}"
    );
}

/// `detect APP | flowctl ARGS` (no `--state-dir`), flowctl's temp dir `tmpdir`.
fn flowctl_alone(app: &Path, vars: &[(&str, &str)], tmpdir: &Path, args: &[&str]) -> Output {
    let mut detect = Command::new(bin("detect"));
    testkit::cleared(&mut detect)
        .arg(app)
        .env("CC_PYTHON_UV_RUN_COMMAND", "python3 app.py")
        .envs(vars.iter().copied());
    let plan = testkit::succeeded(detect.output().unwrap()).stdout;
    let mut flowctl = Command::new(bin("flowctl"));
    testkit::cleared(&mut flowctl)
        .env("TMPDIR", tmpdir)
        .env("NO_COLOR", "1")
        .envs(vars.iter().copied())
        .args(args);
    assert_cmd::Command::from_std(flowctl)
        .write_stdin(plan)
        .output()
        .unwrap()
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// Without `--state-dir`, a directory is made only for hops that keep files there, and
/// flowctl says where: a plan printed for an app alone, or behind the Otoroshi challenge or a
/// custom proxy, leaves nothing behind.
#[test]
fn without_state_dir_a_directory_only_for_hops_that_keep_files() {
    let (tmp, plain) = copy_example("hello");
    let tmpdir = tmp.path().join("tmp");
    std::fs::create_dir(&tmpdir).unwrap();
    let custom = custom_proxy_command();
    let keep_nothing: [&[(&str, &str)]; 3] = [
        &[],
        &[SECRET],
        &[
            ("CC_REQUEST_FLOW", "custom"),
            ("CC_REQUEST_FLOW_CUSTOM", &custom),
        ],
    ];
    for vars in keep_nothing {
        for format in ["json", "text", "hops"] {
            let out = flowctl_alone(&plain, vars, &tmpdir, &["--format", format]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            if format == "json" {
                let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
                assert_eq!(plan["state_dir"], Value::Null, "{vars:?}");
            }
        }
        assert_eq!(
            entries(&tmpdir),
            Vec::<PathBuf>::new(),
            "{vars:?}: nothing left"
        );
    }

    let (_tmp, with_vcl) = app_with_vcl();
    let out = flowctl_alone(&with_vcl, &[], &tmpdir, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made = entries(&tmpdir);
    assert_eq!(made.len(), 1, "{made:?}");
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["state_dir"], made[0].display().to_string());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "flowctl: note: the hops' files go to {} (made for this plan: remove it when done, or name one with --state-dir)",
            made[0].display()
        )),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The ports are laid out by whatever makes the plan: given with a plan on stdin, they are
/// refused (exit 2), not ignored; with APP_DIR they apply.
#[test]
fn ports_with_a_plan_on_stdin_are_refused() {
    let (tmp, app) = app_with_vcl();
    let out = flowctl_alone(&app, &[], tmp.path(), &["--app-port", "19000"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: `--app-port 19000` is for `flowctl APP_DIR`: the plan flowctl read already has its ports (public 8080, app 9000)\n\nhint: give the ports to the tool that makes the plan: `detect --app-port 19000 APP_DIR | flowctl`\n"
    );
    let mut flowctl = Command::new(bin("flowctl"));
    testkit::cleared(&mut flowctl)
        .arg(&app)
        .args([
            "--public-port",
            "18080",
            "--app-port",
            "19000",
            "--format",
            "hops",
        ])
        .env("CC_PYTHON_UV_RUN_COMMAND", "python3 app.py");
    let out = testkit::succeeded(flowctl.output().unwrap());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "varnish\n");
    let mut flowctl = Command::new(bin("flowctl"));
    testkit::cleared(&mut flowctl)
        .arg(&app)
        .args([
            "--public-port",
            "18080",
            "--app-port",
            "19000",
            "--state-dir",
        ])
        .arg(tmp.path().join("state"))
        .env("CC_PYTHON_UV_RUN_COMMAND", "python3 app.py");
    let plan: Value =
        serde_json::from_slice(&testkit::succeeded(flowctl.output().unwrap()).stdout).unwrap();
    assert_eq!(chain(&plan), vec![hop("varnish", 18080, 19000)]);
}
