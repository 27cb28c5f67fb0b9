//! The `detect` binary on the example apps and on temporary directories.

use assert_cmd::Command;
use serde_json::Value;
use std::path::Path;

fn detect() -> Command {
    let mut cmd = Command::cargo_bin("detect").unwrap();
    // A known environment: nothing of the developer's leaks into the plan.
    cmd.env_clear()
        .env("HOME", "/home/deploy")
        .env("PATH", "/usr/bin:/bin");
    cmd
}

fn example(name: &str) -> String {
    testkit::root()
        .join("examples")
        .join(name)
        .display()
        .to_string()
}

fn plan_of(cmd: &mut Command) -> Value {
    let out = cmd.assert().success().get_output().stdout.clone();
    serde_json::from_slice(&out).unwrap()
}

/// Runs `detect`, expects exit 2 and exactly one `error:` line on stderr; returns it.
fn error_of(cmd: &mut Command) -> String {
    let out = cmd.assert().code(2).get_output().clone();
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr.trim_end().to_string()
}

#[test]
fn hello_is_a_uv_app_on_8080() {
    let plan = plan_of(
        detect()
            .arg(example("hello"))
            .env("CC_PYTHON_UV_RUN_COMMAND", "uv run python app.py"),
    );
    assert_eq!(plan["schema"], 1);
    assert_eq!(plan["mode"], "uv");
    assert_eq!(plan["environment"], "production");
    assert_eq!(plan["app_dir"], example("hello"));
    assert_eq!(
        plan["build"]["argv"],
        serde_json::json!(["uv", "sync", "--locked", "--no-progress", "--no-dev"])
    );
    assert_eq!(plan["build"]["cache_dir"], "/home/deploy/.cache/uv");
    assert_eq!(plan["run"]["source"], "CC_PYTHON_UV_RUN_COMMAND");
    assert_eq!(
        plan["run"]["argv"],
        serde_json::json!(["uv", "run", "python", "app.py"])
    );
    assert_eq!(
        plan["ports"],
        serde_json::json!({"public": 8080, "app": 8080})
    );
    assert_eq!(plan["health_check"]["paths"], serde_json::json!(["/"]));
    assert_eq!(plan["request_flow"]["middlewares"], serde_json::json!([]));
    assert!(plan.get("hops").is_none());
    assert!(
        plan.get("warnings").is_none(),
        "hello has no dev dependencies"
    );
}

#[test]
fn flask_shop_gets_varnish_and_the_app_moves_to_9000() {
    let plan = plan_of(
        detect()
            .arg(example("flask-shop"))
            .env(
                "CC_PYTHON_UV_RUN_COMMAND",
                "uv run gunicorn shop:app --bind 0.0.0.0:$PORT",
            )
            .env("CC_PYTHON_MODULE", "shop:app"),
    );
    assert_eq!(
        plan["ports"],
        serde_json::json!({"public": 8080, "app": 9000})
    );
    assert_eq!(
        plan["request_flow"]["middlewares"],
        serde_json::json!([{"name": "varnish", "vcl": "clevercloud/varnish.vcl", "storage_size": "1G"}])
    );
    assert_eq!(plan["run"]["argv"], Value::Null);
    assert_eq!(plan["ignored"], serde_json::json!(["CC_PYTHON_MODULE"]));
    // flask-shop has a dev group, and a plain `uv run` would install it at start-up.
    assert!(plan["warnings"][0]
        .as_str()
        .unwrap()
        .contains("use `uv run --no-dev ...`"));
}

#[test]
fn legacy_mode_says_why_on_stderr_and_in_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let out = detect()
        .arg(dir.path())
        .assert()
        .success()
        .get_output()
        .clone();
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["mode"], "legacy");
    assert_eq!(plan["run"], Value::Null);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("legacy mode: uv.lock not found at the project root"),
        "{stderr}"
    );
}

