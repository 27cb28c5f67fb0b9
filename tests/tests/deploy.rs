//! `scripts/deploy` end to end: the real pipeline (detect | uvbuild | flowctl, launcher,
//! healthcheck) on copies of the example apps, with real uv, varnishd and the challenge proxy,
//! each test on its own ports.

mod harness;

use harness::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use testkit::{bin, copy_example, custom_proxy_command, http_get, http_request, root};

/// Every file of the app (but `.venv`, which uv owns) and its content.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    every_byte(dir, &[".venv"])
}

#[test]
fn no_middleware_the_app_answers_on_the_public_port_and_term_stops_everything() {
    let env_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        env_file.path(),
        "CC_PYTHON_UV_RUN_COMMAND=\"uv run python app.py\"\nCC_HEALTH_CHECK_PATH=/health\n",
    )
    .unwrap();
    let before;
    let mut deployment = {
        let setup = Setup {
            vars: vec![],
            ..Setup::new("hello")
        }
        .args(&["--env-file", env_file.path().to_str().unwrap()]);
        let (tmp_probe, probe) = copy_example("hello");
        before = snapshot(&probe);
        drop(tmp_probe);
        setup.start()
    };
    deployment.deployed();
    let output = deployment.output();
    assert!(
        output.contains("Response from GET /health is 200"),
        "{output}"
    );
    assert!(
        output.contains(&format!(
            "flowctl: chain: :{} app (uv run python app.py)",
            deployment.public
        )),
        "{output}"
    );
    assert_eq!(
        http_get(deployment.public, "/", &[]).unwrap().body,
        "Hello from uv!\n"
    );

    assert!(deployment.stop().success());
    deployment.nothing_left();
    assert!(
        http_get(deployment.public, "/", &[]).is_err(),
        "the port is closed"
    );
    let after: BTreeMap<PathBuf, Vec<u8>> = snapshot(&deployment.app_dir)
        .into_iter()
        .map(|(p, c)| {
            (
                p.strip_prefix(&deployment.app_dir).unwrap().to_path_buf(),
                c,
            )
        })
        .collect();
    let before: BTreeMap<PathBuf, Vec<u8>> = before
        .into_iter()
        .map(|(p, c)| (p.iter().skip_while(|c| *c != "hello").skip(1).collect(), c))
        .collect();
    assert_eq!(
        before, after,
        "the app directory is byte-identical, but for .venv"
    );
}

#[test]
fn varnish_caches_in_front_of_the_app() {
    let deployment = Setup::new("hello").start_with(with_vcl);
    deployment.deployed();
    assert!(deployment.output().contains(&format!(
        ":{} varnish → :{} app",
        deployment.public, deployment.app
    )));
    let first = http_get(deployment.public, "/cached", &[]).unwrap();
    assert!(first.body.starts_with("cached body"), "{first:?}");
    assert_eq!(first.header("X-Cache"), Some("MISS"));
    let second = http_get(deployment.public, "/cached", &[]).unwrap();
    assert_eq!(second.header("X-Cache"), Some("HIT"));
    assert_eq!(second.body, first.body);
}

#[test]
fn otoroshi_custom_and_varnish_in_the_order_of_cc_request_flow() {
    let deployment = Setup::new("hello")
        .var("OTOROSHI_CHALLENGE_SECRET", SECRET)
        .var("CC_REQUEST_FLOW", "otoroshi-challenge,custom,varnish")
        .var("CC_REQUEST_FLOW_CUSTOM", custom_proxy_command())
        .ports(3)
        .start_with(with_vcl);
    deployment.deployed();
    let p = deployment.public;
    assert!(deployment.output().contains(&format!(
        ":{p} otoroshi-challenge → :{} custom → :{} varnish → :{} app",
        p + 1,
        p + 2,
        deployment.app
    )));
    let token = token();
    let ok = http_get(p, "/", &[("Otoroshi-State", &token)]).unwrap();
    assert_eq!((ok.status, ok.body.as_str()), (200, "Hello from uv!\n"));
    assert_eq!(
        ok.header("X-Custom-Proxy"),
        Some((p + 1).to_string().as_str())
    );
    assert!(ok.header("Otoroshi-State-Resp").is_some());
    let refused = http_get(p, "/", &[]).unwrap();
    assert_eq!(refused.status, 401);
    assert!(refused.body.contains("Missing Otoroshi-State header"));
}

