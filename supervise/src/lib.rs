//! `uvsupervise`: runs a deployment, start to end. The build steps (`checkout`, then
//! `detect | uvbuild | flowctl` into the plan), every hop, the app and its workers (each
//! through `launcher`), the run hooks, the health check, then supervision until a signal or
//! a process's end. Everything it starts leads a process group of its own and is stopped, and
//! reaped, however the deployment ends ([`children`]); each process's lines reach stderr behind
//! its name ([`prefix`]); `deploy.json` sums it up for scripts and CI ([`summary`]).
//!
//! It runs the build steps itself, rather than being handed a plan a shell made, so that one
//! process owns the deployment from its first step: a signal is handled in every phase (a
//! shell cannot trap one that was ignored when it started), and each step is timed.

pub mod addon;
pub mod children;
pub mod crons;
mod deployment;
pub mod front;
pub mod lock;
pub mod platform;
pub mod prefix;
pub mod redeploy;
pub mod summary;
pub mod watchdog;
pub mod workers;

use children::Children;
use deployment::Deployment;
use plan::cli::{EnvArgs, PortArgs};
use plan::report::Message;
use plan::Env;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the processes have to stop after TERM, before KILL, unless `--grace` says.
pub const DEFAULT_GRACE: Duration = process::STOP_GRACE;

/// The tools a deployment runs.
const TOOLS: [&str; 6] = [
    "checkout",
    "detect",
    "uvbuild",
    "flowctl",
    "launcher",
    "healthcheck",
];

/// Deploy APP_DIR locally as the platform would: the commit copied, built, the proxy chain
/// planned, every hop, the app and its workers started, the health check, then supervision
/// in the foreground until TERM, INT or HUP (any number, in any phase), or until a process
/// ends.
///
/// Exit status: 0 stopped on request (or, with --check, healthy and the smoke command
/// passed); 1 the health check failed, a process died, or the smoke command failed; 2 bad
/// usage or configuration; the build's own status when a build step fails.
#[derive(Debug, clap::Parser)]
#[command(
    name = "uvsupervise",
    bin_name = "uvdeploy deploy",
    version,
    after_help = "REDEPLOYS: deploying an app that is deployed here already (the same directory) asks \
        the running deployment to deploy again: the new commit is built beside the old, its \
        instances start on ports of their own and are health-checked; when all pass, the front \
        (Sōzu) moves to them and the old instances finish their requests and stop; when one \
        fails, the old serve on and this exits 1. This command shows the redeploy and returns \
        with its verdict; Ctrl-C gives it up. `uvdeploy status` says what serves."
)]
pub struct Options {
    #[command(flatten)]
    pub env: EnvArgs,
    #[command(flatten)]
    pub ports: PortArgs,
    /// Where the plan, the rendered files, the copy and deploy.json go (a new private directory
    /// under TMPDIR by default, removed after a clean stop).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Keep the state directory after a clean stop.
    #[arg(long)]
    pub keep_state: bool,
    /// Deploy the files as they are (tracked and untracked) instead of the commit.
    #[arg(long)]
    pub working_tree: bool,
    /// How long the health check waits for the app.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration)]
    pub timeout: Duration,
    /// CI mode: deploy, give the verdict, run the smoke command when healthy, stop
    /// everything; exit 0 only when healthy and the smoke command passed.
    #[arg(long)]
    pub check: bool,
    /// With --check: a shell command run once the deployment is healthy, with UVDEPLOY_URL
    /// (the public URL) in its environment and the tools (`otoroshi-challenge`) on its PATH.
    #[arg(long, value_name = "COMMAND", requires = "check")]
    pub smoke: Option<String>,
    /// Show the processes' output as it is, escape sequences included (by default, control
    /// characters are shown as `^[` and never reach the terminal).
    #[arg(long)]
    pub raw_output: bool,
    /// How long processes have to stop after TERM before KILL, in seconds (fractions allowed).
    #[arg(long, value_name = "SECONDS", env = "UVDEPLOY_GRACE_SECONDS", value_parser = grace_seconds)]
    pub grace: Option<Duration>,
    /// Run a local add-on server for the app, before the build, and give every process its
    /// variables as the platform's add-on does (`POSTGRESQL_ADDON_URI`, `MYSQL_ADDON_URI`,
    /// `REDIS_URL`...), replacing any given; its data is kept per app (`uvdeploy addons`).
    /// Repeatable.
    #[arg(long = "addon", value_name = "KIND")]
    pub addons: Vec<addon::Kind>,
    /// How many instances run the app behind the front, round robin: each its own chain,
    /// app, workers and crons, `INSTANCE_NUMBER` 0 to N-1 (needs the front) [default: 1, or
    /// as many as serve, for a redeploy].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=16))]
    pub instances: Option<u32>,
    /// The front on the public port: `sozu`, the platform's reverse proxy (redeploys without
    /// a failed request, several instances; each instance's chain on ports of its own), or
    /// `none` (the chain on the public port itself; a redeploy is refused while it runs)
    /// [default: sozu when it is on PATH, else none].
    #[arg(long, value_enum, value_name = "FRONT")]
    pub front: Option<FrontChoice>,
    /// The application's directory (the current directory by default). Deploying an app that
    /// is deployed here already redeploys it (REDEPLOYS, below).
    #[arg(value_name = "APP_DIR")]
    pub app_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FrontChoice {
    Sozu,
    None,
}

fn duration(text: &str) -> Result<Duration, String> {
    plan::cli::parse_duration(text)
}

fn grace_seconds(text: &str) -> Result<Duration, String> {
    // Set but empty (`UVDEPLOY_GRACE_SECONDS=`) is not set.
    if text.trim().is_empty() {
        return Ok(DEFAULT_GRACE);
    }
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 3600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("`{text}` is not a number of seconds from 0 to 3600 (e.g. 10, 0.5)"))
}

