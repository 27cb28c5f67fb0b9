//! Workers (`CC_WORKER_COMMAND`, `CC_WORKER_COMMAND_N`) as the platform runs them, end to end
//! through `scripts/deploy`: beside the app, in its directory and environment, restarted as
//! `CC_WORKER_RESTART` says with systemd's start limit, never stopping the deployment, and
//! stopped with everything else.

mod harness;

use harness::*;
use std::path::Path;
use std::time::Duration;
use testkit::{bin, copy_example, wait_until};

/// A worker that "processes" the job files put in `JOBS` (writing `NAME.done` beside each,
/// with what it saw of its environment), for ever.
const WORKER: &str = r#"
import os, pathlib, sys, time
jobs = pathlib.Path(os.environ["JOBS"])
print("worker up", flush=True)
while True:
    for job in jobs.glob("*.job"):
        seen = f"cwd={os.getcwd()}\nport={os.environ.get('PORT', 'unset')}\nvenv={sys.prefix}\n"
        # Written whole, then renamed: the test never reads half of it.
        job.with_suffix(".tmp").write_text(seen)
        job.with_suffix(".tmp").rename(job.with_suffix(".done"))
        job.unlink()
        print(f"processed {job.name}", flush=True)
    time.sleep(0.05)
"#;

fn with_worker(app: &Path) {
    std::fs::write(app.join("worker.py"), WORKER).unwrap();
}

fn eventually(deployment: &Deployment, needle: &str, within: Duration) {
    assert!(
        wait_until(within, || deployment.output().contains(needle)),
        "no `{needle}`:\n{}",
        deployment.output()
    );
}

fn runs(file: &Path) -> usize {
    std::fs::read_to_string(file)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// `uv run` in a worker finds what the build put in the kept cache; the worker runs in the
/// deployed copy, without PORT, its lines behind its name; TERM stops it with the rest.
#[test]
fn a_worker_processes_jobs_beside_the_app_and_stops_with_it() {
    let jobs = tempfile::tempdir().unwrap();
    let mut deployment = Setup::new("hello")
        .var("CC_WORKER_COMMAND_0", "uv run --no-dev python worker.py")
        .var("JOBS", jobs.path().display().to_string())
        .start_with(with_worker);
    deployment.deployed();
    std::fs::write(jobs.path().join("first.job"), "").unwrap();
    let done = jobs.path().join("first.done");
    assert!(
        wait_until(Duration::from_secs(60), || done.is_file()),
        "the worker processed nothing:\n{}",
        deployment.output()
    );
    let seen = std::fs::read_to_string(&done).unwrap();
    let copy = std::fs::canonicalize(deployment.tmp.path().join("state/copy")).unwrap();
    assert!(
        seen.contains(&format!("cwd={}\n", copy.display())),
        "{seen}"
    );
    assert!(seen.contains("port=unset\n"), "{seen}");
    // The deployment's own venv, as `uv run` in the app has it.
    assert!(
        seen.contains(&format!("venv={}", copy.join(".venv").display())),
        "{seen}"
    );
    eventually(
        &deployment,
        "worker-0 | processed first.job",
        Duration::from_secs(10),
    );
    let output = deployment.output();
    assert!(
        output.contains("deploy: started worker-0 (pid "),
        "{output}"
    );
    assert_eq!(
        testkit::http_get(deployment.public, "/", &[])
            .unwrap()
            .status,
        200
    );
    assert_eq!(deployment.stop().code(), Some(0), "{}", deployment.output());
    deployment.nothing_left();
}

/// A worker that exits 1 at once is restarted (`on-failure`, the default) until systemd's
/// start limit, 5 starts within 10 s, then given up, said once; the app serves all along and
/// the deployment goes on until TERM.
#[test]
fn a_failing_worker_is_restarted_then_given_up_and_the_app_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let count = tmp.path().join("runs");
    let mut deployment = Setup::new("hello")
        .var("CC_WORKER_COMMAND", "sh -c 'echo run >> \"$RUNS\"; exit 1'")
        .var("CC_WORKER_RESTART_DELAY", "0")
        .var("RUNS", count.display().to_string())
        .start();
    deployment.deployed();
    let given_up = "deploy: worker-0 failed 5 times within 10s: given up, as systemd would";
    eventually(&deployment, given_up, Duration::from_secs(30));
    assert_eq!(runs(&count), 5, "{}", deployment.output());
    assert_eq!(
        testkit::http_get(deployment.public, "/", &[])
            .unwrap()
            .status,
        200
    );
    // Given up for good: no sixth run, and said once.
    assert!(!wait_until(Duration::from_millis(500), || runs(&count) > 5));
    let output = deployment.output();
    assert_eq!(output.matches(given_up).count(), 1, "{output}");
    assert!(
        output.contains("deploy: worker-0 exited with status 1: restarting in 0s (CC_WORKER_RESTART=on-failure)"),
        "{output}"
    );
    assert!(!output.contains("stopping the deployment"), "{output}");
    assert_eq!(deployment.stop().code(), Some(0), "{output}");
    deployment.nothing_left();
}

