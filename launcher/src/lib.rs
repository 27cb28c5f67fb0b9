//! The launcher: work out exactly what one process of the plan needs (argv, working
//! directory, environment, rendered files, the pre-run hook), then replace this process with
//! it. No wrapper stays behind: the PID, the signals and the exit status are the process's own.

use plan::command::{find_program, shell_argv, ProgramError};
use plan::hook::HookError;
use plan::secret::{is_secret, REDACTED};
use plan::{Env, EnvValue, HopFile, Mode, Plan};
use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Which process of the plan to become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    App,
    Hop(String),
    /// A command given by hand after `--`.
    Command(Vec<String>),
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("the plan is in legacy mode ({0}): the platform would deploy it with its legacy Python backend, which uvdeploy does not run")]
    Legacy(String),
    #[error("the plan has no run command\n\nhint: set CC_PYTHON_UV_RUN_COMMAND (or CC_RUN_COMMAND), e.g. `uv run python app.py`, and make the plan again")]
    NoRunCommand,
    #[error("the run command is empty")]
    EmptyCommand,
    #[error("the plan has no hops, so there is no hop \"{0}\"\n\nhint: pipe the plan through `flowctl` first: `detect APP_DIR | uvbuild | flowctl > plan.json`")]
    NoHops(String),
    #[error("the plan has no hop \"{name}\" (its hops: {known})")]
    UnknownHop { name: String, known: String },
    #[error("hop \"{hop}\" needs {variable} in the environment, and it is not set")]
    MissingHopVariable { hop: String, variable: String },
    #[error("hop \"{hop}\" would write `{path}` inside the application directory, which uvdeploy never modifies")]
    FileInsideApp { hop: String, path: PathBuf },
    #[error("cannot write `{path}`: {reason}")]
    WriteFile { path: PathBuf, reason: String },
    #[error("command not found: `{command}` (searched PATH: {path}){hint}")]
    NotFound {
        command: String,
        path: String,
        hint: String,
    },
    #[error("`{0}` is not executable (chmod +x it, or run it through its interpreter)")]
    NotExecutable(PathBuf),
    #[error(transparent)]
    PreRunHook(#[from] HookError),
    #[error("the process that started the launcher is gone (--die-with-parent)")]
    ParentGone,
    #[error("cannot change to the working directory `{path}`: {reason}")]
    Chdir { path: PathBuf, reason: String },
    #[error("exec of `{path}` failed: {reason}")]
    Exec { path: PathBuf, reason: String },
}

