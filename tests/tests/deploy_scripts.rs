//! `scripts/deploy`, `scripts/plan` and the installed `uvdeploy` end to end: run from any
//! directory, the plan shown without building, the state directory kept or removed, and
//! `--json`'s summary.

mod harness;

use harness::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use testkit::{bin, copy_example, http_get, root};

#[test]
fn the_scripts_run_from_their_own_directory() {
    let (tmp, app) = copy_example("hello");
    let out = testkit::succeeded(
        Command::new("bash")
            .args(["plan", "--state-dir"])
            .arg(tmp.path().join("state"))
            .arg(&app)
            .current_dir(root().join("scripts"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("HOME", std::env::var("HOME").unwrap())
            .env("UVDEPLOY_BIN", bin("detect").parent().unwrap())
            .env("CC_PYTHON_UV_RUN_COMMAND", "uv run python app.py")
            .output()
            .unwrap(),
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["mode"], "uv");
}

/// Without `--state-dir`, the plan's own temporary directory (a first version of the naming
/// rule made `set -e` scripts exit 1 here, silently), in legacy mode, with block.
#[test]
fn scripts_plan_of_a_legacy_app_in_a_directory_of_its_own() {
    let (tmp, app) = copy_example("legacy-django-gunicorn");
    let mut plan = Command::new("bash");
    testkit::cleared(&mut plan)
        .arg(root().join("scripts/plan"))
        .args(["--env-file"])
        .arg(root().join("examples/legacy-django-gunicorn/deploy.env"))
        .args(["--env", "CC_REQUEST_FLOW=block"])
        .arg(&app)
        .env("TMPDIR", tmp.path())
        .env("UVDEPLOY_BIN", bin("detect").parent().unwrap());
    let out = testkit::succeeded(plan.output().unwrap());
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["mode"], "legacy");
    let hops: Vec<&str> = plan["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(hops, ["block", "nginx"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("flowctl: chain: :8080 block → :8081 nginx → :9000 app (gunicorn mysite.wsgi:application --bind 127.0.0.1:9000"),
        "{stderr}"
    );
    assert!(
        state_dirs_of("legacy-django-gunicorn", tmp.path()).is_empty(),
        "the plan's directory is removed"
    );
}

#[test]
fn scripts_plan_shows_the_plan_and_chain_without_building() {
    let (tmp, app) = copy_example("hello");
    with_vcl(&app);
    let out = testkit::succeeded(
        Command::new("bash")
            .arg(root().join("scripts/plan"))
            .args(["--public-port", "18080", "--state-dir"])
            .arg(tmp.path().join("state"))
            .arg(&app)
            .env("UVDEPLOY_BIN", bin("detect").parent().unwrap())
            .env("CC_PYTHON_UV_RUN_COMMAND", "uv run python app.py")
            .env_remove("CC_REQUEST_FLOW")
            .output()
            .unwrap(),
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["hops"][0]["name"], "varnish");
    assert_eq!(plan["hops"][0]["listen"], 18080);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("flowctl: chain: :18080 varnish → :9000 app (uv run python app.py)"),
        "{stderr}"
    );
    assert!(!app.join(".venv").exists(), "nothing was built");
}

#[test]
fn the_installed_uvdeploy_deploys_from_another_directory() {
    let prefix = tempfile::tempdir().unwrap();
    let mut install = Command::new("bash");
    testkit::cleared(&mut install)
        .arg(root().join("scripts/install"))
        .arg("--prefix")
        .arg(prefix.path())
        .arg("--from")
        .arg(bin("detect").parent().unwrap());
    testkit::succeeded(install.output().unwrap());
    let uvdeploy = prefix.path().join("bin/uvdeploy");
    let version = Command::new(&uvdeploy).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout),
        format!("uvdeploy {}\n", env!("CARGO_PKG_VERSION"))
    );
    for page in [
        "detect",
        "checkout",
        "uvbuild",
        "flowctl",
        "launcher",
        "healthcheck",
        "otoroshi-challenge",
        "plan-export",
        "uvsupervise",
        "uvkept",
        "uvaddons",
        "uvcontrol",
    ] {
        let man = std::fs::read_to_string(
            prefix
                .path()
                .join(format!("share/man/man1/uvdeploy-{page}.1")),
        )
        .unwrap();
        assert!(man.contains(&format!(".TH {page} 1")), "{page}");
        assert!(prefix
            .path()
            .join(format!("share/bash-completion/completions/{page}"))
            .is_file());
    }
    let mut deployment = Setup {
        entry: Some(vec![uvdeploy.into_os_string(), "deploy".into()]),
        ..Setup::new("hello")
    }
    .start();
    deployment.deployed();
    assert_eq!(
        http_get(deployment.public, "/", &[]).unwrap().body,
        "Hello from uv!\n"
    );
    assert_eq!(deployment.stop().code(), Some(0));
    deployment.nothing_left();
}

/// The state directories of `app` that scripts made in `dir`.
fn state_dirs_of(app: &str, dir: &Path) -> Vec<PathBuf> {
    let prefix = format!("uvdeploy-{app}.");
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&prefix)
        })
        .collect()
}

fn state_dirs(dir: &Path) -> Vec<PathBuf> {
    state_dirs_of("hello", dir)
}

#[test]
fn a_clean_stop_removes_its_state_directory_and_a_failure_keeps_it() {
    let mut clean = Setup {
        own_state_dir: true,
        ..Setup::new("hello")
    }
    .start();
    clean.deployed();
    assert_eq!(state_dirs(clean.tmp.path()).len(), 1, "made while it runs");
    assert_eq!(clean.stop().code(), Some(0));
    assert!(
        state_dirs(clean.tmp.path()).is_empty(),
        "removed after a clean stop"
    );

    let mut failed = Setup {
        own_state_dir: true,
        ..Setup::new("hello")
    }
    .var("CC_HEALTH_CHECK_PATH", "/health")
    .var("HELLO_FAIL_PATH", "/health")
    .start();
    assert_eq!(failed.exit(Duration::from_secs(60)).code(), Some(1));
    let kept = state_dirs(failed.tmp.path());
    assert_eq!(kept.len(), 1);
    assert!(
        failed.output().contains(&format!(
            "deploy: the state directory is kept: {}",
            kept[0].display()
        )),
        "{}",
        failed.output()
    );
    assert!(kept[0].join("plan.json").is_file(), "kept for debugging");
    failed.nothing_left();
}

#[test]
fn deploy_json_sums_the_deployment_up_for_scripts() {
    let mut deployment = Setup::new("hello")
        .var("CC_HEALTH_CHECK_PATH", "/health")
        .start_with(with_vcl);
    deployment.deployed();
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(deployment.tmp.path().join("state/deploy.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["status"], "healthy");
    assert!(summary["processes"]["app"].as_u64().unwrap() > 1);
    assert!(summary["processes"]["varnish"].as_u64().unwrap() > 1);
    assert_eq!(summary["health"]["healthy"], true);
    assert_eq!(summary["health"]["probes"][0]["path"], "/health");
    assert_eq!(summary["plan"]["hops"][0]["name"], "varnish");
    assert_eq!(summary["plan"]["source"]["kind"], "directory");
    assert_eq!(deployment.stop().code(), Some(0));
    deployment.nothing_left();
}
