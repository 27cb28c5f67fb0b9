//! Redeploys and instances behind the front (Sōzu), as a user meets them: `deploy` again while
//! the app is deployed builds the new commit beside the old, health-checks its instances, and
//! only then moves the traffic; a failed check leaves the old version serving. wrk loads the
//! front through the switch: not one request may fail.

mod harness;

use harness::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use testkit::root;

/// An app that answers `VERSION INSTANCE_NUMBER`, `/health` with HEALTH; with WAIT_FOR set, it
/// listens only once that file exists (a start the test holds back).
const APP: &str = r#"
import http.server, os, pathlib, time

VERSION = "one"
HEALTH = 200

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        status = HEALTH if self.path == "/health" else 200
        body = f"{VERSION} {os.environ['INSTANCE_NUMBER']}\n".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if self.path == "/":
            print(f"served {VERSION}", flush=True)

    def log_message(self, *args):
        pass

wait = os.environ.get("WAIT_FOR")
while wait and not pathlib.Path(wait).exists():
    time.sleep(0.02)
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"#;

fn setup() -> Setup {
    Setup::new("hello")
        .front()
        .var("CC_PYTHON_UV_RUN_COMMAND", "python3 versioned.py")
        .var("CC_HEALTH_CHECK_PATH", "/health")
}

fn start(setup: Setup) -> Deployment {
    let deployment = setup.start_in_repo(
        |app| std::fs::write(app.join("versioned.py"), APP).unwrap(),
        |_| {},
    );
    deployment.deployed();
    deployment
}

/// Commits a new version of the app: `edit` changes versioned.py's text.
fn commit(app: &Path, edit: impl Fn(String) -> String) {
    let path = app.join("versioned.py");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
    let status = Command::new("git")
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "commit",
            "-qam",
            "A new version",
        ])
        .current_dir(app)
        .status()
        .unwrap();
    assert!(status.success());
}

fn version(app: &Path, name: &str) {
    commit(app, |text| {
        text.replace("VERSION = \"one\"", &format!("VERSION = \"{name}\""))
    });
}

/// `scripts/deploy` again, as a user in another terminal, with `args`; returns once it has
/// exited and its output ended (it is read to the end first, as `subprocess.run` does).
fn redeploy(deployment: &Deployment, args: &[&str]) -> std::thread::JoinHandle<Output> {
    let mut command = redeploy_command(deployment, args);
    std::thread::spawn(move || command.output().unwrap())
}

fn redeploy_command(deployment: &Deployment, args: &[&str]) -> Command {
    let tmp = deployment.tmp.path();
    let mut command = Command::new("bash");
    testkit::cleared(&mut command)
        .arg(root().join("scripts/deploy"))
        .args(args)
        .arg(&deployment.app_dir)
        .env("TMPDIR", tmp)
        .env("UVDEPLOY_BIN", testkit::bin("detect").parent().unwrap())
        .env("UV_PYTHON_DOWNLOADS", "never")
        .env("UV_CACHE_DIR", tmp.join("uv-cache"))
        .env("UVDEPLOY_CACHE_DIR", tmp.join("uvdeploy-cache"))
        .env("NO_COLOR", "1")
        .env("UVDEPLOY_TEST_MARK", &deployment.mark)
        .env("CC_PYTHON_UV_RUN_COMMAND", "python3 versioned.py")
        .env("CC_HEALTH_CHECK_PATH", "/health")
        .stdin(Stdio::null());
    command
}

