//! The `launcher` binary becomes the process: same PID, signals, exit status, environment.

use assert_cmd::Command as AssertCommand;
use detect::PortSettings;
use plan::{Env, EnvValue, Hop, HopFile, Plan};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use testkit::{bin, ProcessGuard};

/// A uv-mode plan for an app in `dir` whose run command is `command`.
fn plan_running(dir: &Path, command: &str) -> Plan {
    std::fs::write(dir.join("uv.lock"), "").unwrap();
    let env: Env = [("HOME", "/root"), ("CC_PYTHON_UV_RUN_COMMAND", command)]
        .into_iter()
        .collect();
    detect::detect(dir, &env, PortSettings::default()).unwrap()
}

/// Writes the plan next to the app (not inside it) and returns its path.
fn save(plan: &Plan, dir: &Path) -> PathBuf {
    static SAVED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SAVED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let path = dir.parent().unwrap().join(format!("plan-{n}.json"));
    std::fs::write(&path, serde_json::to_string(plan).unwrap()).unwrap();
    path
}

fn app_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    std::fs::create_dir(&app).unwrap();
    (tmp, app.canonicalize().unwrap())
}

fn launcher() -> Command {
    let mut cmd = Command::new(bin("launcher"));
    testkit::cleared(&mut cmd);
    cmd
}

/// Starts the launcher and reads the first line the process prints.
fn start_and_read_line(cmd: &mut Command) -> (ProcessGuard, String) {
    cmd.stdout(Stdio::piped());
    let mut guard = ProcessGuard::spawn(cmd);
    let stdout = guard.child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    (guard, line.trim().to_string())
}

const PRINT_PID_AND_WAIT: &str = "python3 -c 'import os, sys, signal, pathlib\nsignal.signal(signal.SIGTERM, lambda *a: (pathlib.Path(\"terminated\").write_text(\"yes\"), sys.exit(7)))\nprint(os.getpid(), flush=True)\nsignal.pause()'";

#[test]
fn the_app_keeps_the_launchers_pid_and_gets_its_signals() {
    let (_tmp, app) = app_dir();
    let plan = save(&plan_running(&app, PRINT_PID_AND_WAIT), &app);
    let (mut guard, line) = start_and_read_line(launcher().arg("--app").arg("--plan").arg(&plan));
    assert_eq!(
        line,
        guard.pid().to_string(),
        "the app's PID is the launcher's"
    );
    guard.signal(nix::sys::signal::Signal::SIGTERM);
    let status = guard
        .wait_timeout(Duration::from_secs(10))
        .expect("the app exits on SIGTERM");
    assert_eq!(status.code(), Some(7), "the exit status is the app's own");
    assert_eq!(
        std::fs::read_to_string(app.join("terminated")).unwrap(),
        "yes"
    );
}

#[test]
fn port_and_working_directory() {
    let (_tmp, app) = app_dir();
    let plan = plan_running(
        &app,
        "python3 -c 'import os; print(os.environ[\"PORT\"], os.getcwd())'",
    );
    let out = launcher()
        .arg("--app")
        .arg("--plan")
        .arg(save(&plan, &app))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("8080 {}", app.display())
    );

    let mut proxied = plan.clone();
    proxied.ports.app = 9000;
    let out = launcher()
        .arg("--app")
        .arg("--plan")
        .arg(save(&proxied, &app))
        .output()
        .unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().starts_with("9000 "));
}

#[test]
fn a_shell_list_runs_as_sh_would_and_the_launcher_stays_to_supervise_it() {
    let (_tmp, app) = app_dir();
    let plan = plan_running(
        &app,
        "echo $PORT > port.txt && python3 -c 'import os; print(os.getppid(), flush=True)' && exit 3",
    );
    assert_eq!(plan.run.as_ref().unwrap().argv, None);
    let (mut guard, line) =
        start_and_read_line(launcher().arg("--app").arg("--plan").arg(save(&plan, &app)));
    let status = guard.wait_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(status.code(), Some(3), "the shell's own exit status");
    // python's parent is the shell, itself the launcher's child.
    let shell: i32 = line.parse().unwrap();
    assert_ne!(shell, guard.pid());
    assert_eq!(
        std::fs::read_to_string(app.join("port.txt")).unwrap(),
        "8080\n"
    );
}