#[test]
fn env_file_and_env_flags_layer_over_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("app.env");
    std::fs::write(
        &env_file,
        "# from clever env\nexport CC_PYTHON_UV_RUN_COMMAND=\"uv run python app.py\"\nCC_HEALTH_CHECK_PATH_0='/health'\nENVIRONMENT=development\n",
    )
    .unwrap();
    let plan = plan_of(
        detect()
            .arg(example("hello"))
            .env("ENVIRONMENT", "production")
            .arg("--env-file")
            .arg(&env_file)
            .args(["--env", "CC_HEALTH_CHECK_PATH_1=/"]),
    );
    assert_eq!(plan["mode"], "uv");
    assert_eq!(plan["environment"], "development");
    assert_eq!(
        plan["health_check"]["paths"],
        serde_json::json!(["/health", "/"])
    );
}

#[test]
fn secrets_are_named_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("uv.lock"), "").unwrap();
    let out = detect()
        .arg(dir.path())
        .env("CC_PYTHON_UV_RUN_COMMAND", "uv run app")
        .env("OTOROSHI_CHALLENGE_SECRET", "very-secret-otoroshi")
        .env("CC_REDIRECTIONIO_PROJECT_KEY", "very-secret-rio-key")
        .env("CC_PYTHON_BACKEND", "gunicorn")
        .assert()
        .success()
        .get_output()
        .clone();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("very-secret"), "{all}");
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        plan["request_flow"]["middlewares"][0]["secret_env"],
        "OTOROSHI_CHALLENGE_SECRET"
    );
    assert_eq!(
        plan["request_flow"]["middlewares"][1]["project_key_env"],
        "CC_REDIRECTIONIO_PROJECT_KEY"
    );
}

#[test]
fn shifted_ports() {
    let plan = plan_of(detect().arg(example("flask-shop")).args([
        "--public-port",
        "18080",
        "--app-port",
        "19000",
    ]));
    assert_eq!(
        plan["ports"],
        serde_json::json!({"public": 18080, "app": 19000})
    );
}

#[test]
fn every_bad_input_is_one_error_line_and_exit_2() {
    let hello = example("hello");
    let missing_file = "/nonexistent/uvdeploy.env";
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
    let cases: &[Case] = &[
        (&[("CC_REQUEST_FLOW", "varnsh")], &[], "error: CC_REQUEST_FLOW: unknown middleware \"varnsh\" (known: otoroshi-challenge, varnish, redirectionio, custom, block, disable)"),
        (&[("CC_REQUEST_FLOW", "custom")], &[], "error: CC_REQUEST_FLOW names \"custom\" but CC_REQUEST_FLOW_CUSTOM is not set"),
        (&[("CC_REQUEST_FLOW", "custom"), ("CC_REQUEST_FLOW_CUSTOM", "socat TCP-LISTEN:@@LISTEN_PORT@@ -")], &[], "error: CC_REQUEST_FLOW_CUSTOM: `socat TCP-LISTEN:@@LISTEN_PORT@@ -` lacks @@FORWARD_PORT@@"),
        (&[("CC_VARNISH_FILE", "/config/varnish.vcl")], &[], "error: CC_VARNISH_FILE: `/config/varnish.vcl` does not exist"),
        (&[("CC_HEALTH_CHECK_PATH", "health")], &[], "error: CC_HEALTH_CHECK_PATH: `health` does not start with `/`"),
        (&[("CC_PYTHON_UV_RUN_COMMAND", "uv run 'app.py")], &[], "error: CC_PYTHON_UV_RUN_COMMAND: missing closing quote in `uv run 'app.py`"),
        (&[], &["/nonexistent/app"], "error: APP_DIR `/nonexistent/app` does not exist"),
        (&[], &["--env-file", missing_file], "error: cannot read env file `/nonexistent/uvdeploy.env`"),
        (&[("APP_FOLDER", "backend")], &[], "error: APP_FOLDER: `backend` is not a directory inside"),
    ];
    for (vars, args, expected) in cases {
        let mut cmd = detect();
        cmd.envs(vars.iter().copied());
        if args.first() == Some(&"/nonexistent/app") {
            cmd.args(*args);
        } else {
            cmd.arg(&hello).args(*args);
        }
        let line = error_of(&mut cmd);
        assert!(line.starts_with(expected), "{line}\n  expected: {expected}");
    }
    let not_a_dir = Path::new(&hello).join("app.py");
    assert!(error_of(detect().arg(&not_a_dir)).ends_with("is not a directory"));
}

