//! The launcher: work out exactly what one process of the plan needs (argv, working
//! directory, environment, rendered files, the pre-run hook), then replace this process with
//! it. No wrapper stays behind: the PID, the signals and the exit status are the process's own.
//! The one exception is a shell command that is more than one simple command (a list, a
//! pipeline, a background job): the shell must stay, and the launcher stays with it to
//! supervise ([`supervise`]).

pub mod supervise;

use plan::hook::HookError;
use plan::report::{exit, Failure};
use plan::secret::{is_secret_variable, REDACTED};
use plan::{Env, EnvValue, HopFile, Mode, Plan};
use process::command::{find_program, shell_argv, ProgramError};
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
        manage_tasks: Vec::new(),
        binds: None,
        supervise_shell: true,
    };
    let planned_port = match (target, plan) {
        (Target::Command(argv), _) => {
            launch.argv = argv.clone();
            plan.map(|p| p.ports.app)
        }
        (Target::Hook(name), _) => {
            if !RUN_HOOKS.contains(&name.as_str()) {
                return Err(LaunchError::UnknownHook(name.clone()));
            }
            // Nothing to run when the hook is not set: `main` says so by exiting 0.
            launch.argv = match env.non_empty(name) {
                Some(command) => vec!["/bin/sh".into(), "-c".into(), command.to_string()],
                None => Vec::new(),
            };
            launch.supervise_shell = false;
            return Ok(launch);
        }
        (Target::App, Some(plan)) => {
            let port = app_launch(plan, env, &mut launch)?;
            launch.binds = Some((port, "the app".into()));
            Some(port)
        }
        (Target::Hop(name), Some(plan)) => {
            let port = hop_launch(plan, name, env, &mut launch)?;
            launch.binds = Some((port, format!("hop {name}")));
            Some(port)
        }
        (Target::Worker(name), Some(plan)) => {
            worker_launch(plan, name, env, &mut launch)?;
            None
        }
        (Target::App | Target::Hop(_) | Target::Worker(_), None) => {
            unreachable!("main reads a plan for --app, --hop and --worker")
        }
    };
    if launch.argv.is_empty() {
        return Err(LaunchError::EmptyCommand);
    }
    // The secrets the plan holds by name only, written back from this environment: quoted
    // for the shell in a shell's script, as they are in a word.
    let shell = launch.argv.len() == 3 && launch.argv[0] == "/bin/sh" && launch.argv[1] == "-c";
    launch.argv = launch
        .argv
        .iter()
        .enumerate()
        .map(|(i, word)| match i {
            2 if shell => plan::secret::reveal_in_shell(word, env),
            _ => plan::secret::reveal(word, env),
        })
        .collect::<Result<_, _>>()?;
    if let Some(port) = port.or(planned_port) {
        set(&mut launch, "PORT", port.to_string());
    }
    Ok(launch)
}

/// The app: its run command (through the shell when it needs one), the kept uv cache and the
/// pre-run hook. Returns the port it must listen on.
fn app_launch(plan: &Plan, env: &Env, launch: &mut Launch) -> Result<u16, LaunchError> {
    let run = plan.run.as_ref().ok_or(LaunchError::NoRunCommand)?;
    if run.command.trim().is_empty() {
        return Err(LaunchError::EmptyCommand);
    }
    launch.argv = match &run.argv {
        Some(argv) => argv.clone(),
        None => shell_argv(&run.command),
    };
    app_environment(plan, env, launch);
    if plan.mode == Mode::Legacy {
        launch.manage_tasks = plan
            .legacy
            .as_ref()
            .map(|l| l.manage_tasks.clone())
            .unwrap_or_default();
    }
    launch.pre_run_hook = env.non_empty("CC_PRE_RUN_HOOK").map(str::to_string);
    Ok(plan.ports.app)
}

