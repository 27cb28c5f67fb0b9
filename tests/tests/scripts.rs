//! The scripts as users call them: `scripts/install` with `scripts/` on PATH, and `--help`
//! of each, from the checkout and once installed.

use std::path::Path;
use std::process::{Command, Output};
use testkit::{bin, root};

/// `scripts/install --from` the built tools into `prefix`, with `path` as PATH.
fn install(prefix: &Path, path: &str) -> Output {
    let mut install = Command::new("bash");
    testkit::cleared(&mut install)
        .env("PATH", path)
        .arg(root().join("scripts/install"))
        .arg("--prefix")
        .arg(prefix)
        .arg("--from")
        .arg(bin("detect").parent().unwrap());
    install.output().unwrap()
}

fn stdout(output: Output) -> String {
    let output = testkit::succeeded(output);
    String::from_utf8(output.stdout).unwrap()
}

/// With `scripts/` on PATH, `install` is also the name of scripts/install: the script must
/// still use install(1) (it ran itself: `unknown option -m`).
#[test]
fn install_works_with_the_scripts_directory_on_path() {
    let prefix = tempfile::tempdir().unwrap();
    let path = format!(
        "{}:{}",
        root().join("scripts").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = install(prefix.path(), &path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(prefix.path().join("lib/uvdeploy/bin/detect").is_file());
    assert!(prefix.path().join("lib/uvdeploy/scripts/deploy").is_file());
}

/// The comments of a script after its header: how it works inside, not for `--help`.
fn inner_comments(script: &Path) -> Vec<String> {
    std::fs::read_to_string(script)
        .unwrap()
        .lines()
        .skip(1)
        .skip_while(|l| l.starts_with('#'))
        .filter_map(|l| l.trim_start().strip_prefix("# "))
        .filter(|c| c.len() > 20)
        .map(str::to_string)
        .collect()
}

/// `--help` is the header: what the script does and its usage, never the comments further
/// down; the usage names the script as it was called.
#[test]
fn help_is_the_header_alone_with_the_name_the_user_typed() {
    for script in ["deploy", "install", "plan", "image"] {
        let path = root().join("scripts").join(script);
        let help = stdout(
            Command::new("bash")
                .env_clear()
                .arg(&path)
                .arg("--help")
                .output()
                .unwrap(),
        );
        let inner = inner_comments(&path);
        if script == "deploy" || script == "install" {
            assert!(!inner.is_empty(), "{script} has comments inside");
        }
        for comment in inner {
            assert!(
                !help.contains(&comment),
                "{script} --help shows `{comment}`:\n{help}"
            );
        }
        // deploy's options and help are the supervisor's (clap's), named as users call it.
        let usage = match script {
            "deploy" => "\nUsage: uvdeploy deploy [OPTIONS] [APP_DIR]".to_string(),
            _ => format!("\nusage: {} ", path.display()),
        };
        assert!(help.contains(&usage), "{script}: {help}");
    }

    // Installed, and called through `uvdeploy`: `uvdeploy deploy`, not `scripts/deploy`.
    let prefix = tempfile::tempdir().unwrap();
    testkit::succeeded(install(
        prefix.path(),
        &std::env::var("PATH").unwrap_or_default(),
    ));
    for command in ["deploy", "plan", "image"] {
        let help = stdout(
            Command::new(prefix.path().join("bin/uvdeploy"))
                .args([command, "--help"])
                .output()
                .unwrap(),
        );
        let usage = match command {
            "deploy" => "\nUsage: uvdeploy deploy [OPTIONS]".to_string(),
            _ => format!("\nusage: uvdeploy {command} ["),
        };
        assert!(help.contains(&usage), "{command}: {help}");
        assert!(!help.contains("scripts/"), "{command}: {help}");
    }
}
