//! The health check through a real `otoroshi-challenge` in front of a small app: it sends a
//! token as Otoroshi does, and judges the app's answer, not the challenge's.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use testkit::{bin, free_port, wait_for_port, ProcessGuard, TinyServer};

const SECRET: &str = "the-health-check-secret";
const FOOTER: &str =
    "If the deployment fails after this message, please update your configuration and redeploy.\n";

/// The challenge on a free public port in front of `app`; returns it and its port.
fn challenge(app: u16) -> (ProcessGuard, u16) {
    let listen = free_port();
    let mut cmd = Command::new(bin("otoroshi-challenge"));
    testkit::cleared(&mut cmd)
        .args([
            "--listen",
            &listen.to_string(),
            "--forward",
            &app.to_string(),
        ])
        .env("OTOROSHI_CHALLENGE_SECRET", SECRET)
        .stderr(std::process::Stdio::null());
    let guard = ProcessGuard::spawn(&mut cmd);
    assert!(wait_for_port(listen, Duration::from_secs(10)));
    (guard, listen)
}

/// A plan whose chain is the challenge on `public` in front of the app on `app`.
fn plan_file(dir: &Path, public: u16, app: u16, paths: &[&str]) -> PathBuf {
    let mut plan: Value = serde_json::from_str(testkit::EXAMPLE_PLAN).unwrap();
    plan["ports"] = json!({"public": public, "app": app});
    plan["request_flow"]["middlewares"] =
        json!([{"name": "otoroshi-challenge", "secret_env": "OTOROSHI_CHALLENGE_SECRET"}]);
    plan["hops"] = json!([{
        "name": "otoroshi-challenge", "listen": public, "forward": app,
        "argv": ["otoroshi-challenge", "--listen", public.to_string(), "--forward", app.to_string()],
        "env": {"OTOROSHI_CHALLENGE_SECRET": {"from_env": "OTOROSHI_CHALLENGE_SECRET"}},
        "files": []
    }]);
    plan["health_check"] = if paths.is_empty() {
        json!({"source": "default", "paths": ["/"]})
    } else {
        json!({"source": "CC_HEALTH_CHECK_PATH", "paths": paths})
    };
    let path = dir.join("plan.json");
    std::fs::write(&path, plan.to_string()).unwrap();
    path
}

/// `healthcheck --plan PLAN` with the secret (or not) in its environment: (code, stdout,
/// stderr).
fn healthcheck(plan: &Path, secret: Option<&str>) -> (i32, String, String) {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("healthcheck"));
    cmd.env_clear()
        .arg("--plan")
        .arg(plan)
        .args(["--timeout", "10s"]);
    if let Some(secret) = secret {
        cmd.env("OTOROSHI_CHALLENGE_SECRET", secret);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn the_default_check_judges_the_apps_500_not_the_challenges_401() {
    let app = TinyServer::start("127.0.0.1", 0, &[("/", 500)]);
    let (_challenge, public) = challenge(app.port);
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(dir.path(), public, app.port, &[]);
    let (code, out, _) = healthcheck(&plan, Some(SECRET));
    assert_eq!(
        (code, out),
        (
            1,
            format!(
                "Response from GET / is 500\nHealth check failed:\n- GET / returned 500.\n{FOOTER}"
            )
        )
    );
}

#[test]
fn a_configured_path_reaches_the_app_through_the_challenge() {
    let app = TinyServer::start("127.0.0.1", 0, &[("/health", 200)]);
    let (_challenge, public) = challenge(app.port);
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(dir.path(), public, app.port, &["/health"]);
    let (code, out, err) = healthcheck(&plan, Some(SECRET));
    assert_eq!(
        (code, out.as_str()),
        (0, "Response from GET /health is 200\n"),
        "{err}"
    );
    assert!(!err.contains(SECRET), "{err}");

    // Without the secret, the check cannot get through: it says which variable to set.
    let (code, out, err) = healthcheck(&plan, None);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(
        err,
        "error: the plan refers to the secret OTOROSHI_CHALLENGE_SECRET, which is not set in the environment\n\nhint: set OTOROSHI_CHALLENGE_SECRET (or pass the env file that sets it)\n"
    );
}

/// An answer the challenge did not sign for the check's own state is not the app's: here
/// another server holds the public port and answers 200 itself.
#[test]
fn an_answer_the_challenge_did_not_sign_is_not_the_apps() {
    let app = TinyServer::start("127.0.0.1", 0, &[("/health", 200)]);
    let impostor = TinyServer::start("0.0.0.0", 0, &[("/health", 200)]);
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(dir.path(), impostor.port, app.port, &["/health"]);
    let (code, out, _) = healthcheck(&plan, Some(SECRET));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("Response from GET /health is 200 (not the app's answer: Missing Otoroshi-State-Resp header)\nHealth check failed:\n"),
        "{out}"
    );

    // A challenge that has another secret answers 401 itself.
    let (_challenge, public) = challenge(app.port);
    let plan = plan_file(dir.path(), public, app.port, &["/health"]);
    let (code, out, _) = healthcheck(&plan, Some("not-the-challenges-secret"));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("Response from GET /health is 401 (not the app's answer: Missing Otoroshi-State-Resp header)\n"),
        "{out}"
    );
}
