//! The build phase: the platform's pre-build hook, `uv sync --locked --no-progress [--no-dev]`
//! with the uv cache kept at `build.cache_dir`, then the post-build hook. uv's own output is
//! streamed to stderr as it comes, and kept, so that a known failure gets a hint.

mod legacy;

use plan::report::Failure;
use plan::{BuildResult, Env, Mode, Plan};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("no `pyproject.toml` in `{0}`")]
    NoPyproject(PathBuf),
    #[error("`{0}` is not on PATH")]
    UvNotFound(String),
    #[error(
        "`{0}` on PATH is a pyenv shim that finds no uv to run (`pyenv: uv: command not found`)"
    )]
    UvShimBroken(String),
    #[error("cannot run `{command}`: {reason}")]
    Spawn { command: String, reason: String },
    #[error("the lockfile `uv.lock` is out of date with `pyproject.toml` (uv's message is above)")]
    LockfileOutdated,
    #[error("the project asks for a Python that is not installed here (uv's message is above)")]
    PythonMissing { downloads: String },
    #[error("`{command}` failed ({status})")]
    SyncFailed { command: String, status: String },
    #[error("cannot replace `{path}` with the deployment's own virtual environment: {reason}")]
    OwnVenv { path: PathBuf, reason: String },
    #[error("the virtual environment `{venv}` would be written through a link to `{target}`, outside the application")]
    VenvThroughLink { venv: PathBuf, target: PathBuf },
    #[error(transparent)]
    Hook(#[from] plan::hook::HookError),
    #[error(
        "legacy mode has no app server to run: neither CC_PYTHON_MODULE nor CC_RUN_COMMAND is set"
    )]
    NoAppServer {
        /// The app is a uv workspace member: what deploys it with uv is the real fix.
        workspace_member: Option<plan::WorkspaceMember>,
    },
    #[error("the plan is in legacy mode but has no legacy settings (make it again with `detect`)")]
    NoLegacySettings,
    #[error(
        "CC_PYTHON_VERSION={version}: `{program}` is not installed here (found on PATH: {found})"
    )]
    PythonNotInstalled {
        version: String,
        program: String,
        found: String,
    },
    #[error("{because} needs `{program}`, and the build did not install it (it is not in {requirements})")]
    MissingPackage {
        program: String,
        package: String,
        because: String,
        requirements: String,
    },
}

impl Failure for BuildError {
    fn exit_code(&self) -> u8 {
        match self {
            BuildError::NoAppServer { .. } | BuildError::NoLegacySettings => {
                plan::report::exit::USAGE
            }
            // A failed build hook fails the build (exit 1); its own status is in the message.
            _ => plan::report::exit::FAILED,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            BuildError::NoAppServer { workspace_member: Some(member) } => format!("APP_FOLDER is the uv workspace member `{}`: {}", member.package, member.fix()),
            BuildError::NoAppServer { workspace_member: None } => "set CC_PYTHON_MODULE to the WSGI (or ASGI) object, e.g. `app:app` for `app` in app.py, or CC_RUN_COMMAND to a command that listens on PORT (9000)".into(),
            BuildError::PythonNotInstalled { .. } => "interpreters are never downloaded: install that Python (e.g. `apt-get install python3.11`), or set CC_PYTHON_VERSION to one that is installed".into(),
            BuildError::MissingPackage { package, requirements, .. } => format!("add `{package}` to {requirements} and commit it"),
            BuildError::NoPyproject(_) => "uv builds a project from its `pyproject.toml` and `uv.lock`; run `uv init` there, or set APP_FOLDER to the project's sub-folder".into(),
            BuildError::UvNotFound(_) => "install uv (`pip install uv`, or see https://docs.astral.sh/uv/getting-started/installation/)".into(),
            BuildError::UvShimBroken(_) => "install uv for the Python that pyenv selects here (`pip install uv`), or `pyenv global` a version that has it, or put a standalone uv first on PATH".into(),
            BuildError::LockfileOutdated => "run `uv lock` in the project, commit `uv.lock`, and build again".into(),
            BuildError::PythonMissing { downloads } => format!("interpreters are not downloaded (UV_PYTHON_DOWNLOADS={downloads}); install that Python, or change `requires-python` in `pyproject.toml` or `.python-version` to one that is installed"),
            BuildError::Hook(hook) => return hook.hint(),
            BuildError::VenvThroughLink { .. } => "UV_PROJECT_ENVIRONMENT names a directory behind a link in the application: point it at a directory of the application itself, or unset it for `.venv`".into(),
            BuildError::Spawn { .. } | BuildError::SyncFailed { .. } | BuildError::OwnVenv { .. } | BuildError::NoLegacySettings => return None,
        })
    }
}

