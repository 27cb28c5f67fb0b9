//! A deployment's phases: add-ons, the front, a generation built, started and health-checked,
//! then supervision.

use super::*;

impl Deployment<'_> {
    pub(super) fn phases(&mut self) -> Result<u8, Halt> {
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
        self.front_listening()?;
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
    pub(super) fn supervise(&mut self) -> Result<u8, Halt> {
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
                // (An instance that left the front is handled in the guard; its end then
                // falls to the next arm, which has nothing to say of it.)
                Some(Event::Exited(i, status))
                    if self.is_service(i) && !self.instance_out(i, status) =>
                {
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
    pub(super) fn start_front(&mut self) -> Result<(), Halt> {
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
                let why = if self.options.front.is_some() {
                    "--front none leaves out: leave it out".to_string()
                } else {
                    format!("is not on PATH: {}", front::HOW_TO_GET)
                };
                say(&format!(
                    "--instances {} needs the front, Sōzu, which {why}",
                    self.gen.request.instances
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
        let socket = self.sockets.join("sozu.sock");
        match Front::start(
            &sozu,
            port,
            &self.state.join("front"),
            &socket,
            self.children,
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
    pub(super) fn deploy_generation(&mut self, started: Instant) -> Result<Option<u8>, Halt> {
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
                    let inst = &mut self.gen.instances[n];
                    inst.public = plan.ports.public;
                    inst.chain = plan
                        .hops
                        .iter()
                        .flatten()
                        .map(|h| h.name.as_str())
                        .chain(["app"])
                        .collect::<Vec<_>>()
                        .join(" → ");
                    inst.worker_names = plan.workers.iter().map(|w| w.name.clone()).collect();
                    plans.push(plan);
                }
                Err(e) => {
                    plan::report::report(&e, &self.gen.env);
                    return Ok(Some(exit::FAILED));
                }
            }
        }
        self.say_what_changes();
        // Every name to come, so that all lines align from the first.
        let mut names = Vec::new();
        for (inst, plan) in self.gen.instances.iter().zip(&plans) {
            let hops = plan.hops.iter().flatten().map(|h| h.name.clone());
            let workers = plan.workers.iter().map(|w| w.name.clone());
            let crons = plan.crons.iter().map(|c| c.name.clone());
            for name in ["app".to_string()]
                .into_iter()
                .chain(hops)
                .chain(workers)
                .chain(crons)
            {
                names.push(format!("{name}{}", inst.suffix));
            }
        }
        self.children.align(names.iter().map(String::as_str));
        if let Some(front) = &self.front {
            for (inst, plan) in self.gen.instances.iter().zip(&plans) {
                say(&format!(
                    "instance {}: its chain on :{}, the app on PORT={}, behind the front on :{} (on the platform each instance is a machine of its own, on 8080 and 9000)",
                    inst.instance.instance_number, plan.ports.public, plan.ports.app, front.port
                ));
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
    pub(super) fn start_addons(&mut self) -> Result<(), Halt> {
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

    /// A redeploy takes the redeploying command's environment: what that changes in the chain
    /// and the workers, against what serves, is said (a secret left out of the environment
    /// drops its hop).
    fn say_what_changes(&self) {
        let (Some(old), Some(new)) = (
            self.serving.as_ref().and_then(|g| g.instances.first()),
            self.gen.instances.first(),
        ) else {
            return;
        };
        let why = "a redeploy takes this command's environment, not the one serving's";
        if old.chain != new.chain {
            say(&format!(
                "the chain changes: `{}` serves, `{}` comes ({why})",
                old.chain, new.chain
            ));
        }
        if old.worker_names != new.worker_names {
            let list = |names: &[String]| {
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            };
            say(&format!(
                "the workers change: {} run, {} come ({why})",
                list(&old.worker_names),
                list(&new.worker_names)
            ));
        }
    }

    /// Process `index`, a service, ended while the deployment serves. Among several instances
    /// behind the front, its instance leaves the front and stops, and the others serve on:
    /// `true`. Alone (or the front itself), the deployment ends: `false`.
    fn instance_out(&mut self, index: usize, status: i32) -> bool {
        let Some(n) = self
            .gen
            .instances
            .iter()
            .position(|inst| inst.services.contains(&index))
        else {
            return false;
        };
        let serving = self
            .gen
            .instances
            .iter()
            .filter(|inst| !inst.services.is_empty())
            .count();
        if self.front.is_none() || serving < 2 {
            return false;
        }
        self.children.drain(index);
        let number = self.gen.number;
        let inst = &self.gen.instances[n];
        let name = self.children.procs[index].name.clone();
        say(&format!(
            "{name} exited with status {status}: instance {} leaves the front and stops; {} instance(s) serve on (redeploy to start it again)",
            inst.instance.instance_number,
            serving - 1
        ));
        let backend = inst.backend(number);
        if let Some(front) = &mut self.front {
            if let Err(e) = front.remove(&backend) {
                say(&format!("the front still sends to it: {e}"));
            }
        }
        let processes: Vec<usize> = {
            let inst = &self.gen.instances[n];
            inst.services
                .iter()
                .copied()
                .chain(inst.workers.iter().filter_map(|w| w.running))
                .collect()
        };
        self.children.stop(&processes, &|line| say(line));
        let gone: Vec<String> = processes
            .iter()
            .map(|&i| self.children.procs[i].name.clone())
            .collect();
        let inst = &mut self.gen.instances[n];
        inst.services.clear();
        inst.workers.clear();
        inst.crons = None;
        self.gen
            .summary
            .processes
            .retain(|name, _| !gone.contains(name));
        self.gen.summary.instances = (serving - 1) as u32;
        self.write_summary();
        true
    }
}
