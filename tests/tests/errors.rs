//! What users see when something is wrong: the exact stderr and exit code of every tool's
//! error cases, pinned as snapshots (`tests/tests/snapshots/`). Each case is the shell
//! command a user would type, run by bash with the tools on PATH, in a cleared environment, in
//! a directory holding a copy of `examples/hello` as `app`.
//!
//! To review a change of wording: `cargo insta test --review`, or run with
//! `INSTA_UPDATE=always` and read the diff of the `.snap` files.

use std::path::Path;
use std::process::Command;
use testkit::{bin, copy_example};

/// Runs `script` and gives what a snapshot shows: the exit code and stderr, with the
/// temporary directory and the tools' directory written as `[TMP]` and `[BIN]`.
fn run(script: &str) -> String {
    let (tmp, app) = copy_example("hello");
    std::fs::rename(&app, tmp.path().join("app")).unwrap();
    setup(tmp.path());
    let bin_dir = bin("detect").parent().unwrap().to_path_buf();
    let mut cmd = Command::new("bash");
    testkit::cleared(&mut cmd)
        .args(["-o", "pipefail", "-c", script])
        .current_dir(tmp.path())
        .env(
            "PATH",
            format!(
                "{}:/usr/local/bin:/usr/bin:/bin:/usr/sbin",
                bin_dir.display()
            ),
        )
        .env("HOME", "/home/deploy")
        .env("NO_COLOR", "1");
    let out = cmd.output().unwrap();
    let tmp_path = tmp.path().canonicalize().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr)
        .replace(&tmp_path.display().to_string(), "[TMP]")
        .replace(&tmp.path().display().to_string(), "[TMP]")
        .replace(&bin_dir.display().to_string(), "[BIN]");
    format!("exit: {}\n{stderr}", out.status.code().unwrap_or(-1))
}