/// Builds the app of `plan` and records the result in it.
pub fn build(plan: &mut Plan, env: &Env) -> Result<(), BuildError> {
    if plan.mode == Mode::Legacy {
        return legacy::build(plan, env);
    }
    let app_dir = plan.app_dir.clone();
    if !app_dir.join("pyproject.toml").is_file() {
        return Err(BuildError::NoPyproject(app_dir));
    }
    let started = Instant::now();
    let venv = plan.venv();
    plan::hook::run_if_set("CC_PRE_BUILD_HOOK", env, &app_dir, "uvbuild")?;
    own_venv(&venv, &app_dir, env)?;
    // uv builds where the plan says (the same place unless the plan came from elsewhere).
    let mut env = env.clone();
    env.set("UV_PROJECT_ENVIRONMENT", venv.display().to_string());
    let cache = ("UV_CACHE_DIR", plan.build.cache_dir.as_path());
    run_step(&plan.build.argv, Some(cache), &env, &app_dir)?;
    plan::hook::run_if_set("CC_POST_BUILD_HOOK", &env, &app_dir, "uvbuild")?;
    plan.build.result = Some(result(started, venv));
    Ok(())
}

/// What a build that succeeded adds to the plan.
fn result(started: Instant, venv: PathBuf) -> BuildResult {
    BuildResult {
        status: "ok".into(),
        duration_ms: started.elapsed().as_millis() as u64,
        python_version: python_version(&venv),
        venv,
    }
}

/// The deployment's venv is its own: the build never writes through a link. A `.venv` in
/// the application that is a link (committed, or made by a build hook) or a file is removed,
/// with a warning, and the build makes a real venv in its place; what it pointed to is left
/// as it was. A venv inside the application must not be reached through a linked directory
/// either. (One outside the application, `UV_PROJECT_ENVIRONMENT=/abs/dir`, is the user's
/// own choice.)
fn own_venv(venv: &Path, app_dir: &Path, env: &Env) -> Result<(), BuildError> {
    let Ok(relative) = venv.strip_prefix(app_dir) else {
        return Ok(());
    };
    if let Ok(meta) = venv.symlink_metadata() {
        if !meta.is_dir() {
            let what = match std::fs::read_link(venv) {
                Ok(target) => format!("a link to `{}`", target.display()),
                Err(_) => "a file".to_string(),
            };
            plan::report::say(
                "uvbuild",
                format_args!(
                    "warning: `{}` in the application is {what}: it is replaced by the deployment's own virtual environment, and what it pointed to is not written",
                    relative.display()
                ),
                env,
            );
            std::fs::remove_file(venv).map_err(|e| BuildError::OwnVenv {
                path: venv.to_path_buf(),
                reason: e.to_string(),
            })?;
        }
    }
    // The directories on the way, as far as they exist, must stay in the application.
    let real_app = app_dir.canonicalize().unwrap_or_else(|_| app_dir.into());
    if let Some(existing) = venv.ancestors().skip(1).find(|dir| dir.exists()) {
        let real = existing.canonicalize().unwrap_or_else(|_| existing.into());
        if !real.starts_with(&real_app) {
            return Err(BuildError::VenvThroughLink {
                venv: venv.to_path_buf(),
                target: real,
            });
        }
    }
    Ok(())
}

