//! The exported deployment, really run: `examples/flask-shop` (and, in legacy mode,
//! `examples/legacy-flask-uwsgi`, behind Nginx) built into an image by
//! `scripts/image` on a base made offline by `scripts/base-image` (Debian packages only),
//! `export kubernetes` manifests played by `podman kube play`, then the chain checked from
//! outside: 401 without a token, 200 through Varnish with one, the project's `healthcheck`
//! passing, every container as the image's non-root user on a read-only root filesystem, and
//! `podman kube down` leaving no container or pod.
//!
//! podman 4.3 (Debian 12) is not Kubernetes: it waits for init containers to exit (so native
//! sidecars would never let the app start), mishandles `secretKeyRef`, ignores probes, and
//! publishes ports only with a bridge network, which this sandbox cannot give. So this test
//! rewrites the manifests for podman, and only here: the sidecars move into `containers`,
//! the secret is inlined, the `ports` go, and the pod shares the host's network, on free test
//! ports (the plan is made on them, and `plan-export --public-port` keeps them). The
//! exported manifests stay correct Kubernetes (`export/tests` checks them against the real
//! schemas).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use testkit::{bin, copy_example, free_port, free_ports, http_get, root, wait_for_port};

const BASE: &str = "localhost/uvdeploy-base:bookworm-legacy";
const SECRET: &str = "kube-test-otoroshi-secret";

/// A command with this project's containers.conf (runc, lower ulimits), never /etc's.
fn with_podman_conf(command: &mut Command) -> &mut Command {
    testkit::cleared(command)
        .env(
            "CONTAINERS_CONF",
            root().join("tests/podman/containers.conf"),
        )
        .env(
            "PATH",
            format!("{}:/usr/sbin", std::env::var("PATH").unwrap()),
        )
}

fn podman(args: &[&str]) -> Output {
    with_podman_conf(&mut Command::new("podman"))
        .args(args)
        .output()
        .unwrap()
}

/// The base image, made once per machine (podman keeps it).
fn ensure_base() {
    if podman(&["image", "exists", BASE]).status.success() {
        return;
    }
    testkit::succeeded(
        with_podman_conf(&mut Command::new("bash"))
            .arg(root().join("scripts/base-image"))
            .args(["--tag", BASE])
            .output()
            .unwrap(),
    );
}

/// flask-shop's run command.
const SHOP: [(&str, &str); 1] = [(
    "CC_PYTHON_UV_RUN_COMMAND",
    "uv run --no-dev gunicorn shop:app",
)];
/// The legacy example's variables (static files served by Nginx).
const LEGACY: [(&str, &str); 3] = [
    ("CC_PYTHON_MODULE", "wsgi:app"),
    ("STATIC_FILES_PATH", "static/"),
    ("STATIC_URL_PREFIX", "/static"),
];

/// `scripts/image` of `app` with `vars`; returns its stderr (the build's log).
fn build_image(app: &Path, tag: &str, vars: &[(&str, &str)]) -> String {
    let mut image = Command::new("bash");
    with_podman_conf(&mut image)
        .arg(root().join("scripts/image"))
        .args(["--base", BASE, "--tag", tag])
        .arg(app)
        .env("UVDEPLOY_BIN", bin("detect").parent().unwrap())
        .envs(vars.iter().copied())
        // The build reaches PyPI as this machine does: its network, and its CA certificates
        // (some machines reach PyPI only through a proxy that signs with its own CA).
        .args(["--", "--network=host"]);
    let bundle = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if bundle.is_file() {
        image.args([
            "--volume=/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro",
            "--env=SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
        ]);
    }
    let out = testkit::succeeded(image.output().unwrap());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), tag);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The rewrite podman 4.3 needs (see the top of this file), on the manifests as `export`
/// writes them (and `imagePullPolicy: Always` dropped: the image is only local).
fn for_podman(manifests: &str) -> String {
    let mut out = Vec::new();
    let mut lines = manifests.lines().peekable();
    let mut containers_seen = false;
    while let Some(line) = lines.next() {
        match line {
            // The sidecars become ordinary containers, listed before the app.
            "      initContainers:" => {
                out.push("      containers:");
                containers_seen = true;
            }
            "      containers:" if containers_seen => {}
            "        restartPolicy: Always" => {}
            // The image is local: pulling it again would fail.
            "        imagePullPolicy: Always" => {}
            "        ports:" => {
                while lines
                    .peek()
                    .is_some_and(|l| l.starts_with("        - containerPort:"))
                {
                    lines.next();
                }
            }
            "          valueFrom:" => {
                // secretKeyRef, name, key: the secret inlined.
                for _ in 0..3 {
                    lines.next();
                }
                out.push("          value: \"kube-test-otoroshi-secret\"");
            }
            other => out.push(other),
        }
    }
    out.join("\n") + "\n"
}

