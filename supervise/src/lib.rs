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
pub mod lock;
pub mod platform;
pub mod prefix;
pub mod summary;
pub mod watchdog;
pub mod workers;

use children::{Children, Event, Output};
use plan::cli::{EnvArgs, PortArgs};
use plan::instance::{Instance, InstanceType};
use plan::report::{exit, Message};
use plan::{Env, Plan, PlanSource};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use summary::Summary;

/// How long the processes have to stop after TERM, before KILL, unless `--grace` says.
pub const DEFAULT_GRACE: Duration = plan::process::STOP_GRACE;

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
#[command(name = "uvsupervise", bin_name = "uvdeploy deploy", version)]
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
    /// The application's directory (the current directory by default).
    #[arg(value_name = "APP_DIR")]
    pub app_dir: Option<PathBuf>,
}

fn duration(text: &str) -> Result<Duration, String> {
    plan::command::parse_duration(text)
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

/// One line of ours on stderr. Written, not `eprintln!`ed: a stderr that is gone (`| head`, a
/// closed terminal) must not stop the deployment half-way with a panic.
fn say(line: &str) {
    prefix::to_stderr(format!("deploy: {line}\n").as_bytes());
}

fn phase(line: &str) {
    prefix::to_stderr(format!("==> {line}\n").as_bytes());
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
            // Short enough for any file system, whatever the app is called.
            let short: String = name.chars().take(40).collect();
            let dir = tempfile::Builder::new()
                .prefix(&format!("uvdeploy-{short}."))
                .tempdir_in(&tmp)
                .map_err(|e| err(&tmp, e))?
                .keep();
            (dir, true)
        }
    };
    if dir.starts_with(app) || app.starts_with(&dir) {
        return Err(inside_app(&dir, app));
    }
    if made {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| err(&dir, e))?;
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

/// Runs the deployment; returns the exit status.
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
    let mut lock = lock::claim(&lock::cache_root(env), &app_path)?;
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
    // What an earlier deployment in this directory said is not this one's.
    let _ = std::fs::remove_file(state.join("deploy.json"));
    lock.record(&state)
        .map_err(|e| Message::failed(format!("cannot write the lock file: {e}")))?;
    let instance = Instance::new(&app_path, &platform::app_home(&state.join("copy"), env));
    for name in platform::set_by_the_user(env) {
        say(&format!(
            "{name} is set in your environment: replaced by this deployment's, as the platform does"
        ));
    }
    let mut deployment = Deployment {
        options,
        env,
        tools,
        app_dir,
        state: state.clone(),
        children: &mut children,
        summary: Summary::new(&state),
        services: Vec::new(),
        workers: Vec::new(),
        instance,
        crons: None,
        cron_runs: Vec::new(),
        addons: Default::default(),
        failed: None,
    };
    let code = deployment.run();
    children.finish();
    addon::forget_secrets(&state);
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

/// Why a phase ended early.
enum Halt {
    /// TERM, INT or HUP.
    Stop,
    /// A service (the app, a hop, a worker) ended: its index and status.
    Died(usize, i32),
    /// The deployment failed, and it was said: the exit status.
    Said(u8),
}

struct Deployment<'a> {
    options: &'a Options,
    env: &'a Env,
    tools: PathBuf,
    app_dir: PathBuf,
    state: PathBuf,
    children: &'a mut Children,
    summary: Summary,
    /// The indexes of the app and the hops: what must keep running.
    services: Vec<usize>,
    /// The workers: started beside the app, restarted as the platform does; their end never
    /// stops the deployment.
    workers: Vec<workers::Unit>,
    /// This deployment's instance: the platform's variables its processes get.
    instance: Instance,
    /// The crons' scheduler and their home, once started.
    crons: Option<(crons::Scheduler, PathBuf)>,
    /// The processes of cron runs (indexes), and their names.
    cron_runs: Vec<(usize, String)>,
    /// The add-ons' servers and variables (`--addon`).
    addons: addon::Started,
    /// The exit status once the deployment is known to have failed (unhealthy): a signal
    /// during what follows (the failed hook) does not turn it into a clean stop.
    failed: Option<u8>,
}

