//! One deployment's life: its generations (a build of one commit and the instances that run
//! it), the first deployed, then each redeploy beside the one serving, the front moved to it
//! once every new instance is healthy.

use crate::children::{Children, Event, Output};
use crate::front::Front;
use crate::redeploy::{Caller, Request};
use crate::summary::{self, Summary};
use crate::{addon, crons, front, phase, platform, say, seconds, workers, Options};
use plan::instance::{Instance, InstanceType};
use plan::report::exit;
use plan::{Env, Plan, PlanSource};
use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Why a phase ended early.
pub(crate) enum Halt {
    /// TERM, INT or HUP.
    Stop,
    /// A service (the app, a hop) ended: its index and status.
    Died(usize, i32),
    /// The deployment failed, and it was said: the exit status.
    Said(u8),
    /// The caller of a redeploy went away: the redeploy is given up.
    Cancelled,
}

/// One instance: its chain, app, workers and crons, as one machine of the platform runs them.
pub(crate) struct InstanceRun {
    pub instance: Instance,
    /// Its plan, rendered files and health report.
    pub dir: PathBuf,
    /// After its processes' names: empty for a lone instance, `.N` among several.
    pub suffix: String,
    /// Its own ports (public, app) when the front holds the public one.
    pub ports: Option<(u16, u16)>,
    /// Where its chain listens, once planned.
    pub public: u16,
    /// The app and the hops: what must keep running.
    pub services: Vec<usize>,
    /// Started beside the app, restarted as the platform does; their end never stops the
    /// deployment.
    pub workers: Vec<workers::Unit>,
    /// The crons' scheduler and their home, once started.
    pub crons: Option<(crons::Scheduler, PathBuf)>,
}

impl InstanceRun {
    fn plan_path(&self) -> PathBuf {
        self.dir.join("plan.json")
    }

    fn backend(&self, generation: u32) -> String {
        format!(
            "generation-{generation}-instance-{}",
            self.instance.instance_number
        )
    }
}

/// A build of one commit, and its instances.
pub(crate) struct Generation {
    pub number: u32,
    /// Its copy, `source.json` and first instance's files.
    pub dir: PathBuf,
    /// What it was asked with.
    pub request: Request,
    /// The environment its tools read (the request's, layered).
    pub env: Env,
    /// Whether its processes start with the request's environment rather than ours (a
    /// redeploy's: its caller's).
    pub own_env: bool,
    pub instances: Vec<InstanceRun>,
    pub summary: Summary,
}

impl Generation {
    fn services(&self) -> impl Iterator<Item = usize> + '_ {
        self.instances
            .iter()
            .flat_map(|i| i.services.iter().copied())
    }

    /// Every process of this generation that may still run (services, workers).
    fn processes(&self) -> Vec<usize> {
        self.instances
            .iter()
            .flat_map(|i| {
                i.services
                    .iter()
                    .copied()
                    .chain(i.workers.iter().filter_map(|w| w.running))
            })
            .collect()
    }
}

pub(crate) struct Deployment<'a> {
    pub options: &'a Options,
    pub tools: PathBuf,
    pub app_dir: PathBuf,
    pub state: PathBuf,
    pub children: &'a mut Children,
    /// The generation being deployed, or serving once deployed.
    pub gen: Generation,
    /// During a redeploy: the generation that serves meanwhile.
    pub serving: Option<Generation>,
    /// The processes of cron runs (indexes), and their names.
    pub cron_runs: Vec<(usize, String)>,
    /// The add-ons' servers and variables (`--addon`).
    pub addons: addon::Started,
    /// The exit status once the deployment is known to have failed (unhealthy): a signal
    /// during what follows (the failed hook) does not turn it into a clean stop.
    pub failed: Option<u8>,
    /// Sōzu on the public port, when the deployment has a front.
    pub front: Option<Front>,
    /// Why there is no front, when there is none (said to a redeploy's caller).
    pub no_front: Option<String>,
    /// Redeploys are asked for here.
    pub control: Option<UnixListener>,
    /// The caller of the redeploy under way.
    pub caller: Option<Caller>,
    /// Ports given to instances, not to be given twice.
    pub ports_taken: BTreeSet<u16>,
    /// Whether a redeploy may be asked for now (the deployment serves, nothing under way).
    pub accepting: bool,
    /// The redeploy asked for, not started yet.
    pub pending: Option<Request>,
    /// The index of the first process the redeploy under way started.
    pub redeploy_started: usize,
}