#[test]
fn block_answers_200_and_the_app_is_not_reached_through_it() {
    let deployment = Setup::new("hello").var("CC_REQUEST_FLOW", "block").start();
    deployment.deployed();
    for path in ["/", "/count", "/anything"] {
        let r = http_get(deployment.public, path, &[]).unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "OK"), "{path}");
    }
    assert_eq!(
        http_get(deployment.app, "/count", &[]).unwrap().body.trim(),
        "1",
        "only this request reached the app"
    );
}

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
fn sigint_stops_a_chain_of_varnish_and_the_app() {
    let mut deployment = Setup::new("hello").start_with(with_vcl);
    deployment.deployed();
    deployment.guard.signal(nix::sys::signal::Signal::SIGINT);
    assert!(deployment.exit(Duration::from_secs(30)).success());
    assert!(deployment
        .output()
        .contains("==> stopping (signal received)"));
    let output = deployment.output();
    assert!(!output.contains("Killed"), "no job noise: {output}");
    deployment.nothing_left();
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
fn redirectionio_runs_from_its_rendered_configuration_with_the_key_from_the_environment() {
    // The agent is not packaged here: a stand-in reads the agent.yml flowctl rendered.
    let key = "rio-project-key-never-written";
    let mut setup = Setup::new("hello")
        .var("CC_REDIRECTIONIO_PROJECT_KEY", key)
        .var("CC_REDIRECTIONIO_INSTANCE_NAME", "storefront")
        .var("CC_REQUEST_FLOW", "redirectionio,varnish")
        .ports(2);
    setup.path_first.push(root().join("tests/fixtures"));
    let deployment = setup.start_with(with_vcl);
    deployment.deployed();
    let p = deployment.public;
    assert!(deployment.output().contains(&format!(
        ":{p} redirectionio → :{} varnish → :{} app",
        p + 1,
        deployment.app
    )));
    let response = http_get(p, "/cached", &[]).unwrap();
    assert_eq!(response.status, 200);
    assert!(response.body.starts_with("cached body"));
    assert_eq!(
        response.header("X-Forwarded-By"),
        Some("redirectionio-proxy/storefront")
    );
    assert_eq!(
        response.header("X-Cache"),
        Some("MISS"),
        "then through varnish"
    );
    let config = std::fs::read_to_string(
        deployment
            .tmp
            .path()
            .join(format!("state/redirectionio-{p}/agent.yml")),
    )
    .unwrap();
    assert!(!config.contains(key));
}

#[test]
fn a_missing_redirectionio_agent_fails_the_deployment_naming_it() {
    let mut deployment = Setup::new("hello")
        .var("CC_REDIRECTIONIO_PROJECT_KEY", "k-e-y-value")
        .start();
    let status = deployment.exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1));
    let output = deployment.output();
    assert!(
        output.contains("command not found: `redirectionio-agent`"),
        "{output}"
    );
    assert!(
        output.contains("the Redirection.io agent is not installed"),
        "{output}"
    );
    assert!(
        output.contains("deploy: redirectionio exited with status 127"),
        "{output}"
    );
    deployment.nothing_left();
}

#[test]
fn killing_deploy_outright_leaves_no_orphan() {
    let mut deployment = Setup::new("hello").start_with(with_vcl);
    deployment.deployed();
    let running = marked_processes(&deployment.mark);
    assert!(
        running
            .iter()
            .any(|&p| process::command_line(p).contains("varnishd"))
            && running
                .iter()
                .any(|&p| process::command_line(p).contains("app.py")),
        "varnishd and the app are running: {running:?}"
    );
    deployment.guard.signal(nix::sys::signal::Signal::SIGKILL);
    deployment.exit(Duration::from_secs(10));
    deployment.nothing_left();
}

/// The phases of a deployment, each held open by something that waits, and the line that
/// says it has begun.
const PHASES: [(&str, &str, &str, &str); 4] = [
    (
        "build",
        "CC_PRE_BUILD_HOOK",
        "echo in-build-hook; sleep 300",
        "in-build-hook",
    ),
    (
        "pre-run hook",
        "CC_PRE_RUN_HOOK",
        "echo in-pre-run-hook; sleep 300",
        "in-pre-run-hook",
    ),
    // The app never listens: the health check waits.
    (
        "health wait",
        "CC_RUN_COMMAND",
        "echo app-started; sleep 300",
        "healthcheck: waiting for port",
    ),
    ("supervision", "CC_PRE_RUN_HOOK", "true", "==> deployed"),
];

