//! `uvbuild` with the real uv on copies of the example apps.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use testkit::{bin, copy_example, copy_fixture, uv_env};

const RUN: &str = "uv run gunicorn shop:app --bind 0.0.0.0:$PORT";

/// `uvbuild APP` with its own cache dir and a clean environment of build variables.
/// `uvbuild APP --cache-dir CACHE` in a cleared environment: a developer's shell (with
/// `ENVIRONMENT`, `APP_FOLDER` or a hook set) must not change a result.
fn uvbuild(app: &Path, cache: &Path) -> Command {
    let mut cmd = Command::new(bin("uvbuild"));
    uv_env(testkit::cleared(&mut cmd))
        .arg(app)
        .arg("--cache-dir")
        .arg(cache)
        .env("CC_PYTHON_UV_RUN_COMMAND", RUN);
    cmd
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn venv_python(app: &Path) -> PathBuf {
    app.join(".venv/bin/python")
}

fn imports(app: &Path, module: &str) -> bool {
    Command::new(venv_python(app))
        .args(["-c", &format!("import {module}")])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn a_clean_build_installs_the_dependencies_and_reports_in_the_plan() {
    let (tmp, app) = copy_example("flask-shop");
    let cache = tmp.path().join("cache");
    let out = uvbuild(&app, &cache).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("uvbuild: running `uv sync --locked --no-progress --no-dev`"));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let result = &plan["build"]["result"];
    assert_eq!(result["status"], "ok");
    assert_eq!(result["venv"], app.join(".venv").display().to_string());
    assert!(result["python_version"].as_str().unwrap().starts_with("3."));
    assert!(imports(&app, "flask") && imports(&app, "gunicorn"));
    assert!(
        !imports(&app, "pytest"),
        "no dev dependencies in production"
    );
}

#[test]
fn development_keeps_dev_dependencies() {
    let (tmp, app) = copy_example("flask-shop");
    let out = uvbuild(&app, &tmp.path().join("cache"))
        .env("ENVIRONMENT", "development")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("running `uv sync --locked --no-progress` in"));
    assert!(imports(&app, "pytest"));
}

#[test]
fn a_rebuild_is_served_from_the_kept_cache() {
    let (tmp, app) = copy_example("flask-shop");
    let cache = tmp.path().join("cache");
    assert!(uvbuild(&app, &cache).output().unwrap().status.success());
    // A fresh checkout, as on every deployment: no .venv, the cache restored.
    std::fs::remove_dir_all(app.join(".venv")).unwrap();
    let out = uvbuild(&app, &cache)
        .env("UV_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "offline rebuild needs everything in the cache: {}",
        stderr(&out)
    );
    assert!(imports(&app, "flask"));
}

#[test]
fn an_outdated_lockfile_fails_with_the_hint_and_changes_nothing() {
    let (tmp, app) = copy_fixture("uv_lockfile_out_of_sync");
    let before = (
        std::fs::read(app.join("pyproject.toml")).unwrap(),
        std::fs::read(app.join("uv.lock")).unwrap(),
    );
    let out = uvbuild(&app, &tmp.path().join("cache")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no plan after a failed build");
    let err = stderr(&out);
    assert!(
        err.contains(
            "error: The lockfile at `uv.lock` needs to be updated, but `--locked` was provided."
        ),
        "uv's own message passes through: {err}"
    );
    assert!(
        err.contains("hint: run `uv lock` in the project, commit `uv.lock`, and build again"),
        "{err}"
    );
    let after = (
        std::fs::read(app.join("pyproject.toml")).unwrap(),
        std::fs::read(app.join("uv.lock")).unwrap(),
    );
    assert_eq!(
        before, after,
        "pyproject.toml and uv.lock are byte-identical"
    );
}

#[test]
fn a_build_leaves_the_project_files_untouched() {
    let (tmp, app) = copy_example("hello");
    let lock = std::fs::read(app.join("uv.lock")).unwrap();
    let pyproject = std::fs::read(app.join("pyproject.toml")).unwrap();
    assert!(uvbuild(&app, &tmp.path().join("cache"))
        .output()
        .unwrap()
        .status
        .success());
    assert_eq!(std::fs::read(app.join("uv.lock")).unwrap(), lock);
    assert_eq!(
        std::fs::read(app.join("pyproject.toml")).unwrap(),
        pyproject
    );
}

#[test]
fn a_missing_python_is_named() {
    let (tmp, app) = copy_fixture("python_not_installed");
    let out = uvbuild(&app, &tmp.path().join("cache")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("No interpreter found for Python >=3.99"),
        "{err}"
    );
    assert!(
        err.contains("error: the project asks for a Python that is not installed here"),
        "{err}"
    );
    assert!(err.contains("UV_PYTHON_DOWNLOADS=never"), "{err}");
}

#[test]
fn missing_uv_says_how_to_install_it() {
    let (tmp, app) = copy_example("hello");
    let out = uvbuild(&app, &tmp.path().join("cache"))
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("error: `uv` is not on PATH\n\nhint: install uv (`pip install uv`"),
        "{}",
        stderr(&out)
    );
}