/// `2.5s`, `10s`, `750ms`: a duration as the messages show it.
pub fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// One line of ours on stderr (secrets hidden).
fn say(line: &str) {
    prefix::say(&format!("deploy: {line}\n"));
}

fn phase(line: &str) {
    prefix::say(&format!("==> {line}\n"));
}

/// Where the tools are: `UVDEPLOY_BIN`, else beside this program.
fn tools_dir(env: &Env) -> Result<PathBuf, Message> {
    let dir = match env.non_empty("UVDEPLOY_BIN") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default(),
    };
    for tool in TOOLS {
        if !dir.join(tool).is_file() {
            return Err(
                Message::usage(format!("`{}` is missing", dir.join(tool).display()))
                    .with_hint("build the tools first: `cargo build --release`"),
            );
        }
    }
    Ok(dir)
}

/// The application's name: APP_DIR's last component.
fn app_name(app_dir: &Path) -> String {
    match app_dir.file_name().and_then(|n| n.to_str()) {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => "app".into(),
    }
}

/// The state directory: the one named (made if missing), or a new private one under TMPDIR
/// whose name cannot be guessed. Readable by others: varnishd drops to its own user.
/// Returns it, absolute, and whether this deployment made it.
///
/// A directory that exists keeps its mode (the user's choice; varnishd must be able to read
/// it); one that is made is 0755. It must be outside the app (even through a link), and it
/// belongs to one deployment at a time (its `deploy.lock`, which `uvdeploy kept` reads too).
fn state_dir(
    asked: Option<&Path>,
    name: &str,
    app: &Path,
    env: &Env,
) -> Result<(PathBuf, bool, lock::StateLock), Message> {
    use std::os::unix::fs::PermissionsExt;
    let err = |dir: &Path, e: std::io::Error| {
        Message::usage(format!(
            "cannot make the state directory `{}`: {e}",
            dir.display()
        ))
    };
    let (dir, made) = match asked {
        Some(dir) => {
            // Checked before anything is made: nothing is ever made in the app.
            let resolved = resolved(dir).map_err(|e| err(dir, e))?;
            if resolved.starts_with(app) || app.starts_with(&resolved) {
                return Err(inside_app(&resolved, app));
            }
            let new = !dir.exists();
            std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
            let dir = std::fs::canonicalize(dir).map_err(|e| err(dir, e))?;
            if new {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| err(&dir, e))?;
            }
            // Named by the user: theirs to remove.
            (dir, false)
        }
        None => {
            let tmp = PathBuf::from(env.non_empty("TMPDIR").unwrap_or("/tmp"));
            let dir = plan::io::new_state_dir(name, &tmp).map_err(|e| err(&tmp, e))?;
            (dir, true)
        }
    };
    if dir.starts_with(app) || app.starts_with(&dir) {
        return Err(inside_app(&dir, app));
    }
    let lock = lock::StateLock::take(&dir).map_err(|e| {
        Message::usage(format!("the state directory `{}` {e}", dir.display()))
            .with_hint("give each deployment a state directory of its own")
    })?;
    Ok((dir, made, lock))
}