#[test]
fn shell_commands_the_old_exec_rewrite_broke_now_run() {
    let (_tmp, app) = app_dir();
    for (command, out) in [
        ("FOO=1 sh -c 'echo $FOO'", "1"),
        ("if true; then echo yes; fi", "yes"),
        ("echo hi; { echo there; }", "hi\nthere"),
        ("true && echo done", "done"),
    ] {
        let plan = plan_running(&app, command);
        let output = launcher()
            .arg("--app")
            .arg("--plan")
            .arg(save(&plan, &app))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            out,
            "{command}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "{command}");
    }
}

#[test]
fn term_stops_a_supervised_list_and_everything_it_started() {
    let (_tmp, app) = app_dir();
    let plan = plan_running(&app, "echo started && sleep 300 && echo never");
    let (mut guard, line) =
        start_and_read_line(launcher().arg("--app").arg("--plan").arg(save(&plan, &app)));
    assert_eq!(line, "started");
    assert!(
        testkit::wait_until(Duration::from_secs(10), || {
            process::descendants(guard.pid())
                .iter()
                .any(|&p| process::command_line(p) == "sleep 300")
        }),
        "the sleep runs under the launcher"
    );
    guard.signal(nix::sys::signal::Signal::SIGTERM);
    let status = guard
        .wait_timeout(Duration::from_secs(10))
        .expect("stopped");
    assert_eq!(status.code(), Some(128 + 15), "the shell died of TERM");
    assert!(
        testkit::processes_in_group(guard.pid()).is_empty(),
        "nothing left"
    );
}

#[test]
fn an_app_sent_to_the_background_is_a_failed_start_with_nothing_left() {
    let (_tmp, app) = app_dir();
    let plan = plan_running(&app, "sleep 300 &");
    let mut cmd = launcher();
    cmd.arg("--app")
        .arg("--plan")
        .arg(save(&plan, &app))
        .stderr(Stdio::piped());
    let mut guard = ProcessGuard::spawn(&mut cmd);
    let status = guard.wait_timeout(Duration::from_secs(15)).expect("ends");
    assert_eq!(status.code(), Some(1));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut guard.child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.starts_with(
            "error: the command ended but left 1 process(es) running in the background (PID "
        ) && err.contains("sleep 300")
            && err.contains("hint: a run command must keep the app in the foreground"),
        "{err}"
    );
    assert!(
        testkit::processes_in_group(guard.pid()).is_empty(),
        "nothing left"
    );
}

#[test]
fn the_exit_status_is_the_apps() {
    let (_tmp, app) = app_dir();
    let plan = plan_running(&app, "python3 -c 'raise SystemExit(42)'");
    let status = launcher()
        .arg("--app")
        .arg("--plan")
        .arg(save(&plan, &app))
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(42));
}

/// A plan with one hop whose process prints its own argv and whether it got the secret.
/// A plan whose one hop listens on [`hop_port`].
fn plan_with_hop(app: &Path, state: &Path) -> PathBuf {
    plan_with_hop_on(app, state, hop_port())
}

fn plan_with_hop_on(app: &Path, state: &Path, listen: u16) -> PathBuf {
    let mut plan = plan_running(app, "python3 app.py");
    plan.hops = Some(vec![Hop {
        name: "otoroshi-challenge".into(),
        listen,
        forward: Some(9000),
        argv: vec![
            "python3".into(),
            "-c".into(),
            "import os; print(os.getpid(), os.environ['PORT'], open('/proc/self/cmdline').read().replace(chr(0), ' '), os.environ['OTOROSHI_CHALLENGE_SECRET'][::-1], open(os.environ['CONF']).read(), flush=True)".into(),
        ],
        env: [
            ("OTOROSHI_CHALLENGE_SECRET".to_string(), EnvValue::FromEnv { from_env: "OTOROSHI_CHALLENGE_SECRET".into() }),
            ("CONF".to_string(), EnvValue::Literal(state.join("conf/hop.conf").display().to_string())),
        ]
        .into_iter()
        .collect(),
        files: vec![HopFile::new(state.join("conf/hop.conf"), "rendered".into())],
    }]);
    save(&plan, app)
}

/// The port the hops of these tests listen on: free now, and the same for the whole run.
fn hop_port() -> u16 {
    static PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *PORT.get_or_init(testkit::free_port)
}