impl LaunchError {
    /// The launcher's exit code: a failed hook passes its own status on.
    pub fn exit_code(&self) -> i32 {
        match self {
            LaunchError::PreRunHook(HookError::Failed { code, .. }) => *code,
            LaunchError::PreRunHook(HookError::NotRun { .. }) => 1,
            LaunchError::NotFound { .. } => 127,
            LaunchError::ParentGone => 1,
            LaunchError::NotExecutable(_) => 126,
            LaunchError::WriteFile { .. }
            | LaunchError::Exec { .. }
            | LaunchError::Chdir { .. } => 1,
            _ => plan::cli::exit::USAGE,
        }
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
}

/// Works out the launch of `target`. `plan` is required for the app and hops; a command by
/// hand takes the plan's directory and app port when there is one. `port` overrides `PORT`.
pub fn prepare(
    plan: Option<&Plan>,
    target: &Target,
    env: &Env,
    port: Option<u16>,
) -> Result<Launch, LaunchError> {
    let mut launch = Launch {
        argv: Vec::new(),
        cwd: plan
            .map(|p| p.app_dir.clone())
            .unwrap_or_else(|| std::env::current_dir().unwrap_or_else(|_| "/".into())),
        env: env.clone(),
        set: Vec::new(),
        files: Vec::new(),
        pre_run_hook: None,
    };
    let planned_port = match (target, plan) {
        (Target::Command(argv), _) => {
            launch.argv = argv.clone();
            plan.map(|p| p.ports.app)
        }
        (Target::App, Some(plan)) => Some(app_launch(plan, env, &mut launch)?),
        (Target::Hop(name), Some(plan)) => Some(hop_launch(plan, name, env, &mut launch)?),
        (Target::App | Target::Hop(_), None) => {
            unreachable!("main reads a plan for --app and --hop")
        }
    };
    if launch.argv.is_empty() {
        return Err(LaunchError::EmptyCommand);
    }
    if let Some(port) = port.or(planned_port) {
        set(&mut launch, "PORT", port.to_string());
    }
    Ok(launch)
}

/// The app: its run command (through the shell when it needs one), the kept uv cache and the
/// pre-run hook. Returns the port it must listen on.
fn app_launch(plan: &Plan, env: &Env, launch: &mut Launch) -> Result<u16, LaunchError> {
    if plan.mode == Mode::Legacy {
        return Err(LaunchError::Legacy(plan.reasons.join("; ")));
    }
    let run = plan.run.as_ref().ok_or(LaunchError::NoRunCommand)?;
    if run.command.trim().is_empty() {
        return Err(LaunchError::EmptyCommand);
    }
    launch.argv = match &run.argv {
        Some(argv) => argv.clone(),
        None => shell_argv(&run.command),
    };
    // `uv run` must find the packages the build put in the kept cache.
    if env.get("UV_CACHE_DIR").is_none() {
        set(
            launch,
            "UV_CACHE_DIR",
            plan.build.cache_dir.display().to_string(),
        );
    }
    launch.pre_run_hook = env.non_empty("CC_PRE_RUN_HOOK").map(str::to_string);
    Ok(plan.ports.app)
}

/// One hop: its argv, its variables (secrets taken from the environment by name) and its
/// files, which must stay outside the app. Returns the port it listens on.
fn hop_launch(plan: &Plan, name: &str, env: &Env, launch: &mut Launch) -> Result<u16, LaunchError> {
    let hops = plan
        .hops
        .as_ref()
        .ok_or_else(|| LaunchError::NoHops(name.to_string()))?;
    let hop = hops
        .iter()
        .find(|h| h.name == name)
        .ok_or_else(|| LaunchError::UnknownHop {
            name: name.to_string(),
            known: hops
                .iter()
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    if let Some(file) = hop.files.iter().find(|f| f.path.starts_with(&plan.app_dir)) {
        return Err(LaunchError::FileInsideApp {
            hop: hop.name.clone(),
            path: file.path.clone(),
        });
    }
    for (key, value) in &hop.env {
        let value = match value {
            EnvValue::Literal(v) => v.clone(),
            EnvValue::FromEnv { from_env } => env
                .non_empty(from_env)
                .ok_or_else(|| LaunchError::MissingHopVariable {
                    hop: hop.name.clone(),
                    variable: from_env.clone(),
                })?
                .to_string(),
        };
        set(launch, key, value);
    }
    launch.argv = hop.argv.clone();
    launch.files = hop.files.clone();
    Ok(hop.listen)
}

fn set(launch: &mut Launch, key: &str, value: String) {
    launch.env.set(key, value);
    launch.set.push(key.to_string());
}

/// What `--dry-run` prints: argv, working directory, the variables the launcher sets (secret
/// values redacted), the files it would write and the hook it would run.
pub fn describe(launch: &Launch) -> String {
    let mut out = format!(
        "argv: {}\ncwd: {}\n",
        shell_words::join(&launch.argv),
        launch.cwd.display()
    );
    for key in &launch.set {
        let value = launch.env.get(key).unwrap_or_default();
        let shown = if is_secret(key) { REDACTED } else { value };
        out.push_str(&format!("env: {key}={shown}\n"));
    }
    for file in &launch.files {
        out.push_str(&format!(
            "file: {} ({} bytes)\n",
            file.path.display(),
            file.content.len()
        ));
    }
    if let Some(hook) = &launch.pre_run_hook {
        out.push_str(&format!("pre-run hook: {hook}\n"));
    }
    plan::secret::redact(&out, &launch.env)
}

/// Asks the kernel to send SIGTERM to this process (and so to the program it becomes: the
/// setting survives exec) when the parent that started it dies, even by SIGKILL, so that a
/// supervisor killed outright leaves no orphan. `parent` is the PID read at start-up: if the
/// parent is already gone, there is nothing to wait for.
pub fn die_with_parent(parent: nix::unistd::Pid) -> Result<(), LaunchError> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM).map_err(|e| {
        LaunchError::Exec {
            path: "prctl(PR_SET_PDEATHSIG)".into(),
            reason: e.desc().to_string(),
        }
    })?;
    if nix::unistd::getppid() != parent {
        return Err(LaunchError::ParentGone);
    }
    Ok(())
}

/// Writes the hop's files, runs the pre-run hook, and replaces this process with the
/// command. Returns only on failure.
pub fn exec(launch: &Launch) -> LaunchError {
    match try_exec(launch) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

enum Never {}

fn try_exec(launch: &Launch) -> Result<Never, LaunchError> {
    for file in &launch.files {
        write_file(file)?;
    }
    std::env::set_current_dir(&launch.cwd).map_err(|e| LaunchError::Chdir {
        path: launch.cwd.clone(),
        reason: e.to_string(),
    })?;
    // Resolve before the hook runs, so a missing command fails fast.
    let program = resolve(
        &launch.argv[0],
        launch.env.get("PATH").unwrap_or(""),
        &launch.cwd,
    )?;
    if let Some(hook) = &launch.pre_run_hook {
        plan::hook::run(
            "CC_PRE_RUN_HOOK",
            hook,
            &launch.env,
            &launch.cwd,
            "launcher",
        )?;
    }
    let c =
        |s: &str| CString::new(s).unwrap_or_else(|_| CString::new(s.replace('\0', "")).unwrap());
    let path =
        CString::new(program.as_os_str().as_encoded_bytes()).map_err(|e| LaunchError::Exec {
            path: program.clone(),
            reason: e.to_string(),
        })?;
    let argv: Vec<CString> = launch.argv.iter().map(|a| c(a)).collect();
    let envp: Vec<CString> = launch
        .env
        .iter()
        .map(|(k, v)| c(&format!("{k}={v}")))
        .collect();
    let err = nix::unistd::execve(&path, &argv, &envp).unwrap_err();
    Err(LaunchError::Exec {
        path: program,
        reason: err.desc().to_string(),
    })
}

/// Files are written readable by everyone, in directories anyone can traverse: `varnishd`
/// reads its VCL after dropping privileges to its own user.
fn write_file(file: &HopFile) -> Result<(), LaunchError> {
    let err = |e: std::io::Error| LaunchError::WriteFile {
        path: file.path.clone(),
        reason: e.to_string(),
    };
    if let Some(dir) = file.path.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(err)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(err)?;
        }
    }
    std::fs::write(&file.path, &file.content).map_err(err)?;
    std::fs::set_permissions(&file.path, std::fs::Permissions::from_mode(0o644)).map_err(err)
}

/// Finds the program as `execvp` would, but says what went wrong in words.
pub fn resolve(command: &str, path_var: &str, cwd: &Path) -> Result<PathBuf, LaunchError> {
    find_program(command, path_var, cwd).map_err(|e| match e {
        ProgramError::NotExecutable(path) => LaunchError::NotExecutable(path),
        ProgramError::NotFound => LaunchError::NotFound {
            command: command.to_string(),
            path: if command.contains('/') {
                format!("not searched, `{command}` is a path")
            } else {
                path_var.to_string()
            },
            hint: install_hint(command),
        },
    })
}

/// How to get the programs a plan may name that are not part of uvdeploy.
fn install_hint(command: &str) -> String {
    let hint = match command {
        "redirectionio-agent" => "the Redirection.io agent is not installed: install it (https://redirection.io/documentation/developer-documentation/installation-of-the-agent) or remove redirectionio from the request flow",
        "varnishd" => "install Varnish (`apt-get install varnish`); varnishd lives in /usr/sbin",
        "uv" => "install uv (`pip install uv`)",
        "otoroshi-challenge" => "build the workspace (`cargo build --release`) and put target/release on PATH",
        _ => return String::new(),
    };
    format!("\n\nhint: {hint}")
}