/// An image this test built, removed when dropped, even when the test fails.
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        podman(&["rmi", "--force", &self.0]);
    }
}

/// A played pod, brought down when dropped, even when the test fails.
struct Played {
    file: PathBuf,
}

impl Drop for Played {
    fn drop(&mut self) {
        podman(&["kube", "down", self.file.to_str().unwrap()]);
    }
}

/// `detect | flowctl | export kubernetes` of `app` with `vars`, on the given ports.
fn exported(
    app: &Path,
    name: &str,
    tag: &str,
    public: u16,
    app_port: u16,
    vars: &[(&str, &str)],
) -> String {
    let mut detect = Command::new(bin("detect"));
    testkit::cleared(&mut detect)
        .arg(app)
        .args([
            "--public-port",
            &public.to_string(),
            "--app-port",
            &app_port.to_string(),
        ])
        .envs(vars.iter().copied());
    let plan = testkit::succeeded(detect.output().unwrap()).stdout;
    let mut flowctl = Command::new(bin("flowctl"));
    with_podman_conf(&mut flowctl).args(["--state-dir", "/var/lib/uvdeploy"]);
    let plan = testkit::succeeded(
        assert_cmd::Command::from_std(flowctl)
            .write_stdin(plan)
            .output()
            .unwrap(),
    )
    .stdout;
    let exported = testkit::succeeded(
        assert_cmd::Command::new(bin("plan-export"))
            .args(["kubernetes", "--image", tag, "--name", name])
            // The pod on the host's network: on the test's ports, not the platform's.
            .args([
                "--public-port",
                &public.to_string(),
                "--app-port",
                &app_port.to_string(),
            ])
            .write_stdin(plan)
            .output()
            .unwrap(),
    );
    String::from_utf8(exported.stdout).unwrap()
}

