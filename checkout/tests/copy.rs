//! `checkout` on real git repositories made in the test.

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use testkit::bin;

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
        .args([
            "-c",
            "protocol.file.allow=always",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&status.stderr)
    );
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Runs checkout; returns (exit code, what it printed as JSON, stderr).
fn checkout(app: &Path, into: &Path, extra: &[&str]) -> (i32, Option<Value>, String) {
    let mut cmd = Command::new(bin("checkout"));
    testkit::cleared(&mut cmd)
        .arg(app)
        .arg("--into")
        .arg(into)
        .args(extra);
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap(),
        serde_json::from_slice(&out.stdout).ok(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_commit_with_its_submodule_and_nothing_uncommitted() {
    let tmp = tempfile::tempdir().unwrap();
    let (lib, app) = (tmp.path().join("lib"), tmp.path().join("app"));
    write(&lib.join("helper.py"), "X = 1\n");
    git(&lib, &["init", "-q"]);
    git(&lib, &["add", "-A"]);
    git(&lib, &["commit", "-q", "-m", "lib"]);
    write(&app.join("app.py"), "committed\n");
    write(&app.join(".gitignore"), "ignored.txt\n");
    git(&app, &["init", "-q"]);
    git(
        &app,
        &[
            "submodule",
            "add",
            "-q",
            lib.to_str().unwrap(),
            "vendor/lib",
        ],
    );
    git(&app, &["add", "-A"]);
    git(&app, &["commit", "-q", "-m", "The app as pushed"]);
    write(&app.join("app.py"), "edited\n");
    write(&app.join("new.py"), "untracked\n");
    write(&app.join("ignored.txt"), "ignored\n");
    write(&app.join(".venv/pyvenv.cfg"), "the developer's\n");

    let into = tmp.path().join("copy");
    let (code, source, err) = checkout(&app, &into, &[]);
    assert_eq!(code, 0, "{err}");
    let source = source.unwrap();
    assert_eq!(source["kind"], "commit");
    assert_eq!(source["subject"], "The app as pushed");
    assert_eq!(
        std::fs::read_to_string(into.join("app.py")).unwrap(),
        "committed\n"
    );
    assert_eq!(
        std::fs::read_to_string(into.join("vendor/lib/helper.py")).unwrap(),
        "X = 1\n"
    );
    for absent in ["new.py", "ignored.txt", ".venv", ".git"] {
        assert!(!into.join(absent).exists(), "{absent} is not deployed");
    }
    assert!(
        err.contains("2 uncommitted change(s) are NOT deployed (M app.py, ?? new.py)"),
        "{err}"
    );

    let into = tmp.path().join("working-tree");
    let (code, source, err) = checkout(&app, &into, &["--working-tree"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(source.unwrap()["kind"], "working-tree");
    assert_eq!(
        std::fs::read_to_string(into.join("app.py")).unwrap(),
        "edited\n"
    );
    assert!(into.join("new.py").exists());
    for absent in ["ignored.txt", ".venv"] {
        assert!(!into.join(absent).exists(), "{absent} is left out");
    }
    // Nothing of the developer's was written.
    assert_eq!(
        std::fs::read_to_string(app.join(".venv/pyvenv.cfg")).unwrap(),
        "the developer's\n"
    );
}

#[test]
fn what_checkout_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    write(&app.join("app.py"), "x\n");
    git(&app, &["init", "-q"]);
    let (code, _, err) = checkout(&app, &tmp.path().join("copy"), &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("error: the repository of `") && err.contains("has no commit yet"),
        "{err}"
    );
    assert!(err.contains("hint: commit the application"), "{err}");

    let busy = tmp.path().join("busy");
    write(&busy.join("something"), "");
    let (code, _, err) = checkout(&app, &busy, &["--working-tree"]);
    assert_eq!(code, 2);
    assert!(err.contains("already exists and is not empty"), "{err}");

    let (code, _, err) = checkout(&tmp.path().join("nowhere"), &tmp.path().join("c"), &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("does not exist or is not a directory"),
        "{err}"
    );
}

#[test]
fn outside_a_work_tree_the_directory_as_it_is_but_venv() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    write(&app.join("app.py"), "x\n");
    write(&app.join(".venv/pyvenv.cfg"), "");
    let into = tmp.path().join("copy");
    let (code, source, err) = checkout(&app, &into, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(source.unwrap()["kind"], "directory");
    assert!(into.join("app.py").exists() && !into.join(".venv").exists());
    assert!(
        err.contains("is not in a git work tree: deploying the directory as it is"),
        "{err}"
    );
}

/// A push deploys every committed file as it is: the `.gitattributes` rules meant for
/// `git archive` (`export-ignore`, `export-subst`) change nothing, at the repository's root
/// or in an APP_DIR below it; modes and links are kept; the repository's index is untouched.
#[test]
fn every_committed_file_as_it_is_whatever_gitattributes_says_of_archives() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let app = repo.join("services/web");
    write(
        &repo.join(".gitattributes"),
        "requirements.txt export-ignore\nclevercloud/varnish.vcl export-ignore\nversion.py export-subst\n",
    );
    write(&app.join(".gitattributes"), "hooks/* export-ignore\n");
    for dir in [&repo, &app] {
        write(&dir.join("requirements.txt"), "flask\n");
        write(&dir.join("clevercloud/varnish.vcl"), "vcl 4.1;\n");
        write(&dir.join("version.py"), "COMMIT = \"$Format:%H$\"\n");
    }
    write(&app.join("hooks/build.sh"), "#!/bin/sh\n");
    std::fs::set_permissions(
        app.join("hooks/build.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("requirements.txt", app.join("requirements-link.txt")).unwrap();
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "With archive attributes"]);
    let index = std::fs::read(repo.join(".git/index")).unwrap();

    for (from, files) in [
        (
            &repo,
            &[
                "requirements.txt",
                "clevercloud/varnish.vcl",
                "version.py",
                "services/web/hooks/build.sh",
            ][..],
        ),
        (
            &app,
            &[
                "requirements.txt",
                "clevercloud/varnish.vcl",
                "version.py",
                "hooks/build.sh",
            ][..],
        ),
    ] {
        let into = tmp.path().join(format!(
            "copy-{}",
            from.file_name().unwrap().to_string_lossy()
        ));
        let (code, _, err) = checkout(from, &into, &[]);
        assert_eq!(code, 0, "{err}");
        for file in files {
            let (ours, theirs) = (into.join(file), from.join(file));
            assert!(ours.exists(), "{file} is committed, so deployed");
            assert_eq!(
                std::fs::read(&ours).unwrap(),
                std::fs::read(&theirs).unwrap(),
                "{file} as committed"
            );
        }
    }
    let copy = tmp.path().join("copy-web");
    let mode = std::fs::metadata(copy.join("hooks/build.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "the executable bit is kept");
    assert_eq!(
        std::fs::read_link(copy.join("requirements-link.txt")).unwrap(),
        Path::new("requirements.txt")
    );
    assert!(!copy.join(".git").exists());
    assert_eq!(
        std::fs::read(repo.join(".git/index")).unwrap(),
        index,
        "the repository's index is untouched"
    );
}
