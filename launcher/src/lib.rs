//! The launcher: work out exactly what one process of the plan needs (argv, working
//! directory, environment, rendered files, the pre-run hook), then replace this process with
//! it. No wrapper stays behind: the PID, the signals and the exit status are the process's own.
//! The one exception is a shell command that is more than one simple command (a list, a
//! pipeline, a background job): the shell must stay, and the launcher stays with it to
//! supervise ([`supervise`]).
//!
//! - `prepare`: what the process needs, from the plan and the environment, and `--dry-run`'s
//!   account of it.
//! - `exec`: becoming the process: the pre-run hook, the manage tasks, the port check, `execve`.
//! - `files`: writing the files a hop reads, safely.

mod exec;
mod files;
mod prepare;
pub mod supervise;

pub use exec::{die_with_parent, exec, lead_group, resolve};
pub use prepare::{describe, prepare};

use plan::hook::HookError;
use plan::report::{exit, Failure};
use plan::{Env, HopFile};
use std::path::PathBuf;

/// Which process of the plan to become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    App,
    Hop(String),
    /// A command given by hand after `--`.
    Command(Vec<String>),
    /// One of the platform's run hooks (`CC_RUN_SUCCEEDED_HOOK`, `CC_RUN_FAILED_HOOK`), run
    /// in the app when it is set.
    Hook(String),
    /// A process beside the app (`CC_WORKER_COMMAND...`, legacy mode's Celery), in the app's environment.
    Worker(String),
}

/// The hooks `--hook` runs: the others run inside the tools (build hooks in `uvbuild`, the
/// pre-run hook in `launcher --app`).
pub const RUN_HOOKS: [&str; 2] = ["CC_RUN_SUCCEEDED_HOOK", "CC_RUN_FAILED_HOOK"];

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("the plan has no run command")]
    NoRunCommand,
    #[error("the plan has no worker \"{name}\" (its workers: {known})")]
    UnknownWorker { name: String, known: String },
    #[error("CC_PYTHON_MANAGE_TASKS: `python manage.py {task}` failed ({status})")]
    ManageTask {
        task: String,
        status: String,
        code: u8,
    },
    #[error("the run command is empty")]
    EmptyCommand,
    #[error("the plan has no hops, so there is no hop \"{0}\"")]
    NoHops(String),
    #[error("the plan has no hop \"{name}\" (its hops: {known})")]
    UnknownHop { name: String, known: String },
    #[error("--hook {0}: not a run hook (known: CC_RUN_SUCCEEDED_HOOK, CC_RUN_FAILED_HOOK)")]
    UnknownHook(String),
    #[error("hop \"{hop}\" needs {variable} in the environment, and it is not set")]
    MissingHopVariable { hop: String, variable: String },
    #[error("hop \"{hop}\" would write `{path}` inside the application directory, which uvdeploy never modifies")]
    FileInsideApp { hop: String, path: PathBuf },
    #[error("cannot write `{path}`: {reason}")]
    WriteFile { path: PathBuf, reason: String },
    #[error("port {port} ({what}) is already in use on this machine{holder}")]
    PortInUse {
        port: u16,
        what: String,
        holder: String,
    },
    #[error("command not found: `{command}` (searched PATH: {path})")]
    NotFound { command: String, path: String },
    #[error("`{0}` is not executable")]
    NotExecutable(PathBuf),
    #[error(transparent)]
    PreRunHook(#[from] HookError),
    #[error("the process that started the launcher is gone (--die-with-parent)")]
    ParentGone,
    #[error("cannot change to the working directory `{path}`: {reason}")]
    Chdir { path: PathBuf, reason: String },
    #[error("exec of `{path}` failed: {reason}")]
    Exec { path: PathBuf, reason: String },
    #[error("cannot set up the process group: {0}")]
    Group(String),
    #[error(transparent)]
    Secret(#[from] plan::secret::MissingSecret),
    #[error(transparent)]
    BasicAuth(#[from] plan::basic_auth::BadBasicAuth),
}

impl Failure for LaunchError {
    /// Usage and configuration errors exit 2; a command that cannot run, as the shell says
    /// it (127 not found, 126 not executable); a failed hook passes its own status on.
    fn exit_code(&self) -> u8 {
        match self {
            LaunchError::PreRunHook(hook) => hook.exit_code(),
            LaunchError::ManageTask { code, .. } => *code,
            LaunchError::NotFound { .. } => 127,
            LaunchError::NotExecutable(_) => 126,
            LaunchError::ParentGone
            | LaunchError::PortInUse { .. }
            | LaunchError::WriteFile { .. }
            | LaunchError::Exec { .. }
            | LaunchError::Group(_)
            | LaunchError::Chdir { .. } => exit::FAILED,
            _ => exit::USAGE,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            LaunchError::NoRunCommand => "set CC_PYTHON_UV_RUN_COMMAND (or CC_RUN_COMMAND), e.g. `uv run python app.py`, or in legacy mode CC_PYTHON_MODULE (`module:app`), and make the plan again".into(),
            LaunchError::NoHops(_) => "pipe the plan through `flowctl` first: `detect APP_DIR | uvbuild | flowctl > plan.json`".into(),
            LaunchError::PortInUse { .. } => "stop what listens there, or shift the chain with `--public-port` and `--app-port`".into(),
            LaunchError::NotExecutable(path) => format!("`chmod +x {}`, or run it through its interpreter", path.display()),
            LaunchError::NotFound { command, .. } => return install_hint(command),
            LaunchError::PreRunHook(hook) => return hook.hint(),
            LaunchError::Secret(secret) => return secret.hint(),
            _ => return None,
        })
    }
}

/// Everything the process needs, worked out before anything runs (and all `--dry-run` shows).
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    /// The process's whole environment.
    pub env: Env,
    /// Variables the launcher set on top of its own environment, for `--dry-run`.
    pub set: Vec<String>,
    pub files: Vec<HopFile>,
    /// `CC_PRE_RUN_HOOK`, for the app only.
    pub pre_run_hook: Option<String>,
    /// Legacy mode's `CC_PYTHON_MANAGE_TASKS`, run after the pre-run hook (app only).
    pub manage_tasks: Vec<String>,
    /// The port the process will bind, checked free just before it starts, and what it is.
    pub binds: Option<(u16, String)>,
    /// Whether a shell that must stay is supervised in place (its leftovers a failed start).
    /// Not for a run hook: a daemon it starts is the deployment's to stop, like any other.
    pub supervise_shell: bool,
}

/// How to get the programs a plan may name that are not part of uvdeploy.
fn install_hint(command: &str) -> Option<String> {
    Some(match command {
        "redirectionio-agent" => "the Redirection.io agent is not installed: install it (https://redirection.io/documentation/developer-documentation/installation-of-the-agent) or remove redirectionio from the request flow",
        "varnishd" => "install Varnish (`apt-get install varnish`); varnishd lives in /usr/sbin",
        "uv" => "install uv (`pip install uv`)",
        "otoroshi-challenge" => "build the workspace (`cargo build --release`) and put target/release on PATH",
        "nginx" => "install Nginx (`apt-get install nginx-light`); it lives in /usr/sbin",
        "uwsgi" => "install uWSGI (`apt-get install uwsgi-core uwsgi-plugin-python3`), or add `uwsgi` to requirements.txt",
        "gunicorn" | "uvicorn" | "daphne" | "celery" => return Some(format!("add `{command}` to requirements.txt")),
        _ => return None,
    }.to_string())
}
