//! Starting an instance (through `launcher`), its health check, the run hooks, the CI check.

use super::*;

impl Deployment<'_> {
    pub(super) fn launcher(&self, n: usize, target: &[&str]) -> Command {
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
    pub(super) fn start(&mut self, plan: &Plan, n: usize) -> Option<u8> {
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
    pub(super) fn health_check(&mut self, n: usize) -> Result<bool, Halt> {
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
    pub(super) fn run_hook(&mut self, name: &str) -> Result<(), Halt> {
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
                // The redeploy's caller went away while a hook runs: the verdict is known by
                // then (the front moved, or the redeploy failed); the hook runs to its end.
                Err(Event::Ready(_)) => self.caller_left(),
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
    pub(super) fn check(&mut self) -> Result<u8, Halt> {
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
