//! The supervisor (`uvsupervise`, behind `scripts/deploy`) as a user and a CI job meet it:
//! signals ignored when it started, more signals while it stops, the grace period, a caller
//! that reads its output to the end, the CI mode, `deploy.json` on every kind of failure, and
//! a second deployment of a running app.

mod harness;

use harness::*;
use nix::sys::signal::Signal;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use testkit::root;

/// An app that listens on PORT and, on TERM, says so and takes STOP_SECONDS to stop.
const SLOW_TO_STOP: &str = r#"
import http.server, os, signal, sys, time

def on_term(*_):
    print("got TERM", flush=True)
    time.sleep(float(os.environ.get("STOP_SECONDS", "0")))
    os._exit(0)

signal.signal(signal.SIGTERM, on_term)
server = http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), http.server.SimpleHTTPRequestHandler)
print("listening", flush=True)
server.serve_forever()
"#;

fn slow_to_stop(stop_seconds: &str) -> Setup {
    Setup::new("hello")
        .var("CC_PYTHON_UV_RUN_COMMAND", "python3 slow.py")
        .var("STOP_SECONDS", stop_seconds)
}

fn with_slow_app(app: &Path) {
    std::fs::write(app.join("slow.py"), SLOW_TO_STOP).unwrap();
}

fn summary(deployment: &Deployment) -> serde_json::Value {
    let text = std::fs::read(deployment.tmp.path().join("state/deploy.json"))
        .unwrap_or_else(|e| panic!("no deploy.json ({e}):\n{}", deployment.output()));
    serde_json::from_slice(&text).unwrap()
}

/// `deploy` started with TERM, INT and HUP ignored (as `nohup` or a background job of a script
/// starts it) still stops on each of them, and leaves nothing.
#[test]
fn signals_ignored_when_deploy_started_still_stop_it() {
    for signal in [Signal::SIGINT, Signal::SIGHUP, Signal::SIGTERM] {
        let mut setup = Setup::new("hello");
        setup.entry = Some(vec![
            "bash".into(),
            "-c".into(),
            "trap '' INT HUP TERM; exec bash \"$0\" \"$@\"".into(),
            root().join("scripts/deploy").into_os_string(),
        ]);
        let mut deployment = setup.start();
        deployment.deployed();
        deployment.guard.signal(signal);
        let status = deployment.exit(Duration::from_secs(20));
        assert_eq!(status.code(), Some(0), "{signal}:\n{}", deployment.output());
        assert!(deployment
            .output()
            .contains("==> stopping (signal received)"));
        deployment.nothing_left();
    }
}

/// Ctrl-C twice, then TERM and HUP, while the app takes a second to stop: the stop goes on to
/// its end, the app is not killed, and nothing is left.
#[test]
fn more_signals_during_the_stop_change_nothing_and_everything_stops() {
    let mut deployment = slow_to_stop("1").start_with(with_slow_app);
    deployment.deployed();
    deployment.guard.signal(Signal::SIGINT);
    assert!(
        deployment.wait_for("got TERM", Duration::from_secs(10)),
        "{}",
        deployment.output()
    );
    for signal in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGINT,
    ] {
        deployment.guard.signal(signal);
    }
    let status = deployment.exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", deployment.output());
    assert!(
        !deployment.output().contains("did not stop"),
        "{}",
        deployment.output()
    );
    deployment.nothing_left();
}

/// The grace period is counted in milliseconds: an app that needs half a second to stop is
/// not killed with 1.5 s of grace; one that needs 30 s is killed after 0.5 s, and said once.
#[test]
fn the_grace_period_is_counted_in_milliseconds_and_a_kill_is_said_once() {
    let mut deployment = slow_to_stop("0.5")
        .var("UVDEPLOY_GRACE_SECONDS", "1.5")
        .start_with(with_slow_app);
    deployment.deployed();
    assert_eq!(deployment.stop().code(), Some(0));
    assert!(
        !deployment.output().contains("did not stop"),
        "{}",
        deployment.output()
    );
    deployment.nothing_left();

    let mut deployment = slow_to_stop("30")
        .var("UVDEPLOY_GRACE_SECONDS", "0.5")
        .start_with(with_slow_app);
    deployment.deployed();
    assert_eq!(deployment.stop().code(), Some(0));
    let output = deployment.output();
    assert_eq!(
        output.matches("did not stop").count(),
        1,
        "said once:\n{output}"
    );
    assert!(output.contains("deploy: app did not stop within 500ms: killing it"));
    deployment.nothing_left();
}