fn finished(handle: std::thread::JoinHandle<Output>) -> (i32, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while !handle.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "the redeploy did not return"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = handle.join().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn get(port: u16) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// wrk on the front until it is told to stop (INT: it then reports).
struct Load(testkit::ProcessGuard);

impl Load {
    fn start(port: u16) -> Load {
        let mut command = Command::new("wrk");
        command
            .args(["-t1", "-c8", "-d120s"])
            .arg(format!("http://127.0.0.1:{port}/"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Load(testkit::ProcessGuard::spawn(&mut command))
    }

    /// Its report, once stopped.
    fn report(mut self) -> String {
        self.0.signal(nix::sys::signal::Signal::SIGINT);
        self.0
            .wait_timeout(Duration::from_secs(10))
            .expect("wrk stops on INT");
        let mut text = String::new();
        use std::io::Read;
        self.0
            .child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    }
}

/// The number of requests wrk reports, after checking it reports no failure.
fn no_failed_request(report: &str) -> u64 {
    assert!(
        !report.contains("Socket errors") && !report.contains("Non-2xx"),
        "requests failed:\n{report}"
    );
    report
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no request count:\n{report}"))
}

/// The deployment's processes that run in `dir` (their working directory is in it).
fn running_in(deployment: &Deployment, dir: &Path) -> Vec<i32> {
    marked_processes(&deployment.mark)
        .into_iter()
        .filter(|&pid| process::tree::works_in(pid, dir))
        .collect()
}

fn summary(deployment: &Deployment) -> serde_json::Value {
    let text = std::fs::read(deployment.tmp.path().join("state/deploy.json")).unwrap();
    serde_json::from_slice(&text).unwrap()
}

#[test]
fn a_good_redeploy_under_load_loses_no_request_and_then_the_new_version_answers() {
    let mut deployment = start(setup());
    assert_eq!(get(deployment.public), "one 0\n");
    let load = Load::start(deployment.public);
    version(&deployment.app_dir, "two");
    let (code, said) = finished(redeploy(&deployment, &[]));
    assert_eq!(code, 0, "{said}");
    // The caller saw the new generation's build, health check and verdict.
    for line in [
        "redeploying it",
        "==> redeploy: generation 2",
        "Response from GET /health is 200",
        "==> generation 2 serves",
    ] {
        assert!(said.contains(line), "{line:?} not in:\n{said}");
    }
    // Not the serving generation's log, though it served all along (its terminal has it).
    assert!(!said.contains("served one"), "{said}");
    assert!(deployment.output().contains("app      | served one"));
    assert_eq!(get(deployment.public), "two 0\n");
    let requests = no_failed_request(&load.report());
    assert!(requests > 0);
    let summary = summary(&deployment);
    assert_eq!(summary["status"], "healthy");
    assert_eq!(summary["generation"], 2);
    // The old generation stopped; its directory is gone, the new one's is there.
    let state = deployment.tmp.path().join("state");
    assert!(state.join("generation-2/copy/versioned.py").is_file());
    assert!(testkit::wait_until(Duration::from_secs(10), || running_in(
        &deployment,
        &state.join("copy")
    )
    .is_empty()));
    // Its copy (and venv) goes with it.
    assert!(testkit::wait_until(Duration::from_secs(10), || !state
        .join("copy")
        .exists()));
    deployment.stop();
    deployment.nothing_left();
}

#[test]
fn a_redeploy_whose_health_check_fails_leaves_the_old_version_serving_and_exits_1() {
    let mut deployment = start(setup().var("CC_RUN_FAILED_HOOK", "echo failed-hook-ran"));
    let load = Load::start(deployment.public);
    commit(&deployment.app_dir, |text| {
        text.replace("VERSION = \"one\"", "VERSION = \"broken\"")
            .replace("HEALTH = 200", "HEALTH = 500")
    });
    // The failed hook leaves a daemon behind, in the new generation's copy.
    let (code, said) = finished(redeploy(
        &deployment,
        &[
            "--env",
            "CC_RUN_FAILED_HOOK=echo failed-hook-ran; setsid sleep 300 >/dev/null 2>&1 &",
        ],
    ));
    assert_eq!(code, 1, "{said}");
    for line in [
        "Response from GET /health is 500",
        "Health check failed:",
        "failed-hook-ran",
        "==> redeploy failed: generation 2 stops; generation 1 serves on",
    ] {
        assert!(said.contains(line), "{line:?} not in:\n{said}");
    }
    assert_eq!(get(deployment.public), "one 0\n");
    no_failed_request(&load.report());
    // What serves is still said to be the first generation.
    assert_eq!(summary(&deployment)["generation"], 1);
    let failed: serde_json::Value = serde_json::from_slice(
        &std::fs::read(deployment.tmp.path().join("state/generation-2/deploy.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(failed["status"], "unhealthy");
    let generation_2 = deployment.tmp.path().join("state/generation-2");
    // Its daemon too.
    assert!(
        testkit::wait_until(Duration::from_secs(10), || running_in(
            &deployment,
            &generation_2
        )
        .is_empty()),
        "{:?}",
        running_in(&deployment, &generation_2)
    );
    // Its record stays, its copy goes; the next attempt is generation 3.
    assert!(!generation_2.join("copy").exists());
    commit(&deployment.app_dir, |text| {
        text.replace("VERSION = \"broken\"", "VERSION = \"three\"")
            .replace("HEALTH = 500", "HEALTH = 200")
    });
    let (code, said) = finished(redeploy(&deployment, &[]));
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("==> redeploy: generation 3"), "{said}");
    assert_eq!(get(deployment.public), "three 0\n");
    assert!(generation_2.join("deploy.json").is_file());
    assert_eq!(summary(&deployment)["generation"], 3);
    deployment.stop();
    deployment.nothing_left();
}

#[test]
fn instances_share_the_front_round_robin_each_with_its_number() {
    let mut deployment = start(
        setup()
            .args(&["--instances", "2"])
            .var("CC_WORKER_COMMAND", "echo from the worker")
            .var("CC_RUN_SUCCEEDED_HOOK", "echo hooked"),
    );
    let answers: std::collections::BTreeSet<String> =
        (0..4).map(|_| get(deployment.public)).collect();
    assert_eq!(
        answers,
        ["one 0\n".to_string(), "one 1\n".to_string()].into(),
        "{}",
        deployment.output()
    );
    // Each has ports of its own, and it is said.
    for n in 0..2 {
        assert!(
            deployment
                .output()
                .contains(&format!("deploy: instance {n}: its chain on :")),
            "{}",
            deployment.output()
        );
    }
    // Each instance runs its worker; every name aligns on the longest (`worker-0.1`).
    for line in [
        "worker-0.0 | from the worker",
        "worker-0.1 | from the worker",
        "hook       | hooked",
    ] {
        assert!(
            testkit::wait_until(Duration::from_secs(10), || deployment
                .output()
                .contains(line)),
            "{line:?} not in:\n{}",
            deployment.output()
        );
    }
    // Each instance was health-checked, on its own port.
    assert_eq!(
        deployment
            .output()
            .matches("Response from GET /health is 200")
            .count(),
        2
    );
    // A redeploy keeps the number of instances unless told; it takes its own environment,
    // here without CC_WORKER_COMMAND, and says what that changes.
    version(&deployment.app_dir, "two");
    let (code, said) = finished(redeploy(&deployment, &[]));
    assert_eq!(code, 0, "{said}");
    assert!(
        said.contains("the workers change: worker-0 run, none come (a redeploy takes this command's environment"),
        "{said}"
    );
    let answers: std::collections::BTreeSet<String> =
        (0..4).map(|_| get(deployment.public)).collect();
    assert_eq!(
        answers,
        ["two 0\n".to_string(), "two 1\n".to_string()].into()
    );
    deployment.stop();
    deployment.nothing_left();
}

#[test]
fn a_second_redeploy_while_one_is_under_way_is_refused_and_a_caller_that_leaves_cancels_its_own() {
    let mut deployment = start(setup());
    let go = deployment.tmp.path().join("go");
    let wait_for = format!("WAIT_FOR={}", go.display());
    version(&deployment.app_dir, "two");
    // The first redeploy's app does not listen until `go` exists: it is under way meanwhile.
    // Its caller starts with INT ignored, as a script's background job does.
    let first = redeploy_command(&deployment, &["--env", &wait_for]);
    let script = root().join("scripts/deploy");
    let mut args: Vec<std::ffi::OsString> = vec![
        "-c".into(),
        "trap '' INT; exec bash \"$0\" \"$@\"".into(),
        script.into(),
    ];
    args.extend(first.get_args().skip(1).map(|a| a.to_os_string()));
    let mut first = {
        // The same command and environment (a cleared one), behind the trap.
        let mut wrapped = Command::new("bash");
        wrapped.args(args).env_clear().stdin(Stdio::null());
        for (key, value) in first.get_envs() {
            if let Some(value) = value {
                wrapped.env(key, value);
            }
        }
        wrapped
    };
    first.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut first = testkit::ProcessGuard::spawn(&mut first);
    assert!(
        deployment.wait_for("==> health check", Duration::from_secs(120)),
        "{}",
        deployment.output()
    );
    let (code, said) = finished(redeploy(&deployment, &[]));
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains("a redeploy of this app is under way"),
        "{said}"
    );
    // The first's caller goes (Ctrl-C): its redeploy is given up, the old version serves.
    first.signal(nix::sys::signal::Signal::SIGINT);
    first
        .wait_timeout(Duration::from_secs(10))
        .expect("the caller stops on INT");
    assert!(
        deployment.wait_for(
            "redeploy failed: generation 2 stops; generation 1 serves on",
            Duration::from_secs(30)
        ),
        "{}",
        deployment.output()
    );
    assert!(deployment
        .output()
        .contains("the redeploy's caller went away"));
    assert_eq!(get(deployment.public), "one 0\n");
    // And the next redeploy goes through.
    std::fs::write(&go, "").unwrap();
    let (code, said) = finished(redeploy(&deployment, &[]));
    assert_eq!(code, 0, "{said}");
    assert_eq!(get(deployment.public), "two 0\n");
    deployment.stop();
    deployment.nothing_left();
}

#[test]
fn what_a_redeploy_cannot_change_is_refused_by_name() {
    let mut deployment = start(setup());
    let (code, said) = finished(redeploy(&deployment, &["--state-dir", "/tmp/elsewhere"]));
    assert_eq!(code, 2, "{said}");
    assert!(
        said.contains("--state-dir cannot be given to a redeploy"),
        "{said}"
    );
    let (code, said) = finished(redeploy(&deployment, &["--addon", "redis"]));
    assert_eq!(code, 2, "{said}");
    assert!(
        said.contains("--addon redis differs from the running deployment's (none)"),
        "{said}"
    );
    assert_eq!(get(deployment.public), "one 0\n");
    deployment.stop();
    deployment.nothing_left();
}

#[test]
fn a_deployment_stopped_during_a_redeploy_stops_both_generations_and_its_caller_returns_1() {
    let mut deployment = start(setup());
    let never = deployment.tmp.path().join("never");
    version(&deployment.app_dir, "two");
    let wait_for = format!("WAIT_FOR={}", never.display());
    let caller = redeploy(&deployment, &["--env", &wait_for]);
    assert!(
        deployment.wait_for("==> health check", Duration::from_secs(120)),
        "{}",
        deployment.output()
    );
    let status = deployment.stop();
    assert_eq!(status.code(), Some(0), "{}", deployment.output());
    let (code, said) = finished(caller);
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains("the redeploy to generation 2 is given up"),
        "{said}"
    );
    assert!(!deployment.output().contains("generation 1 serves on"));
    deployment.nothing_left();
}

#[test]
fn instances_without_the_front_and_a_taken_public_port_are_said_before_anything_is_built() {
    let mut without = Setup::new("hello").args(&["--instances", "2"]).start();
    let status = without.exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(2), "{}", without.output());
    assert!(
        without
            .output()
            .contains("--instances 2 needs the front, Sōzu, which --front none leaves out"),
        "{}",
        without.output()
    );
    assert!(!without.output().contains("==> build"));
    without.nothing_left();

    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut behind = Setup {
        public_port: Some(port),
        ..setup()
    }
    .start();
    let status = behind.exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "{}", behind.output());
    assert!(
        behind.output().contains(&format!(
            "cannot start the front: the public port {port} is taken"
        )),
        "{}",
        behind.output()
    );
    assert!(!behind.output().contains("==> build"));
    behind.nothing_left();
}

/// Crons run on every instance, as on the platform (said once), each with its own
/// `INSTANCE_NUMBER`.
#[test]
fn crons_run_on_every_instance_each_with_its_number() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = tmp.path().join("clock");
    set_clock(&clock, "2026-01-01T00:00:30Z");
    let mut deployment = setup()
        .args(&["--instances", "2"])
        .var("UVDEPLOY_CLOCK", clock.display().to_string())
        .start_in_repo(
            |app| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::write(app.join("versioned.py"), APP).unwrap();
                std::fs::create_dir_all(app.join("clevercloud")).unwrap();
                std::fs::write(
                    app.join("clevercloud/cron.json"),
                    r#"["* * * * * $ROOT/n.sh"]"#,
                )
                .unwrap();
                std::fs::write(
                    app.join("n.sh"),
                    "#!/bin/bash -l\necho \"on instance $INSTANCE_NUMBER\"\n",
                )
                .unwrap();
                std::fs::set_permissions(app.join("n.sh"), std::fs::Permissions::from_mode(0o755))
                    .unwrap();
            },
            |_| {},
        );
    deployment.deployed();
    assert_eq!(
        deployment
            .output()
            .matches("crons run on every instance (2), as on the platform")
            .count(),
        1,
        "{}",
        deployment.output()
    );
    set_clock(&clock, "2026-01-01T00:01:00Z");
    for line in ["cron-0.0 | on instance 0", "cron-0.1 | on instance 1"] {
        assert!(
            testkit::wait_until(Duration::from_secs(10), || deployment
                .output()
                .contains(line)),
            "{line:?} not in:\n{}",
            deployment.output()
        );
    }
    deployment.stop();
    deployment.nothing_left();
}