/// What the app's processes (the app, its workers) have on top of the environment: the venv
/// in legacy mode; in uv mode the kept cache, where `uv run` finds what the build put.
fn app_environment(plan: &Plan, env: &Env, launch: &mut Launch) {
    if plan.mode == Mode::Legacy {
        use_venv(plan, env, launch);
    } else if env.get("UV_CACHE_DIR").is_none() {
        set(
            launch,
            "UV_CACHE_DIR",
            plan.build.cache_dir.display().to_string(),
        );
    }
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
    for file in &mut launch.files {
        for variable in &file.htpasswd_from_env {
            let pair = env
                .non_empty(variable)
                .ok_or_else(|| LaunchError::MissingHopVariable {
                    hop: hop.name.clone(),
                    variable: variable.clone(),
                })?;
            let (login, password) = plan::basic_auth::split_variable(variable, pair)?;
            file.content.push_str(&htpasswd_line(login, password));
        }
    }
    Ok(hop.listen)
}

/// One user of Nginx's password file. Hashed (`{SHA}`, which Nginx reads), not `{PLAIN}`:
/// Nginx ends a password at a `:`, and a pair's password may hold one.
fn htpasswd_line(login: &str, password: &str) -> String {
    use base64::Engine;
    use sha1::Digest;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(password));
    format!("{login}:{{SHA}}{hash}\n")
}

/// Legacy mode runs everything in the venv the build made, where the plan says
/// (`build.venv`): its `bin` first on PATH, as an activated venv would have it.
fn use_venv(plan: &Plan, env: &Env, launch: &mut Launch) {
    let venv = plan.venv();
    let path = match env.non_empty("PATH") {
        Some(path) => format!("{}:{path}", venv.join("bin").display()),
        None => venv.join("bin").display().to_string(),
    };
    set(launch, "PATH", path);
    set(launch, "VIRTUAL_ENV", venv.display().to_string());
}