/// A stand-in `uv` on PATH: a shell script that prints `output` on stderr and exits `code`.
fn fake_uv(dir: &Path, output: &str, code: i32) -> String {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let uv = bin.join("uv");
    std::fs::write(
        &uv,
        format!("#!/bin/sh\nprintf '{output}' >&2\nexit {code}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&uv, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("{}:/usr/bin:/bin", bin.display())
}

#[test]
fn uvs_output_is_relayed_as_bytes_even_when_not_utf8() {
    let (tmp, app) = copy_example("hello");
    let path = fake_uv(tmp.path(), "caf\\351 first\\nsecond line\\n", 2);
    let out = uvbuild(&app, &tmp.path().join("cache"))
        .env("PATH", path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = &out.stderr;
    let find = |needle: &[u8]| err.windows(needle.len()).any(|w| w == needle);
    assert!(find(b"caf\xe9 first\nsecond line\n"), "{}", stderr(&out));
}

#[test]
fn a_pyenv_shim_without_uv_is_named() {
    let (tmp, app) = copy_example("hello");
    let path = fake_uv(tmp.path(), "pyenv: uv: command not found\\n", 127);
    let out = uvbuild(&app, &tmp.path().join("cache"))
        .env("PATH", path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("error: `uv` on PATH is a pyenv shim that finds no uv to run (`pyenv: uv: command not found`)\n\nhint: install uv for the Python that pyenv selects here"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_hook_script_without_its_executable_bit_gets_the_chmod_hint() {
    let (tmp, app) = copy_example("hello");
    std::fs::write(app.join("prepare.sh"), "#!/bin/sh\necho prepared\n").unwrap();
    let out = uvbuild(&app, &tmp.path().join("cache"))
        .env("CC_PRE_BUILD_HOOK", "./prepare.sh")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("error: CC_PRE_BUILD_HOOK failed (exit status: 126): `./prepare.sh`\n\nhint: `./prepare.sh` is not executable: run `chmod +x ./prepare.sh` and commit it (git keeps the executable bit)\n"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn hooks_run_in_order_and_a_failing_hook_fails_the_build() {
    let (tmp, app) = copy_example("hello");
    let log = tmp.path().join("hooks.log");
    let out = uvbuild(&app, &tmp.path().join("cache"))
        .env(
            "CC_PRE_BUILD_HOOK",
            format!("test ! -d .venv && echo pre >> {}", log.display()),
        )
        .env(
            "CC_POST_BUILD_HOOK",
            format!("test -d .venv && echo post >> {}", log.display()),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "pre\npost\n");

    std::fs::remove_dir_all(app.join(".venv")).unwrap();
    let out = uvbuild(&app, &tmp.path().join("cache"))
        .env("CC_PRE_BUILD_HOOK", "exit 4")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("error: CC_PRE_BUILD_HOOK failed (exit status: 4): `exit 4`"));
    assert!(
        !app.join(".venv").exists(),
        "uv did not run after the failed hook"
    );

    // The hook's command is printed with each secret named, never shown.
    let out = uvbuild(&app, &tmp.path().join("cache"))
        .env("API_TOKEN", "s3cr3t-token-value")
        .env("CC_PRE_BUILD_HOOK", "test s3cr3t-token-value = other")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said: Vec<String> = stderr(&out)
        .lines()
        .filter(|l| !l.starts_with("uvbuild: warning:"))
        .map(String::from)
        .collect();
    assert_eq!(
        said,
        [
            "uvbuild: running CC_PRE_BUILD_HOOK: test ${{API_TOKEN}} = other",
            "error: CC_PRE_BUILD_HOOK failed (exit status: 1): `test ${{API_TOKEN}} = other`"
        ]
    );

    let out = uvbuild(&app, &tmp.path().join("cache"))
        .env("CC_POST_BUILD_HOOK", "false")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("error: CC_POST_BUILD_HOOK failed"));
}

#[test]
fn what_uvbuild_refuses() {
    let (tmp, app) = copy_example("hello");
    // Legacy: no run command.
    let out = uvbuild(&app, &tmp.path().join("cache"))
        .env_remove("CC_PYTHON_UV_RUN_COMMAND")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("error: legacy mode has no app server to run: neither CC_PYTHON_MODULE nor CC_RUN_COMMAND is set"),
        "{}",
        stderr(&out)
    );

    // No pyproject.toml.
    std::fs::remove_file(app.join("pyproject.toml")).unwrap();
    let out = uvbuild(&app, &tmp.path().join("cache")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("error: no `pyproject.toml` in"));

    // A plan of an unknown schema, on stdin.
    let out = assert_cmd::Command::new(bin("uvbuild"))
        .write_stdin("{\"schema\": 2}")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("has schema 2, this tool reads schema 1 only"));
}

#[test]
fn a_plan_on_stdin_goes_on_to_stdout() {
    let (tmp, app) = copy_example("hello");
    let plan = Command::new(bin("detect"))
        .arg(&app)
        .env("CC_PYTHON_UV_RUN_COMMAND", "uv run python app.py")
        .output()
        .unwrap();
    let out = assert_cmd::Command::new(bin("uvbuild"))
        .env("UV_PYTHON_DOWNLOADS", "never")
        .arg("--cache-dir")
        .arg(tmp.path().join("cache"))
        .write_stdin(plan.stdout)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["build"]["result"]["status"], "ok");
    assert_eq!(
        plan["build"]["cache_dir"],
        tmp.path().join("cache").display().to_string()
    );
}

/// `uvbuild APP` in legacy mode (the flask example, served by uWSGI), pip's cache in `cache`.
fn legacy_build(app: &Path, cache: &Path) -> Command {
    let mut cmd = uvbuild(app, cache);
    cmd.env_remove("CC_PYTHON_UV_RUN_COMMAND")
        .env("CC_PYTHON_MODULE", "wsgi:app");
    cmd
}

#[test]
fn legacy_mode_builds_with_pip_keeps_its_cache_and_runs_the_setup_goal() {
    let (tmp, app) = copy_example("legacy-flask-uwsgi");
    std::fs::write(
        app.join("setup.py"),
        "import sys\nopen('goal-ran', 'w').write(sys.argv[1])\n",
    )
    .unwrap();
    let cache = tmp.path().join("pip-cache");
    let out = legacy_build(&app, &cache)
        .env("PYTHON_SETUP_PY_GOAL", "build_assets")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("uvbuild: requirements.txt found, using pip..."),
        "{err}"
    );
    assert!(err.contains("-m venv --clear"), "{err}");
    assert!(
        err.contains(&format!("(PIP_CACHE_DIR={})", cache.display())),
        "{err}"
    );
    assert!(imports(&app, "flask"));
    assert_eq!(
        std::fs::read_to_string(app.join("goal-ran")).unwrap(),
        "build_assets"
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["mode"], "legacy");
    assert!(plan["build"]["result"]["python_version"]
        .as_str()
        .unwrap()
        .starts_with("3."));
    // (pip is pointed at the kept cache; what it stores there is pip's business: a registry
    // that answers `Cache-Control: no-store`, as this project's machines' does, leaves it empty.)

    // Again: the venv is the one made with this Python, pip finds everything installed.
    let again = legacy_build(&app, &cache).output().unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(!stderr(&again).contains("-m venv"), "{}", stderr(&again));
    assert!(stderr(&again).contains("Requirement already satisfied: flask"));
}

#[test]
fn legacy_mode_uses_the_python_cc_python_version_names() {
    let (tmp, app) = copy_example("legacy-flask-uwsgi");
    let minor = String::from_utf8(
        Command::new("python3")
            .args([
                "-c",
                "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let out = legacy_build(&app, &tmp.path().join("pip-cache"))
        .env("CC_PYTHON_VERSION", minor.trim())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(plan["build"]["result"]["python_version"]
        .as_str()
        .unwrap()
        .starts_with(minor.trim()));

    let missing = legacy_build(&app, &tmp.path().join("pip-cache"))
        .env("CC_PYTHON_VERSION", "2.7")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing)
            .contains("error: CC_PYTHON_VERSION=2.7: `python2.7` is not installed here"),
        "{}",
        stderr(&missing)
    );
}

/// Every entry under `dir` (but `__pycache__`): its path, and its bytes, a link's target or
/// `dir`, with its mode.
fn every_byte(dir: &Path) -> Vec<(PathBuf, u32, Vec<u8>)> {
    use std::os::unix::fs::MetadataExt;
    let mut all = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(at) = todo.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.ends_with("__pycache__") {
                continue;
            }
            let meta = path.symlink_metadata().unwrap();
            let content = if meta.file_type().is_symlink() {
                std::fs::read_link(&path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if meta.is_dir() {
                todo.push(path.clone());
                b"dir".to_vec()
            } else {
                std::fs::read(&path).unwrap()
            };
            all.push((path.strip_prefix(dir).unwrap().into(), meta.mode(), content));
        }
    }
    all.sort();
    all
}

/// As a deployment builds: `detect --source SOURCE COPY | uvbuild`, `copy` a copy of
/// `origin` (what `checkout` makes), the caches in `tmp`; `vars` for detect and uvbuild.
fn deployment_build(tmp: &Path, origin: &Path, copy: &Path, vars: &[(&str, &str)]) -> Value {
    testkit::succeeded(
        Command::new("cp")
            .arg("-a")
            .arg(origin)
            .arg(copy)
            .output()
            .unwrap(),
    );
    let source = copy.with_extension("source.json");
    let json = serde_json::json!({"kind": "directory", "origin": origin, "copy": copy});
    std::fs::write(&source, json.to_string()).unwrap();
    let with_env = |cmd: &mut Command| {
        uv_env(testkit::cleared(cmd))
            .env("UV_CACHE_DIR", tmp.join("uv-cache"))
            .env("PIP_CACHE_DIR", tmp.join("pip-cache"))
            // Where versions before each deployment had its own venv kept one per app.
            .env("UVDEPLOY_CACHE_DIR", tmp.join("uvdeploy-cache"))
            .envs(vars.iter().copied());
    };
    let mut detect = Command::new(bin("detect"));
    with_env(&mut detect);
    let plan = testkit::succeeded(
        detect
            .arg("--source")
            .arg(&source)
            .arg(copy)
            .output()
            .unwrap(),
    );
    let mut build = Command::new(bin("uvbuild"));
    with_env(&mut build);
    let out = assert_cmd::Command::from_std(build)
        .write_stdin(plan.stdout)
        .output()
        .unwrap();
    serde_json::from_slice(&testkit::succeeded(out).stdout).unwrap()
}

/// `SCRIPT --version` from the venv's `bin`: the script's `#!` names the venv's Python.
fn console_script_runs(venv: &Path, script: &str) -> bool {
    Command::new(venv.join("bin").join(script))
        .arg("--version")
        .env_clear()
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Two deployments of one app, in uv mode (`uv run gunicorn`) and in legacy mode (pip's
/// `flask` script): each builds a venv of its own in its own copy, from the kept caches. The
/// second build changes no byte of the first's venv, and the second's scripts run once the
/// first copy is gone (the first deployment stopped).
#[test]
fn each_deployment_builds_a_venv_of_its_own_from_the_kept_cache() {
    let uv = (
        "flask-shop",
        "gunicorn",
        [("CC_PYTHON_UV_RUN_COMMAND", RUN)],
    );
    let legacy = (
        "legacy-flask-uwsgi",
        "flask",
        [("CC_PYTHON_MODULE", "wsgi:app")],
    );
    for (example, script, vars) in [uv, legacy] {
        let (tmp, origin) = copy_example(example);
        let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
        let first_plan = deployment_build(tmp.path(), &origin, &one, &vars);
        let venv = one.join(".venv");
        let first = every_byte(&venv);
        let second_plan = deployment_build(tmp.path(), &origin, &two, &vars);
        assert!(
            every_byte(&venv) == first,
            "{example}: the second build changed the first deployment's venv"
        );
        assert!(
            console_script_runs(&venv, script),
            "{example}: the first's {script}"
        );
        std::fs::remove_dir_all(&one).unwrap();
        assert!(
            console_script_runs(&two.join(".venv"), script),
            "{example}: the second's {script} after the first copy is gone"
        );
        assert!(
            two.join(".venv").symlink_metadata().unwrap().is_dir(),
            "{example}: a real directory in the copy, not a link"
        );
        assert!(
            !tmp.path().join("uvdeploy-cache").exists(),
            "no venv is kept between deployments"
        );
        for (plan, copy) in [(first_plan, &one), (second_plan, &two)] {
            let venv = copy.join(".venv").display().to_string();
            assert_eq!(plan["build"]["venv"], venv);
            assert_eq!(plan["build"]["result"]["venv"], venv);
        }
    }
}

/// A `.venv` committed as a link (or a file) in the copy: the build writes a real venv in its
/// place, says so, and what the link pointed to keeps every byte.
#[test]
fn a_venv_link_in_the_app_is_replaced_never_written_through() {
    let uv = ("CC_PYTHON_UV_RUN_COMMAND", "uv run python app.py");
    let legacy = ("CC_RUN_COMMAND", "python app.py");
    for (variable, command) in [uv, legacy] {
        let (tmp, app) = copy_example("hello");
        let outside = tmp.path().join("someone-elses-venv");
        std::fs::create_dir_all(outside.join("bin")).unwrap();
        std::fs::write(outside.join("pyvenv.cfg"), "home = /usr/bin\n").unwrap();
        std::fs::write(outside.join("bin/keep-me"), "precious\n").unwrap();
        let before = every_byte(&outside);
        std::os::unix::fs::symlink(&outside, app.join(".venv")).unwrap();
        let out = uvbuild(&app, &tmp.path().join("cache"))
            .env_remove("CC_PYTHON_UV_RUN_COMMAND")
            .env(variable, command)
            .output()
            .unwrap();
        assert!(out.status.success(), "{variable}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!(
                "uvbuild: warning: `.venv` in the application is a link to `{}`: it is replaced by the deployment's own virtual environment, and what it pointed to is not written",
                outside.display()
            )),
            "{variable}: {}",
            stderr(&out)
        );
        assert!(
            every_byte(&outside) == before,
            "{variable}: written through the link"
        );
        let venv = app.join(".venv");
        assert!(venv.symlink_metadata().unwrap().is_dir());
        assert!(venv_python(&app).exists());

        // A file.
        std::fs::remove_dir_all(&venv).unwrap();
        std::fs::write(&venv, "not a venv\n").unwrap();
        let out = uvbuild(&app, &tmp.path().join("cache"))
            .env_remove("CC_PYTHON_UV_RUN_COMMAND")
            .env(variable, command)
            .output()
            .unwrap();
        assert!(out.status.success(), "{variable}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("warning: `.venv` in the application is a file: it is replaced")
        );
        assert!(venv_python(&app).exists());
    }
}

/// `UV_PROJECT_ENVIRONMENT` is where uv builds and where the plan says the venv is; one that
/// would reach outside the app through a linked directory is refused.
#[test]
fn the_venv_where_uv_project_environment_says() {
    let (tmp, app) = copy_example("hello");
    let out = uvbuild(&app, &tmp.path().join("cache"))
        .env("UV_PROJECT_ENVIRONMENT", "env")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let venv = app.join("env").display().to_string();
    assert_eq!(plan["build"]["venv"], venv);
    assert_eq!(plan["build"]["result"]["venv"], venv);
    assert!(app.join("env/bin/python").exists() && !app.join(".venv").exists());

    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, app.join("linked")).unwrap();
    let out = uvbuild(&app, &tmp.path().join("cache"))
        .env("UV_PROJECT_ENVIRONMENT", "linked/venv")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "error: the virtual environment `{}` would be written through a link to `{}`, outside the application",
            app.join("linked/venv").display(),
            outside.canonicalize().unwrap().display()
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}

/// The ports are laid out by whatever makes the plan: given with a plan on stdin, they are
/// refused (exit 2), not ignored.
#[test]
fn ports_with_a_plan_on_stdin_are_refused() {
    let (_tmp, app) = copy_example("hello");
    let mut detect = Command::new(bin("detect"));
    testkit::cleared(&mut detect)
        .arg(&app)
        .env("CC_PYTHON_UV_RUN_COMMAND", "uv run python app.py");
    let plan = testkit::succeeded(detect.output().unwrap()).stdout;
    let out = assert_cmd::Command::new(bin("uvbuild"))
        .args(["--public-port", "18080"])
        .write_stdin(plan)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert_eq!(
        stderr(&out),
        "error: `--public-port 18080` is for `uvbuild APP_DIR`: the plan uvbuild read already has its ports (public 8080, app 8080)\n\nhint: give the ports to the tool that makes the plan: `detect --public-port 18080 APP_DIR | uvbuild`\n"
    );
    assert!(!app.join(".venv").exists(), "nothing was built");
}