/// `no` never restarts; `on-failure` does not restart a clean exit; `always` restarts a clean
/// exit too (up to the start limit). The app keeps serving in every case.
#[test]
fn each_restart_policy_as_systemd_has_it() {
    for (policy, exit, expected_runs, said) in [
        (
            "no",
            1,
            1,
            "worker-0 exited with status 1: not restarted (CC_WORKER_RESTART=no)",
        ),
        (
            "on-failure",
            0,
            1,
            "worker-0 exited with status 0: not restarted (CC_WORKER_RESTART=on-failure)",
        ),
        (
            "always",
            0,
            5,
            "worker-0 failed 5 times within 10s: given up, as systemd would",
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let count = tmp.path().join("runs");
        let mut deployment = Setup::new("hello")
            .var(
                "CC_WORKER_COMMAND",
                format!("sh -c 'echo run >> \"$RUNS\"; exit {exit}'"),
            )
            .var("CC_WORKER_RESTART", policy)
            .var("CC_WORKER_RESTART_DELAY", "0")
            .var("RUNS", count.display().to_string())
            .start();
        deployment.deployed();
        eventually(&deployment, said, Duration::from_secs(30));
        assert!(!wait_until(Duration::from_millis(300), || runs(&count) > expected_runs));
        assert_eq!(
            runs(&count),
            expected_runs,
            "{policy}:\n{}",
            deployment.output()
        );
        assert_eq!(
            testkit::http_get(deployment.public, "/", &[])
                .unwrap()
                .status,
            200
        );
        assert_eq!(
            deployment.stop().code(),
            Some(0),
            "{policy}:\n{}",
            deployment.output()
        );
        deployment.nothing_left();
    }
}

/// A stop while a worker waits out its restart delay ends at once (the delay is a deadline in
/// the supervisor's loop, not a sleep), and no restart comes after it.
#[test]
fn a_stop_during_a_restart_delay_stops_at_once_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let count = tmp.path().join("runs");
    let mut deployment = Setup::new("hello")
        .var("CC_WORKER_COMMAND", "sh -c 'echo run >> \"$RUNS\"; exit 3'")
        .var("CC_WORKER_RESTART_DELAY", "30")
        .var("RUNS", count.display().to_string())
        .start();
    deployment.deployed();
    eventually(
        &deployment,
        "worker-0 exited with status 3: restarting in 30s",
        Duration::from_secs(30),
    );
    let asked = std::time::Instant::now();
    deployment.guard.signal(nix::sys::signal::Signal::SIGTERM);
    let status = deployment.exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", deployment.output());
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(runs(&count), 1);
    deployment.nothing_left();
}