/// Files some cases need beside the app.
fn setup(dir: &Path) {
    std::fs::write(dir.join("outside.vcl"), "a line the user did not write\n").unwrap();
    std::fs::write(dir.join("bad.env"), "OK=1\nnot a line\n").unwrap();
    std::fs::create_dir_all(dir.join("bad-vcl/clevercloud")).unwrap();
    std::fs::write(dir.join("bad-vcl/uv.lock"), "").unwrap();
    std::fs::write(
        dir.join("bad-vcl/clevercloud/varnish.vcl"),
        "sub vcl_recv { nonsense }\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("no-pyproject")).unwrap();
    std::fs::write(dir.join("no-pyproject/uv.lock"), "").unwrap();
    // Legacy mode: requirements.txt, no uv.lock.
    std::fs::create_dir_all(dir.join("legacy")).unwrap();
    std::fs::write(dir.join("legacy/requirements.txt"), "").unwrap();
    std::fs::write(dir.join("legacy/app.py"), "").unwrap();
    // A uv workspace: its lockfile at the root, one member under packages/api.
    std::fs::create_dir_all(dir.join("ws/packages/api")).unwrap();
    std::fs::write(
        dir.join("ws/pyproject.toml"),
        "[project]\nname = \"ws\"\nversion = \"0.1.0\"\n\n[tool.uv.workspace]\nmembers = [\"packages/*\"]\n",
    )
    .unwrap();
    std::fs::write(dir.join("ws/uv.lock"), "version = 1\n").unwrap();
    std::fs::write(
        dir.join("ws/packages/api/pyproject.toml"),
        "[project]\nname = \"api\"\nversion = \"0.1.0\"\n",
    )
    .unwrap();
}

const RUN: &str = "CC_PYTHON_UV_RUN_COMMAND='uv run python app.py'";

macro_rules! cases {
    ($($name:ident: $script:expr;)*) => {
        $(
            #[test]
            fn $name() {
                insta::assert_snapshot!(stringify!($name), run(($script).as_ref()));
            }
        )*
    };
}

cases! {
    detect_unknown_middleware: format!("{RUN} CC_REQUEST_FLOW=varnsh detect app");
    detect_relative_health_path: format!("{RUN} CC_HEALTH_CHECK_PATH=health detect app");
    detect_health_path_suffix: format!("{RUN} CC_HEALTH_CHECK_PATH_x=/a detect app");
    detect_custom_without_forward_port: format!("{RUN} CC_REQUEST_FLOW=custom CC_REQUEST_FLOW_CUSTOM='proxy @@LISTEN_PORT@@' detect app");
    detect_varnish_file_missing: format!("{RUN} CC_VARNISH_FILE=/nope.vcl detect app");
    detect_varnish_file_outside_the_app: format!("{RUN} CC_VARNISH_FILE=../outside.vcl detect app");
    detect_varnish_storage_too_large: format!("{RUN} CC_VARNISH_STORAGE_SIZE=999999T detect bad-vcl");
    detect_chain_past_the_last_port: format!("{RUN} OTOROSHI_CHALLENGE_SECRET=s CC_REDIRECTIONIO_PROJECT_KEY=k detect --public-port 65535 app");
    detect_port_zero: format!("{RUN} detect --public-port 0 app");
    detect_app_folder_outside: format!("{RUN} APP_FOLDER=../.. detect app");
    detect_unbalanced_quote: "CC_PYTHON_UV_RUN_COMMAND=\"python 'app.py\" detect app";
    detect_bad_env_file_line: "detect --env-file bad.env app";
    detect_missing_app_dir: "detect nowhere";
    detect_app_folder_on_a_workspace_member: "APP_FOLDER=packages/api CC_PYTHON_UV_RUN_COMMAND='uv run uvicorn api:app --port 8080' detect ws | uvbuild";
    pipeline_says_one_error_for_one_failure: format!("{RUN} CC_REQUEST_FLOW=varnsh detect app | uvbuild | flowctl; echo \"statuses: ${{PIPESTATUS[*]}}\" >&2");
    uvbuild_legacy_without_app_server: "detect legacy 2>/dev/null | uvbuild";
    uvbuild_legacy_python_not_installed: "CC_PYTHON_VERSION=3.99 CC_PYTHON_MODULE=app:app detect legacy 2>/dev/null | uvbuild";
    // (pip's `Looking in indexes/links` line names this machine's registry settings.)
    uvbuild_legacy_backend_not_in_the_requirements: "PIP_CACHE_DIR=pip-cache CC_PYTHON_BACKEND=gunicorn CC_PYTHON_MODULE=app:app detect legacy 2>/dev/null | uvbuild 2>&1 >/dev/null | grep -v '^Looking in' >&2";
    detect_legacy_unknown_backend: "CC_PYTHON_BACKEND=tornado detect legacy";
    detect_legacy_python_version: "CC_PYTHON_VERSION=three detect legacy";
    detect_legacy_requirements_file_missing: "CC_PIP_REQUIREMENTS_FILE=prod.txt detect legacy";
    detect_legacy_basic_auth_without_password: "CC_HTTP_BASIC_AUTH=admin detect legacy";
    detect_legacy_nginx_buffers_not_a_size: "CC_NGINX_PROXY_BUFFERS='8 16k; include /etc/passwd' detect legacy";
    detect_legacy_harakiri_not_a_number: "CC_PYTHON_MODULE=app:app HARAKIRI=soon detect legacy";
    flowctl_legacy_nginx_refuses_the_configuration: "CC_PYTHON_MODULE=app:app CC_NGINX_PROXY_BUFFERS='1 4k' detect legacy | flowctl --state-dir state";
    flowctl_legacy_static_files_outside_the_app: "CC_PYTHON_MODULE=app:app STATIC_FILES_PATH=../app STATIC_URL_PREFIX=/s detect legacy | flowctl --state-dir state";
    uvbuild_no_pyproject: format!("{RUN} uvbuild no-pyproject");
    flowctl_plan_not_json: "echo '{' | flowctl";
    flowctl_plan_without_schema: "echo '{}' | flowctl";
    flowctl_plan_of_another_schema: "echo '{\"schema\": 2}' | flowctl";
    flowctl_empty_plan_file: "flowctl --plan /dev/null";
    flowctl_vcl_that_does_not_compile: format!("{RUN} detect bad-vcl | flowctl --state-dir state");
    flowctl_state_dir_inside_the_app: format!("{RUN} detect app | flowctl --state-dir app/state");
    launcher_unknown_hop: format!("{RUN} OTOROSHI_CHALLENGE_SECRET=s detect app | flowctl --state-dir state > plan.json && launcher --plan plan.json --hop varnish");
    launcher_no_hops: format!("{RUN} detect app > plan.json && launcher --plan plan.json --hop varnish");
    launcher_unknown_hook: format!("{RUN} detect app > plan.json && launcher --plan plan.json --hook CC_PRE_BUILD_HOOK");
    launcher_hop_secret_not_set: format!("{RUN} OTOROSHI_CHALLENGE_SECRET=s detect app | flowctl --state-dir state > plan.json && launcher --plan plan.json --hop otoroshi-challenge");
    launcher_command_not_found: "launcher -- no-such-program --flag";
    launcher_legacy_without_run_command: "detect legacy 2>/dev/null > plan.json; launcher --plan plan.json --app";
    healthcheck_relative_path: "healthcheck --port 1 --path health";
    healthcheck_timeout_too_long: "healthcheck --port 1 --timeout 99999999999999999999s";
    healthcheck_port_zero: "healthcheck --port 0";
    otoroshi_challenge_without_secret: "otoroshi-challenge --listen 1 --forward 2";
    image_without_podman_nor_buildah: format!("PATH=/nonexistent /bin/bash {} app", testkit::root().join("scripts/image").display());
    export_without_a_target: "env plan-export";
    detect_legacy_requirements_file_with_a_newline: "CC_PYTHON_MODULE=app:app CC_PIP_REQUIREMENTS_FILE=$'requirements.txt\nRUN touch /pwned' detect legacy";
}

/// Every script answers `--help` (its header) and `--version` on stdout, exit 0, and does
/// nothing else then (before, `scripts/setup --help` installed packages and printed nothing
/// on stdout).
#[test]
fn every_script_answers_help_and_version_and_does_nothing_else() {
    for script in [
        "setup",
        "test",
        "bench",
        "install",
        "deploy",
        "plan",
        "image",
        "base-image",
        "uvdeploy",
    ] {
        let path = testkit::root().join("scripts").join(script);
        for flag in ["--help", "--version"] {
            let out = Command::new("bash")
                .env_clear()
                .arg(&path)
                .arg(flag)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{script} {flag}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            if flag == "--version" {
                assert!(
                    stdout.trim_end().ends_with(env!("CARGO_PKG_VERSION")),
                    "{script}: {stdout}"
                );
            } else {
                assert!(stdout.lines().count() > 1, "{script} --help: {stdout}");
            }
        }
    }
}
