//! `healthcheck` against real HTTP servers on 127.0.0.1.

use assert_cmd::Command;
use serde_json::Value;
use std::time::Duration;
use testkit::{free_port, TinyServer};

const FOOTER: &str =
    "If the deployment fails after this message, please update your configuration and redeploy.\n";

/// `healthcheck` in a cleared environment.
fn hc() -> Command {
    let mut cmd = Command::cargo_bin("healthcheck").unwrap();
    cmd.env_clear();
    cmd
}

fn healthcheck(port: u16, paths: &[&str]) -> Command {
    let mut cmd = hc();
    cmd.args(["--port", &port.to_string(), "--timeout", "5s"]);
    for path in paths {
        cmd.args(["--path", path]);
    }
    cmd
}

/// Runs and returns (exit code, stdout).
fn verdict(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

/// A plan file whose public port is `port`, with the given paths configured.
fn plan_file(
    dir: &std::path::Path,
    port: u16,
    paths: &[&str],
    app_port: u16,
) -> std::path::PathBuf {
    let mut plan: Value = serde_json::from_str(testkit::EXAMPLE_PLAN).unwrap();
    plan["ports"] = serde_json::json!({"public": port, "app": app_port});
    // The example's hops listen on 8080 and 8081: this plan has none, only the ports above,
    // and no middleware (the challenge tests are in `challenge.rs`).
    plan.as_object_mut().unwrap().remove("hops");
    plan["request_flow"]["middlewares"] = serde_json::json!([]);
    plan["health_check"] = if paths.is_empty() {
        serde_json::json!({"source": "default", "paths": ["/"]})
    } else {
        serde_json::json!({"source": "CC_HEALTH_CHECK_PATH_N", "paths": paths})
    };
    let path = dir.join(format!("plan-{port}.json"));
    std::fs::write(&path, plan.to_string()).unwrap();
    path
}

#[test]
fn a_secret_the_plan_names_in_a_path_is_sent_but_never_printed() {
    let server = TinyServer::start("0.0.0.0", 0, &[("/health?token=s3cr3t-value", 200)]);
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(
        dir.path(),
        server.port,
        &["/health?token=${{API_TOKEN}}"],
        server.port,
    );
    let mut cmd = hc();
    cmd.env_clear()
        .env("API_TOKEN", "s3cr3t-value")
        .arg("--plan")
        .arg(&plan);
    let (code, out) = verdict(&mut cmd);
    assert_eq!(
        (code, out.as_str()),
        (0, "Response from GET /health?token=*** is 200\n")
    );

    let out = Command::cargo_bin("healthcheck")
        .unwrap()
        .env_clear()
        .arg("--plan")
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: the plan refers to the secret API_TOKEN, which is not set in the environment\n\nhint: set API_TOKEN (or pass the env file that sets it)\n"
    );
}

#[test]
fn all_paths_200_pass() {
    let server = TinyServer::start("0.0.0.0", 0, &[("/health", 200), ("/health/db", 200)]);
    let (code, out) = verdict(&mut healthcheck(server.port, &["/health", "/health/db"]));
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "Response from GET /health is 200\nResponse from GET /health/db is 200\n"
    );
}

#[test]
fn the_seed_example_gives_the_seed_lines() {
    let server = TinyServer::start(
        "0.0.0.0",
        0,
        &[("/my/awesome/path", 200), ("/my/other/path", 500)],
    );
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(
        dir.path(),
        server.port,
        &["/my/awesome/path", "/my/other/path"],
        server.port,
    );
    let (code, out) = verdict(hc().arg("--plan").arg(&plan));
    assert_eq!(code, 1);
    assert_eq!(
        out,
        format!("Response from GET /my/awesome/path is 200\nResponse from GET /my/other/path is 500\nHealth check failed:\n- GET /my/other/path returned 500.\n{FOOTER}")
    );
}

#[test]
fn pass_rules() {
    let server = TinyServer::start(
        "0.0.0.0",
        0,
        &[("/nocontent", 204), ("/moved", 301), ("/", 404)],
    );
    assert_eq!(
        verdict(&mut healthcheck(server.port, &["/nocontent"])).0,
        0,
        "204 passes"
    );
    let (code, out) = verdict(&mut healthcheck(server.port, &["/moved"]));
    assert_eq!(
        (code, out.lines().next().unwrap()),
        (1, "Response from GET /moved is 301"),
        "a redirect is not followed"
    );

    let dir = tempfile::tempdir().unwrap();
    let default_plan = plan_file(dir.path(), server.port, &[], server.port);
    let (code, out) = verdict(hc().arg("--plan").arg(&default_plan));
    assert_eq!(
        (code, out.as_str()),
        (0, "Response from GET / is 404\n"),
        "the default / passes on 404"
    );

    let failing = TinyServer::start("0.0.0.0", 0, &[("/", 500)]);
    let plan = plan_file(dir.path(), failing.port, &[], failing.port);
    let (code, _) = verdict(hc().arg("--plan").arg(&plan));
    assert_eq!(code, 1, "the default / fails on 500");
}