impl Deployment<'_> {
    fn run(&mut self) -> u8 {
        let code = match self.phases() {
            Ok(code) => code,
            Err(Halt::Stop) => {
                phase("stopping (signal received)");
                match self.failed {
                    // An unhealthy deployment stopped while its failed hook runs is still
                    // unhealthy.
                    Some(code) => code,
                    // CI mode: stopped before the check passed is not a pass.
                    None if self.options.check => {
                        self.summary.status = "failed".into();
                        self.summary.fail("stopped before the check passed", 130);
                        self.write_summary();
                        exit::FAILED
                    }
                    None => 0,
                }
            }
            Err(Halt::Died(i, status)) => {
                self.children.drain(i);
                let name = self.children.procs[i].name.clone();
                say(&format!(
                    "{name} exited with status {status}: stopping the deployment"
                ));
                self.summary.status = "failed".into();
                self.summary.fail(&name, status);
                self.write_summary();
                1
            }
            Err(Halt::Said(code)) => code,
        };
        self.children.stop_all(&|line| say(line));
        code
    }

    fn tool(&self, name: &str) -> Command {
        Command::new(self.tools.join(name))
    }

    /// The arguments that give a tool the deployment's environment: the user's env files and
    /// assignments, then the platform's variables of a production instance.
    fn env_args(&self) -> Vec<String> {
        self.env_args_as(InstanceType::Production)
    }

    fn env_args_as(&self, kind: InstanceType) -> Vec<String> {
        let mut args = Vec::new();
        for file in &self.options.env.env_files {
            args.push("--env-file".into());
            args.push(file.display().to_string());
        }
        for assignment in &self.options.env.assignments {
            // An add-on's variable is the local add-on's: its env file, last, must win.
            if self.addons.replaces(assignment) {
                continue;
            }
            args.push("--env".into());
            args.push(assignment.clone());
        }
        if let Some(file) = &self.addons.env_file {
            args.push("--env-file".into());
            args.push(file.display().to_string());
        }
        args.extend(platform::env_args(&self.instance, kind));
        args
    }

    fn plan_path(&self) -> PathBuf {
        self.state.join("plan.json")
    }

    fn write_summary(&self) {
        if let Err(e) = self.summary.write(&self.state.join("deploy.json")) {
            say(&format!("cannot write deploy.json: {e}"));
        }
    }

    fn spawn(&mut self, name: &str, command: &mut Command, output: Output) -> Result<usize, u8> {
        self.children.spawn(name, command, output).map_err(|e| {
            say(&format!("cannot start {name}: {e}"));
            exit::FAILED
        })
    }

    /// Waits for process `index` to end. A signal stops the wait; so does a service's end.
    fn wait(&mut self, index: usize) -> Result<i32, Halt> {
        loop {
            match self.wait_any(index) {
                Ok(status) => {
                    // Its last lines before what we say of it.
                    self.children.drain(index);
                    return Ok(status);
                }
                Err(Event::Stop(_)) => return Err(Halt::Stop),
                Err(Event::Exited(i, status)) if self.services.contains(&i) => {
                    return Err(Halt::Died(i, status))
                }
                Err(Event::Exited(i, status)) => self.addon_exited(i, status),
                Err(Event::OrphanReaped) => {}
            }
        }
    }

    /// Waits for process `index` to end, the workers looked after meanwhile: its status, or
    /// the first other event.
    fn wait_any(&mut self, index: usize) -> Result<i32, Event> {
        loop {
            if self.children.procs[index].status.is_some() {
                // Its event may still be queued: `Children::wait` drops it.
                if let Ok(Some(status)) = self.children.wait(index, Some(Instant::now())) {
                    return Ok(status);
                }
            }
            match self.next_event(None) {
                Some(Event::Exited(i, status)) if i == index => return Ok(status),
                Some(other) => return Err(other),
                None => {}
            }
        }
    }

    /// The next event that is not a worker's end, up to `deadline`; a worker's end is handled
    /// here (a restart planned, or not), and a restart that falls due is made, the loop
    /// waking for it: nothing here sleeps.
    fn next_event(&mut self, deadline: Option<Instant>) -> Option<Event> {
        loop {
            let wake = [
                deadline,
                workers::next_due(&self.workers),
                self.crons.as_ref().map(|(s, _)| s.next_tick()),
            ]
            .into_iter()
            .flatten()
            .min();
            match self.children.next(wake) {
                Some(Event::Exited(i, status)) => {
                    if let Some(unit) = self.workers.iter().position(|u| u.running == Some(i)) {
                        self.worker_ended(unit, status);
                    } else if let Some(run) = self.cron_runs.iter().position(|(p, _)| *p == i) {
                        let (_, name) = self.cron_runs.swap_remove(run);
                        if status != 0 {
                            say(&format!("{name} exited with status {status}"));
                        }
                    } else {
                        return Some(Event::Exited(i, status));
                    }
                }
                Some(event) => return Some(event),
                None => {
                    self.start_due_workers();
                    self.run_due_crons();
                    if wake.is_none() || deadline.is_some_and(|d| Instant::now() >= d) {
                        return None;
                    }
                }
            }
        }
    }

    fn worker_ended(&mut self, unit: usize, status: i32) {
        let now = Instant::now();
        let unit = &mut self.workers[unit];
        let policy = unit.restart.name();
        match unit.ended(status, now) {
            workers::AfterEnd::RestartAt(_) => say(&format!(
                "{} exited with status {status}: restarting in {} (CC_WORKER_RESTART={policy})",
                unit.name,
                seconds(unit.delay)
            )),
            workers::AfterEnd::Done => say(&format!(
                "{} exited with status {status}: not restarted (CC_WORKER_RESTART={policy})",
                unit.name
            )),
        }
    }

    /// Starts the crons' scheduler: their home and its profile (the app's environment, for
    /// login shells), then a run of each at its minute.
    fn schedule_crons(&mut self, plan: &Plan) {
        if plan.crons.is_empty() {
            return;
        }
        let mut env = self.env.clone();
        // The add-ons' variables too, as every process of the app has them.
        if let Some(file) = &self.addons.env_file {
            let _ = env.load_file(file);
        }
        for (key, value) in self.instance.variables(InstanceType::Production) {
            env.set(key, value);
        }
        // The app's environment as the launcher makes it (the venv, the kept uv cache).
        let app_env = launcher::prepare(Some(plan), &launcher::Target::App, &env, None)
            .map(|launch| launch.env)
            .unwrap_or(env);
        let vars = app_env.iter().filter(|(k, _)| *k != "PORT");
        let home = match crons::write_home(&self.state, vars) {
            Ok(home) => home,
            Err(e) => {
                say(&format!("cannot write the crons' home: {e}: no cron runs"));
                return;
            }
        };
        let (scheduler, errors) =
            crons::Scheduler::new(&plan.crons, crons::Clock::from_env(self.env));
        for error in errors {
            say(&error);
        }
        let clock = match &scheduler.clock {
            crons::Clock::System => "the system clock, UTC".to_string(),
            crons::Clock::File(path) => {
                format!("the test clock UVDEPLOY_CLOCK `{}`", path.display())
            }
        };
        say(&format!(
            "{} cron(s) scheduled, on {clock}; their home is {}",
            plan.crons.len(),
            home.display()
        ));
        self.crons = Some((scheduler, home));
    }

    /// Runs the crons whose minute has come.
    fn run_due_crons(&mut self) {
        let Some((scheduler, home)) = &mut self.crons else {
            return;
        };
        let (due, said) = scheduler.due();
        if let Some(said) = said {
            say(&said);
        }
        let home = home.clone();
        for cron in due {
            let mut command = crons::command(&cron, &home, self.env);
            match self
                .children
                .spawn(&cron.name, &mut command, Output::Prefixed)
            {
                Ok(i) => self.cron_runs.push((i, cron.name.clone())),
                Err(e) => say(&format!("cannot run {}: {e}", cron.name)),
            }
        }
    }

    /// Starts every worker whose restart is due.
    fn start_due_workers(&mut self) {
        let now = Instant::now();
        for unit in 0..self.workers.len() {
            if self.workers[unit].restart_at.is_some_and(|at| at <= now) {
                self.start_worker(unit);
            }
        }
    }

    /// Starts worker `unit`, unless it is past systemd's start limit: then it is given up,
    /// and said once. A worker that cannot be started at all is said, and left.
    fn start_worker(&mut self, unit: usize) {
        let now = Instant::now();
        let name = self.workers[unit].name.clone();
        if self.workers[unit].may_start(now) == workers::Start::GiveUp {
            say(&format!(
                "{name} failed {} times within {}: given up, as systemd would",
                plan::worker::START_LIMIT_BURST,
                seconds(plan::worker::START_LIMIT_INTERVAL)
            ));
            return;
        }
        let mut command = self.launcher(&["--worker", &name]);
        match self.children.spawn(&name, &mut command, Output::Prefixed) {
            Ok(i) => {
                self.workers[unit].started(i, now);
                let pid = self.children.procs[i].pid;
                self.summary.processes.insert(name.clone(), pid);
                say(&format!("started {name} (pid {pid})"));
            }
            Err(e) => {
                say(&format!("cannot start {name}: {e}"));
                self.workers[unit].restart_at = None;
            }
        }
    }

    /// As on the platform, an add-on's failure does not stop the app: it is said.
    fn addon_exited(&self, index: usize, status: i32) {
        if self.addons.is_server(index) {
            say(&format!(
                "{} exited with status {status}: the app runs on without it",
                self.children.procs[index].name
            ));
        }
    }

    fn phases(&mut self) -> Result<u8, Halt> {
        let started = Instant::now();
        self.children.set_secrets(self.env);
        self.start_addons()?;
        // The add-ons' passwords are secrets too, in every process's output from now on.
        if let Some(file) = &self.addons.env_file {
            let mut env = self.env.clone();
            if env.load_file(file).is_ok() {
                self.children.set_secrets(&env);
            }
        }
        phase(&format!("build: {}", self.app_dir.display()));
        if let Some(code) = self.build()? {
            return Ok(code);
        }
        let plan = match plan::read_plan(&PlanSource::File(self.plan_path()), "uvsupervise") {
            Ok(plan) => plan,
            Err(e) => {
                plan::report::report(&e, self.env);
                return Ok(exit::FAILED);
            }
        };
        self.instance.app_home = plan.app_dir.display().to_string();
        self.summary.plan = std::fs::read_to_string(self.plan_path())
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());

        phase("start");
        let start = Instant::now();
        if let Some(code) = self.start(&plan) {
            return Ok(code);
        }
        self.summary.time("start", start.elapsed());

        phase("health check");
        let health_started = Instant::now();
        let healthy = self.health_check()?;
        self.summary.time("health_wait", health_started.elapsed());
        self.summary.time("total", started.elapsed());
        self.summary.health = std::fs::read_to_string(self.state.join("health.json"))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());
        say(&self.summary.timings_line());
        if !healthy {
            self.failed = Some(exit::FAILED);
            self.summary.status = "unhealthy".into();
            self.summary.fail("healthcheck", 1);
            self.write_summary();
            self.run_hook("CC_RUN_FAILED_HOOK")?;
            phase("health check failed: stopping");
            return Ok(exit::FAILED);
        }
        self.summary.status = "healthy".into();
        self.write_summary();
        self.run_hook("CC_RUN_SUCCEEDED_HOOK")?;
        if self.options.check {
            return self.check(&plan);
        }
        phase(&format!(
            "deployed: supervising {} process(es); TERM or Ctrl-C stops them",
            self.services.len()
        ));
        loop {
            match self.next_event(None) {
                Some(Event::Stop(_)) => return Err(Halt::Stop),
                Some(Event::Exited(i, status)) if self.services.contains(&i) => {
                    return Err(Halt::Died(i, status))
                }
                Some(Event::Exited(i, status)) => self.addon_exited(i, status),
                _ => {}
            }
        }
    }

    /// The add-ons asked for (`--addon`), started before the build: build hooks migrate.
    fn start_addons(&mut self) -> Result<(), Halt> {
        if self.options.addons.is_empty() {
            return Ok(());
        }
        phase("add-ons");
        let started = Instant::now();
        let app = std::fs::canonicalize(&self.app_dir).unwrap_or_else(|_| self.app_dir.clone());
        let result = addon::start(
            &self.options.addons,
            &app,
            &self.state,
            self.env,
            self.children,
            &|line| say(line),
        );
        self.summary.time("addons", started.elapsed());
        match result {
            Ok(addons) => {
                for (name, i) in &addons.servers {
                    let pid = self.children.procs[*i].pid;
                    self.summary.processes.insert(name.clone(), pid);
                }
                self.addons = addons;
                Ok(())
            }
            Err(addon::Halted::Stop) => Err(Halt::Stop),
            Err(addon::Halted::Failed(e)) => {
                plan::report::report(&e, self.env);
                self.summary
                    .fail("addons", i32::from(plan::report::Failure::exit_code(&e)));
                self.write_summary();
                Err(Halt::Said(plan::report::Failure::exit_code(&e)))
            }
        }
    }

    /// `checkout`, then `detect | uvbuild | flowctl` into the plan. `Some(status)` when a step
    /// failed (said, and in deploy.json).
    fn build(&mut self) -> Result<Option<u8>, Halt> {
        let copy = self.state.join("copy");
        let source = self.state.join("source.json");
        // A copy this deployment's tools made before (source.json says so) is replaced;
        // anything else checkout refuses.
        if source.is_file() {
            let _ = std::fs::remove_dir_all(&copy);
        }
        let mut checkout = self.tool("checkout");
        checkout.arg("--into").arg(&copy);
        if self.options.working_tree {
            checkout.arg("--working-tree");
        }
        checkout
            .arg(&self.app_dir)
            .envs(self.instance.variables(InstanceType::Build));
        let checkout_started = Instant::now();
        let out = match std::fs::File::create(&source) {
            Ok(file) => file,
            Err(e) => {
                say(&format!("cannot write {}: {e}", source.display()));
                return Ok(Some(exit::FAILED));
            }
        };
        checkout.stdout(out);
        let index = match self.spawn("checkout", &mut checkout, Output::Plain) {
            Ok(i) => i,
            Err(code) => return Ok(Some(code)),
        };
        let status = self.wait(index)?;
        self.summary.time("checkout", checkout_started.elapsed());
        let started = Instant::now();
        if status != 0 {
            return Ok(Some(self.build_failed("checkout", status)));
        }
        self.instance.commit_id = platform::commit_of(&source);
        self.instance.app_home = platform::app_home(&copy, self.env).display().to_string();

        let env_args = self.env_args_as(InstanceType::Build);
        let mut ports = Vec::new();
        if let Some(port) = self.options.ports.public_port {
            ports.extend(["--public-port".to_string(), port.to_string()]);
        }
        if let Some(port) = self.options.ports.app_port {
            ports.extend(["--app-port".to_string(), port.to_string()]);
        }
        let mut detect = self.tool("detect");
        for kind in &self.options.addons {
            detect.args(["--addon", kind.name()]);
        }
        detect
            .args(&env_args)
            .args(ports)
            .arg("--source")
            .arg(&source)
            .arg(&copy)
            .stdout(Stdio::piped());
        let mut uvbuild = self.tool("uvbuild");
        uvbuild.args(&env_args).stdout(Stdio::piped());
        let mut flowctl = self.tool("flowctl");
        flowctl.args(&env_args).arg("--state-dir").arg(&self.state);
        let plan_file = match std::fs::File::create(self.plan_path()) {
            Ok(file) => file,
            Err(e) => {
                say(&format!("cannot write the plan: {e}"));
                return Ok(Some(exit::FAILED));
            }
        };
        flowctl.stdout(plan_file);
        let mut steps = Vec::new();
        for (name, command) in [
            ("detect", &mut detect),
            ("uvbuild", &mut uvbuild),
            ("flowctl", &mut flowctl),
        ] {
            if let Some(previous) = self.children.take_stdout() {
                command.stdin(previous);
            }
            match self.spawn(name, command, Output::Plain) {
                Ok(i) => steps.push((name, i)),
                Err(code) => return Ok(Some(code)),
            }
        }
        // The steps run at once, each reading the one before: a step's time is from the end of
        // the one before to its own end.
        let mut statuses = Vec::new();
        let mut previous_end = started.elapsed();
        for (name, index) in steps {
            let status = self.wait(index)?;
            let end = started.elapsed();
            let timed = match name {
                "uvbuild" => "build",
                "flowctl" => "plan",
                other => other,
            };
            self.summary.time(timed, end.saturating_sub(previous_end));
            previous_end = end;
            statuses.push((name, status));
        }
        match statuses.into_iter().find(|&(_, status)| status != 0) {
            Some((name, status)) => Ok(Some(self.build_failed(name, status))),
            None => Ok(None),
        }
    }

    fn build_failed(&mut self, step: &str, status: i32) -> u8 {
        say(&format!(
            "{step} failed (exit {status}): nothing was started"
        ));
        self.summary.status = "failed".into();
        self.summary.fail(step, status);
        self.write_summary();
        u8::try_from(status).unwrap_or(exit::FAILED)
    }

    fn launcher(&self, target: &[&str]) -> Command {
        let mut command = self.tool("launcher");
        command
            .arg("--plan")
            .arg(self.plan_path())
            .args(self.env_args())
            .args(target);
        command
    }

    /// The app first (its start is the longest, and the hops connect to it lazily), then
    /// every hop, then the workers. `Some(status)` when one cannot be started.
    fn start(&mut self, plan: &Plan) -> Option<u8> {
        let mut targets: Vec<(String, Vec<String>)> = vec![("app".into(), vec!["--app".into()])];
        for hop in plan.hops.iter().flatten() {
            targets.push((hop.name.clone(), vec!["--hop".into(), hop.name.clone()]));
        }
        for (name, target) in targets {
            let target: Vec<&str> = target.iter().map(String::as_str).collect();
            let mut command = self.launcher(&target);
            match self.spawn(&name, &mut command, Output::Prefixed) {
                Ok(i) => {
                    self.services.push(i);
                    self.summary
                        .processes
                        .insert(name.clone(), self.children.procs[i].pid);
                    say(&format!(
                        "started {name} (pid {})",
                        self.children.procs[i].pid
                    ));
                }
                Err(code) => return Some(code),
            }
        }
        self.workers = plan.workers.iter().map(workers::Unit::new).collect();
        for unit in 0..self.workers.len() {
            self.start_worker(unit);
        }
        self.schedule_crons(plan);
        None
    }

    /// The health check, watching the services meanwhile: whether it passed.
    fn health_check(&mut self) -> Result<bool, Halt> {
        let app_pid = self.children.procs[self.services[0]].pid;
        let mut command = self.tool("healthcheck");
        command
            .arg("--plan")
            .arg(self.plan_path())
            .args(self.env_args())
            .arg("--timeout")
            .arg(format!("{}ms", self.options.timeout.as_millis()))
            .arg("--pid")
            .arg(app_pid.to_string())
            .arg("--report")
            .arg(self.state.join("health.json"));
        // Only an answer from a port this deployment's processes hold counts: never a previous
        // deployment's, still listening there.
        for &i in &self.services {
            command
                .arg("--owner")
                .arg(self.children.procs[i].pid.to_string());
        }
        let checker = match self.spawn("healthcheck", &mut command, Output::AsSet) {
            Ok(i) => i,
            Err(_) => return Ok(false),
        };
        match self.wait(checker) {
            Ok(status) => Ok(status == 0),
            Err(Halt::Died(i, status)) => {
                self.children.drain(i);
                let name = self.children.procs[i].name.clone();
                say(&format!(
                    "{name} exited with status {status} before the health check passed"
                ));
                self.summary.status = "failed".into();
                self.summary.fail(&name, status);
                self.write_summary();
                self.run_hook("CC_RUN_FAILED_HOOK")?;
                Err(Halt::Said(exit::FAILED))
            }
            Err(halt) => Err(halt),
        }
    }

    /// One of the platform's run hooks, when set, in the app; its failure is said and ignored.
    /// A service that ends meanwhile ends the deployment once the hook has (for the succeeded
    /// hook; after a failure everything stops anyway).
    fn run_hook(&mut self, name: &str) -> Result<(), Halt> {
        // Not set (in the environment, the env files or `--env`, as launcher would read it):
        // nothing to start.
        if self.env.non_empty(name).is_none() {
            return Ok(());
        }
        let mut command = self.launcher(&["--hook", name]);
        let Ok(index) = self.spawn("hook", &mut command, Output::Prefixed) else {
            return Ok(());
        };
        let mut died = None;
        let status = loop {
            match self.wait_any(index) {
                Ok(status) => break status,
                Err(Event::Stop(_)) => return Err(Halt::Stop),
                Err(Event::Exited(i, status)) if self.services.contains(&i) => {
                    died.get_or_insert((i, status));
                }
                // An add-on's end is said as in every other wait.
                Err(Event::Exited(i, status)) => self.addon_exited(i, status),
                Err(Event::OrphanReaped) => {}
            }
        };
        self.children.drain(index);
        if status != 0 {
            say(&format!("{name} failed (exit {status}): ignored"));
        }
        match died {
            Some((i, status)) if self.failed.is_none() => Err(Halt::Died(i, status)),
            _ => Ok(()),
        }
    }

    /// CI mode, once healthy: the smoke command, then the stop. 0 only when it passed.
    fn check(&mut self, plan: &Plan) -> Result<u8, Halt> {
        let Some(smoke) = self.options.smoke.clone() else {
            phase("check passed: the deployment is healthy; stopping");
            return Ok(0);
        };
        let shown = plan::secret::hide_in_shell(&smoke, self.env);
        phase(&format!("smoke: {shown}"));
        let url = format!("http://127.0.0.1:{}", plan.ports.public);
        let path = match self.env.non_empty("PATH") {
            Some(path) => format!("{}:{path}", self.tools.display()),
            None => self.tools.display().to_string(),
        };
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(&smoke)
            .current_dir(&self.app_dir)
            .env_clear()
            .envs(self.env.iter())
            .env("PATH", path)
            .env("UVDEPLOY_URL", &url);
        let started = Instant::now();
        let index = match self.spawn("smoke", &mut command, Output::Prefixed) {
            Ok(i) => i,
            Err(code) => return Ok(code),
        };
        let status = self.wait(index)?;
        self.summary.time("smoke", started.elapsed());
        self.summary.smoke = Some(summary::Smoke {
            command: shown,
            status,
        });
        if status == 0 {
            self.write_summary();
            phase("check passed: healthy, and the smoke command passed; stopping");
            Ok(0)
        } else {
            self.summary.fail("smoke", status);
            self.write_summary();
            phase(&format!(
                "check failed: the smoke command exited with status {status}; stopping"
            ));
            Ok(exit::FAILED)
        }
    }
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