/// TERM, INT and HUP stop a deployment in `phase` within seconds (exit 0), and SIGKILL
/// leaves nothing either: every process it started is gone within 2 s.
fn signals_stop_every_process_in(phase: usize) {
    use nix::sys::signal::Signal;
    let (name, variable, value, started) = PHASES[phase];
    for signal in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGKILL,
    ] {
        let mut deployment = Setup::new("hello")
            .var(variable, value)
            .start_with(with_vcl);
        assert!(
            deployment.wait_for(started, Duration::from_secs(90)),
            "{name}: never reached:\n{}",
            deployment.output()
        );
        eprintln!("{name}: sending {signal}");
        deployment.guard.signal(signal);
        // Within the deadline: a signal deferred until the phase ends (the `sleep 300`)
        // would miss it.
        let status = deployment.exit(Duration::from_secs(10));
        if signal != Signal::SIGKILL {
            assert_eq!(
                status.code(),
                Some(0),
                "{name}, {signal}:\n{}",
                deployment.output()
            );
        }
        deployment.nothing_left();
    }
}

#[test]
fn signals_stop_a_deployment_during_the_build() {
    signals_stop_every_process_in(0);
}

#[test]
fn signals_stop_a_deployment_during_the_pre_run_hook() {
    signals_stop_every_process_in(1);
}

#[test]
fn signals_stop_a_deployment_during_the_health_wait() {
    signals_stop_every_process_in(2);
}

#[test]
fn signals_stop_a_deployment_during_supervision() {
    signals_stop_every_process_in(3);
}

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

/// Every file of a tree, links as their targets, byte for byte, but the entries named `skip`.
fn every_byte(dir: &Path, skip: &[&str]) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
            if skip.iter().any(|s| entry.file_name() == *s) {
                continue;
            }
            let kind = entry.file_type().unwrap();
            if kind.is_symlink() {
                let target = std::fs::read_link(entry.path()).unwrap();
                files.insert(entry.path(), target.into_os_string().into_encoded_bytes());
            } else if kind.is_dir() {
                stack.push(entry.path());
            } else {
                files.insert(entry.path(), std::fs::read(entry.path()).unwrap());
            }
        }
    }
    files
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

/// The state directories deploy made under `dir`.
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

// Legacy mode: pip, the app server on the app port, Nginx in front.

/// `Authorization` for `login:password` (base64 written out: no crate for one header).
const ADMIN: &str = "Basic YWRtaW46czNjcmV0LWFkbWlu"; // admin:s3cret-admin
const OPS: &str = "Basic b3BzOnMzY3JldC1vcHM="; // ops:s3cret-ops
const WRONG: &str = "Basic YWRtaW46d3Jvbmc="; // admin:wrong

#[test]
fn legacy_flask_on_uwsgi_behind_nginx_which_serves_the_static_files_itself() {
    let mut deployment = Setup::legacy("legacy-flask-uwsgi").start();
    deployment.deployed();
    let output = deployment.output();
    assert!(
        output.contains("uvbuild: requirements.txt found, using pip..."),
        "{output}"
    );
    assert!(
        output.contains(&format!(
            "flowctl: chain: :{} nginx → :{} app (uwsgi --plugin python3 --socket 127.0.0.1:{}",
            deployment.public, deployment.app, deployment.app
        )),
        "{output}"
    );
    let css = http_get(deployment.public, "/static/style.css", &[]).unwrap();
    assert_eq!(css.status, 200);
    assert_eq!(
        css.body,
        std::fs::read_to_string(root().join("examples/legacy-flask-uwsgi/static/style.css"))
            .unwrap()
    );
    assert_eq!(css.header("Content-Type"), Some("text/css"));
    assert!(css.header("ETag").is_some(), "Nginx's own file headers");
    // The app saw the health check only: the stylesheet never reached it.
    assert_eq!(http_get(deployment.public, "/hits", &[]).unwrap().body, "1");
    // ENABLE_GZIP_COMPRESSION
    let zipped = http_get(deployment.public, "/", &[("Accept-Encoding", "gzip")]).unwrap();
    assert_eq!(zipped.header("Content-Encoding"), Some("gzip"));
    let plain = http_get(deployment.public, "/", &[]).unwrap();
    assert!(plain.body.starts_with("Hello from uWSGI behind Nginx!"));
    assert_eq!(plain.header("Content-Encoding"), None);

    assert!(deployment.stop().success());
    deployment.nothing_left();
}