/// Python's `subprocess.run(capture_output=True)` reads stdout and stderr to their end before
/// it reaps: a deployment that fails must let it return (nothing left holds the pipes).
#[test]
fn a_caller_that_reads_the_output_to_the_end_is_not_kept_waiting() {
    const CALLER: &str = "import subprocess, sys\n\
        r = subprocess.run(sys.argv[1:], capture_output=True, timeout=170)\n\
        print('returncode', r.returncode)\n\
        sys.stderr.write(r.stderr.decode(errors='replace'))\n";
    let mut setup = Setup::new("hello")
        .var("CC_HEALTH_CHECK_PATH", "/health")
        .var("HELLO_FAIL_PATH", "/health")
        .args(&["--timeout", "20s"]);
    setup.entry = Some(vec![
        "python3".into(),
        "-c".into(),
        CALLER.into(),
        "bash".into(),
        root().join("scripts/deploy").into_os_string(),
    ]);
    let mut deployment = setup.start_with(with_vcl);
    let status = deployment.exit(Duration::from_secs(180));
    assert_eq!(status.code(), Some(0), "{}", deployment.output());
    assert!(
        deployment.stdout().contains("returncode 1"),
        "{}",
        deployment.output()
    );
    assert!(deployment.output().contains("health check failed"));
    deployment.nothing_left();
}

/// `--check --smoke COMMAND`: the command runs once healthy, with the public URL; everything
/// stops; the exit status and deploy.json say whether it passed.
#[test]
fn check_mode_runs_the_smoke_command_and_says_how_it_went() {
    let smoke = "python3 -c \"import os, urllib.request; \
        print(urllib.request.urlopen(os.environ['UVDEPLOY_URL'] + '/health').read().decode())\"";
    let mut deployment = Setup::new("hello")
        .var("CC_HEALTH_CHECK_PATH", "/health")
        .args(&["--check", "--smoke", smoke])
        .start_with(with_vcl);
    let status = deployment.exit(Duration::from_secs(120));
    assert_eq!(status.code(), Some(0), "{}", deployment.output());
    assert!(
        deployment.output().contains("smoke    | ok"),
        "{}",
        deployment.output()
    );
    let passed = summary(&deployment);
    assert_eq!(passed["status"], "healthy");
    assert_eq!(passed["smoke"]["status"], 0);
    assert!(passed["failed"].is_null());
    deployment.nothing_left();

    let mut deployment = Setup::new("hello")
        .args(&["--check", "--smoke", "echo checking; exit 7"])
        .start();
    let status = deployment.exit(Duration::from_secs(120));
    assert_eq!(status.code(), Some(1), "{}", deployment.output());
    let failed = summary(&deployment);
    assert_eq!(failed["failed"]["step"], "smoke");
    assert_eq!(failed["failed"]["status"], 7);
    deployment.nothing_left();
}

/// A failed build writes deploy.json too, naming the step and its status; so does an app that
/// dies before the verdict.
#[test]
fn deploy_json_names_the_step_that_failed() {
    let mut deployment = Setup::new("hello")
        .var("CC_PRE_BUILD_HOOK", "exit 4")
        .start();
    let status = deployment.exit(Duration::from_secs(120));
    assert_ne!(status.code(), Some(0), "{}", deployment.output());
    let failed = summary(&deployment);
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["failed"]["step"], "uvbuild", "{failed}");
    assert_eq!(
        Some(failed["failed"]["status"].as_i64().unwrap() as i32),
        status.code()
    );
    deployment.nothing_left();

    let mut deployment = Setup::new("hello")
        .var(
            "CC_PYTHON_UV_RUN_COMMAND",
            "python3 -c 'raise SystemExit(3)'",
        )
        .start();
    let status = deployment.exit(Duration::from_secs(120));
    assert_eq!(status.code(), Some(1), "{}", deployment.output());
    assert!(deployment
        .output()
        .contains("deploy: app exited with status 3 before the health check passed"));
    let failed = summary(&deployment);
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["failed"]["step"], "app");
    assert_eq!(failed["failed"]["status"], 3);
    deployment.nothing_left();
}

/// A state directory whose path holds a tab, quotes and `$` still gets a valid deploy.json.
#[test]
fn deploy_json_is_valid_whatever_the_state_directory_is_called() {
    let odd = tempfile::Builder::new()
        .prefix("odd\tname \"q\" $x ")
        .tempdir()
        .unwrap();
    let mut setup = Setup::new("hello").var("TMPDIR", odd.path().display().to_string());
    setup.own_state_dir = true;
    let mut deployment = setup.args(&["--keep-state"]).start();
    deployment.deployed();
    let dir = std::fs::read_dir(odd.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("uvdeploy-hello.")
        })
        .expect("a state directory in TMPDIR");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("deploy.json")).unwrap()).unwrap();
    assert_eq!(summary["state_dir"], dir.display().to_string());
    assert_eq!(deployment.stop().code(), Some(0));
    deployment.nothing_left();
}

