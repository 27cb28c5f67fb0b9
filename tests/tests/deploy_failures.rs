//! `scripts/deploy` end to end, deployments that fail: a failed health check, an app that
//! crashes or listens on loopback only, and the diagnosis that names the app's own port.

mod harness;

use harness::*;
use std::time::Duration;
use testkit::http_get;

#[test]
fn a_failed_health_check_stops_everything_and_runs_the_failed_hook() {
    let marker = tempfile::tempdir().unwrap();
    let failed = marker.path().join("failed");
    let mut deployment = Setup::new("hello")
        .var("CC_HEALTH_CHECK_PATH", "/health")
        .var("HELLO_FAIL_PATH", "/health")
        .var(
            "CC_RUN_FAILED_HOOK",
            format!("echo ran > {}", failed.display()),
        )
        .var(
            "CC_RUN_SUCCEEDED_HOOK",
            format!("echo wrong > {}", failed.display()),
        )
        .start_with(with_vcl);
    assert_eq!(deployment.exit(Duration::from_secs(90)).code(), Some(1));
    let output = deployment.output();
    // The verdict, whole, on stdout (stderr's lines, the hook's among them, may come between
    // its lines in `output`, read from two pipes at once).
    assert!(
        deployment.stdout().contains("Response from GET /health is 500\nHealth check failed:\n- GET /health returned 500.\nIf the deployment fails after this message, please update your configuration and redeploy.\n"),
        "{output}"
    );
    assert_eq!(std::fs::read_to_string(&failed).unwrap(), "ran\n");
    deployment.nothing_left();
}

#[test]
fn an_app_that_crashes_after_start_stops_the_deployment() {
    let mut deployment = Setup::new("hello")
        .var("HELLO_CRASH_PATH", "/crash")
        .start_with(with_vcl);
    deployment.deployed();
    // The crash comes when asked, once the deployment is healthy: no timer to race.
    let _ = http_get(deployment.app, "/crash", &[]);
    let status = deployment.exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1));
    assert!(
        deployment
            .output()
            .contains("deploy: app exited with status 3: stopping the deployment"),
        "{}",
        deployment.output()
    );
    deployment.nothing_left();
}

#[test]
fn an_app_bound_to_localhost_fails_with_the_diagnosis() {
    let mut deployment = Setup::new("hello")
        .var("HELLO_BIND", "127.0.0.1")
        .args(&["--timeout", "3s"])
        .start();
    assert_eq!(deployment.exit(Duration::from_secs(60)).code(), Some(1));
    let output = deployment.output();
    assert!(
        output.contains(&format!(
            "Your application is not listening on {}",
            deployment.public
        )),
        "{output}"
    );
    assert!(
        output.contains("Your application is listening on localhost instead of publicly"),
        "{output}"
    );
    deployment.nothing_left();
}

#[test]
fn the_diagnosis_names_the_apps_own_port_not_another_programs() {
    let wrong = testkit::free_port();
    let setup = Setup::new("hello")
        .var(
            "CC_PYTHON_UV_RUN_COMMAND",
            format!("PORT={wrong} uv run python app.py"),
        )
        .args(&["--timeout", "3s"]);
    let mut deployment = setup.start();
    // Some other program listens where a legacy app would (the shifted "9000").
    let other = testkit::TinyServer::start("0.0.0.0", deployment.app, &[]);
    assert_eq!(deployment.exit(Duration::from_secs(60)).code(), Some(1));
    let output = deployment.output();
    assert!(
        output.contains(&format!(
            "Your application is not listening on {public}\nYour application listens on {wrong}; it must listen on {public}, the PORT it is given.\n",
            public = deployment.public
        )),
        "{output}"
    );
    assert!(
        !output.contains(&other.port.to_string()),
        "nothing is said of the other program's port:\n{output}"
    );
    deployment.nothing_left();
}