/// The verdict is known once the front has moved: a caller that goes while the succeeded hook
/// runs changes nothing; the new version serves on.
#[test]
fn a_caller_gone_during_the_succeeded_hook_changes_nothing() {
    let mut deployment = start(setup());
    let go = deployment.tmp.path().join("go");
    version(&deployment.app_dir, "two");
    let hook = format!(
        "CC_RUN_SUCCEEDED_HOOK=echo hook waits; while [ ! -e '{}' ]; do sleep 0.05; done",
        go.display()
    );
    let mut caller = redeploy_command(&deployment, &["--env", &hook]);
    caller.stdout(Stdio::null()).stderr(Stdio::null());
    let mut caller = testkit::ProcessGuard::spawn(&mut caller);
    assert!(
        deployment.wait_for("hook waits", Duration::from_secs(120)),
        "{}",
        deployment.output()
    );
    caller.signal(nix::sys::signal::Signal::SIGKILL);
    caller
        .wait_timeout(Duration::from_secs(10))
        .expect("the caller is gone");
    std::fs::write(&go, "").unwrap();
    assert!(
        deployment.wait_for(
            "generation 1 finishes its requests and stops",
            Duration::from_secs(30)
        ) || deployment
            .output()
            .contains("generation 1 finishes its requests and stops"),
        "{}",
        deployment.output()
    );
    assert_eq!(get(deployment.public), "two 0\n");
    assert!(
        deployment.guard.child.try_wait().unwrap().is_none(),
        "{}",
        deployment.output()
    );
    deployment.stop();
    deployment.nothing_left();
}