/// Runs a build step (`uv sync`, pip, `python -m venv`) in the app, with the kept cache when
/// it has one (the variable that points the tool at it, and the directory); its stdout and
/// stderr both go to our stderr (our stdout carries the plan), and stderr is kept to
/// recognise known failures.
fn run_step(
    argv: &[String],
    cache: Option<(&str, &Path)>,
    env: &Env,
    app_dir: &Path,
) -> Result<(), BuildError> {
    let command = argv.join(" ");
    let shown = cache
        .map(|(variable, dir)| format!(" ({variable}={})", dir.display()))
        .unwrap_or_default();
    plan::report::say(
        "uvbuild",
        format_args!("running `{command}` in {}{shown}", app_dir.display()),
        env,
    );
    let program = process::command::find_program(&argv[0], env.get("PATH").unwrap_or(""), app_dir)
        .map_err(|_| BuildError::UvNotFound(argv[0].clone()))?;
    let mut child = Command::new(program)
        .args(&argv[1..])
        .current_dir(app_dir)
        .env_clear()
        .envs(env.iter())
        .envs(cache)
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| BuildError::Spawn {
            command: command.clone(),
            reason: e.to_string(),
        })?;
    // Relayed as bytes, as they come: uv's output need not be UTF-8 (a path, a package's
    // message), and a line that is not must not end the relay.
    let mut kept = Vec::new();
    if let Some(mut stderr) = child.stderr.take() {
        let mut ours = std::io::stderr();
        let mut buffer = [0u8; 8192];
        loop {
            match stderr.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    let _ = ours.write_all(&buffer[..n]);
                    kept.extend_from_slice(&buffer[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
    let output = String::from_utf8_lossy(&kept);
    let status = child.wait().map_err(|e| BuildError::Spawn {
        command: command.clone(),
        reason: e.to_string(),
    })?;
    if status.success() {
        return Ok(());
    }
    if status.code() == Some(127) && output.contains("pyenv: uv: command not found") {
        return Err(BuildError::UvShimBroken(argv[0].clone()));
    }
    Err(
        recognise_failure(&output, env).unwrap_or(BuildError::SyncFailed {
            command,
            status: status.to_string(),
        }),
    )
}

/// The failures a user can fix and we can name, from uv's own words.
fn recognise_failure(uv_output: &str, env: &Env) -> Option<BuildError> {
    if uv_output.contains("needs to be updated, but `--locked` was provided") {
        return Some(BuildError::LockfileOutdated);
    }
    let no_python = [
        "No interpreter found for Python",
        "Failed to inspect Python interpreter",
        "pyenv: version",
    ];
    if no_python.iter().any(|m| uv_output.contains(m)) {
        return Some(BuildError::PythonMissing {
            downloads: env
                .get("UV_PYTHON_DOWNLOADS")
                .unwrap_or("automatic")
                .to_string(),
        });
    }
    None
}

/// The venv's Python version, from the `version_info` line uv writes in `pyvenv.cfg`.
fn python_version(venv: &Path) -> Option<String> {
    let cfg = std::fs::read_to_string(venv.join("pyvenv.cfg")).ok()?;
    cfg.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        matches!(key.trim(), "version_info" | "version").then(|| value.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_failures_are_recognised() {
        let env = Env::default();
        let out = "Resolved 16 packages in 244ms\nerror: The lockfile at `uv.lock` needs to be updated, but `--locked` was provided.\n";
        assert!(matches!(
            recognise_failure(out, &env),
            Some(BuildError::LockfileOutdated)
        ));
        let out = "error: No interpreter found for Python >=3.99 in managed installations or search path\n";
        assert!(matches!(
            recognise_failure(out, &env),
            Some(BuildError::PythonMissing { .. })
        ));
        assert!(recognise_failure("error: something else", &env).is_none());
    }

    #[test]
    fn python_version_from_pyvenv_cfg() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("pyvenv.cfg"),
            "home = /usr/bin\nimplementation = CPython\nversion_info = 3.11.7\n",
        )
        .unwrap();
        assert_eq!(python_version(dir.path()).as_deref(), Some("3.11.7"));
        assert_eq!(python_version(&dir.path().join("none")), None);
    }
}
