//! The README's pipeline examples, run as a user pastes them: verbatim, in bash, with the
//! built tools on PATH (before, the README's `... | flowctl | export kubernetes` ran bash's
//! own `export` builtin, and `export containerfile > Containerfile` wrote an empty file with
//! status 0).
//!
//! How lines are chosen: every line of every ```sh block of README.md whose command (after
//! any leading `VAR=value` words) is one of the pipeline's tools `checkout`, `detect`,
//! `flowctl` or `plan-export`, and that does not end in `&`. The other lines are left out on
//! purpose: they start processes that stay (`launcher --app &`), wait for those
//! (`healthcheck`), build images or need a cluster (`scripts/image`, `kubectl`), or install
//! (`scripts/install`). The chosen lines run in README order, one bash each
//! (`-o pipefail`), in one scratch directory where `examples` is this repository's, with the
//! environment the README's opening example sets (`CC_PYTHON_UV_RUN_COMMAND`). Each must
//! exit 0 and write something: on stdout, or in the file its last `>` names.

use std::process::Command;
use testkit::{bin, root};

const TOOLS: [&str; 4] = ["checkout", "detect", "flowctl", "plan-export"];

/// The lines of the README's ```sh blocks that run a pipeline of the tools.
fn pipeline_lines(readme: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut in_sh = false;
    for line in readme.lines() {
        if !in_sh {
            in_sh = line.trim() == "```sh";
            continue;
        }
        if line.trim() == "```" {
            in_sh = false;
            continue;
        }
        let command = words(line)
            .into_iter()
            .find(|word| !is_assignment(word))
            .unwrap_or_default();
        let background = line
            .split(" #")
            .next()
            .unwrap_or_default()
            .trim_end()
            .ends_with('&');
        if TOOLS.contains(&command.as_str()) && !background {
            lines.push(line.to_string());
        }
    }
    lines
}

/// The line's words as the shell splits them (quotes kept; enough to find the command).
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    for c in line.chars() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                continue;
            }
            _ => {}
        }
        word.push(c);
    }
    words.push(word);
    words
}

/// `NAME=value`, an assignment before the command.
fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// The file a line's output goes to (its last `> FILE`), if any.
fn redirected_to(line: &str) -> Option<String> {
    let code = line.split(" #").next().unwrap_or_default();
    let (_, after) = code.rsplit_once("> ")?;
    after.split_whitespace().next().map(str::to_string)
}

#[test]
fn the_readme_pipelines_run_verbatim_in_bash() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = pipeline_lines(&readme);
    // The examples this test is about are there (and so chosen): the build pipeline and both
    // export targets.
    for wanted in [
        "checkout --into copy examples/hello > source.json",
        "| flowctl > plan.json",
        "| plan-export kubernetes --image",
        "| plan-export containerfile",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(wanted)),
            "no README pipeline line with `{wanted}`: {lines:#?}"
        );
    }
    let scratch = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(root().join("examples"), scratch.path().join("examples")).unwrap();
    let cache = scratch.path().join("cache");
    let tools = bin("plan-export").parent().unwrap().to_path_buf();
    for line in &lines {
        let mut bash = Command::new("bash");
        testkit::uv_env(testkit::cleared(&mut bash))
            .args(["-o", "pipefail", "-c", line])
            .current_dir(scratch.path())
            .env(
                "PATH",
                format!(
                    "{}:{}:/usr/sbin",
                    tools.display(),
                    std::env::var("PATH").unwrap()
                ),
            )
            .env("TMPDIR", scratch.path())
            .env("UVDEPLOY_CACHE_DIR", &cache)
            .env("CC_PYTHON_UV_RUN_COMMAND", "uv run python app.py");
        let out = bash.output().unwrap();
        assert!(
            out.status.success(),
            "`{line}` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let written = match redirected_to(line) {
            Some(file) => std::fs::read(scratch.path().join(&file))
                .unwrap_or_else(|e| panic!("`{line}`: {file}: {e}")),
            None => out.stdout,
        };
        assert!(
            !written.is_empty(),
            "`{line}` wrote nothing:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn lines_are_chosen_by_their_command() {
    let readme = "text\n```sh\ncheckout --into copy app > source.json   # a | b\nlauncher --plan plan.json --app &   # stays\nhealthcheck --plan plan.json\nX=\"a b\" detect app | flowctl --format text\n```\n```\ndetect not-sh\n```\n";
    assert_eq!(
        pipeline_lines(readme),
        [
            "checkout --into copy app > source.json   # a | b",
            "X=\"a b\" detect app | flowctl --format text",
        ]
    );
    assert_eq!(
        redirected_to("checkout --into copy app > source.json   # a > b").as_deref(),
        Some("source.json")
    );
}