/// `podman kube play` of the manifests, rewritten for podman, on the host's network.
fn play(dir: &Path, manifests: &str) -> Played {
    let file = dir.join("podman.yaml");
    std::fs::write(&file, for_podman(manifests)).unwrap();
    let played = Played { file: file.clone() };
    let out = podman(&["kube", "play", "--network", "host", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    played
}

/// Nothing of the pod `name` is left.
fn nothing_left(name: &str) {
    for what in [&["ps", "-a"][..], &["pod", "ps"]] {
        let mut args = what.to_vec();
        let filter = format!("name={name}");
        args.extend(["--filter", &filter, "--quiet"]);
        let left = podman(&args);
        assert!(
            String::from_utf8_lossy(&left.stdout).trim().is_empty(),
            "podman {what:?} left: {}",
            String::from_utf8_lossy(&left.stdout)
        );
    }
}

/// Every container of the pod `name` runs as the image's user, not root, on a read-only
/// root filesystem: the app cannot write its own files, only /tmp (an emptyDir).
fn runs_as_the_app_user(name: &str) {
    let filter = format!("name={name}");
    let listed = podman(&["ps", "--filter", &filter, "--format", "{{.Names}}"]);
    let containers: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert!(
        containers.iter().any(|c| c.ends_with("-app")),
        "the app's container among {containers:?}"
    );
    for container in &containers {
        let id = podman(&["exec", container, "id", "-u"]);
        assert_eq!(
            String::from_utf8_lossy(&id.stdout).trim(),
            "10001",
            "{container} runs as the image's user: {}",
            String::from_utf8_lossy(&id.stderr)
        );
    }
    let app = containers.iter().find(|c| c.ends_with("-app")).unwrap();
    let wrote = podman(&["exec", app, "touch", "/app/written-by-the-app"]);
    assert!(!wrote.status.success(), "the app wrote into its own files");
    let tmp = podman(&["exec", app, "touch", "/tmp/written-by-the-app"]);
    assert!(
        tmp.status.success(),
        "{}",
        String::from_utf8_lossy(&tmp.stderr)
    );
}

fn token() -> String {
    testkit::otoroshi_token(SECRET, "kube")
}

#[test]
fn flask_shop_runs_in_podman_from_the_exported_manifests() {
    ensure_base();
    let (tmp, app) = copy_example("flask-shop");
    let name = format!("uvdeploy-test-{}", std::process::id());
    let tag = format!("localhost/{name}:latest");
    let _image = Image(tag.clone());

    build_image(&app, &tag, &SHOP);
    let inspected = podman(&[
        "image",
        "inspect",
        "--format",
        "{{.Config.User}} {{json .HealthCheck.Test}}",
        &tag,
    ]);
    let inspected = String::from_utf8_lossy(&inspected.stdout).into_owned();
    assert!(
        inspected.starts_with("10001:10001 ") && inspected.contains(r#""healthcheck","--port""#),
        "the image's user and HEALTHCHECK: {inspected}"
    );
    // The same uv.lock: the dependency layer comes from the cache.
    let again = build_image(&app, &tag, &SHOP);
    let step = again
        .find("uv sync --locked --no-install-project --no-dev")
        .expect("the dependency step");
    assert!(
        again[step..]
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("Using cache")),
        "the dependency layer is reused:\n{again}"
    );

    // The plan on free ports, exported as it would be for a cluster.
    let (public, app_port) = (free_ports(2), free_port());
    let mut vars = SHOP.to_vec();
    vars.push(("OTOROSHI_CHALLENGE_SECRET", SECRET));
    let manifests = exported(&app, &name, &tag, public, app_port, &vars);
    assert!(!manifests.contains(SECRET), "no secret in the manifests");
    let played = play(tmp.path(), &manifests);
    // Every process of the chain: the challenge, Varnish, gunicorn (podman ignores probes).
    for port in [public, public + 1, app_port] {
        assert!(
            wait_for_port(port, Duration::from_secs(60)),
            "port {port} listens"
        );
    }

    let refused = http_get(public, "/", &[]).unwrap();
    assert_eq!(refused.status, 401, "{refused:?}");
    let through = http_get(public, "/", &[("Otoroshi-State", &token())]).unwrap();
    assert_eq!(through.status, 200, "{through:?}");
    assert!(
        through.header("Via").is_some_and(|v| v.contains("varnish")),
        "through Varnish: {through:?}"
    );
    assert!(through.header("Otoroshi-State-Resp").is_some());
    let mut check = Command::new(bin("healthcheck"));
    testkit::cleared(&mut check).args(["--port", &public.to_string(), "--timeout", "30s"]);
    testkit::succeeded(check.output().unwrap());
    runs_as_the_app_user(&name);

    drop(played);
    nothing_left(&name);
}

/// Legacy mode in the pod: Nginx (a sidecar) serves the static files from the image and
/// passes the rest to uWSGI (the app container) in uWSGI's protocol.
#[test]
fn legacy_flask_on_uwsgi_runs_in_podman_behind_nginx() {
    ensure_base();
    let (tmp, app) = copy_example("legacy-flask-uwsgi");
    let name = format!("uvdeploy-legacy-test-{}", std::process::id());
    let tag = format!("localhost/{name}:latest");
    let _image = Image(tag.clone());
    let log = build_image(&app, &tag, &LEGACY);
    assert!(
        log.contains(r#""pip","install","-r","/app/requirements.txt"]"#),
        "{log}"
    );

    let (public, app_port) = (free_port(), free_port());
    let manifests = exported(&app, &name, &tag, public, app_port, &LEGACY);
    let played = play(tmp.path(), &manifests);
    for port in [public, app_port] {
        assert!(
            wait_for_port(port, Duration::from_secs(60)),
            "port {port} listens"
        );
    }
    let mut check = Command::new(bin("healthcheck"));
    testkit::cleared(&mut check).args(["--port", &public.to_string(), "--timeout", "30s"]);
    testkit::succeeded(check.output().unwrap());
    let css = http_get(public, "/static/style.css", &[]).unwrap();
    assert_eq!(css.status, 200, "{css:?}");
    assert!(
        css.body.starts_with("/* Served by Nginx from static/"),
        "{css:?}"
    );
    assert!(
        css.header("ETag").is_some(),
        "Nginx's own file headers: {css:?}"
    );
    let page = http_get(public, "/", &[]).unwrap();
    assert!(
        page.body.starts_with("Hello from uWSGI behind Nginx!"),
        "{page:?}"
    );
    // The health check and `/` reached the app; the stylesheet did not.
    assert_eq!(http_get(public, "/hits", &[]).unwrap().body, "2");
    runs_as_the_app_user(&name);

    drop(played);
    nothing_left(&name);
}
