//! The processes beside the app: workers restarted as systemd would, crons at their minute,
//! on every instance; and what the end of one the deployment does not depend on means.

use super::*;

/// A worker's end: a restart planned, or not, and said.
pub(super) fn worker_ended(unit: &mut workers::Unit, status: i32) {
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
    pub(super) fn schedule_crons(&mut self, plan: &Plan, n: usize) {
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
"crons run on every instance ({count}), as on the platform: to run one once, test INSTANCE_NUMBER=0 in it (a `#!/bin/bash -l` script has the app's variables)"
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
    pub(super) fn run_due_crons(&mut self) {
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
    pub(super) fn start_due_workers(&mut self) {
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
    pub(super) fn start_worker(&mut self, n: usize, unit: usize) {
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
    pub(super) fn other_exited(&mut self, index: usize, status: i32) {
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
            self.serving_died.get_or_insert((index, status));
        }
    }
}