fn inside_app(dir: &Path, app: &Path) -> Message {
    Message::usage(format!(
        "--state-dir `{}` is inside the app `{}` (or holds it): uvdeploy never writes in your app",
        dir.display(),
        app.display()
    ))
    .with_hint("name a directory outside the app, or leave --state-dir out for a new private one")
}

/// `path` with its links resolved as far as it exists, the rest joined as written (`..` in
/// the rest refused: it could lead anywhere once made).
fn resolved(path: &Path) -> std::io::Result<PathBuf> {
    let absolute = std::path::absolute(path)?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        rest.push(existing.file_name().unwrap_or_default().to_owned());
        existing = existing.parent().unwrap_or(Path::new("/"));
    }
    let mut out = std::fs::canonicalize(existing)?;
    for part in rest.iter().rev() {
        if part == ".." {
            return Err(std::io::Error::other(
                "`..` after a directory that does not exist",
            ));
        }
        out.push(part);
    }
    Ok(out)
}

/// Runs the deployment, or asks the one running to redeploy; returns the exit status.
pub fn deploy(options: &Options, env: &Env) -> Result<std::process::ExitCode, plan::report::Fault> {
    let style = prefix::Style {
        colour: env.non_empty("NO_COLOR").is_none()
            && (std::io::IsTerminal::is_terminal(&std::io::stderr())
                || env.non_empty("CLICOLOR_FORCE").is_some()),
        raw: options.raw_output,
    };
    let tools = tools_dir(env)?;
    let app_dir = options.app_dir.clone().unwrap_or_else(|| ".".into());
    let app_path = std::fs::canonicalize(&app_dir)
        .map_err(|e| Message::usage(format!("cannot use APP_DIR `{}`: {e}", app_dir.display())))?;
    let mut lock = match lock::claim(&lock::cache_root(env), &app_path) {
        Ok(lock) => lock,
        Err(lock::LockError::Running(holder)) => return ask_redeploy(options, env, &holder),
        Err(e) => return Err(e.into()),
    };
    // Then, before anything could be interrupted: the signals are ours from here on, and the
    // watchdog holds the app's lock with us.
    let mut children = Children::new(
        options.grace.unwrap_or(DEFAULT_GRACE),
        style,
        Some(lock.raw_fd()),
    )?;
    let (state, made, state_lock) = state_dir(
        options.state_dir.as_deref(),
        &app_name(&app_path),
        &app_path,
        env,
    )?;
    // What runs in the copy is the deployment's (not a shell of yours in the state directory).
    children.watch_dir(&state.join("copy"));
    // What an earlier deployment in this directory said is not this one's.
    let _ = std::fs::remove_file(state.join("deploy.json"));
    lock.record(&state)
        .map_err(|e| Message::failed(format!("cannot write the lock file: {e}")))?;
    for name in platform::set_by_the_user(env) {
        say(&format!(
            "{name} is set in your environment: replaced by this deployment's, as the platform does"
        ));
    }
    let (sockets, own_sockets_dir) = redeploy::sockets_dir(&state).map_err(|e| {
        Message::failed(format!(
            "cannot make a directory for the sockets under /tmp: {e}"
        ))
    })?;
    let control = match redeploy::listen(&state, &sockets) {
        Ok(listener) => {
            use std::os::fd::AsRawFd;
            children.watch(listener.as_raw_fd());
            Some(listener)
        }
        Err(e) => {
            say(&format!(
                "cannot make the control socket (no redeploy will be possible): {e}"
            ));
            None
        }
    };
    let request = request_of(options, env);
    let placeholder = deployment::Generation {
        number: 0,
        dir: state.clone(),
        request: request.clone(),
        env: env.clone(),
        own_env: false,
        instances: Vec::new(),
        summary: summary::Summary::new(&state),
    };
    let mut deployment = Deployment {
        options,
        tools,
        app_dir,
        state: state.clone(),
        children: &mut children,
        gen: placeholder,
        serving: None,
        cron_runs: Vec::new(),
        addons: Default::default(),
        failed: None,
        front: None,
        no_front: None,
        control,
        sockets: sockets.clone(),
        caller: None,
        ports_taken: Default::default(),
        accepting: false,
        pending: None,
        last_generation: 1,
        redeploy_started: 0,
        serving_died: None,
    };
    let code = deployment.run();
    children.finish();
    addon::forget_secrets(&state);
    let _ = std::fs::remove_file(state.join(redeploy::SOCKET));
    if own_sockets_dir {
        let _ = std::fs::remove_dir_all(&sockets);
    }
    if code == 0 && made && !options.keep_state {
        let _ = std::fs::remove_dir_all(&state);
    } else {
        say(&format!("the state directory is kept: {}", state.display()));
    }
    // Last: who waits for the app to be free (`uvdeploy stop`) finds everything done.
    drop(state_lock);
    drop(lock);
    Ok(std::process::ExitCode::from(code))
}

