//! `uvkept` on a TMPDIR and a cache of its own: what it shows, and what `--clean` removes
//! (only the state directories no running deployment uses, and older versions' venvs).

use std::path::Path;

fn uvkept(tmp: &Path, cache: &Path, args: &[&str]) -> String {
    let out = assert_cmd::Command::cargo_bin("uvkept")
        .unwrap()
        .env_clear()
        .env("TMPDIR", tmp)
        .env("UVDEPLOY_CACHE_DIR", cache)
        .env("HOME", tmp.join("home"))
        .args(args)
        .assert()
        .success();
    String::from_utf8(out.get_output().stdout.clone()).unwrap()
}

#[test]
fn clean_removes_only_what_no_running_deployment_uses() {
    let root = tempfile::tempdir().unwrap();
    let (tmp, cache, outside) = (
        root.path().join("tmp"),
        root.path().join("cache"),
        root.path().join("outside"),
    );
    for dir in [
        tmp.join("uvdeploy-failed.abc123/copy"),
        tmp.join("uvdeploy-running.def456"),
        tmp.join("not-ours"),
        cache.join("venvs/old-app"),
        outside.clone(),
    ] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(tmp.join("uvdeploy-failed.abc123/plan.json"), "{}").unwrap();
    std::fs::write(outside.join("precious"), "keep me").unwrap();
    std::os::unix::fs::symlink(&outside, tmp.join("uvdeploy-link.xyz")).unwrap();
    // A deployment running now: this process holds its lock.
    let running = tmp.join("uvdeploy-running.def456");
    let mut lock = supervise::lock::claim(&cache, Path::new("/srv/running-app")).unwrap();
    lock.record(&running).unwrap();
    let state_lock = supervise::lock::StateLock::take(&running).unwrap();
    // Another deployment's, with a cache directory of its own: only its state lock says so.
    let elsewhere = tmp.join("uvdeploy-other.ghi789");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let elsewhere_lock = supervise::lock::StateLock::take(&elsewhere).unwrap();
    // A user's directory that only looks like ours by its name.
    std::fs::create_dir_all(tmp.join("uvdeploy-notes.backup")).unwrap();

    let shown = uvkept(&tmp, &cache, &[]);
    assert!(
        shown.contains(&format!("/srv/running-app  PID {}", std::process::id())),
        "{shown}"
    );
    assert!(
        shown.contains("uvdeploy-failed.abc123  2 B  not in use (--clean removes it)"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(
            "uvdeploy-running.def456  0 B  in use by PID {}",
            std::process::id()
        )),
        "{shown}"
    );
    assert!(
        shown.contains("venvs") && shown.contains("no longer used"),
        "{shown}"
    );
    assert!(
        !shown.contains("not-ours") && !shown.contains("uvdeploy-link"),
        "{shown}"
    );

    let cleaned = uvkept(&tmp, &cache, &["--clean"]);
    assert!(
        cleaned.contains("uvdeploy-failed.abc123  2 B  removed"),
        "{cleaned}"
    );
    assert!(!tmp.join("uvdeploy-failed.abc123").exists());
    assert!(running.is_dir() && elsewhere.is_dir() && tmp.join("not-ours").is_dir());
    assert!(tmp.join("uvdeploy-notes.backup").is_dir());
    assert!(!cache.join("venvs").exists());
    assert_eq!(
        std::fs::read_to_string(outside.join("precious")).unwrap(),
        "keep me"
    );

    // Once the deployment has stopped, its lock names nobody.
    drop((lock, state_lock, elsewhere_lock));
    let after = uvkept(&tmp, &cache, &[]);
    assert!(after.contains("running deployments:\n  none\n"), "{after}");
}