/// A worker's death is not the deployment's: killed by a signal, it is restarted; the app's
/// death still stops everything.
#[test]
fn a_killed_worker_is_restarted_and_the_deployment_goes_on() {
    let jobs = tempfile::tempdir().unwrap();
    let mut deployment = Setup::new("hello")
        .var("CC_WORKER_COMMAND", "uv run --no-dev python worker.py")
        .var("CC_WORKER_RESTART_DELAY", "0")
        .var("JOBS", jobs.path().display().to_string())
        .start_with(with_worker);
    deployment.deployed();
    eventually(&deployment, "worker-0 | worker up", Duration::from_secs(30));
    let text = std::fs::read_to_string(deployment.tmp.path().join("state/deploy.json")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&text).unwrap();
    let pid = summary["processes"]["worker-0"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    eventually(
        &deployment,
        "worker-0 exited with status 137: restarting in 0s",
        Duration::from_secs(10),
    );
    assert!(
        wait_until(Duration::from_secs(30), || deployment
            .output()
            .matches("worker-0 | worker up")
            .count()
            == 2),
        "{}",
        deployment.output()
    );
    assert_eq!(
        testkit::http_get(deployment.public, "/", &[])
            .unwrap()
            .status,
        200
    );
    assert_eq!(deployment.stop().code(), Some(0), "{}", deployment.output());
    deployment.nothing_left();
}

/// A bad restart setting is refused before anything starts: the variable, the value and what
/// is valid, exit 2.
#[test]
fn bad_restart_settings_are_refused_naming_the_variable() {
    for (variable, value, valid) in [
        (
            "CC_WORKER_RESTART",
            "sometimes",
            "`on-failure` (the default), `always` or `no`",
        ),
        (
            "CC_WORKER_RESTART_DELAY",
            "1s",
            "a number of seconds from 0 to 3600",
        ),
    ] {
        let mut deployment = Setup::new("hello")
            .var("CC_WORKER_COMMAND", "python3 worker.py")
            .var(variable, value)
            .start();
        let status = deployment.exit(Duration::from_secs(60));
        let output = deployment.output();
        assert_eq!(status.code(), Some(2), "{output}");
        assert!(
            output.contains(&format!(
                "error: {variable}: `{value}` is not valid ({valid}"
            )),
            "{output}"
        );
        assert!(!output.contains("started worker-0"), "{output}");
    }
}

/// The plan lists the workers (`workers`), legacy mode's Celery among them, and `flowctl
/// --format workers` names them in order.
#[test]
fn the_plan_and_flowctl_show_the_workers() {
    let (_tmp, app) = copy_example("hello");
    let flowctl = |format: &str, extra: &[(&str, &str)]| {
        let mut command = std::process::Command::new(bin("flowctl"));
        testkit::cleared(&mut command)
            .arg(&app)
            .args(["--format", format])
            .env("CC_PYTHON_UV_RUN_COMMAND", "uv run python app.py")
            .env("CC_WORKER_COMMAND_1", "python b.py")
            .env("CC_WORKER_COMMAND_0", "python a.py && echo done")
            .envs(extra.iter().copied());
        testkit::succeeded(command.output().unwrap())
    };
    let listed = flowctl("workers", &[]);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        "worker-0\nworker-1\n"
    );
    let json = flowctl("json", &[("CC_WORKER_RESTART", "always")]);
    let plan: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(plan["workers"][0]["name"], "worker-0");
    assert_eq!(plan["workers"][0]["source"], "CC_WORKER_COMMAND_0");
    assert_eq!(plan["workers"][0]["argv"], serde_json::Value::Null);
    assert_eq!(
        plan["workers"][1]["argv"],
        serde_json::json!(["python", "b.py"])
    );
    assert_eq!(plan["workers"][1]["restart"], "always");
    assert_eq!(plan["workers"][1]["restart_delay_ms"], 1000);
    let said = String::from_utf8_lossy(&json.stderr);
    assert!(
        said.contains("worker-1: python b.py (CC_WORKER_COMMAND_1)"),
        "{said}"
    );
}

/// What a process prints of the platform's variables, each line behind `seen-WHO`.
const PRINT_PLATFORM_VARIABLES: &str =
    "env | grep -E '^(INSTANCE_TYPE|INSTANCE_ID|INSTANCE_NUMBER|APP_ID|APP_HOME|COMMIT_ID|CC_PRETTY_INSTANCE_NAME|CC_DEPLOYMENT_ID|CC_APP_NAME)=' | sed 's/^/seen-WHO /'";

fn printing(who: &str) -> String {
    PRINT_PLATFORM_VARIABLES.replace("WHO", who)
}