#[test]
fn a_hop_file_is_never_written_through_a_link() {
    let (tmp, app) = app_dir();
    let plan = plan_with_hop(&app, tmp.path());
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), tmp.path().join("conf")).unwrap();
    let out = launcher()
        .args(["--hop", "otoroshi-challenge", "--plan"])
        .arg(&plan)
        .env("OTOROSHI_CHALLENGE_SECRET", "hunter2-secret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: cannot write `{}`: its directory is a symbolic link\n",
            tmp.path().join("conf/hop.conf").display()
        )
    );
    assert!(std::fs::read_dir(elsewhere.path())
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn a_busy_port_fails_before_the_process_starts_naming_what_holds_it() {
    let (tmp, app) = app_dir();
    let busy = std::net::TcpListener::bind(("0.0.0.0", 0)).unwrap();
    let port = busy.local_addr().unwrap().port();
    let plan = plan_with_hop_on(&app, tmp.path(), port);
    let out = launcher()
        .args(["--hop", "otoroshi-challenge", "--plan"])
        .arg(&plan)
        .env("OTOROSHI_CHALLENGE_SECRET", "hunter2-secret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "error: port {port} (hop otoroshi-challenge) is already in use on this machine, by PID {}",
            std::process::id()
        )) && err.ends_with("\n\nhint: stop what listens there, or shift the chain with `--public-port` and `--app-port`\n"),
        "{err}"
    );
}

/// A port whose only sockets are connections closed moments ago (TIME-WAIT) has no
/// listener: it is not "already in use", and the process starts.
#[test]
fn a_port_with_only_time_wait_connections_is_free() {
    let (tmp, app) = app_dir();
    let port = testkit::free_port();
    // The server closes first, so its side of the connection waits (TIME-WAIT, a minute).
    // Its listener does not set SO_REUSEADDR, as many servers do not: then no bind of the
    // port succeeds while the connection waits, though nothing listens.
    let made = Command::new("python3")
        .args([
            "-c",
            "import socket, sys\n\
             listener = socket.socket()\n\
             listener.bind(('0.0.0.0', int(sys.argv[1])))\n\
             listener.listen(1)\n\
             client = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n\
             server, _ = listener.accept()\n\
             server.close()\n\
             client.recv(1)\n\
             client.close()\n\
             listener.close()\n",
            &port.to_string(),
        ])
        .status()
        .unwrap();
    assert!(made.success());
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let waiting = format!(":{port:04X} ");
    assert!(
        tcp.lines().any(|l| l
            .split_whitespace()
            .nth(1)
            .is_some_and(|a| format!("{a} ").ends_with(&waiting))
            && l.split_whitespace().nth(3) == Some("06")),
        "no TIME-WAIT on {port}:\n{tcp}"
    );
    assert!(
        std::net::TcpListener::bind(("0.0.0.0", port)).is_err(),
        "the connection in TIME-WAIT holds the port"
    );
    let plan = plan_with_hop_on(&app, tmp.path(), port);
    let out = launcher()
        .args(["--hop", "otoroshi-challenge", "--plan"])
        .arg(&plan)
        .env("OTOROSHI_CHALLENGE_SECRET", "hunter2-secret")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.split(' ').nth(1),
        Some(port.to_string().as_str()),
        "the hop started: {stdout}"
    );
}

#[test]
fn a_hop_gets_its_port_env_and_files_and_secrets_stay_off_argv() {
    let (tmp, app) = app_dir();
    let plan = plan_with_hop(&app, tmp.path());
    let (_guard, line) = start_and_read_line(
        launcher()
            .args(["--hop", "otoroshi-challenge", "--plan"])
            .arg(&plan)
            .env("OTOROSHI_CHALLENGE_SECRET", "hunter2-secret"),
    );
    let mut words = line.split(' ');
    let _pid = words.next();
    assert_eq!(
        words.next(),
        Some(hop_port().to_string().as_str()),
        "{line}"
    );
    assert!(
        line.ends_with("terces-2retnuh rendered"),
        "the hop got the secret and its file: {line}"
    );
    assert!(
        !line.contains("hunter2"),
        "the secret is not on argv: {line}"
    );

    let missing = launcher()
        .args(["--hop", "otoroshi-challenge", "--plan"])
        .arg(&plan)
        .env_remove("OTOROSHI_CHALLENGE_SECRET")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr)
        .contains("hop \"otoroshi-challenge\" needs OTOROSHI_CHALLENGE_SECRET in the environment"));
}