/// A state directory whose path is too long for a Unix socket's (a deep TMPDIR): the sockets go
/// to a short directory of their own, linked from it, and redeploys work.
#[test]
fn a_deep_tmpdir_still_gives_a_front_and_redeploys() {
    let (tmp, app) = testkit::copy_example("hello");
    let deep = tmp.path().join("d".repeat(90));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(app.join("versioned.py"), APP).unwrap();
    git_repo(&app);
    let mut setup = setup().var("TMPDIR", deep.display().to_string());
    setup.own_state_dir = true;
    let mut deployment = setup.launch(tmp, app);
    deployment.deployed();
    assert_eq!(get(deployment.public), "one 0\n");
    version(&deployment.app_dir, "two");
    let (code, said) = finished(redeploy(&deployment, &[]));
    assert_eq!(code, 0, "{said}");
    assert_eq!(get(deployment.public), "two 0\n");
    deployment.stop();
    deployment.nothing_left();
    // Its sockets' directory went with it.
    let left: Vec<_> = std::fs::read_dir("/tmp")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("uvdeploy-sockets.")
        })
        .filter(|e| {
            std::fs::read_link(e.path().join("control.sock")).is_ok()
                || e.path().join("control.sock").exists()
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Among several instances, one whose app dies leaves the front; the others serve on, and a
/// redeploy starts them all again. The last one's death ends the deployment.
#[test]
fn an_instance_that_dies_leaves_the_front_and_the_others_serve_on() {
    let mut deployment = start(setup().args(&["--instances", "2"]));
    let state = deployment.tmp.path().join("state");
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("instance-1/plan.json")).unwrap())
            .unwrap();
    let app_port = plan["ports"]["app"].as_u64().unwrap();
    let pid = summary(&deployment)["processes"]["app.1"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        deployment.wait_for(
            "instance 1 leaves the front and stops; 1 instance(s) serve on",
            Duration::from_secs(30)
        ),
        "{}",
        deployment.output()
    );
    let answers: std::collections::BTreeSet<String> =
        (0..4).map(|_| get(deployment.public)).collect();
    assert_eq!(
        answers,
        ["one 0\n".to_string()].into(),
        "{}",
        deployment.output()
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", app_port as u16)).is_err());
    assert!(summary(&deployment)["processes"].get("app.1").is_none());
    // A redeploy brings both back.
    version(&deployment.app_dir, "two");
    let (code, said) = finished(redeploy(&deployment, &[]));
    assert_eq!(code, 0, "{said}");
    let answers: std::collections::BTreeSet<String> =
        (0..4).map(|_| get(deployment.public)).collect();
    assert_eq!(
        answers,
        ["two 0\n".to_string(), "two 1\n".to_string()].into()
    );
    deployment.stop();
    deployment.nothing_left();
}