/// The variables `who` printed, from the deployment's output.
fn seen(output: &str, who: &str) -> std::collections::BTreeMap<String, String> {
    let marker = format!("seen-{who} ");
    output
        .lines()
        .filter_map(|line| line.split_once(&marker).map(|(_, kv)| kv))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every process gets the platform's variables: a build hook as a build instance, the app, a
/// worker and a run hook as the production instance, with one INSTANCE_ID, the app's stable
/// APP_ID, APP_HOME the deployed copy, COMMIT_ID the commit deployed; a user's own value is
/// replaced, and said. A second deployment of the app is a new instance of the same app.
#[test]
fn every_process_gets_the_platforms_variables() {
    let setup = || {
        Setup::new("hello")
            .var(
                "CC_PYTHON_UV_RUN_COMMAND",
                format!("{}; exec uv run python app.py", printing("app")),
            )
            .var("CC_WORKER_COMMAND", printing("worker"))
            .var("CC_POST_BUILD_HOOK", printing("build"))
            .var("CC_RUN_SUCCEEDED_HOOK", printing("hook"))
            .var("INSTANCE_ID", "mine")
    };
    let mut first = setup().start_in_repo(|_| {}, |_| {});
    first.deployed();
    let output = || first.output();
    for who in ["app", "worker", "hook"] {
        assert!(
            wait_until(Duration::from_secs(20), || seen(&output(), who).len() == 9),
            "{who}:\n{}",
            output()
        );
    }
    let output = output();
    let build = seen(&output, "build");
    let app = seen(&output, "app");
    assert_eq!(build["INSTANCE_TYPE"], "build", "{output}");
    let copy = std::fs::canonicalize(first.tmp.path().join("state/copy")).unwrap();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(&first.app_dir)
        .output()
        .unwrap();
    let commit = String::from_utf8_lossy(&commit.stdout).trim().to_string();
    for who in ["app", "worker", "hook"] {
        let vars = seen(&output, who);
        assert_eq!(vars["INSTANCE_TYPE"], "production", "{who}: {output}");
        // Every variable of the platform's the same as at build time, but INSTANCE_TYPE.
        for same in plan::instance::VARIABLES
            .into_iter()
            .filter(|v| *v != "INSTANCE_TYPE")
        {
            assert_eq!(vars[same], build[same], "{who} {same}: {output}");
        }
    }
    assert_eq!(app["INSTANCE_NUMBER"], "0");
    assert_eq!(app["APP_HOME"], copy.display().to_string());
    assert_eq!(app["COMMIT_ID"], commit, "the full hash");
    assert_eq!(commit.len(), 40);
    assert_eq!(
        app["CC_APP_NAME"],
        first.app_dir.file_name().unwrap().to_string_lossy()
    );
    assert_ne!(app["INSTANCE_ID"], "mine", "the user's value is replaced");
    assert_eq!(app["INSTANCE_ID"].len(), 36, "{output}");
    assert!(
        app["APP_ID"].starts_with("app_") && app["APP_ID"].len() == 40,
        "{output}"
    );
    assert!(!app["CC_PRETTY_INSTANCE_NAME"].is_empty());
    assert!(
        output.contains(
            "deploy: INSTANCE_ID is set in your environment: replaced by this deployment's, as the platform does"
        ),
        "{output}"
    );
    assert_eq!(first.stop().code(), Some(0), "{output}");
    first.nothing_left();

    // The same app again: the same APP_ID, a new INSTANCE_ID.
    let app_dir = first.app_dir.clone();
    let mut second = setup().launch(testkit::shared_tempdir(), app_dir);
    second.deployed();
    assert!(
        wait_until(Duration::from_secs(20), || seen(&second.output(), "app")
            .len()
            == 9),
        "{}",
        second.output()
    );
    let again = seen(&second.output(), "app");
    assert_eq!(again["APP_ID"], app["APP_ID"]);
    assert_ne!(again["INSTANCE_ID"], app["INSTANCE_ID"]);
    assert_eq!(second.stop().code(), Some(0), "{}", second.output());
    second.nothing_left();
}

/// Legacy mode: a worker runs in the venv the build made, as the app server does.
#[test]
fn a_legacy_mode_worker_runs_in_the_venv() {
    let jobs = tempfile::tempdir().unwrap();
    let mut deployment = Setup::legacy("legacy-flask-uwsgi")
        .var("CC_WORKER_COMMAND", "python worker.py")
        .var("JOBS", jobs.path().display().to_string())
        .start_with(with_worker);
    deployment.deployed();
    std::fs::write(jobs.path().join("legacy.job"), "").unwrap();
    let done = jobs.path().join("legacy.done");
    assert!(
        wait_until(Duration::from_secs(60), || done.is_file()),
        "{}",
        deployment.output()
    );
    let seen = std::fs::read_to_string(&done).unwrap();
    let copy = std::fs::canonicalize(deployment.tmp.path().join("state/copy")).unwrap();
    assert!(
        seen.contains(&format!("venv={}", copy.join(".venv").display())),
        "{seen}"
    );
    assert!(seen.contains("port=unset\n"), "{seen}");
    assert_eq!(deployment.stop().code(), Some(0), "{}", deployment.output());
    deployment.nothing_left();
}

fn executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Crons run at their UTC minute on the clock the test sets (never the wall clock's), their
/// lines behind their names, with cron's bare environment: a `#!/bin/bash -l` script sees the
/// app's variables and the platform's, a plain one does not. TERM stops it all.
#[test]
fn crons_run_at_their_minute_with_the_apps_variables_only_in_a_login_shell() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = tmp.path().join("clock");
    set_clock(&clock, "2026-01-01T00:00:30Z");
    let mut deployment = Setup::new("hello")
        .var("UVDEPLOY_CLOCK", clock.display().to_string())
        .var("GREETING", "hello from the app")
        .start_with(|app| {
            std::fs::create_dir_all(app.join("clevercloud")).unwrap();
            std::fs::write(
                app.join("clevercloud/cron.json"),
                r#"["* * * * * $ROOT/login.sh", "* * * * * $ROOT/plain.sh", "5 * * * * /usr/bin/env echo five past"]"#,
            )
            .unwrap();
            executable(
                &app.join("login.sh"),
                "#!/bin/bash -l\necho \"login: $INSTANCE_TYPE $GREETING in $PWD\"\n",
            );
            executable(
                &app.join("plain.sh"),
                "#!/bin/sh\necho \"plain: ${INSTANCE_TYPE:-unset} ${GREETING:-unset} PATH=$PATH\"\n",
            );
        });
    deployment.deployed();
    let output = deployment.output();
    assert!(
        output.contains("deploy: 3 cron(s) scheduled, on the test clock UVDEPLOY_CLOCK"),
        "{output}"
    );
    // The minute the deployment started in is not run.
    assert!(!wait_until(Duration::from_millis(400), || deployment
        .output()
        .contains("cron-0 |")));
    set_clock(&clock, "2026-01-01T00:01:00Z");
    eventually(
        &deployment,
        "cron-0   | login: production hello from the app in ",
        Duration::from_secs(10),
    );
    eventually(
        &deployment,
        "cron-1   | plain: unset unset PATH=/usr/bin:/bin",
        Duration::from_secs(10),
    );
    assert!(!deployment.output().contains("cron-2   | five past"));
    set_clock(&clock, "2026-01-01T00:05:00Z");
    eventually(&deployment, "cron-2   | five past", Duration::from_secs(10));
    // cron-0 runs at 00:05 too, beside cron-2: its line may come a little later.
    assert!(
        wait_until(Duration::from_secs(10), || deployment
            .output()
            .matches("cron-0   | login:")
            .count()
            == 2),
        "{}",
        deployment.output()
    );
    let output = deployment.output();
    assert_eq!(
        output.matches("cron-2   | five past").count(),
        1,
        "{output}"
    );
    assert_eq!(deployment.stop().code(), Some(0), "{output}");
    deployment.nothing_left();
}

/// A bad `clevercloud/cron.json` entry is refused before anything starts, naming the entry
/// and what is wrong; `/bin/bash $ROOT/script.sh` is warned about.
#[test]
fn bad_cron_entries_are_refused_and_a_double_bash_is_warned_about() {
    let (_tmp, app) = copy_example("hello");
    std::fs::create_dir_all(app.join("clevercloud")).unwrap();
    let detect = |entries: &str| {
        std::fs::write(app.join("clevercloud/cron.json"), entries).unwrap();
        let mut command = std::process::Command::new(bin("detect"));
        testkit::cleared(&mut command)
            .arg(&app)
            .env("CC_PYTHON_UV_RUN_COMMAND", "uv run python app.py");
        command.output().unwrap()
    };
    let refused = detect(r#"["@reboot $ROOT/start.sh"]"#);
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("error: clevercloud/cron.json: entry `@reboot $ROOT/start.sh`: `@reboot` is not available on the platform"),
        "{said}"
    );
    let relative = detect(r#"["0 * * * * clevercloud/task.sh"]"#);
    assert_eq!(relative.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&relative.stderr).contains("not an absolute path"));
    let warned = detect(r#"["0 * * * * /bin/bash $ROOT/task.sh"]"#);
    assert_eq!(warned.status.code(), Some(0));
    let said = String::from_utf8_lossy(&warned.stderr);
    assert!(
        said.contains("cancels the script's `#!/bin/bash -l`"),
        "{said}"
    );
    let plan: serde_json::Value = serde_json::from_slice(&warned.stdout).unwrap();
    assert_eq!(plan["crons"][0]["name"], "cron-0");
    assert_eq!(plan["crons"][0]["schedule"], "0 * * * *");
    let app = std::fs::canonicalize(&app).unwrap();
    assert_eq!(
        plan["crons"][0]["command"],
        format!("/bin/bash {}/task.sh", app.display())
    );
}