impl Deployment<'_> {
    pub fn run(&mut self) -> u8 {
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
                        self.gen.summary.status = "failed".into();
                        self.gen
                            .summary
                            .fail("stopped before the check passed", 130);
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
                self.gen.summary.status = "failed".into();
                self.gen.summary.fail(&name, status);
                self.write_summary();
                1
            }
            Err(Halt::Said(code)) => code,
            Err(Halt::Cancelled) => 1,
        };
        if let Some(caller) = self.caller.take() {
            crate::prefix::tee(None);
            caller.finish(exit::FAILED);
        }
        self.children.stop_all(&|line| say(line));
        code
    }

    fn tool(&self, name: &str) -> Command {
        let mut command = Command::new(self.tools.join(name));
        if self.gen.own_env {
            command.env_clear().envs(self.gen.env.iter());
        }
        command
    }

    /// The arguments that give a tool the deployment's environment: the user's env files and
    /// assignments, then the platform's variables of instance `n`.
    fn env_args_as(&self, n: usize, kind: InstanceType) -> Vec<String> {
        let mut args = Vec::new();
        for file in &self.gen.request.env_files {
            args.push("--env-file".into());
            args.push(file.display().to_string());
        }
        for assignment in &self.gen.request.assignments {
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
        args.extend(platform::env_args(&self.gen.instances[n].instance, kind));
        args
    }

    fn write_summary(&self) {
        let summary = &self.gen.summary;
        // A redeploy that failed says so in its own directory: the one serving keeps its own.
        let path = if self.serving.is_some() {
            self.gen.dir.join("deploy.json")
        } else {
            self.state.join("deploy.json")
        };
        if let Err(e) = summary.write(&path) {
            say(&format!("cannot write deploy.json: {e}"));
        }
    }

    fn spawn(&mut self, name: &str, command: &mut Command, output: Output) -> Result<usize, u8> {
        self.children.spawn(name, command, output).map_err(|e| {
            say(&format!("cannot start {name}: {e}"));
            exit::FAILED
        })
    }

    fn is_service(&self, index: usize) -> bool {
        self.gen.services().any(|i| i == index)
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
                Err(Event::Exited(i, status)) if self.is_service(i) => {
                    return Err(Halt::Died(i, status))
                }
                Err(Event::Exited(i, status)) => self.other_exited(i, status),
                Err(Event::Ready(_)) => return Err(Halt::Cancelled),
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

    fn all_instances(&self) -> impl Iterator<Item = &InstanceRun> {
        self.gen
            .instances
            .iter()
            .chain(self.serving.iter().flat_map(|g| g.instances.iter()))
    }

    fn all_instances_mut(&mut self) -> impl Iterator<Item = &mut InstanceRun> {
        self.gen
            .instances
            .iter_mut()
            .chain(self.serving.iter_mut().flat_map(|g| g.instances.iter_mut()))
    }

    /// The next event that is not a worker's end, a cron run's, or a request on the control
    /// socket, up to `deadline`: those are handled here (a restart planned, a request taken or
    /// refused), and a restart or a cron that falls due is started, the loop waking for it:
    /// nothing here sleeps. `Event::Ready` is left only for the caller of a redeploy under
    /// way going away.
    fn next_event(&mut self, deadline: Option<Instant>) -> Option<Event> {
        loop {
            let wake = [deadline]
                .into_iter()
                .chain(self.all_instances().map(|i| workers::next_due(&i.workers)))
                .chain(
                    self.all_instances()
                        .map(|i| i.crons.as_ref().map(|(s, _)| s.next_tick())),
                )
                .flatten()
                .min();
            match self.children.next(wake) {
                Some(Event::Exited(i, status)) => {
                    let worker = self.all_instances_mut().find_map(|inst| {
                        let unit = inst.workers.iter().position(|u| u.running == Some(i))?;
                        Some(&mut inst.workers[unit])
                    });
                    if let Some(unit) = worker {
                        worker_ended(unit, status);
                    } else if let Some(run) = self.cron_runs.iter().position(|(p, _)| *p == i) {
                        let (_, name) = self.cron_runs.swap_remove(run);
                        if status != 0 {
                            say(&format!("{name} exited with status {status}"));
                        }
                    } else {
                        return Some(Event::Exited(i, status));
                    }
                }
                Some(Event::Ready(fd)) if self.is_control(fd) => {
                    self.take_request();
                    // A redeploy to start: the supervision loop starts it.
                    if self.pending.is_some() {
                        return None;
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

    fn is_control(&self, fd: i32) -> bool {
        self.control.as_ref().is_some_and(|c| c.as_raw_fd() == fd)
    }

    /// A caller on the control socket: its request becomes the redeploy under way when the
    /// deployment can take one; else it is told why not.
    fn take_request(&mut self) {
        let Some(control) = &self.control else { return };
        let Some((mut caller, request)) = Caller::accept(control) else {
            return;
        };
        let refusal = match &request {
            Err(e) => Some((exit::USAGE, format!("deploy: {e}\n"))),
            Ok(_) if self.no_front.is_some() => Some((
                exit::USAGE,
                format!(
                    "deploy: this deployment runs without a front ({}): a redeploy would cut it\n\
                     deploy: hint: stop it first (`uvdeploy stop`), or deploy with Sōzu: {}\n",
                    self.no_front.as_deref().unwrap_or_default(),
                    front::HOW_TO_GET
                ),
            )),
            Ok(_) if self.caller.is_some() => Some((
                exit::FAILED,
                "deploy: a redeploy of this app is under way: never two at once; run it again once that one has its verdict\n"
                    .to_string(),
            )),
            Ok(_) if !self.accepting => Some((
                exit::FAILED,
                "deploy: the deployment is busy (it has no verdict yet, or is retiring its old generation, or stopping): run the redeploy again in a moment\n"
                    .to_string(),
            )),
            Ok(request) => self.refused(request).map(|why| (exit::USAGE, why)),
        };
        match (refusal, request) {
            (Some((code, why)), _) => {
                let _ = caller.say(why.as_bytes());
                caller.finish(code);
            }
            (None, Ok(request)) => {
                if let Ok(sink) = caller.sink() {
                    crate::prefix::tee(Some(Box::new(sink)));
                }
                self.children.watch(caller.stream.as_raw_fd());
                self.caller = Some(caller);
                self.pending = Some(request);
            }
            (None, Err(_)) => {}
        }
    }

    /// What a redeploy may not change, said.
    fn refused(&self, request: &Request) -> Option<String> {
        let port = self.front.as_ref().map(|f| f.port);
        if request.public_port.is_some() && request.public_port != port {
            return Some(format!(
                "deploy: --public-port {} differs from the running deployment's {}: a redeploy keeps the front's port\n",
                request.public_port.unwrap_or_default(),
                port.unwrap_or_default()
            ));
        }
        let running: Vec<&str> = self.options.addons.iter().map(|k| k.name()).collect();
        if request
            .addons
            .iter()
            .map(String::as_str)
            .ne(running.iter().copied())
        {
            return Some(format!(
                "deploy: --addon {} differs from the running deployment's ({}): add-ons are chosen at the first deploy\n",
                request.addons.join(" --addon "),
                if running.is_empty() { "none".to_string() } else { running.join(", ") }
            ));
        }
        None
    }
}

/// A worker's end: a restart planned, or not, and said.
fn worker_ended(unit: &mut workers::Unit, status: i32) {
    let policy = unit.restart.name();
    match unit.ended(status, Instant::now()) {
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

impl Deployment<'_> {
    /// Starts the crons' scheduler of instance `n`: their home and its profile (the app's
    /// environment, for login shells), then a run of each at its minute.
    fn schedule_crons(&mut self, plan: &Plan, n: usize) {
        if plan.crons.is_empty() {
            return;
        }
        let mut env = self.gen.env.clone();
        // The add-ons' variables too, as every process of the app has them.
        if let Some(file) = &self.addons.env_file {
            let _ = env.load_file(file);
        }
        let inst = &self.gen.instances[n];
        for (key, value) in inst.instance.variables(InstanceType::Production) {
            env.set(key, value);
        }
        // The app's environment as the launcher makes it (the venv, the kept uv cache).
        let app_env = launcher::prepare(Some(plan), &launcher::Target::App, &env, None)
            .map(|launch| launch.env)
            .unwrap_or(env);
        let vars = app_env.iter().filter(|(k, _)| *k != "PORT");
        let home = match crons::write_home(&inst.dir, vars) {
            Ok(home) => home,
            Err(e) => {
                say(&format!("cannot write the crons' home: {e}: no cron runs"));
                return;
            }
        };
        let (scheduler, errors) =
            crons::Scheduler::new(&plan.crons, crons::Clock::from_env(&self.gen.env));
        for error in errors {
            say(&error);
        }
        let clock = match &scheduler.clock {
            crons::Clock::System => "the system clock, UTC".to_string(),
            crons::Clock::File(path) => {
                format!("the test clock UVDEPLOY_CLOCK `{}`", path.display())
            }
        };
        let count = self.gen.instances.len();
        if n == 0 && count > 1 {
            say(&format!(
                "crons run on every instance ({count}), as on the platform: test INSTANCE_NUMBER=0 in a cron to run it once"
            ));
        }
        say(&format!(
            "{} cron(s) scheduled{}, on {clock}; their home is {}",
            plan.crons.len(),
            if count > 1 {
                format!(" on instance {n}")
            } else {
                String::new()
            },
            home.display()
        ));
        self.gen.instances[n].crons = Some((scheduler, home));
    }

    /// Runs the crons whose minute has come, on every instance.
    fn run_due_crons(&mut self) {
        let mut runs = Vec::new();
        for inst in self.all_instances_mut() {
            let Some((scheduler, home)) = &mut inst.crons else {
                continue;
            };
            let (due, said) = scheduler.due();
            if let Some(said) = said {
                say(&said);
            }
            for cron in due {
                runs.push((cron, home.clone(), inst.suffix.clone()));
            }
        }
        for (cron, home, suffix) in runs {
            let name = format!("{}{suffix}", cron.name);
            let mut command = crons::command(&cron, &home, &self.gen.env);
            match self.children.spawn(&name, &mut command, Output::Prefixed) {
                Ok(i) => self.cron_runs.push((i, name)),
                Err(e) => say(&format!("cannot run {name}: {e}")),
            }
        }
    }

    /// Starts every worker whose restart is due (of the generation being deployed: one that
    /// is replaced restarts nothing).
    fn start_due_workers(&mut self) {
        let now = Instant::now();
        for n in 0..self.gen.instances.len() {
            for unit in 0..self.gen.instances[n].workers.len() {
                if self.gen.instances[n].workers[unit]
                    .restart_at
                    .is_some_and(|at| at <= now)
                {
                    self.start_worker(n, unit);
                }
            }
        }
    }

    /// Starts worker `unit` of instance `n`, unless it is past systemd's start limit: then it
    /// is given up, and said once. A worker that cannot be started at all is said, and left.
    fn start_worker(&mut self, n: usize, unit: usize) {
        let now = Instant::now();
        let inst = &mut self.gen.instances[n];
        let worker = inst.workers[unit].name.clone();
        let name = format!("{worker}{}", inst.suffix);
        if inst.workers[unit].may_start(now) == workers::Start::GiveUp {
            say(&format!(
                "{name} failed {} times within {}: given up, as systemd would",
                plan::worker::START_LIMIT_BURST,
                seconds(plan::worker::START_LIMIT_INTERVAL)
            ));
            return;
        }
        let mut command = self.launcher(n, &["--worker", &worker]);
        match self.children.spawn(&name, &mut command, Output::Prefixed) {
            Ok(i) => {
                self.gen.instances[n].workers[unit].started(i, now);
                let pid = self.children.procs[i].pid;
                self.gen.summary.processes.insert(name.clone(), pid);
                say(&format!("started {name} (pid {pid})"));
            }
            Err(e) => {
                say(&format!("cannot start {name}: {e}"));
                self.gen.instances[n].workers[unit].restart_at = None;
            }
        }
    }

    /// A process ended that the deployment does not depend on: an add-on's server (the app
    /// runs on without it, as on the platform), or one of the generation serving during a
    /// redeploy (said; the redeploy decides).
    fn other_exited(&self, index: usize, status: i32) {
        let serving = self
            .serving
            .as_ref()
            .is_some_and(|g| g.services().any(|i| i == index));
        if self.addons.is_server(index) {
            say(&format!(
                "{} exited with status {status}: the app runs on without it",
                self.children.procs[index].name
            ));
        } else if serving {
            say(&format!(
                "{} (generation {}, serving) exited with status {status}",
                self.children.procs[index].name,
                self.serving.as_ref().map(|g| g.number).unwrap_or_default()
            ));
        }
    }

    fn phases(&mut self) -> Result<u8, Halt> {
        let started = Instant::now();
        self.children.set_secrets(&self.gen.env);
        self.start_addons()?;
        // The add-ons' passwords are secrets too, in every process's output from now on.
        if let Some(file) = &self.addons.env_file {
            let mut env = self.gen.env.clone();
            if env.load_file(file).is_ok() {
                self.children.set_secrets(&env);
            }
        }
        self.start_front()?;
        let request = self.gen.request.clone();
        match self.generation(1, self.state.clone(), request, false) {
            Ok(mut first) => {
                // What was timed and started before it is its own.
                first.summary.timings_ms = std::mem::take(&mut self.gen.summary.timings_ms);
                first.summary.processes = std::mem::take(&mut self.gen.summary.processes);
                first.env = self.gen.env.clone();
                self.gen = first;
            }
            Err(e) => {
                say(&format!("cannot plan the instances: {e}"));
                return Ok(exit::FAILED);
            }
        }
        if let Some(code) = self.deploy_generation(started)? {
            if self.failed.is_some() {
                phase("health check failed: stopping");
            }
            return Ok(code);
        }
        if let Some(front) = &mut self.front {
            for inst in &self.gen.instances {
                if let Err(e) = front.add(&inst.backend(self.gen.number), inst.public) {
                    say(&format!(
                        "the front cannot send to instance {}: {e}",
                        inst.instance.instance_number
                    ));
                    return Err(Halt::Said(exit::FAILED));
                }
            }
        }
        self.gen.summary.serving();
        self.write_summary();
        self.run_hook("CC_RUN_SUCCEEDED_HOOK")?;
        if self.options.check {
            return self.check();
        }
        self.supervise()
    }

    /// Supervision: until a signal or a service's end; a redeploy when one is asked for.
    fn supervise(&mut self) -> Result<u8, Halt> {
        let said = if self.front.is_some() {
            "; `uvdeploy deploy` again redeploys"
        } else {
            ""
        };
        phase(&format!(
            "deployed: supervising {} process(es); TERM or Ctrl-C stops them{said}",
            self.gen.services().count()
        ));
        loop {
            self.accepting = true;
            let event = self.next_event(None);
            self.accepting = false;
            match event {
                Some(Event::Stop(_)) => return Err(Halt::Stop),
                Some(Event::Exited(i, status)) if self.is_service(i) => {
                    return Err(Halt::Died(i, status))
                }
                Some(Event::Exited(i, status)) => self.other_exited(i, status),
                _ => {}
            }
            if let Some(request) = self.pending.take() {
                self.redeploy(request)?;
            }
        }
    }

    /// The front, when the deployment has one: Sōzu on the public port, before anything is
    /// built (the port is the deployment's from the start; Sōzu answers 503 until an instance
    /// is healthy).
    fn start_front(&mut self) -> Result<(), Halt> {
        let sozu = match (self.options.front, front::find(&self.gen.env)) {
            (Some(crate::FrontChoice::None), _) => {
                self.no_front = Some("--front none".into());
                None
            }
            (_, Some(sozu)) => Some(sozu),
            (Some(crate::FrontChoice::Sozu), None) => {
                say(&format!(
                    "Sōzu (`sozu`) is not on PATH: {}",
                    front::HOW_TO_GET
                ));
                return Err(Halt::Said(exit::USAGE));
            }
            (None, None) => {
                self.no_front = Some("Sōzu is not installed".into());
                None
            }
        };
        let Some(sozu) = sozu else {
            if self.gen.request.instances > 1 {
                say(&format!(
                    "--instances {} needs the front, Sōzu, which {}: {}",
                    self.gen.request.instances,
                    if self.options.front.is_some() {
                        "--front none leaves out"
                    } else {
                        "is not on PATH"
                    },
                    front::HOW_TO_GET
                ));
                return Err(Halt::Said(exit::USAGE));
            }
            if self.options.front.is_none() {
                say(&format!(
                    "no front: Sōzu is not on PATH, so the app's chain takes the public port itself and a redeploy would cut it ({})",
                    front::HOW_TO_GET
                ));
            }
            return Ok(());
        };
        let port = self
            .options
            .ports
            .public_port
            .unwrap_or(plan::PortSettings::default().public);
        phase(&format!("front: Sōzu on port {port}"));
        match Front::start(
            &sozu,
            port,
            &self.state.join("front"),
            self.children,
            std::time::Duration::from_secs(10),
        ) {
            Ok(front) => {
                let pid = self.children.procs[front.index].pid;
                self.gen.summary.processes.insert("front".into(), pid);
                self.front = Some(front);
                Ok(())
            }
            Err(e) => {
                say(&format!("cannot start the front: {e}"));
                self.gen.summary.fail("front", 1);
                self.write_summary();
                Err(Halt::Said(exit::FAILED))
            }
        }
    }

    /// Builds, starts and health-checks `self.gen`: `Some(status)` when it failed (said, its
    /// failed hook run).
    fn deploy_generation(&mut self, started: Instant) -> Result<Option<u8>, Halt> {
        phase(&format!("build: {}", self.app_dir.display()));
        if let Some(code) = self.build()? {
            return Ok(Some(code));
        }
        let mut plans = Vec::new();
        for n in 0..self.gen.instances.len() {
            let path = self.gen.instances[n].plan_path();
            match plan::read_plan(&PlanSource::File(path.clone()), "uvsupervise") {
                Ok(plan) => {
                    self.gen.instances[n].instance.app_home = plan.app_dir.display().to_string();
                    self.gen.instances[n].public = plan.ports.public;
                    plans.push(plan);
                }
                Err(e) => {
                    plan::report::report(&e, &self.gen.env);
                    return Ok(Some(exit::FAILED));
                }
            }
        }
        self.gen.summary.plan = std::fs::read_to_string(self.gen.instances[0].plan_path())
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());

        phase("start");
        let start = Instant::now();
        for (n, plan) in plans.iter().enumerate() {
            if let Some(code) = self.start(plan, n) {
                return Ok(Some(code));
            }
        }
        self.gen.summary.time("start", start.elapsed());

        phase("health check");
        let health_started = Instant::now();
        let mut healthy = true;
        for n in 0..self.gen.instances.len() {
            healthy = self.health_check(n)?;
            if !healthy {
                break;
            }
        }
        self.gen
            .summary
            .time("health_wait", health_started.elapsed());
        self.gen.summary.time("total", started.elapsed());
        self.gen.summary.health =
            std::fs::read_to_string(self.gen.instances[0].dir.join("health.json"))
                .ok()
                .and_then(|text| serde_json::from_str(&text).ok());
        say(&self.gen.summary.timings_line());
        if !healthy {
            self.failed = Some(exit::FAILED);
            self.gen.summary.status = "unhealthy".into();
            self.gen.summary.fail("healthcheck", 1);
            self.write_summary();
            self.run_hook("CC_RUN_FAILED_HOOK")?;
            return Ok(Some(exit::FAILED));
        }
        Ok(None)
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
            &self.gen.env,
            self.children,
            &|line| say(line),
        );
        self.gen.summary.time("addons", started.elapsed());
        match result {
            Ok(addons) => {
                for (name, i) in &addons.servers {
                    let pid = self.children.procs[*i].pid;
                    self.gen.summary.processes.insert(name.clone(), pid);
                }
                self.addons = addons;
                Ok(())
            }
            Err(addon::Halted::Stop) => Err(Halt::Stop),
            Err(addon::Halted::Failed(e)) => {
                plan::report::report(&e, &self.gen.env);
                self.gen
                    .summary
                    .fail("addons", i32::from(plan::report::Failure::exit_code(&e)));
                self.write_summary();
                Err(Halt::Said(plan::report::Failure::exit_code(&e)))
            }
        }
    }
}

impl Deployment<'_> {
    /// `checkout`, then `detect | uvbuild | flowctl` into the first instance's plan, then the
    /// other instances' plans (detect on their ports, the same build, flowctl into their
    /// directories). `Some(status)` when a step failed (said, and in deploy.json).
    fn build(&mut self) -> Result<Option<u8>, Halt> {
        let copy = self.gen.dir.join("copy");
        let source = self.gen.dir.join("source.json");
        // A copy this deployment's tools made before (source.json says so) is replaced;
        // anything else checkout refuses.
        if source.is_file() {
            let _ = std::fs::remove_dir_all(&copy);
        }
        let mut checkout = self.tool("checkout");
        checkout.arg("--into").arg(&copy);
        if self.gen.request.working_tree {
            checkout.arg("--working-tree");
        }
        checkout.arg(&self.app_dir).envs(
            self.gen.instances[0]
                .instance
                .variables(InstanceType::Build),
        );
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
        self.gen
            .summary
            .time("checkout", checkout_started.elapsed());
        let started = Instant::now();
        if status != 0 {
            return Ok(Some(self.build_failed("checkout", status)));
        }
        let commit = platform::commit_of(&source);
        let home = platform::app_home(&copy, &self.gen.env)
            .display()
            .to_string();
        for inst in &mut self.gen.instances {
            inst.instance.commit_id = commit.clone();
            inst.instance.app_home = home.clone();
        }

        let mut detect = self.detect(0, &source, &copy);
        detect.stdout(Stdio::piped());
        let env_args = self.env_args_as(0, InstanceType::Build);
        let mut uvbuild = self.tool("uvbuild");
        uvbuild.args(&env_args).stdout(Stdio::piped());
        let mut flowctl = self.tool("flowctl");
        flowctl
            .args(&env_args)
            .arg("--state-dir")
            .arg(&self.gen.instances[0].dir);
        let plan_file = match std::fs::File::create(self.gen.instances[0].plan_path()) {
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
            self.gen
                .summary
                .time(timed, end.saturating_sub(previous_end));
            previous_end = end;
            statuses.push((name, status));
        }
        if let Some((name, status)) = statuses.into_iter().find(|&(_, status)| status != 0) {
            return Ok(Some(self.build_failed(name, status)));
        }
        for n in 1..self.gen.instances.len() {
            if let Some(code) = self.plan_instance(n, &source, &copy)? {
                return Ok(Some(code));
            }
        }
        Ok(None)
    }

    /// `detect` of the copy for instance `n`, on its ports.
    fn detect(&self, n: usize, source: &std::path::Path, copy: &std::path::Path) -> Command {
        let mut detect = self.tool("detect");
        for kind in &self.options.addons {
            detect.args(["--addon", kind.name()]);
        }
        let (public, app) = match self.gen.instances[n].ports {
            Some((public, app)) => (Some(public), Some(app)),
            None => (self.options.ports.public_port, self.options.ports.app_port),
        };
        if let Some(port) = public {
            detect.args(["--public-port".to_string(), port.to_string()]);
        }
        if let Some(port) = app {
            detect.args(["--app-port".to_string(), port.to_string()]);
        }
        detect
            .args(self.env_args_as(n, InstanceType::Build))
            .arg("--source")
            .arg(source)
            .arg(copy);
        detect
    }

    /// Instance `n`'s plan: the first's build, on its own ports and in its own directory.
    fn plan_instance(
        &mut self,
        n: usize,
        source: &std::path::Path,
        copy: &std::path::Path,
    ) -> Result<Option<u8>, Halt> {
        let dir = self.gen.instances[n].dir.clone();
        if let Err(e) = std::fs::create_dir_all(&dir) {
            say(&format!("cannot make {}: {e}", dir.display()));
            return Ok(Some(exit::FAILED));
        }
        let detected = dir.join("detected.json");
        let mut detect = self.detect(n, source, copy);
        match std::fs::File::create(&detected) {
            Ok(file) => detect.stdout(file),
            Err(e) => {
                say(&format!("cannot write {}: {e}", detected.display()));
                return Ok(Some(exit::FAILED));
            }
        };
        // Said once already, for the first instance.
        detect.stderr(Stdio::null());
        let name = format!("detect{}", self.gen.instances[n].suffix);
        let index = match self.spawn(&name, &mut detect, Output::AsSet) {
            Ok(i) => i,
            Err(code) => return Ok(Some(code)),
        };
        let status = self.wait(index)?;
        if status != 0 {
            return Ok(Some(self.build_failed(&name, status)));
        }
        let first = plan::read_plan(
            &PlanSource::File(self.gen.instances[0].plan_path()),
            "uvsupervise",
        );
        let mine = plan::read_plan(&PlanSource::File(detected.clone()), "uvsupervise");
        let built = dir.join("built.json");
        let written = match (first, mine) {
            (Ok(first), Ok(mut mine)) => {
                mine.build = first.build;
                serde_json::to_string(&mine)
                    .map_err(|e| e.to_string())
                    .and_then(|text| std::fs::write(&built, text).map_err(|e| e.to_string()))
            }
            (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
        };
        if let Err(e) = written {
            say(&format!("cannot plan instance {n}: {e}"));
            return Ok(Some(exit::FAILED));
        }
        let mut flowctl = self.tool("flowctl");
        flowctl
            .args(self.env_args_as(n, InstanceType::Build))
            .arg("--plan")
            .arg(&built)
            .arg("--state-dir")
            .arg(&dir);
        match std::fs::File::create(dir.join("plan.json")) {
            Ok(file) => flowctl.stdout(file),
            Err(e) => {
                say(&format!("cannot write the plan: {e}"));
                return Ok(Some(exit::FAILED));
            }
        };
        let name = format!("flowctl{}", self.gen.instances[n].suffix);
        let index = match self.spawn(&name, &mut flowctl, Output::Plain) {
            Ok(i) => i,
            Err(code) => return Ok(Some(code)),
        };
        let status = self.wait(index)?;
        if status != 0 {
            return Ok(Some(self.build_failed(&name, status)));
        }
        Ok(None)
    }

    fn build_failed(&mut self, step: &str, status: i32) -> u8 {
        say(&format!(
            "{step} failed (exit {status}): nothing was started"
        ));
        self.gen.summary.status = "failed".into();
        self.gen.summary.fail(step, status);
        self.write_summary();
        u8::try_from(status).unwrap_or(exit::FAILED)
    }

    fn launcher(&self, n: usize, target: &[&str]) -> Command {
        let mut command = self.tool("launcher");
        command
            .arg("--plan")
            .arg(self.gen.instances[n].plan_path())
            .args(self.env_args_as(n, InstanceType::Production))
            .args(target);
        command
    }

    /// Instance `n`: the app first (its start is the longest, and the hops connect to it
    /// lazily), then every hop, then the workers. `Some(status)` when one cannot be started.
    fn start(&mut self, plan: &Plan, n: usize) -> Option<u8> {
        let mut targets: Vec<(String, Vec<String>)> = vec![("app".into(), vec!["--app".into()])];
        for hop in plan.hops.iter().flatten() {
            targets.push((hop.name.clone(), vec!["--hop".into(), hop.name.clone()]));
        }
        let suffix = self.gen.instances[n].suffix.clone();
        for (name, target) in targets {
            let name = format!("{name}{suffix}");
            let target: Vec<&str> = target.iter().map(String::as_str).collect();
            let mut command = self.launcher(n, &target);
            match self.spawn(&name, &mut command, Output::Prefixed) {
                Ok(i) => {
                    self.gen.instances[n].services.push(i);
                    let pid = self.children.procs[i].pid;
                    self.gen.summary.processes.insert(name.clone(), pid);
                    say(&format!("started {name} (pid {pid})"));
                }
                Err(code) => return Some(code),
            }
        }
        self.gen.instances[n].workers = plan.workers.iter().map(workers::Unit::new).collect();
        for unit in 0..self.gen.instances[n].workers.len() {
            self.start_worker(n, unit);
        }
        self.schedule_crons(plan, n);
        None
    }

    /// Instance `n`'s health check, watching the services meanwhile: whether it passed.
    fn health_check(&mut self, n: usize) -> Result<bool, Halt> {
        let inst = &self.gen.instances[n];
        let app_pid = self.children.procs[inst.services[0]].pid;
        let mut command = self.tool("healthcheck");
        command
            .arg("--plan")
            .arg(inst.plan_path())
            .args(self.env_args_as(n, InstanceType::Production))
            .arg("--timeout")
            .arg(format!("{}ms", self.gen.request.timeout_ms))
            .arg("--pid")
            .arg(app_pid.to_string())
            .arg("--report")
            .arg(inst.dir.join("health.json"));
        // Only an answer from a port this instance's processes hold counts: never another's,
        // or a previous deployment's, still listening there.
        for &i in &inst.services {
            command
                .arg("--owner")
                .arg(self.children.procs[i].pid.to_string());
        }
        // The verdict on our stdout; on a redeploy's caller's screen too (through the relay).
        let output = if self.serving.is_some() {
            Output::Unlabelled
        } else {
            Output::AsSet
        };
        let checker = match self.spawn("healthcheck", &mut command, output) {
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
                self.gen.summary.status = "failed".into();
                self.gen.summary.fail(&name, status);
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
        if self.gen.env.non_empty(name).is_none() {
            return Ok(());
        }
        let mut command = self.launcher(0, &["--hook", name]);
        let Ok(index) = self.spawn("hook", &mut command, Output::Prefixed) else {
            return Ok(());
        };
        let mut died = None;
        let status = loop {
            match self.wait_any(index) {
                Ok(status) => break status,
                Err(Event::Stop(_)) => return Err(Halt::Stop),
                Err(Event::Exited(i, status)) if self.is_service(i) => {
                    died.get_or_insert((i, status));
                }
                // An add-on's end is said as in every other wait.
                Err(Event::Exited(i, status)) => self.other_exited(i, status),
                Err(Event::Ready(_)) => return Err(Halt::Cancelled),
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
    fn check(&mut self) -> Result<u8, Halt> {
        let Some(smoke) = self.options.smoke.clone() else {
            phase("check passed: the deployment is healthy; stopping");
            return Ok(0);
        };
        let shown = plan::secret::hide_in_shell(&smoke, &self.gen.env);
        phase(&format!("smoke: {shown}"));
        let port = match &self.front {
            Some(front) => front.port,
            None => self.gen.instances[0].public,
        };
        let url = format!("http://127.0.0.1:{port}");
        let path = match self.gen.env.non_empty("PATH") {
            Some(path) => format!("{}:{path}", self.tools.display()),
            None => self.tools.display().to_string(),
        };
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(&smoke)
            .current_dir(&self.app_dir)
            .env_clear()
            .envs(self.gen.env.iter())
            .env("PATH", path)
            .env("UVDEPLOY_URL", &url);
        let started = Instant::now();
        let index = match self.spawn("smoke", &mut command, Output::Prefixed) {
            Ok(i) => i,
            Err(code) => return Ok(code),
        };
        let status = self.wait(index)?;
        self.gen.summary.time("smoke", started.elapsed());
        self.gen.summary.smoke = Some(summary::Smoke {
            command: shown,
            status,
        });
        if status == 0 {
            self.write_summary();
            phase("check passed: healthy, and the smoke command passed; stopping");
            Ok(0)
        } else {
            self.gen.summary.fail("smoke", status);
            self.write_summary();
            phase(&format!(
                "check failed: the smoke command exited with status {status}; stopping"
            ));
            Ok(exit::FAILED)
        }
    }
}

impl Deployment<'_> {
    /// Generation `number`'s instances and their directories (the generation's directory for
    /// the first instance, `instance-N` in it for the others), each its own ports behind the
    /// front.
    pub fn generation(
        &mut self,
        number: u32,
        dir: PathBuf,
        request: Request,
        own_env: bool,
    ) -> Result<Generation, String> {
        let app = std::fs::canonicalize(&self.app_dir).unwrap_or_else(|_| self.app_dir.clone());
        let env = request.env();
        let home = platform::app_home(&dir.join("copy"), &env);
        let first = Instance::new(&app, &home);
        let count = match request.instances {
            0 => self.gen.instances.len().max(1) as u32,
            n => n,
        };
        let mut instances = Vec::new();
        for n in 0..count {
            let mut instance = if n == 0 {
                first.clone()
            } else {
                Instance {
                    deployment_id: first.deployment_id.clone(),
                    ..Instance::new(&app, &home)
                }
            };
            instance.instance_number = n;
            let ports = match &self.front {
                Some(_) => Some(
                    front::instance_ports(&mut self.ports_taken)
                        .ok_or("no block of ten free ports left for an instance")?,
                ),
                None => None,
            };
            instances.push(InstanceRun {
                instance,
                dir: if n == 0 {
                    dir.clone()
                } else {
                    dir.join(format!("instance-{n}"))
                },
                suffix: if count > 1 {
                    format!(".{n}")
                } else {
                    String::new()
                },
                ports,
                public: 0,
                services: Vec::new(),
                workers: Vec::new(),
                crons: None,
            });
        }
        let mut summary = Summary::new(&self.state);
        summary.generation = number;
        summary.instances = count;
        Ok(Generation {
            number,
            dir,
            request,
            env,
            own_env,
            instances,
            summary,
        })
    }

    /// A redeploy, asked for by a caller: the new generation built and started beside the one
    /// serving, each new instance health-checked; then the front moves to the new instances
    /// and the old ones stop, or, when one fails, the new ones stop and the old serve on. The
    /// caller gets the verdict. `Err` only when the deployment itself must end.
    fn redeploy(&mut self, request: Request) -> Result<(), Halt> {
        let started = Instant::now();
        self.redeploy_started = self.children.procs.len();
        let number = self.gen.number + 1;
        let old_number = self.gen.number;
        phase(&format!(
            "redeploy: generation {number}, asked by PID {}; generation {old_number} serves meanwhile",
            request.pid
        ));
        let dir = self.state.join(format!("generation-{number}"));
        let _ = std::fs::remove_dir_all(&dir);
        let made = std::fs::create_dir_all(&dir).map_err(|e| e.to_string());
        let new = made.and_then(|()| self.generation(number, dir, request, true));
        let mut new = match new {
            Ok(new) => new,
            Err(e) => {
                say(&format!("cannot start generation {number}: {e}"));
                self.answer(exit::FAILED);
                return Ok(());
            }
        };
        // The front's and add-ons' processes are the new generation's too.
        for (name, pid) in &self.gen.summary.processes {
            if name == "front" || self.addons.servers.iter().any(|(n, _)| n == name) {
                new.summary.processes.insert(name.clone(), *pid);
            }
        }
        let mut secrets = new.env.clone();
        if let Some(file) = &self.addons.env_file {
            let _ = secrets.load_file(file);
        }
        self.children.set_secrets(&secrets);
        let old = std::mem::replace(&mut self.gen, new);
        self.serving = Some(old);
        let outcome = self.deploy_generation(started);
        let failed = self.failed.take();
        match outcome {
            Ok(None) => {
                let switched = Instant::now();
                if let Err(e) = self.switch() {
                    say(&format!(
                        "the front could not move to generation {number}: {e}"
                    ));
                    self.give_up(exit::FAILED);
                    return Ok(());
                }
                let old = self.serving.take();
                self.gen.summary.time("switch", switched.elapsed());
                self.gen.summary.time("total", started.elapsed());
                self.gen.summary.serving();
                self.write_summary();
                phase(&format!(
                    "generation {number} serves ({} instance(s)); generation {old_number} finishes its requests and stops",
                    self.gen.instances.len()
                ));
                let hook = self.run_hook("CC_RUN_SUCCEEDED_HOOK");
                // The verdict is known: the caller returns, the old generation stops after.
                self.answer(0);
                if let Some(old) = old {
                    self.retire(old);
                }
                hook
            }
            Ok(Some(code)) | Err(Halt::Said(code)) => {
                self.give_up(if failed.is_some() { exit::FAILED } else { code });
                Ok(())
            }
            Err(Halt::Cancelled) => {
                say("the redeploy's caller went away: the redeploy is given up");
                self.give_up(exit::FAILED);
                Ok(())
            }
            Err(Halt::Died(i, status)) => {
                let name = self.children.procs[i].name.clone();
                say(&format!("{name} exited with status {status}"));
                self.give_up(exit::FAILED);
                Ok(())
            }
            Err(Halt::Stop) => {
                self.give_up(exit::FAILED);
                Err(Halt::Stop)
            }
        }
    }

    /// The front sends to the new instances, then no longer to the old.
    fn switch(&mut self) -> Result<(), String> {
        let Some(front) = &mut self.front else {
            return Ok(());
        };
        for inst in &self.gen.instances {
            front.add(&inst.backend(self.gen.number), inst.public)?;
        }
        if let Some(old) = &self.serving {
            for inst in &old.instances {
                front.remove(&inst.backend(old.number))?;
            }
        }
        Ok(())
    }

    /// A redeploy that failed: its processes stop (those of its build and health check too),
    /// the generation serving serves on.
    fn give_up(&mut self, code: u8) {
        // Not a caller's going away any more, while its processes stop.
        if let Some(caller) = &self.caller {
            self.children.unwatch(caller.stream.as_raw_fd());
        }
        let Some(old) = self.serving.take() else {
            self.answer(code);
            return;
        };
        let new = std::mem::replace(&mut self.gen, old);
        if let Some(front) = &mut self.front {
            for inst in &new.instances {
                let _ = front.remove(&inst.backend(new.number));
            }
        }
        phase(&format!(
            "redeploy failed: generation {} stops; generation {} serves on",
            new.number, self.gen.number
        ));
        let mut processes = new.processes();
        processes.extend(
            (self.redeploy_started..self.children.procs.len())
                .filter(|i| !self.cron_runs.iter().any(|(run, _)| run == i)),
        );
        self.children.stop(&processes, &|line| say(line));
        self.release_ports(&new);
        let mut secrets = self.gen.env.clone();
        if let Some(file) = &self.addons.env_file {
            let _ = secrets.load_file(file);
        }
        self.children.set_secrets(&secrets);
        self.answer(code);
    }

    /// An old generation: stopped, its files removed (but the first's: the state directory).
    fn retire(&mut self, old: Generation) {
        self.drain(&old);
        self.children.stop(&old.processes(), &|line| say(line));
        self.release_ports(&old);
        if old.number > 1 {
            let _ = std::fs::remove_dir_all(&old.dir);
        }
    }

    /// Waits, up to the grace period, until no connection from the front is left on the old
    /// generation's instances: the requests under way there finish before their app gets
    /// TERM. The front no longer sends them new ones; a connection it keeps open idle is
    /// closed at its next request, or ends with the grace period. A signal or another process's
    /// end meanwhile is kept for the supervision loop.
    fn drain(&mut self, old: &Generation) {
        let ports: Vec<u16> = old.instances.iter().map(|i| i.public).collect();
        let deadline = Instant::now() + self.children.grace();
        let mut kept = Vec::new();
        while process::connections_to(&ports) > 0 && Instant::now() < deadline {
            // The kernel says nothing when a connection ends: look again soon.
            let soon = (Instant::now() + std::time::Duration::from_millis(50)).min(deadline);
            if let Some(event) = self.next_event(Some(soon)) {
                kept.push(event);
                if matches!(event, Event::Stop(_)) {
                    break;
                }
            }
        }
        self.children.keep(kept);
    }

    fn release_ports(&mut self, gen: &Generation) {
        for (first, last) in gen.instances.iter().filter_map(|i| i.ports) {
            self.ports_taken.retain(|p| !(first..=last).contains(p));
        }
    }

    /// The verdict to the redeploy's caller, who then exits.
    fn answer(&mut self, code: u8) {
        crate::prefix::tee(None);
        if let Some(caller) = self.caller.take() {
            self.children.unwatch(caller.stream.as_raw_fd());
            caller.finish(code);
        }
    }
}
