//! No secret's value in what the tools write: the plan, `flowctl`'s chain, the Kubernetes
//! manifests, the Containerfile, or any of their stderr. The secrets are distinctive values
//! with a space and a quote, written literally where users write them (the run command, a
//! health check path, a build hook, `CC_REQUEST_FLOW_CUSTOM`), spelled as a shell would
//! (`Zq9\ x\'K7`, `'Zq9 x'\''K7'`, `"Zq9 x'K7"`), and a URL with a password
//! (`POSTGRESQL_ADDON_URI`), which is a secret by its value. Every variable that is or holds
//! a secret comes from the Secret by `secretKeyRef`; a build hook's secret from a build
//! secret mount.

use serde_json::Value;
use std::process::{Command, Output};
use testkit::{bin, copy_example};

/// Distinctive pieces: any spelling of the values holds them.
const TOKEN: &str = "Zq9 x'K7";
const TOKEN_PIECES: [&str; 2] = ["Zq9", "'K7"];
const URI: &str = "postgresql://user:Pg7 w'd9@db.example/shop";
const URI_PIECES: [&str; 2] = ["Pg7", "w'd9"];

fn variables() -> Vec<(&'static str, String)> {
    vec![
        ("API_TOKEN", TOKEN.into()),
        ("POSTGRESQL_ADDON_URI", URI.into()),
        (
            "CC_PYTHON_UV_RUN_COMMAND",
            r"uv run python app.py --token Zq9\ x\'K7".into(),
        ),
        ("CC_HEALTH_CHECK_PATH", format!("/health?token={TOKEN}")),
        (
            "CC_PRE_BUILD_HOOK",
            r#"test 'Zq9 x'\''K7' = "$API_TOKEN" && test -n "$POSTGRESQL_ADDON_URI""#.into(),
        ),
        ("CC_REQUEST_FLOW", "custom".into()),
        (
            "CC_REQUEST_FLOW_CUSTOM",
            r#"my-proxy --listen @@LISTEN_PORT@@ --to @@FORWARD_PORT@@ --key "Zq9 x'K7""#.into(),
        ),
    ]
}

/// `tool args...` with the variables as `--env KEY=VALUE`, `stdin` on its input.
fn run(tool: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut command = Command::new(bin(tool));
    testkit::cleared(&mut command).args(args);
    for (key, value) in variables() {
        command.arg("--env").arg(format!("{key}={value}"));
    }
    let out = assert_cmd::Command::from_std(command)
        .write_stdin(stdin.to_vec())
        .output()
        .unwrap();
    testkit::succeeded(out)
}

fn assert_no_secret(what: &str, out: &Output) {
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        for piece in TOKEN_PIECES.iter().chain(&URI_PIECES) {
            assert!(
                !text.contains(piece),
                "{what}: `{piece}` of a secret on {stream}:\n{text}"
            );
        }
    }
}

