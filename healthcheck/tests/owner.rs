//! `--owner PID`: an answer counts only when the deployment's own processes hold the port.

use std::process::Command;
use std::time::{Duration, Instant};
use testkit::{free_port, wait_for_port, ProcessGuard, TinyServer};

/// (code, stdout, stderr)
fn healthcheck(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(assert_cmd::cargo::cargo_bin("healthcheck"))
        .env_clear()
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn an_answer_from_a_process_that_is_not_the_deployment_is_refused_at_once() {
    // The previous deployment, say: this test process holds the port and answers 200.
    let foreign = TinyServer::start("0.0.0.0", 0, &[("/", 200)]);
    let mut cmd = Command::new("sleep");
    cmd.arg("60");
    let deployment = ProcessGuard::spawn(&mut cmd);
    let port = foreign.port.to_string();
    let owner = deployment.pid().to_string();
    let started = Instant::now();
    let (code, out, _) = healthcheck(&["--port", &port, "--owner", &owner, "--timeout", "30s"]);
    let me = std::process::id() as i32;
    assert_eq!(
        (code, out),
        (
            1,
            format!(
                "Port {port} is held by another program (PID {me}: {}), not by this deployment (PID {owner} and its children): its answers would not be the deployment's.\n",
                process::command_line(me)
            )
        )
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "fails at once, without waiting for the timeout"
    );
}

#[test]
fn an_answer_from_an_owners_descendant_counts() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    // The server is the shell's child (`; :` keeps the shell from exec-ing it).
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        &format!("python3 -m http.server --bind 0.0.0.0 {port}; :"),
    ])
    .current_dir(dir.path())
    .stderr(std::process::Stdio::null());
    let owner = ProcessGuard::spawn(&mut cmd);
    assert!(wait_for_port(port, Duration::from_secs(10)));
    let other = ProcessGuard::spawn(Command::new("sleep").arg("60"));
    let (code, out, _) = healthcheck(&[
        "--port",
        &port.to_string(),
        "--owner",
        &other.pid().to_string(),
        "--owner",
        &owner.pid().to_string(),
    ]);
    assert_eq!((code, out.as_str()), (0, "Response from GET / is 200\n"));
}

#[test]
fn owners_are_on_this_machine_only() {
    let (code, _, out) = healthcheck(&["--port", "8080", "--host", "10.1.2.3", "--owner", "1"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.starts_with("error: --owner tells who listens on this machine, and --host `10.1.2.3` is another one"),
        "{out}"
    );
}