#[test]
fn dry_run_shows_everything_but_secret_values() {
    let (tmp, app) = app_dir();
    let plan = plan_with_hop(&app, tmp.path());
    let out = AssertCommand::new(bin("launcher"))
        .args(["--hop", "otoroshi-challenge", "--dry-run", "--plan"])
        .arg(&plan)
        .env("OTOROSHI_CHALLENGE_SECRET", "hunter2-secret")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("env: OTOROSHI_CHALLENGE_SECRET=***"), "{out}");
    assert!(out.contains(&format!("env: PORT={}", hop_port())), "{out}");
    assert!(out.contains(&format!("cwd: {}", app.display())), "{out}");
    assert!(out.contains("file: "), "{out}");
    assert!(!out.contains("hunter2"));
    assert!(
        !tmp.path().join("conf").exists(),
        "a dry run writes nothing"
    );
}

#[test]
fn the_pre_run_hook_runs_first_and_its_failure_stops_the_launch() {
    let (_tmp, app) = app_dir();
    let plan = save(
        &plan_running(&app, "python3 -c 'print(open(\"hook.txt\").read())'"),
        &app,
    );
    let out = launcher()
        .args(["--app", "--plan"])
        .arg(&plan)
        .env("CC_PRE_RUN_HOOK", "echo -n hooked-$PORT > hook.txt")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "hooked-8080");

    let out = launcher()
        .args(["--app", "--plan"])
        .arg(&plan)
        .env("CC_PRE_RUN_HOOK", "exit 3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("error: CC_PRE_RUN_HOOK failed (exit status: 3): `exit 3`"));
}

/// Runs the launcher, expects failure with `code`, and returns stderr.
fn failure(args: &[&str], plan: Option<&Path>, code: i32) -> String {
    let mut cmd = launcher();
    cmd.args(args);
    if let Some(plan) = plan {
        cmd.arg("--plan").arg(plan);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(code), "{out:?}");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn errors_name_what_is_wrong() {
    let (tmp, app) = app_dir();
    let plain = save(&plan_running(&app, "python3 app.py"), &app);
    let with_hop = plan_with_hop(&app, tmp.path());

    let err = failure(&["--hop", "varnish"], Some(&plain), 2);
    assert!(
        err.contains("the plan has no hops") && err.contains("pipe the plan through `flowctl`"),
        "{err}"
    );
    let err = failure(&["--hop", "varnish"], Some(&with_hop), 2);
    assert!(
        err.contains("the plan has no hop \"varnish\" (its hops: otoroshi-challenge)"),
        "{err}"
    );

    let err = failure(&["--", "no-such-command-here"], None, 127);
    assert!(
        err.contains("command not found: `no-such-command-here` (searched PATH: "),
        "{err}"
    );
    let err = failure(&["--", "redirectionio-agent"], None, 127);
    assert!(
        err.contains("the Redirection.io agent is not installed"),
        "{err}"
    );

    let script = tmp.path().join("script.sh");
    std::fs::write(&script, "echo hi").unwrap();
    let err = failure(&["--", script.to_str().unwrap()], None, 126);
    assert!(err.contains("is not executable"), "{err}");

    let mut no_run = plan_running(&app, "python3 app.py");
    no_run.run = None;
    let err = failure(&["--app"], Some(&save(&no_run, &app)), 2);
    assert!(err.contains("the plan has no run command"), "{err}");

    let err = failure(
        &["--worker", "celery"],
        Some(&save(&plan_running(&app, "python3 app.py"), &app)),
        2,
    );
    assert!(
        err.contains("the plan has no worker \"celery\" (its workers: none)"),
        "{err}"
    );

    let mut empty = plan_running(&app, "python3 app.py");
    empty.run.as_mut().unwrap().command = " ".into();
    let err = failure(&["--app"], Some(&save(&empty, &app)), 2);
    assert!(err.contains("the run command is empty"), "{err}");
}

#[test]
fn a_command_by_hand_runs_without_a_plan() {
    let out = launcher()
        .args(["--port", "1234", "--", "sh", "-c", "echo $PORT"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "1234\n");
}
