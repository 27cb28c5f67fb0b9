//! `examples/flask-notes` end to end, as its README says to run it (`--addon postgresql
//! --env-file deploy.env`), on the real PostgreSQL: the pre-run hook migrates, the health
//! check asks the database, a job posted over HTTP is done by the database-backed worker, the
//! cron (`#!/bin/bash -l`, the venv's python) writes its tick at its minute, the rows outlive
//! the deployment, and with the database gone the health check says 500; nothing is left.

mod harness;

use harness::*;
use std::path::Path;
use std::time::Duration;
use testkit::{http_get, http_request, root, wait_until};

/// The example deployed as its README says, its add-on data (and uv's cache, so that the
/// second deployment downloads nothing) under `data`, crons on the test clock `clock`.
fn notes(data: &Path, clock: &Path) -> Setup {
    let env_file = root().join("examples/flask-notes/deploy.env");
    Setup {
        // The run command is deploy.env's, nothing of the harness's.
        vars: vec![],
        ..Setup::new("flask-notes")
    }
    .args(&[
        "--addon",
        "postgresql",
        "--env-file",
        env_file.to_str().unwrap(),
    ])
    .var("XDG_DATA_HOME", data.display().to_string())
    .var("UV_CACHE_DIR", data.join("uv-cache").display().to_string())
    .var("UVDEPLOY_CLOCK", clock.display().to_string())
}

/// The JSON an endpoint answers with, and its status; `None` while it does not answer.
fn json(deployment: &Deployment, method: &str, path: &str) -> Option<(u16, serde_json::Value)> {
    let response = http_request(method, deployment.public, path, &[]).ok()?;
    let body = serde_json::from_str(&response.body).unwrap_or(serde_json::Value::Null);
    Some((response.status, body))
}

fn eventually(deployment: &Deployment, what: &str, within: Duration, done: impl FnMut() -> bool) {
    assert!(
        wait_until(within, done),
        "{what}, never:\n{}",
        deployment.output()
    );
}

fn job_status(deployment: &Deployment, name: &str) -> Option<String> {
    let (_, body) = json(deployment, "GET", &format!("/jobs/{name}"))?;
    body["status"].as_str().map(str::to_string)
}

fn ticks(deployment: &Deployment) -> i64 {
    json(deployment, "GET", "/ticks")
        .and_then(|(_, body)| body["ticks"].as_i64())
        .unwrap_or(0)
}

/// The password kept for the app's PostgreSQL add-on (the one app deployed with `data`).
fn password(data: &Path) -> String {
    let apps: Vec<_> = std::fs::read_dir(data.join("uvdeploy/addons"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(apps.len(), 1, "{apps:?}");
    let credentials = std::fs::read_to_string(apps[0].join("postgresql/credentials")).unwrap();
    let password = credentials
        .lines()
        .find_map(|l| l.strip_prefix("PASSWORD="))
        .unwrap()
        .to_string();
    assert!(password.len() >= 16);
    password
}

/// The files of the crons' home (their login profile) that hold `secret`.
fn cron_home_files_with(deployment: &Deployment, secret: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(deployment.tmp.path().join("state/cron-home")) else {
        return vec![];
    };
    entries
        .filter_map(|e| {
            let path = e.ok()?.path();
            let text = std::fs::read(&path).ok()?;
            String::from_utf8_lossy(&text)
                .contains(secret)
                .then(|| path.display().to_string())
        })
        .collect()
}

/// The add-on's postgres processes: its process group, as deploy.json names its leader.
fn postgres_processes(deployment: &Deployment) -> Vec<i32> {
    let summary = std::fs::read(deployment.tmp.path().join("state/deploy.json"))
        .unwrap_or_else(|e| panic!("no deploy.json ({e}):\n{}", deployment.output()));
    let summary: serde_json::Value = serde_json::from_slice(&summary).unwrap();
    let leader = summary["processes"]["postgresql"]
        .as_i64()
        .unwrap_or_else(|| panic!("no postgresql in {summary}")) as i32;
    testkit::processes_in_group(leader)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "postgres")
        })
        .collect()
}

#[test]
fn the_notes_example_migrates_works_ticks_keeps_its_rows_and_fails_its_health_without_the_database()
{
    let data = testkit::shared_tempdir();
    let clock_dir = tempfile::tempdir().unwrap();
    let clock = clock_dir.path().join("clock");
    set_clock(&clock, "2026-01-01T00:00:30Z");
    let (_app_tmp, app) = testkit::copy_example("flask-notes");

    // First deployment: migrated, healthy, a job done by the worker, a tick by the cron.
    let mut first = notes(data.path(), &clock).launch(testkit::shared_tempdir(), app.clone());
    first.deployed();
    let output = first.output();
    assert!(
        output.contains("migrate: tables jobs and ticks are there"),
        "{output}"
    );
    assert!(
        first.stdout().contains("Response from GET /health"),
        "{}",
        first.stdout()
    );
    assert_eq!(
        json(&first, "GET", "/health"),
        Some((200, serde_json::json!({"status": "ok", "result": 2}))),
        "{output}"
    );
    assert_eq!(job_status(&first, "first").as_deref(), Some("unknown"));
    let (status, body) = json(&first, "POST", "/jobs/first").unwrap();
    assert_eq!(status, 202, "{body}\n{}", first.output());
    assert_eq!(body["status"], "queued");
    eventually(&first, "the job done", Duration::from_secs(60), || {
        job_status(&first, "first").as_deref() == Some("done")
    });
    eventually(&first, "the worker's line", Duration::from_secs(10), || {
        first.output().contains("worker-0 | worker: done first")
    });
    assert_eq!(ticks(&first), 0);
    set_clock(&clock, "2026-01-01T00:01:00Z");
    eventually(&first, "a tick", Duration::from_secs(60), || {
        ticks(&first) >= 1
    });
    eventually(&first, "the cron's line", Duration::from_secs(10), || {
        first.output().contains("cron-0   | tick: 1 tick(s) so far")
    });
    assert_eq!(first.stop().code(), Some(0), "{}", first.output());
    first.nothing_left();
    // The crons' profile held the add-on's password: the kept state directory does not.
    let password = password(data.path());
    assert!(!first.output().contains(&password), "{}", first.output());
    assert_eq!(
        cron_home_files_with(&first, &password),
        Vec::<String>::new()
    );

    // Second deployment of the same app: the add-on's data was kept (the migration is
    // idempotent); then the database is killed and the health check says so.
    let mut second = notes(data.path(), &clock).launch(testkit::shared_tempdir(), app);
    second.deployed();
    assert!(
        second
            .output()
            .contains("migrate: tables jobs and ticks are there"),
        "{}",
        second.output()
    );
    assert_eq!(job_status(&second, "first").as_deref(), Some("done"));
    assert!(ticks(&second) >= 1, "{}", second.output());
    let postgres = postgres_processes(&second);
    assert!(!postgres.is_empty(), "no postgres:\n{}", second.output());
    for pid in postgres {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    eventually(
        &second,
        "the add-on's end said",
        Duration::from_secs(30),
        || {
            second
                .output()
                .contains("deploy: postgresql exited with status")
        },
    );
    eventually(
        &second,
        "GET /health answering 500",
        Duration::from_secs(60),
        || http_get(second.public, "/health", &[]).is_ok_and(|r| r.status == 500),
    );
    assert_eq!(second.stop().code(), Some(0), "{}", second.output());
    second.nothing_left();
}