#[test]
fn no_secret_value_in_the_plan_the_chain_the_manifests_or_the_containerfile() {
    let (_tmp, app) = copy_example("hello");
    let app = app.to_str().unwrap();
    let detected = run("detect", &[app], b"");
    assert_no_secret("detect", &detected);
    let planned = run("flowctl", &["--state-dir", "/srv/state"], &detected.stdout);
    assert_no_secret("flowctl (the plan)", &planned);
    let plan: Value = serde_json::from_slice(&planned.stdout).unwrap();
    assert_eq!(plan["run"]["argv"][5], "${{API_TOKEN}}", "{plan:#}");
    let text = run("flowctl", &["--format", "text"], &planned.stdout);
    assert_no_secret("flowctl --format text", &text);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("${{API_TOKEN}}"),
        "the chain names the secret: {}",
        String::from_utf8_lossy(&text.stdout)
    );

    let exported = run(
        "plan-export",
        &["kubernetes", "--image", "registry.example/hello:1"],
        &planned.stdout,
    );
    assert_no_secret("plan-export kubernetes", &exported);
    let hint = String::from_utf8_lossy(&exported.stderr);
    let yaml = String::from_utf8(exported.stdout).unwrap();
    let docs = parsed(&yaml);
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let app_env = pod["containers"][0]["env"].as_array().unwrap();
    for variable in [
        "API_TOKEN",
        "POSTGRESQL_ADDON_URI",
        "CC_PYTHON_UV_RUN_COMMAND",
        "CC_HEALTH_CHECK_PATH",
        "CC_PRE_BUILD_HOOK",
        "CC_REQUEST_FLOW_CUSTOM",
    ] {
        let entry = app_env
            .iter()
            .find(|e| e["name"] == variable)
            .unwrap_or_else(|| panic!("{variable} not in the app's env: {app_env:#?}"));
        assert_eq!(
            entry["valueFrom"]["secretKeyRef"]["key"], variable,
            "{variable}: {entry}"
        );
        assert!(entry.get("value").is_none(), "{variable}: {entry}");
        assert!(
            hint.contains(&format!("--from-literal={variable}=")),
            "{variable} not in the hint: {hint}"
        );
    }
    // The custom hop's command reads the secret from its environment, from the Secret.
    let custom = &pod["initContainers"][0];
    assert_eq!(
        custom["command"][2],
        "exec my-proxy --listen 8080 --to 9000 --key \"${API_TOKEN}\""
    );
    assert!(custom["env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "API_TOKEN" && e["valueFrom"]["secretKeyRef"]["key"] == "API_TOKEN"));

    let containerfile = run("plan-export", &["containerfile"], &planned.stdout);
    assert_no_secret("plan-export containerfile", &containerfile);
    let text = String::from_utf8(containerfile.stdout).unwrap();
    let hook = text
        .lines()
        .find(|l| l.contains("test "))
        .unwrap_or_else(|| panic!("no hook:\n{text}"));
    assert!(
        hook.starts_with(
            "RUN --mount=type=secret,id=API_TOKEN --mount=type=secret,id=POSTGRESQL_ADDON_URI "
        ),
        "{hook}"
    );
    assert!(String::from_utf8_lossy(&containerfile.stderr)
        .contains("--secret id=API_TOKEN,src=FILE --secret id=POSTGRESQL_ADDON_URI,src=FILE"));
}

/// The hook as the image's build runs it: with the build secrets mounted as files, it
/// sees the values whole (what the hook tests), though the Containerfile holds none.
#[test]
fn a_build_hook_gets_its_secrets_from_the_build_secret_mounts() {
    let (_tmp, app) = copy_example("hello");
    let detected = run("detect", &[app.to_str().unwrap()], b"");
    let planned = run("flowctl", &["--state-dir", "/srv/state"], &detected.stdout);
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    let containerfile = run(
        "plan-export",
        &["containerfile", "--secrets-dir", secrets.to_str().unwrap()],
        &planned.stdout,
    );
    assert_no_secret("plan-export containerfile --secrets-dir", &containerfile);
    use std::os::unix::fs::PermissionsExt;
    for (name, value) in [("API_TOKEN", TOKEN), ("POSTGRESQL_ADDON_URI", URI)] {
        let file = secrets.join(name);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), value);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    // The RUN line's script, with /run/secrets as that directory.
    let text = String::from_utf8(containerfile.stdout).unwrap();
    let hook = text.lines().find(|l| l.contains("test ")).unwrap();
    let argv: Vec<String> = serde_json::from_str(&hook[hook.find('[').unwrap()..]).unwrap();
    let script = argv[2].replace("/run/secrets/", &format!("{}/", secrets.display()));
    let status = Command::new(&argv[0])
        .args(["-c", &script])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the hook did not see the secrets: {script}"
    );
}

fn parsed(yaml: &str) -> Vec<Value> {
    let out = assert_cmd::Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(sys.stdin.read()))))",
        ])
        .write_stdin(yaml.to_string())
        .output()
        .unwrap();
    serde_json::from_slice(&testkit::succeeded(out).stdout).unwrap()
}

/// A shell run command with the secret spelled as a shell spells it: the plan holds neither
/// spelling, and `launcher` runs what the user wrote (the value whole, twice).
#[test]
fn launcher_runs_a_hidden_shell_command_as_written() {
    let (_tmp, app) = copy_example("hello");
    let command = r#"printf '%s|' Zq9\ x\'K7 "Zq9 x'K7" > got; exit 0"#;
    let mut detect = Command::new(bin("detect"));
    testkit::cleared(&mut detect)
        .arg(&app)
        .env("API_TOKEN", TOKEN)
        .env("CC_RUN_COMMAND", command);
    let detected = testkit::succeeded(detect.output().unwrap());
    assert_no_secret("detect", &detected);
    let plan = app.parent().unwrap().join("plan.json");
    std::fs::write(&plan, &detected.stdout).unwrap();
    let mut launcher = Command::new(bin("launcher"));
    testkit::cleared(&mut launcher)
        .arg("--plan")
        .arg(&plan)
        .arg("--app")
        .env("API_TOKEN", TOKEN);
    let launched = testkit::succeeded(launcher.output().unwrap());
    assert_no_secret("launcher", &launched);
    // What --dry-run shows of the command and of a hook names the secret.
    let mut dry_run = Command::new(bin("launcher"));
    testkit::cleared(&mut dry_run)
        .arg("--plan")
        .arg(&plan)
        .args(["--app", "--dry-run"])
        .env("API_TOKEN", TOKEN)
        .env("CC_PRE_RUN_HOOK", r"echo Zq9\ x\'K7");
    let shown = testkit::succeeded(dry_run.output().unwrap());
    assert_no_secret("launcher --dry-run", &shown);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("pre-run hook: echo ${{API_TOKEN}}"));
    assert_eq!(
        std::fs::read_to_string(app.join("got")).unwrap(),
        format!("{TOKEN}|{TOKEN}|")
    );
}