#[test]
fn legacy_nginx_variables_basic_auth_read_timeout_buffers_and_the_root_prefix() {
    let mut deployment = Setup::legacy("legacy-flask-uwsgi")
        .var("CC_HTTP_BASIC_AUTH", "admin:s3cret-admin")
        .var("CC_HTTP_BASIC_AUTH_1", "ops:s3cret-ops")
        .var("NGINX_READ_TIMEOUT", "5")
        .var("CC_NGINX_PROXY_BUFFERS", "8 16k")
        .var("CC_NGINX_PROXY_BUFFER_SIZE", "16k")
        .args(&["--env", "STATIC_URL_PREFIX=/"])
        .start();
    deployment.deployed();
    let get = |path: &str, auth: &[(&str, &str)]| http_get(deployment.public, path, auth).unwrap();
    assert_eq!(get("/", &[]).status, 401);
    assert_eq!(get("/", &[("Authorization", WRONG)]).status, 401);
    assert_eq!(get("/", &[("Authorization", ADMIN)]).status, 200);
    assert_eq!(get("/", &[("Authorization", OPS)]).status, 200);
    // The `/` prefix: files first, the app behind the `@app` fallback.
    let css = get("/style.css", &[("Authorization", ADMIN)]);
    assert_eq!(
        (css.status, css.header("Content-Type")),
        (200, Some("text/css"))
    );
    assert!(get("/hits", &[("Authorization", ADMIN)])
        .body
        .parse::<u32>()
        .is_ok());
    // NGINX_READ_TIMEOUT=5: an 8 s answer is cut at 5 s (5, not 1: a loaded machine may take
    // more than a second to answer `/`).
    assert_eq!(
        get("/slow?seconds=8", &[("Authorization", ADMIN)]).status,
        504
    );
    // The passwords are in Nginx's own file, for its owner alone, never in the plan.
    let htpasswd = deployment
        .tmp
        .path()
        .join(format!("state/nginx-{}/htpasswd", deployment.public));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&htpasswd).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let plan = std::fs::read_to_string(deployment.tmp.path().join("state/plan.json")).unwrap();
    assert!(!plan.contains("s3cret"), "{plan}");
    assert!(
        plan.contains("\"htpasswd_from_env\":[\"CC_HTTP_BASIC_AUTH\",\"CC_HTTP_BASIC_AUTH_1\"]")
    );
    assert!(!deployment.output().contains("s3cret"));
    assert!(deployment.stop().success());
    deployment.nothing_left();
}

#[test]
fn legacy_django_on_gunicorn_runs_the_manage_tasks_before_the_server() {
    let mut deployment = Setup::legacy("legacy-django-gunicorn").start();
    deployment.deployed();
    let page = http_get(deployment.public, "/", &[]).unwrap();
    // The permissions table exists: `migrate` ran.
    assert!(
        page.body.starts_with("Hello from Django on gunicorn: ") && page.status == 200,
        "{}",
        page.body
    );
    let output = deployment.output();
    let migrate = output
        .find("running manage.py task: migrate --no-input")
        .unwrap();
    let check = output.find("running manage.py task: check").unwrap();
    let booted = output.find("Listening at: http://127.0.0.1:").unwrap();
    assert!(migrate < check && check < booted, "{output}");
    assert!(output.contains("--worker-class sync --timeout 30 --log-level info"));
    assert!(deployment.stop().success());
    deployment.nothing_left();
}

#[test]
fn a_failing_manage_task_fails_the_deployment() {
    let mut deployment = Setup::legacy("legacy-django-gunicorn")
        .args(&[
            "--env",
            "CC_PYTHON_MANAGE_TASKS=migrate --no-input, no_such_task",
        ])
        .start();
    assert_eq!(deployment.exit(Duration::from_secs(90)).code(), Some(1));
    let output = deployment.output();
    assert!(
        output.contains("error: CC_PYTHON_MANAGE_TASKS: `python manage.py no_such_task` failed (exit status: 1)"),
        "{output}"
    );
    assert!(!output.contains("Listening at:"), "{output}");
    deployment.nothing_left();
}

