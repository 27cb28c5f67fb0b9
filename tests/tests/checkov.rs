//! What operators run before `kubectl apply` (issue 25): checkov (PyPI, installed by
//! `scripts/setup`) on every golden manifest (`export/tests/golden/*.yaml`) and Containerfile
//! (`*.Containerfile`). Its failed checks are only those skipped in `export/checkov-skips.txt`
//! (each with its reason, at most 4 kinds, each still failing somewhere); the dockerfile
//! framework fails none, with no skip.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use testkit::root;

fn golden(ending: &str) -> Vec<PathBuf> {
    let dir = root().join("export/tests/golden");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(ending))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *{ending} in {}", dir.display());
    files
}

/// The skipped ids, each with its reason.
fn skips() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("export/checkov-skips.txt")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (id, reason) = l.split_once(' ').unwrap_or((l, ""));
            assert!(!reason.trim().is_empty(), "{id}: a skip needs its reason");
            (id.to_string(), reason.to_string())
        })
        .collect()
}

/// checkov's JSON report on `files`, as one list of reports (one per framework run).
fn checkov(framework: &str, files: &[PathBuf], skipped: &[String], dir: &Path) -> Vec<Value> {
    let mut command = Command::new("checkov");
    command
        .args([
            "--framework",
            framework,
            "--output",
            "json",
            "--compact",
            // Nothing from Prisma Cloud's API: the checks are the ones checkov ships.
            "--skip-download",
        ])
        .current_dir(dir);
    for file in files {
        command.arg("--file").arg(file);
    }
    if !skipped.is_empty() {
        command.args(["--skip-check", &skipped.join(",")]);
    }
    let out = command
        .output()
        .expect("checkov is installed (scripts/setup installs it)");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "checkov's report is not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    match report {
        Value::Array(reports) => reports,
        one => vec![one],
    }
}

/// (check id, file) of each result of `kind` (`failed_checks`, `skipped_checks`, `passed_checks`).
fn results(reports: &[Value], kind: &str) -> Vec<(String, String)> {
    reports
        .iter()
        .flat_map(|r| r["results"][kind].as_array().cloned().unwrap_or_default())
        .map(|c| {
            (
                c["check_id"].as_str().unwrap().to_string(),
                c["file_path"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn the_golden_manifests_fail_only_the_skipped_checks() {
    let skips = skips();
    assert!(skips.len() <= 4, "at most 4 kinds skipped: {skips:?}");
    let ids: Vec<String> = skips.iter().map(|(id, _)| id.clone()).collect();
    let dir = tempfile::tempdir().unwrap();
    let files = golden(".yaml");
    let reports = checkov("kubernetes", &files, &ids, dir.path());
    let failed = results(&reports, "failed_checks");
    assert!(failed.is_empty(), "checkov fails: {failed:#?}");
    checked_every_file(&reports, &files);
    // Each skip is still needed: without the skips, its check fails somewhere, and no
    // other does.
    let unskipped = checkov("kubernetes", &files, &[], dir.path());
    let failing: BTreeSet<String> = results(&unskipped, "failed_checks")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        failing,
        ids.iter().cloned().collect::<BTreeSet<_>>(),
        "the skips are exactly the checks that fail"
    );
}

/// checkov looked at each of `files` (a file it cannot read would pass nothing).
fn checked_every_file(reports: &[Value], files: &[PathBuf]) {
    let passed = results(reports, "passed_checks");
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            passed.iter().any(|(_, f)| f.ends_with(&name)),
            "checkov checked nothing in {name}"
        );
    }
}

#[test]
fn the_containerfiles_fail_no_dockerfile_check() {
    // checkov knows a Dockerfile by its name only (`*Dockerfile*`).
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = golden(".Containerfile")
        .iter()
        .map(|file| {
            let stem = file.file_stem().unwrap().to_string_lossy();
            let copy = dir.path().join(format!("{stem}.Dockerfile"));
            std::fs::copy(file, &copy).unwrap();
            copy
        })
        .collect();
    let reports = checkov("dockerfile", &files, &[], dir.path());
    let failed = results(&reports, "failed_checks");
    assert!(failed.is_empty(), "checkov fails: {failed:#?}");
    let passed = results(&reports, "passed_checks");
    assert!(
        passed.iter().any(|(id, _)| id == "CKV_DOCKER_3"),
        "a USER (CKV_DOCKER_3) is checked: {passed:?}"
    );
    assert!(
        passed.iter().any(|(id, _)| id == "CKV_DOCKER_2"),
        "a HEALTHCHECK (CKV_DOCKER_2)"
    );
    checked_every_file(&reports, &files);
}