#[test]
fn a_late_server_is_waited_for() {
    let port = free_port();
    let _server =
        TinyServer::start_late("0.0.0.0", port, &[("/", 200)], Duration::from_millis(700));
    let (code, out) = verdict(&mut healthcheck(port, &["/"]));
    assert_eq!((code, out.as_str()), (0, "Response from GET / is 200\n"));
}

#[test]
fn a_server_that_never_answers_fails_with_the_reason() {
    let server = TinyServer::start("0.0.0.0", 0, &[("/hang", 0)]);
    let (code, out) =
        verdict(healthcheck(server.port, &["/hang"]).args(["--request-timeout", "300ms"]));
    assert_eq!(code, 1);
    assert!(
        out.starts_with(
            "Response from GET /hang is no answer in time (timed out)\nHealth check failed:\n"
        ),
        "{out}"
    );
}

#[test]
fn nothing_listening_ends_at_the_deadline_with_a_diagnosis() {
    let port = free_port();
    let (code, out) = verdict(healthcheck(port, &["/"]).args(["--timeout", "300ms"]));
    assert_eq!(code, 1);
    assert_eq!(
        out,
        format!("Your application is not listening on {port}\nNothing listens on port {port}.\n")
    );
}

#[test]
fn an_app_bound_to_localhost_is_diagnosed() {
    let server = TinyServer::start("127.0.0.1", 0, &[("/", 200)]);
    let (code, out) = verdict(healthcheck(server.port, &["/"]).args(["--timeout", "300ms"]));
    assert_eq!(code, 1);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!("Your application is not listening on {}", server.port)
    );
    assert_eq!(
        lines[1],
        "Your application is listening on localhost instead of publicly"
    );
    assert!(lines[2].contains("must listen on 0.0.0.0"), "{out}");
}

#[test]
fn the_app_port_must_listen_behind_a_middleware() {
    let front = TinyServer::start("0.0.0.0", 0, &[("/", 200)]);
    let app_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(dir.path(), front.port, &[], app_port);
    let (code, out) = verdict(hc().arg("--plan").arg(&plan).args(["--timeout", "300ms"]));
    assert_eq!(code, 1);
    assert!(
        out.starts_with(&format!(
            "Some software are not listening as expected: {app_port}\n"
        )),
        "{out}"
    );
}

#[test]
fn json_matches_the_lines() {
    let server = TinyServer::start("0.0.0.0", 0, &[("/a", 200), ("/b", 503)]);
    let (code, out) = verdict(healthcheck(server.port, &["/a", "/b"]).arg("--json"));
    assert_eq!(code, 1);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["healthy"], false);
    assert_eq!(json["listening"], true);
    assert_eq!(json["probes"][0]["path"], "/a");
    assert_eq!(json["probes"][0]["status"], 200);
    assert_eq!(json["probes"][0]["passed"], true);
    assert_eq!(json["probes"][1]["status"], 503);
    assert_eq!(json["probes"][1]["passed"], false);
    assert!(json["probes"][1]["duration_ms"].is_u64());
}

#[test]
fn usage_errors_exit_2() {
    let mut cmd = hc();
    cmd.args(["--port", "1", "--path", "health"])
        .assert()
        .code(2);
    let mut cmd = hc();
    cmd.args(["--port", "1", "--timeout", "soon"])
        .assert()
        .code(2);
    let mut cmd = hc();
    let out = cmd
        .write_stdin("{\"schema\": 9}")
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    assert!(String::from_utf8_lossy(&out).contains("has schema 9, this tool reads schema 1 only"));
}

/// `--timeout` is the whole check's deadline: a server that accepts and never answers cannot
/// keep the check running for `--request-timeout` past it.
#[test]
fn the_timeout_bounds_the_requests_too() {
    let silent = TinyServer::start("0.0.0.0", 0, &[("/", 0)]);
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("healthcheck"));
    cmd.env_clear()
        .args(["--port", &silent.port.to_string(), "--timeout", "1s"])
        .args(["--request-timeout", "60s"])
        .stdout(std::process::Stdio::piped());
    let mut check = testkit::ProcessGuard::spawn(&mut cmd);
    let status = check
        .wait_timeout(Duration::from_secs(30))
        .expect("the check ends at its deadline, not the request's");
    assert_eq!(status.code(), Some(1));
    let mut out = String::new();
    std::io::Read::read_to_string(&mut check.child.stdout.take().unwrap(), &mut out).unwrap();
    assert!(
        out.starts_with(
            "Response from GET / is no answer in time (timed out)\nHealth check failed:"
        ),
        "{out}"
    );
}