/// Deploying an app whose deployment is running is refused at once, before any build, naming
/// the running one; the running one goes on serving.
#[test]
fn a_second_deploy_of_an_app_running_without_a_front_is_refused_and_says_why() {
    let mut first = Setup::new("hello").start();
    first.deployed();
    let tmp = first.tmp.path();
    let mut second = Command::new("bash");
    testkit::cleared(&mut second)
        .arg(root().join("scripts/deploy"))
        .arg(&first.app_dir)
        .env("TMPDIR", tmp)
        .env("UVDEPLOY_BIN", testkit::bin("detect").parent().unwrap())
        .env("UVDEPLOY_CACHE_DIR", tmp.join("uvdeploy-cache"))
        .env("UVDEPLOY_TEST_MARK", &first.mark)
        .env("CC_PYTHON_UV_RUN_COMMAND", "uv run python app.py")
        .stdin(std::process::Stdio::null());
    // Read to the end before its status, as `subprocess.run` does.
    let out = second.output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains(&format!(
            "is deployed already (PID {}): redeploying it",
            first.guard.pid()
        )) && said.contains(
            "this deployment runs without a front (--front none): a redeploy would cut it"
        ),
        "{said}"
    );
    assert!(!said.contains("==> build"), "{said}");
    assert_eq!(
        testkit::http_get(first.public, "/", &[]).unwrap().status,
        200
    );
    first.stop();
    first.nothing_left();
}

/// Deploy, stop, deploy again: the second deployment's console scripts (gunicorn in the venv)
/// run, in uv mode and in legacy mode, though the first deployment's copy is gone by then.
#[test]
fn deploy_stop_deploy_again_works_with_the_venvs_console_scripts() {
    let shop = || {
        Setup::new("flask-shop").var(
            "CC_PYTHON_UV_RUN_COMMAND",
            "uv run --no-dev gunicorn shop:app",
        )
    };
    let django = || Setup::legacy("legacy-django-gunicorn");
    for (example, setup) in [
        ("flask-shop", &shop as &dyn Fn() -> Setup),
        ("legacy-django-gunicorn", &django),
    ] {
        let (tmp, app) = testkit::copy_example(example);
        for round in 1..=2 {
            let mut setup = setup()
                .var(
                    "UVDEPLOY_CACHE_DIR",
                    tmp.path().join("uvdeploy-cache").display().to_string(),
                )
                .var(
                    "UV_CACHE_DIR",
                    tmp.path().join("uv-cache").display().to_string(),
                );
            // A new state directory each time, removed at the stop: the first copy is gone.
            setup.own_state_dir = true;
            let mut deployment = setup.launch(testkit::shared_tempdir(), app.clone());
            deployment.deployed();
            assert_eq!(
                deployment.stop().code(),
                Some(0),
                "{example}, deployment {round}:\n{}",
                deployment.output()
            );
            deployment.nothing_left();
        }
    }
}

/// A daemon a hook leaves behind (`setsid ... &`, out of the hook's process group) is stopped
/// with the deployment, in the build as in the pre-run hook: nothing is left.
#[test]
fn a_daemon_left_by_a_hook_is_stopped_with_the_deployment() {
    let mut deployment = Setup::new("hello")
        // Holding the hook's output, which is deploy's stderr: the stop must end it too.
        .var("CC_PRE_BUILD_HOOK", "setsid sleep 556 &")
        .var("CC_PRE_RUN_HOOK", "setsid sleep 557 &")
        .var("CC_RUN_SUCCEEDED_HOOK", "setsid sleep 558 &")
        .start();
    deployment.deployed();
    let daemons = || {
        marked_processes(&deployment.mark)
            .into_iter()
            .map(process::command_line)
            .filter(|c| c.starts_with("sleep 55"))
            .collect::<Vec<_>>()
    };
    assert!(
        testkit::wait_until(Duration::from_secs(10), || daemons().len() == 3),
        "{:?}\n{}",
        daemons(),
        deployment.output()
    );
    let mut running = daemons();
    running.sort();
    assert_eq!(running, ["sleep 556", "sleep 557", "sleep 558"]);
    assert!(
        !deployment.output().contains("failed"),
        "{}",
        deployment.output()
    );
    assert_eq!(deployment.stop().code(), Some(0), "{}", deployment.output());
    deployment.nothing_left();
}

