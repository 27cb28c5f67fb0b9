//! `scripts/deploy` end to end, what is deployed: the commit or the working tree, legacy mode
//! when `uv.lock` is not committed, and a developer's own venv left as it was.

mod harness;

use harness::*;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;
use testkit::{every_byte, http_get};

/// Deploys `examples/hello` from a git repository whose working tree says `Hello, edited!`
/// (uncommitted), with `args`; returns what `/` answers and the deployment's output.
fn hello_from_a_repo_with_an_edit(args: &[&str]) -> (String, String) {
    let mut deployment = Setup::new("hello").args(args).start_in_repo(
        |_| {},
        |app| {
            let code = std::fs::read_to_string(app.join("app.py")).unwrap();
            std::fs::write(
                app.join("app.py"),
                code.replace("Hello from uv!", "Hello, edited!"),
            )
            .unwrap();
        },
    );
    deployment.deployed();
    let body = http_get(deployment.public, "/", &[]).unwrap().body;
    assert_eq!(deployment.stop().code(), Some(0));
    deployment.nothing_left();
    (body, deployment.output())
}

#[test]
fn the_commit_is_deployed_and_an_uncommitted_edit_is_not_but_said() {
    let (body, output) = hello_from_a_repo_with_an_edit(&[]);
    assert_eq!(body, "Hello from uv!\n", "the commit is served");
    assert!(
        output.contains("checkout: deploying commit ") && output.contains("“The app as pushed”"),
        "{output}"
    );
    assert!(
        output.contains("checkout: 1 uncommitted change(s) are NOT deployed (M app.py): commit them, or deploy the files as they are with --working-tree"),
        "{output}"
    );
}

#[test]
fn working_tree_deploys_the_files_as_they_are() {
    let (body, output) = hello_from_a_repo_with_an_edit(&["--working-tree"]);
    assert_eq!(body, "Hello, edited!\n", "the edit is served");
    assert!(
        output.contains("checkout: deploying the working tree of "),
        "{output}"
    );
}

#[test]
fn a_uv_lock_that_is_not_committed_means_legacy_mode_with_its_reason() {
    let mut deployment = Setup::new("hello").start_in_repo(
        |app| std::fs::write(app.join(".gitignore"), "uv.lock\n").unwrap(),
        |_| {},
    );
    assert_eq!(deployment.exit(Duration::from_secs(60)).code(), Some(2));
    let output = deployment.output();
    assert!(
        output.contains("legacy mode: uv.lock not committed: it is in your working tree (")
            && output.contains("commit it (`git add uv.lock && git commit`)"),
        "{output}"
    );
    assert!(output.contains("nothing was started"), "{output}");
    deployment.nothing_left();
}

#[test]
fn the_developers_venv_with_dev_dependencies_is_the_same_after_a_deployment() {
    let venv_before = std::sync::Mutex::new(BTreeMap::new());
    let mut deployment = Setup::new("flask-shop")
        .var(
            "CC_PYTHON_UV_RUN_COMMAND",
            "uv run --no-dev gunicorn shop:app",
        )
        .start_in_repo(
            |_| {},
            |app| {
                // The developer's own environment, dev dependencies included.
                let mut sync = Command::new("uv");
                testkit::cleared(&mut sync)
                    .arg("sync")
                    .arg("-q")
                    .current_dir(app);
                testkit::uv_env(&mut sync);
                assert!(sync.status().unwrap().success());
                assert!(
                    app.join(".venv/bin/pytest").exists(),
                    "pytest is a dev dependency"
                );
                *venv_before.lock().unwrap() = every_byte(&app.join(".venv"), &[]);
            },
        );
    deployment.deployed();
    assert_eq!(http_get(deployment.public, "/", &[]).unwrap().status, 200);
    assert_eq!(deployment.stop().code(), Some(0));
    deployment.nothing_left();
    assert_eq!(
        every_byte(&deployment.app_dir.join(".venv"), &[]),
        *venv_before.lock().unwrap(),
        "the developer's .venv is byte for byte the same"
    );
    let output = deployment.output();
    assert!(
        !output.contains("- pytest"),
        "nothing uninstalled: {output}"
    );
}
