//! `scripts/deploy` end to end, what it says: every line with the process it comes from,
//! colour only when asked, and no secret in the state directory, an argv or the output.

mod harness;

use harness::*;
use std::time::Duration;
use testkit::http_get;

#[test]
fn secrets_never_reach_the_state_dir_argv_or_output() {
    let password = "db-password-never-shown";
    let literal = "literal-token-in-the-command";
    let deployment = Setup::new("hello")
        .var("OTOROSHI_CHALLENGE_SECRET", SECRET)
        .var("DATABASE_PASSWORD", password)
        .var("API_TOKEN", literal)
        // Written literally in the run command: kept out of the plan, put back by launcher.
        .var(
            "CC_PYTHON_UV_RUN_COMMAND",
            format!("HELLO_FAIL_PATH=/{literal} uv run python app.py"),
        )
        .start_with(with_vcl);
    deployment.deployed();
    let plan = std::fs::read_to_string(deployment.tmp.path().join("state/plan.json")).unwrap();
    assert!(
        plan.contains("HELLO_FAIL_PATH=/${{API_TOKEN}} uv run"),
        "{plan}"
    );
    // The app got the value itself: that path fails as asked.
    let failing = http_get(
        deployment.public,
        &format!("/{literal}"),
        &[("Otoroshi-State", &token())],
    );
    assert_eq!(failing.unwrap().status, 500);
    let secrets = [SECRET, password, literal];
    let running = marked_processes(&deployment.mark);
    assert!(running.len() >= 3, "the app and varnishd run: {running:?}");
    for pid in running {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        assert!(
            secrets.iter().all(|s| !cmdline.contains(s)),
            "argv of {pid}: {cmdline}"
        );
    }
    let mut stack = vec![deployment.tmp.path().join("state")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else if let Ok(text) = std::fs::read_to_string(entry.path()) {
                assert!(
                    secrets.iter().all(|s| !text.contains(s)),
                    "{}",
                    entry.path().display()
                );
            }
        }
    }
    assert!(
        http_get(deployment.public, "/", &[("Otoroshi-State", &token())])
            .unwrap()
            .status
            == 200
    );
    let output = deployment.output();
    // The app's own access log is the app's business: leave its lines out.
    let ours: String = output
        .lines()
        .filter(|l| !l.starts_with("app      | hello:"))
        .collect();
    assert!(secrets.iter().all(|s| !ours.contains(s)), "{output}");
}

#[test]
fn every_line_says_which_process_it_comes_from_and_a_crash_keeps_its_last_line() {
    let mut deployment = Setup::new("hello")
        .var("HELLO_CRASH_PATH", "/crash")
        .var("CC_RUN_SUCCEEDED_HOOK", "echo from the hook")
        .start_with(with_vcl);
    deployment.deployed();
    let _ = http_get(deployment.app, "/crash", &[]);
    assert_eq!(deployment.exit(Duration::from_secs(30)).code(), Some(1));
    let output = deployment.output();
    for line in [
        format!("app      | hello: listening on 0.0.0.0:{}", deployment.app),
        "varnish  | Child launched OK".to_string(),
        "hook     | from the hook".to_string(),
        // The app's last words, logged as it crashed, are not lost.
        "app      | hello: \"GET /crash HTTP/1.1\" crashing on purpose".to_string(),
    ] {
        assert!(
            output.lines().any(|l| l == line),
            "no line `{line}`:\n{output}"
        );
    }
    assert!(
        !output.contains('\u{1b}'),
        "no colour when stderr is not a terminal"
    );
    deployment.nothing_left();
}

#[test]
fn colour_when_forced_and_none_with_no_color() {
    for (no_color, coloured) in [(false, true), (true, false)] {
        // NO_COLOR counts when it is set and not empty (the harness sets it for every test).
        let setup = Setup::new("hello")
            .var("CLICOLOR_FORCE", "1")
            .var("NO_COLOR", if no_color { "1" } else { "" });
        let mut deployment = setup.start();
        deployment.deployed();
        deployment.stop();
        let output = deployment.output();
        assert_eq!(
            output.contains("\u{1b}[36mapp      |\u{1b}[0m hello: listening"),
            coloured,
            "NO_COLOR={no_color}:\n{output}"
        );
        assert_eq!(output.contains("\napp      | hello: listening"), !coloured);
        deployment.nothing_left();
    }
}
