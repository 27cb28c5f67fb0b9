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
    /// Its chain as the plan says it (`otoroshi → varnish → app`), and its workers' names.
    pub chain: String,
    pub worker_names: Vec<String>,
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
    /// Where the sockets are (the state directory, unless its path is too long for them).
    pub sockets: PathBuf,
    /// The caller of the redeploy under way.
    pub caller: Option<Caller>,
    /// Ports given to instances, not to be given twice.
    pub ports_taken: BTreeSet<u16>,
    /// Whether a redeploy may be asked for now (the deployment serves, nothing under way).
    pub accepting: bool,
    /// The redeploy asked for, not started yet.
    pub pending: Option<Request>,
    /// The number of the last generation started (failed ones count).
    pub last_generation: u32,
    /// The index of the first process the redeploy under way started.
    pub redeploy_started: usize,
    /// A process of the generation serving that ended during the redeploy: when the redeploy
    /// fails, nothing whole serves, and the deployment ends.
    pub serving_died: Option<(usize, i32)>,
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
                if let Some(front) = self.front.as_ref().filter(|f| f.index == i) {
                    say(&front.said());
                }
                self.gen.summary.status = "failed".into();
                self.gen.summary.fail(&name, status);
                self.write_summary();
                1
            }
            Err(Halt::Said(code)) => code,
            Err(Halt::Cancelled) => 1,
        };
        if let Some(caller) = self.caller.take() {
            crate::prefix::tee(None, 0);
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

    /// A process the deployment cannot serve without: the front, an instance's app or hop.
    fn is_service(&self, index: usize) -> bool {
        self.front.as_ref().is_some_and(|f| f.index == index)
            || self.gen.services().any(|i| i == index)
    }

    /// Waits until the front listens (it started with the build): up to 10 s. Other events
    /// meanwhile are kept for what follows.
    fn front_listening(&mut self) -> Result<(), Halt> {
        if self.front.is_none() {
            return Ok(());
        }
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        let mut kept = Vec::new();
        let result = loop {
            let front = self.front.as_ref().expect("checked above");
            if front.listening() {
                break Ok(());
            }
            if Instant::now() > deadline {
                say(&format!(
                    "the front did not listen on port {} within 10s; {}",
                    front.port,
                    front.said()
                ));
                break Err(Halt::Said(exit::FAILED));
            }
            // The kernel says nothing when a socket starts listening: look again soon.
            match self.next_event(Some(Instant::now() + std::time::Duration::from_millis(5))) {
                Some(Event::Stop(_)) => break Err(Halt::Stop),
                Some(event) => kept.push(event),
                None => {}
            }
        };
        self.children.keep(kept);
        result
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
                        units::worker_ended(unit, status);
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
                    crate::prefix::tee(Some(Box::new(sink)), self.last_generation + 1);
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

mod build;
mod generations;
mod phases;
mod start;
mod units;