/// `uvdeploy status APP` says what serves it, from another terminal; `uvdeploy stop APP`
/// stops it as Ctrl-C would, and returns once it has stopped.
#[test]
fn status_and_stop_from_another_terminal() {
    let mut deployment = Setup::new("hello").start();
    deployment.deployed();
    let control = |args: &[&str]| {
        let mut command = std::process::Command::new(testkit::bin("uvcontrol"));
        testkit::cleared(&mut command)
            .env(
                "UVDEPLOY_CACHE_DIR",
                deployment.tmp.path().join("uvdeploy-cache"),
            )
            .args(args)
            .arg(&deployment.app_dir)
            .output()
            .unwrap()
    };
    let status = control(&["status"]);
    let shown = String::from_utf8_lossy(&status.stdout).to_string();
    assert_eq!(status.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains(&format!("healthy, PID {} since", deployment.guard.pid()))
            && shown.contains("processes app ")
            && shown.contains("serves   the directory, as it was"),
        "{shown}"
    );
    let stop = control(&["stop"]);
    assert_eq!(
        stop.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    // Returned once stopped: deploy is exiting, cleanly (its locks go just before its end).
    let exited = deployment.guard.wait_timeout(Duration::from_secs(10));
    assert_eq!(
        exited.and_then(|s| s.code()),
        Some(0),
        "{}",
        deployment.output()
    );
    deployment.nothing_left();
    let after = control(&["status"]);
    assert_eq!(after.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&after.stdout).contains("is not deployed here"));
}

/// A secret's value never shows in any process's output (the app's, a hook's, the smoke
/// command's), nor in the smoke command as said.
#[test]
fn secret_values_never_show_in_the_processes_output() {
    const TOKEN: &str = "tok-Super Secret-123";
    let mut deployment = Setup::new("hello")
        .var("API_TOKEN", TOKEN)
        .var("CC_PRE_RUN_HOOK", "echo \"pre-run token=$API_TOKEN\"")
        .args(&[
            "--check",
            "--smoke",
            "echo \"smoke token=$API_TOKEN\"; echo 'tok-Super Secret-123'",
        ])
        .start();
    let status = deployment.exit(Duration::from_secs(120));
    assert_eq!(status.code(), Some(0), "{}", deployment.output());
    let output = deployment.output();
    assert!(output.contains("pre-run token=***"), "{output}");
    assert!(output.contains("smoke token=***"), "{output}");
    assert!(!output.contains(TOKEN), "{output}");
    assert!(
        !std::fs::read_to_string(deployment.tmp.path().join("state/deploy.json"))
            .unwrap()
            .contains(TOKEN)
    );
    deployment.nothing_left();
}

/// The app dying while CC_RUN_SUCCEEDED_HOOK runs ends the deployment (it was not noticed).
#[test]
fn an_app_dying_during_the_succeeded_hook_ends_the_deployment() {
    let mut deployment = Setup::new("hello")
        .var("HELLO_CRASH_AFTER", "1")
        .var("CC_RUN_SUCCEEDED_HOOK", "sleep 5")
        .start();
    let status = deployment.exit(Duration::from_secs(120));
    assert_eq!(status.code(), Some(1), "{}", deployment.output());
    assert!(
        deployment.output().contains("app exited with status 3"),
        "{}",
        deployment.output()
    );
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(deployment.tmp.path().join("state/deploy.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["status"], "failed", "{summary}");
    deployment.nothing_left();
}

/// What the build steps print (a hook's escape sequences, uv's lines) reaches the terminal
/// through the same relay as the app's: control characters shown, never sent; and a process's
/// last lines come before what deploy says of it.
#[test]
fn build_output_is_shown_not_sent_and_in_order() {
    let mut deployment = Setup::new("hello")
        .var("CC_PRE_BUILD_HOOK", "printf 'clear\\033[2Jscreen\\n'")
        .args(&["--check", "--smoke", "echo last-smoke-line"])
        .start();
    let status = deployment.exit(Duration::from_secs(120));
    assert_eq!(status.code(), Some(0), "{}", deployment.output());
    let output = deployment.output();
    assert!(output.contains("clear^[[2Jscreen"), "{output}");
    assert!(
        !output.contains('\u{1b}'),
        "an escape reached the terminal:\n{output}"
    );
    let last = output
        .find("smoke    | last-smoke-line")
        .expect("the smoke's line");
    let verdict = output.find("==> check passed").expect("the verdict");
    assert!(last < verdict, "{output}");
    deployment.nothing_left();
}