#[test]
fn app_folder_says_which_folder_is_the_application() {
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(repo.path().join("backend")).unwrap();
    std::fs::write(repo.path().join("backend/uv.lock"), "").unwrap();
    let out = detect()
        .arg(repo.path())
        .env("APP_FOLDER", "backend")
        .env("CC_PYTHON_UV_RUN_COMMAND", "uv run python app.py")
        .assert()
        .success()
        .get_output()
        .clone();
    let backend = repo.path().canonicalize().unwrap().join("backend");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "detect: the application is APP_FOLDER `backend`: {}\n",
            backend.display()
        )),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A value too long for any program to be started with (over 128 KiB, the kernel's
/// MAX_ARG_STRLEN) ended later in `Argument list too long`, naming nothing: refused at once,
/// naming the variable and the limit, not showing the value.
#[test]
fn a_variable_too_long_to_start_a_program_with_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.env");
    let value = "x".repeat(200 * 1024);
    std::fs::write(&file, format!("BIG_SETTING=\"{value}\"\n")).unwrap();
    let out = detect()
        .arg("--env-file")
        .arg(&file)
        .arg(example("hello"))
        .env("CC_PYTHON_UV_RUN_COMMAND", "uv run python app.py")
        .assert()
        .code(2)
        .get_output()
        .clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("error: BIG_SETTING is too long: 204812 bytes as `BIG_SETTING=VALUE`, and a variable can be at most 131071 bytes"),
        "{stderr}"
    );
    assert!(!stderr.contains("xxxx"));
    assert!(out.stdout.is_empty());
}

/// Every way the command line ends returns its code through `main`: the packagers' man page
/// and completions, a bad shell for them (one error line, exit 2), `--help`, a bad flag.
#[test]
fn the_command_line_ends_with_its_exit_code() {
    let man = detect().arg("--generate-man").assert().success();
    assert!(String::from_utf8_lossy(&man.get_output().stdout).contains(".TH detect"));
    let bash = detect()
        .args(["--generate-completions", "bash"])
        .assert()
        .success();
    assert!(String::from_utf8_lossy(&bash.get_output().stdout).contains("_detect()"));
    assert_eq!(
        error_of(detect().args(["--generate-completions", "tcsh"])),
        "error: --generate-completions takes a shell, not `tcsh`: bash, zsh, fish, elvish or powershell"
    );
    let help = detect().arg("--help").assert().success();
    assert!(String::from_utf8_lossy(&help.get_output().stdout).contains("--public-port <PORT>"));
    let bad = detect().arg("--no-such-flag").assert().code(2);
    assert!(String::from_utf8_lossy(&bad.get_output().stderr)
        .starts_with("error: unexpected argument '--no-such-flag' found"));
}

/// `--addon` records the add-ons a deployment runs, says them, and refuses a kind it does not
/// know, naming the valid ones.
#[test]
fn addons_are_recorded_in_the_plan_and_said() {
    let out = detect()
        .args([
            "--addon",
            "redis",
            "--addon",
            "postgresql",
            "--addon",
            "redis",
        ])
        .arg(example("hello"))
        .env("CC_PYTHON_UV_RUN_COMMAND", "uv run python app.py")
        .assert()
        .success()
        .get_output()
        .clone();
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["addons"], serde_json::json!(["postgresql", "redis"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("detect: add-ons: postgresql, redis"));
    let refused = detect()
        .args(["--addon", "mongodb"])
        .arg(example("hello"))
        .assert()
        .code(2)
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("mongodb") && stderr.contains("postgresql, mysql, redis"),
        "{stderr}"
    );
}