#[test]
fn legacy_asgi_on_uvicorn() {
    let mut deployment = Setup::legacy("legacy-asgi-uvicorn").start();
    deployment.deployed();
    let page = http_get(deployment.public, "/hello", &[]).unwrap();
    assert!(page.body.starts_with("Hello from ASGI"), "{}", page.body);
    assert!(deployment
        .output()
        .contains("Uvicorn running on http://127.0.0.1:"));
    assert!(deployment.stop().success());
    deployment.nothing_left();
}

#[test]
fn legacy_asgi_on_daphne() {
    let mut deployment = Setup::legacy("legacy-asgi-uvicorn")
        .args(&["--env", "CC_PYTHON_BACKEND=daphne"])
        .start();
    deployment.deployed();
    let page = http_get(deployment.public, "/hello", &[]).unwrap();
    assert!(page.body.starts_with("Hello from ASGI"), "{}", page.body);
    assert!(
        deployment.output().contains(&format!(
            "app (daphne --bind 127.0.0.1 --port {} main:app)",
            deployment.app
        )),
        "{}",
        deployment.output()
    );
    assert!(deployment.stop().success());
    deployment.nothing_left();
}

#[test]
fn legacy_celery_worker_runs_beside_the_app_server_and_stops_with_it() {
    let mut deployment = Setup::legacy("legacy-celery")
        .var("CC_PYTHON_CELERY_USE_BEAT", "true")
        .start();
    deployment.deployed();
    let queued = http_request("POST", deployment.public, "/enqueue/first", &[]).unwrap();
    assert_eq!(queued.status, 202);
    assert!(
        testkit::wait_until(Duration::from_secs(30), || {
            http_get(deployment.public, "/done/first", &[]).is_ok_and(|r| r.status == 200)
        }),
        "the worker did not run the task:\n{}",
        deployment.output()
    );
    let output = deployment.output();
    assert!(output.contains("deploy: started celery (pid "), "{output}");
    assert!(output.contains("celery   | "), "{output}");
    // CC_PYTHON_CELERY_LOGFILE: the worker logs into the app's `logs` directory, with beat.
    let log = deployment.tmp.path().join("state/copy/logs/celery.log");
    assert!(
        testkit::wait_until(Duration::from_secs(30), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("/MainProcess]"))
        }),
        "{}: {:?}\n{output}",
        log.display(),
        std::fs::read_to_string(&log)
    );
    let plan = std::fs::read_to_string(deployment.tmp.path().join("state/plan.json")).unwrap();
    assert!(
        plan.contains(
            "\"argv\":[\"celery\",\"--app\",\"tasks\",\"worker\",\"--beat\",\"--logfile="
        ),
        "{plan}"
    );
    assert!(deployment.stop().success());
    deployment.nothing_left();
}

#[test]
fn legacy_with_varnish_puts_nginx_right_before_the_app_server() {
    let mut deployment = Setup::legacy("legacy-flask-uwsgi")
        .ports(2)
        .start_with(with_vcl);
    deployment.deployed();
    let (public, app) = (deployment.public, deployment.app);
    assert!(
        deployment.output().contains(&format!(
            "chain: :{public} varnish → :{} nginx → :{app} app (uwsgi",
            public + 1
        )),
        "{}",
        deployment.output()
    );
    http_get(public, "/", &[]).unwrap();
    let second = http_get(public, "/", &[]).unwrap();
    assert_eq!(second.header("X-Cache"), Some("HIT"));
    assert!(second.body.starts_with("Hello from uWSGI behind Nginx!"));
    assert!(deployment.stop().success());
    deployment.nothing_left();
}

#[test]
fn an_app_server_that_is_not_there_gives_the_platforms_502_line() {
    // CC_RUN_COMMAND replaces the app server: this one never listens.
    let mut deployment = Setup::legacy("legacy-flask-uwsgi")
        .var("CC_RUN_COMMAND", "sleep 600")
        .args(&["--timeout", "3s"])
        .start();
    assert_eq!(deployment.exit(Duration::from_secs(90)).code(), Some(1));
    let output = deployment.output();
    assert!(
        output.contains(&format!(
            "GET http://127.0.0.1:{}/ returned 502!",
            deployment.public
        )),
        "{output}"
    );
    assert!(
        output.contains(&format!(
            "Some software are not listening as expected: {}",
            deployment.app
        )),
        "{output}"
    );
    deployment.nothing_left();
}