/// A worker (`CC_WORKER_COMMAND...`, legacy mode's Celery): in the app's directory, with the
/// app's environment (the venv in legacy mode, the kept uv cache in uv mode), `PORT` aside:
/// it listens nowhere.
fn worker_launch(
    plan: &Plan,
    name: &str,
    env: &Env,
    launch: &mut Launch,
) -> Result<(), LaunchError> {
    let worker = plan
        .workers
        .iter()
        .find(|w| w.name == name)
        .ok_or_else(|| LaunchError::UnknownWorker {
            name: name.to_string(),
            known: if plan.workers.is_empty() {
                "none".into()
            } else {
                plan.workers
                    .iter()
                    .map(|w| w.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })?;
    if worker.command.trim().is_empty() {
        return Err(LaunchError::EmptyCommand);
    }
    launch.argv = match &worker.argv {
        Some(argv) => argv.clone(),
        None => shell_argv(&worker.command),
    };
    app_environment(plan, env, launch);
    launch.env.remove("PORT");
    Ok(())
}

fn set(launch: &mut Launch, key: &str, value: String) {
    launch.env.set(key, value);
    launch.set.push(key.to_string());
}

/// What `--dry-run` prints: argv, working directory, the variables the launcher sets (secret
/// values redacted), the files it would write and the hook it would run.
pub fn describe(launch: &Launch) -> String {
    // Secrets by name, however a word spells them (a shell's script quotes them).
    let shown: Vec<String> = launch
        .argv
        .iter()
        .map(|word| {
            let word = plan::secret::hide(word, &launch.env);
            plan::secret::hide_in_shell(&word, &launch.env)
        })
        .collect();
    let mut out = format!(
        "argv: {}\ncwd: {}\n",
        shell_words::join(&shown),
        launch.cwd.display()
    );
    for key in &launch.set {
        let value = launch.env.get(key).unwrap_or_default();
        let shown = if is_secret_variable(key, value) {
            REDACTED
        } else {
            value
        };
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
        let hook = plan::secret::hide_in_shell(hook, &launch.env);
        out.push_str(&format!("pre-run hook: {hook}\n"));
    }
    for task in &launch.manage_tasks {
        out.push_str(&format!("manage task: python manage.py {task}\n"));
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
/// command. Returns only on failure, or when the shell had to stay (a list, a pipeline, a
/// background job): then with the exit status the launcher must end with.
pub fn exec(launch: &Launch) -> Result<u8, LaunchError> {
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
    if let Some((port, what)) = &launch.binds {
        check_port_free(*port, what)?;
    }
    if let Some(hook) = &launch.pre_run_hook {
        plan::hook::run(
            "CC_PRE_RUN_HOOK",
            hook,
            &launch.env,
            &launch.cwd,
            "launcher",
        )?;
    }
    for task in &launch.manage_tasks {
        manage_task(task, launch)?;
    }
    if launch.supervise_shell && process::command::shell_stays(&launch.argv) {
        // A list, a pipeline, a background job: the shell stays, so this process stays too,
        // in its place, to pass signals on and report how it all ended.
        return Ok(supervise::run(&program, launch));
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

/// `python manage.py TASK` (the task's words split as a shell would), in the app and its venv;
/// a failure fails the deployment, as on the platform.
fn manage_task(task: &str, launch: &Launch) -> Result<(), LaunchError> {
    plan::report::say(
        "launcher",
        format_args!("running manage.py task: {task}"),
        &launch.env,
    );
    // `python manage.py` and the task's words, as the pod's init containers run them too.
    let argv = plan::legacy::manage_task_argv(task);
    let failed = |status: String, code: u8| LaunchError::ManageTask {
        task: task.to_string(),
        status,
        code,
    };
    let python = resolve("python", launch.env.get("PATH").unwrap_or(""), &launch.cwd)?;
    let status = std::process::Command::new(python)
        .args(&argv[1..])
        .current_dir(&launch.cwd)
        .env_clear()
        .envs(launch.env.iter())
        .stdin(std::process::Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| failed(e.to_string(), exit::FAILED))?;
    if status.success() {
        return Ok(());
    }
    let code = status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(exit::FAILED)
        .max(1);
    Err(failed(status.to_string(), code))
}

/// Files are written readable by everyone, in directories anyone can traverse: `varnishd`
/// reads its VCL after dropping privileges to its own user. A password file is the owner's.
/// They are never written through a symbolic link, nor into a directory another user owns:
/// under `/tmp`, another user could have prepared either, to have a root process write
/// elsewhere.
fn write_file(file: &HopFile) -> Result<(), LaunchError> {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let err = |e: std::io::Error| LaunchError::WriteFile {
        path: file.path.clone(),
        reason: e.to_string(),
    };
    let unsafe_dir = |reason: &str| LaunchError::WriteFile {
        path: file.path.clone(),
        reason: reason.to_string(),
    };
    if let Some(dir) = file.path.parent() {
        match std::fs::symlink_metadata(dir) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(unsafe_dir("its directory is a symbolic link"))
            }
            Ok(meta) if meta.uid() != nix::unistd::geteuid().as_raw() => {
                return Err(unsafe_dir("its directory belongs to another user"))
            }
            Ok(_) => {}
            Err(_) => {
                std::fs::create_dir_all(dir).map_err(err)?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                    .map_err(err)?;
            }
        }
    }
    // Passwords (an htpasswd) are for the hop alone, which runs as this user (Nginx's
    // workers too: see flowctl's `user root;`).
    let mode = if file.htpasswd_from_env.is_empty() {
        0o644
    } else {
        0o600
    };
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&file.path)
        .map_err(err)?;
    out.write_all(file.content.as_bytes()).map_err(err)?;
    std::fs::set_permissions(&file.path, std::fs::Permissions::from_mode(mode)).map_err(err)
}

/// The port must be free now, just before the process binds it: a busy port fails here,
/// naming what holds it, rather than as the app's own bind error.
fn check_port_free(port: u16, what: &str) -> Result<(), LaunchError> {
    if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
        return Ok(());
    }
    // A failed bind is not a listener: connections closed moments ago (TIME-WAIT) hold the
    // port too, for a minute, and the process may bind otherwise than this check (another
    // address, SO_REUSEPORT). Only a listening socket makes the port taken; without one the
    // process's own bind decides. (Without `/proc`, the failed bind is all there is.)
    let table = process::listeners();
    if table
        .as_ref()
        .is_some_and(|table| !table.iter().any(|l| l.port == port))
    {
        return Ok(());
    }
    let table = table.unwrap_or_default();
    let holder = process::holder_of(port, &table)
        .map(|(pid, command)| format!(", by PID {pid}: {command}"))
        .unwrap_or_default();
    Err(LaunchError::PortInUse {
        port,
        what: what.to_string(),
        holder,
    })
}

/// Makes this process the leader of a new process group and records its PID in `file`, so
/// that a supervisor of your own can stop it and everything it starts, whatever happens to
/// the supervisor itself (scripts/deploy does not use it: uvsupervise makes the groups).
pub fn lead_group(file: &Path) -> Result<(), LaunchError> {
    use std::io::Write;
    let err = |e: String| LaunchError::Group(e);
    nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0))
        .map_err(|e| err(e.desc().to_string()))?;
    let mut out = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(file)
        .map_err(|e| err(format!("{}: {e}", file.display())))?;
    // One write of the whole line: with O_APPEND it cannot interleave with another
    // launcher's (`writeln!` may write the number and the newline separately).
    out.write_all(format!("{}\n", std::process::id()).as_bytes())
        .map_err(|e| err(format!("{}: {e}", file.display())))
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
        },
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use plan::{Build, Environment, HealthCheck, Hop, Ports, RequestFlow, Run, RunSource, SCHEMA};

    fn plan(command: &str, argv: Option<&[&str]>) -> Plan {
        Plan {
            schema: SCHEMA,
            app_dir: "/srv/app".into(),
            mode: Mode::Uv,
            reasons: vec![],
            environment: Environment::Production,
            build: Build {
                argv: vec!["uv".into()],
                cache_dir: "/cache/uv".into(),
                venv: None,
                result: None,
            },
            run: Some(Run {
                source: RunSource::CcPythonUvRunCommand,
                command: command.into(),
                argv: argv.map(|a| a.iter().map(|w| w.to_string()).collect()),
            }),
            ports: Ports {
                public: 8080,
                app: 9000,
            },
            ignored: vec![],
            warnings: vec![],
            health_check: HealthCheck {
                source: "default".into(),
                paths: vec!["/".into()],
            },
            request_flow: RequestFlow {
                source: "auto".into(),
                blocked: false,
                middlewares: vec![],
            },
            source: None,
            legacy: None,
            workers: vec![],
            crons: vec![],
            addons: vec![],
            state_dir: None,
            hops: Some(vec![Hop {
                name: "otoroshi-challenge".into(),
                listen: 8080,
                forward: Some(9000),
                argv: vec!["otoroshi-challenge".into()],
                env: [(
                    "OTOROSHI_CHALLENGE_SECRET".to_string(),
                    EnvValue::FromEnv {
                        from_env: "OTOROSHI_CHALLENGE_SECRET".into(),
                    },
                )]
                .into_iter()
                .collect(),
                files: vec![HopFile::new("/state/x.conf".into(), "x".into())],
            }]),
            extra: Default::default(),
        }
    }

    fn env(vars: &[(&str, &str)]) -> Env {
        vars.iter().copied().collect()
    }

    /// The app's argv for each form of run command.
    #[test]
    fn the_app_runs_its_command_in_the_form_it_needs() {
        /// (run command, its words when it needs no shell, the argv launched)
        type Case<'a> = (&'a str, Option<&'a [&'a str]>, &'a [&'a str]);
        let cases: &[Case] = &[
            (
                "uv run app",
                Some(&["uv", "run", "app"]),
                &["uv", "run", "app"],
            ),
            (
                "FOO=1 uv run app",
                None,
                &["/bin/sh", "-c", "FOO=1 exec uv run app"],
            ),
            (
                "migrate && serve",
                None,
                &["/bin/sh", "-c", "migrate && serve"],
            ),
            (
                "serve --token ${{API_TOKEN}}",
                None,
                &["/bin/sh", "-c", "exec serve --token s3cr3t-value"],
            ),
        ];
        let vars = env(&[
            ("API_TOKEN", "s3cr3t-value"),
            ("CC_PRE_RUN_HOOK", "echo hi"),
        ]);
        for (command, argv, expected) in cases {
            let launch = prepare(Some(&plan(command, *argv)), &Target::App, &vars, None).unwrap();
            assert_eq!(&launch.argv, expected, "{command}");
            assert_eq!(launch.cwd, Path::new("/srv/app"));
            assert_eq!(launch.env.get("PORT"), Some("9000"));
            assert_eq!(launch.env.get("UV_CACHE_DIR"), Some("/cache/uv"));
            assert_eq!(launch.pre_run_hook.as_deref(), Some("echo hi"));
            assert_eq!(launch.binds, Some((9000, "the app".into())));
        }
        let missing = prepare(
            Some(&plan("serve ${{API_TOKEN}}", None)),
            &Target::App,
            &Env::default(),
            None,
        );
        assert!(matches!(missing, Err(LaunchError::Secret(_))));
    }

    #[test]
    fn a_hop_takes_its_secret_by_name_and_describe_never_shows_it() {
        let vars = env(&[("OTOROSHI_CHALLENGE_SECRET", "hunter2-secret")]);
        let hop = Target::Hop("otoroshi-challenge".into());
        let launch = prepare(Some(&plan("x", Some(&["x"]))), &hop, &vars, Some(18080)).unwrap();
        assert_eq!(launch.env.get("PORT"), Some("18080"));
        assert_eq!(
            launch.env.get("OTOROSHI_CHALLENGE_SECRET"),
            Some("hunter2-secret")
        );
        assert_eq!(
            describe(&launch),
            "argv: otoroshi-challenge\ncwd: /srv/app\nenv: OTOROSHI_CHALLENGE_SECRET=***\nenv: PORT=18080\nfile: /state/x.conf (1 bytes)\n"
        );
        assert!(matches!(
            prepare(Some(&plan("x", Some(&["x"]))), &hop, &Env::default(), None),
            Err(LaunchError::MissingHopVariable { .. })
        ));
        assert!(matches!(
            prepare(
                Some(&plan("x", Some(&["x"]))),
                &Target::Hop("varnish".into()),
                &vars,
                None
            ),
            Err(LaunchError::UnknownHop { .. })
        ));
    }

    #[test]
    fn a_run_hook_runs_only_when_set() {
        let p = plan("x", Some(&["x"]));
        let hook = Target::Hook("CC_RUN_SUCCEEDED_HOOK".into());
        assert!(prepare(Some(&p), &hook, &Env::default(), None)
            .unwrap()
            .argv
            .is_empty());
        let set = env(&[("CC_RUN_SUCCEEDED_HOOK", "notify ok")]);
        assert_eq!(
            prepare(Some(&p), &hook, &set, None).unwrap().argv,
            ["/bin/sh", "-c", "notify ok"]
        );
        assert!(matches!(
            prepare(
                Some(&p),
                &Target::Hook("CC_PRE_BUILD_HOOK".into()),
                &set,
                None
            ),
            Err(LaunchError::UnknownHook(_))
        ));
    }

    /// Legacy mode: the app server and the workers run in the venv, after the manage tasks.
    #[test]
    fn legacy_mode_runs_in_the_venv_after_the_manage_tasks() {
        let mut legacy = plan(
            "uwsgi --module app:app",
            Some(&["uwsgi", "--module", "app:app"]),
        );
        legacy.mode = Mode::Legacy;
        legacy.legacy = Some(plan::Legacy {
            python_version: "3".into(),
            requirements: Some("requirements.txt".into()),
            setup_py_goal: None,
            backend: Some(plan::Backend::Uwsgi),
            module: Some("app:app".into()),
            manage_tasks: vec!["migrate".into()],
            // A plan made before `workers`: Celery was legacy mode's.
            workers: vec![plan::legacy::LegacyWorker {
                name: "celery".into(),
                argv: vec![
                    "celery".into(),
                    "--app".into(),
                    "tasks".into(),
                    "worker".into(),
                ],
            }],
            needs: vec![],
            nginx: plan::Nginx {
                static_files: None,
                read_timeout: 300,
                gzip_types: None,
                basic_auth_env: vec![],
                proxy_buffers: None,
                proxy_buffer_size: None,
                intercept_errors: false,
            },
            workspace_member: None,
        });
        legacy.migrate();
        let env: Env = [("PATH", "/usr/bin")].into_iter().collect();
        let app = prepare(Some(&legacy), &Target::App, &env, None).unwrap();
        assert_eq!(
            describe(&app),
            "argv: uwsgi --module app:app\ncwd: /srv/app\nenv: PATH=/srv/app/.venv/bin:/usr/bin\nenv: VIRTUAL_ENV=/srv/app/.venv\nenv: PORT=9000\nmanage task: python manage.py migrate\n"
        );
        let worker = prepare(Some(&legacy), &Target::Worker("celery".into()), &env, None).unwrap();
        assert_eq!(worker.argv, ["celery", "--app", "tasks", "worker"]);
        assert_eq!(worker.env.get("PATH"), Some("/srv/app/.venv/bin:/usr/bin"));
        assert_eq!(worker.binds, None);
        assert!(worker.manage_tasks.is_empty());
        // The venv is where the plan says.
        legacy.build.venv = Some("/srv/app/env".into());
        let app = prepare(Some(&legacy), &Target::App, &env, None).unwrap();
        assert_eq!(app.env.get("PATH"), Some("/srv/app/env/bin:/usr/bin"));
        assert_eq!(app.env.get("VIRTUAL_ENV"), Some("/srv/app/env"));
    }

    /// uv mode: a worker runs in the app with the kept uv cache, as the app does, through the
    /// shell when it needs one, and without PORT (it listens nowhere).
    #[test]
    fn a_worker_runs_in_the_app_with_the_apps_environment_but_port() {
        let mut p = plan(
            "uv run python app.py",
            Some(&["uv", "run", "python", "app.py"]),
        );
        p.workers = vec![
            plan::Worker {
                name: "worker-0".into(),
                source: "CC_WORKER_COMMAND".into(),
                command: "uv run python worker.py".into(),
                argv: Some(vec![
                    "uv".into(),
                    "run".into(),
                    "python".into(),
                    "worker.py".into(),
                ]),
                restart: plan::Restart::OnFailure,
                restart_delay_ms: 1000,
            },
            plan::Worker {
                name: "worker-1".into(),
                source: "CC_WORKER_COMMAND_1".into(),
                command: "python a.py | tee out".into(),
                argv: None,
                restart: plan::Restart::OnFailure,
                restart_delay_ms: 1000,
            },
        ];
        let env: Env = [("PATH", "/usr/bin"), ("PORT", "8080")]
            .into_iter()
            .collect();
        let worker = prepare(Some(&p), &Target::Worker("worker-0".into()), &env, None).unwrap();
        assert_eq!(
            describe(&worker),
            format!(
                "argv: uv run python worker.py\ncwd: /srv/app\nenv: UV_CACHE_DIR={}\n",
                p.build.cache_dir.display()
            )
        );
        assert_eq!(worker.env.get("PORT"), None);
        let shell = prepare(Some(&p), &Target::Worker("worker-1".into()), &env, None).unwrap();
        assert_eq!(shell.argv[..2], ["/bin/sh", "-c"]);
        let unknown =
            prepare(Some(&p), &Target::Worker("worker-9".into()), &env, None).unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "the plan has no worker \"worker-9\" (its workers: worker-0, worker-1)"
        );
    }
}