/// What this command asks of a deployment: its environment and options.
fn request_of(options: &Options, env: &Env) -> redeploy::Request {
    let absolute = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
    redeploy::Request {
        pid: std::process::id(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        env_files: options.env.env_files.iter().map(absolute).collect(),
        assignments: options.env.assignments.clone(),
        working_tree: options.working_tree,
        timeout_ms: options.timeout.as_millis().try_into().unwrap_or(u64::MAX),
        instances: options.instances.unwrap_or(0),
        public_port: options.ports.public_port,
        addons: options
            .addons
            .iter()
            .map(|k| k.name().to_string())
            .collect(),
    }
}

/// The app is deployed here already: ask its deployment to redeploy, and show what it says.
fn ask_redeploy(
    options: &Options,
    env: &Env,
    holder: &lock::Holder,
) -> Result<std::process::ExitCode, plan::report::Fault> {
    let fixed = [
        (options.state_dir.is_some(), "--state-dir"),
        (options.keep_state, "--keep-state"),
        (options.check, "--check"),
        (options.front.is_some(), "--front"),
        (options.ports.app_port.is_some(), "--app-port"),
        (
            options.grace.is_some() && env.get("UVDEPLOY_GRACE_SECONDS").is_none(),
            "--grace",
        ),
    ];
    if let Some((_, flag)) = fixed.iter().find(|(given, _)| *given) {
        return Err(Message::usage(format!(
            "{flag} cannot be given to a redeploy: `{}` is deployed already (PID {}), with its own",
            holder.app_dir.display(),
            holder.pid
        ))
        .with_hint("redeploy without it, or stop the deployment first (`uvdeploy stop`)")
        .into());
    }
    say(&format!(
        "`{}` is deployed already (PID {}): redeploying it",
        holder.app_dir.display(),
        holder.pid
    ));
    // Its INT (Ctrl-C), TERM or HUP gives the redeploy up (the deployment sees the caller
    // go): also when they were ignored when it started, as in a script's background job.
    for sig in children::STOP_SIGNALS {
        // SAFETY: no handler is installed, only the default disposition restored.
        let _ = unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl) };
    }
    let request = request_of(options, env);
    let code = redeploy::ask(&holder.state_dir, &request).map_err(|e| {
        Message::failed(e).with_hint("stop the running deployment first (`uvdeploy stop`)")
    })?;
    Ok(std::process::ExitCode::from(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The add-ons uvsupervise runs are the ones the plan knows by name.
    #[test]
    fn the_addon_kinds_are_the_plans() {
        let names: Vec<&str> = addon::Kind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names, plan::ADDON_KINDS);
    }

    #[test]
    fn the_grace_period_in_seconds_fractions_allowed_empty_the_default() {
        assert_eq!(grace_seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(grace_seconds(""), Ok(DEFAULT_GRACE));
        assert_eq!(grace_seconds(" "), Ok(DEFAULT_GRACE));
        for bad in ["-1", "abc", "nan", "inf", "3601"] {
            assert!(grace_seconds(bad).is_err(), "{bad}");
        }
        assert_eq!(seconds(Duration::from_millis(500)), "500ms");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5s");
        assert_eq!(seconds(Duration::from_secs(10)), "10s");
    }
}
