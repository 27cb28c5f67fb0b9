//! Generations: a redeploy beside the one serving, the front's switch, the old one's drain
//! and stop, or the new one's end.

use super::*;

impl Deployment<'_> {
    /// Generation `number`'s instances and their directories (the generation's directory for
    /// the first instance, `instance-N` in it for the others), each its own ports behind the
    /// front.
    pub(super) fn generation(
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
                chain: String::new(),
                worker_names: Vec::new(),
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
    pub(super) fn redeploy(&mut self, request: Request) -> Result<(), Halt> {
        let started = Instant::now();
        self.redeploy_started = self.children.procs.len();
        // Each attempt its own number: a failed one's record is not overwritten.
        self.last_generation += 1;
        let number = self.last_generation;
        self.children.tag = number;
        let old_number = self.gen.number;
        phase(&format!(
            "redeploy: generation {number}, asked by PID {}; generation {old_number} serves meanwhile",
            request.pid
        ));
        let dir = self.state.join(format!("generation-{number}"));
        let _ = std::fs::remove_dir_all(&dir);
        let made = std::fs::create_dir_all(&dir).map_err(|e| e.to_string());
        self.children.watch_dir(&dir.join("copy"));
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
        self.serving_died = None;
        let outcome = self.redeploy_outcome(started);
        // When the new generation serves, the old one's end changes nothing; when it failed,
        // what serves on is not whole.
        let switched = self.gen.number == number;
        match self.serving_died.take() {
            Some((i, status)) if !switched && outcome.is_ok() => Err(Halt::Died(i, status)),
            _ => outcome,
        }
    }

    pub(super) fn redeploy_outcome(&mut self, started: Instant) -> Result<(), Halt> {
        let number = self.gen.number;
        let old_number = self.serving.as_ref().map(|g| g.number).unwrap_or_default();
        let outcome = self.deploy_generation(started);
        let failed = self.failed.take();
        match outcome {
            Ok(None) => {
                let switched = Instant::now();
                if let Err(e) = self.switch() {
                    say(&format!(
                        "the front could not move to generation {number}: {e}"
                    ));
                    self.give_up(exit::FAILED, false);
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
                self.give_up(if failed.is_some() { exit::FAILED } else { code }, false);
                Ok(())
            }
            Err(Halt::Cancelled) => {
                say("the redeploy's caller went away: the redeploy is given up");
                self.give_up(exit::FAILED, false);
                Ok(())
            }
            Err(Halt::Died(i, status)) => {
                let name = self.children.procs[i].name.clone();
                say(&format!("{name} exited with status {status}"));
                self.give_up(exit::FAILED, false);
                Ok(())
            }
            Err(Halt::Stop) => {
                phase(&format!(
                    "stopping (signal received): the redeploy to generation {number} is given up"
                ));
                self.give_up(exit::FAILED, true);
                Err(Halt::Stop)
            }
        }
    }

    /// The front sends to the new instances, then no longer to the old.
    pub(super) fn switch(&mut self) -> Result<(), String> {
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
    /// the generation serving serves on (unless the whole deployment is `stopping`).
    pub(super) fn give_up(&mut self, code: u8, stopping: bool) {
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
        if !stopping {
            phase(&format!(
                "redeploy failed: generation {} stops; generation {} serves on",
                new.number, self.gen.number
            ));
        }
        let mut processes = new.processes();
        processes.extend(
            (self.redeploy_started..self.children.procs.len())
                .filter(|i| !self.cron_runs.iter().any(|(run, _)| run == i)),
        );
        self.children.stop(&processes, &|line| say(line));
        self.children.stop_orphans_in(&new.dir.join("copy"));
        self.release_ports(&new);
        // Its record stays for a look (`generation-N/deploy.json`, the plans); its copy and
        // venv go.
        let _ = std::fs::remove_dir_all(new.dir.join("copy"));
        let mut secrets = self.gen.env.clone();
        if let Some(file) = &self.addons.env_file {
            let _ = secrets.load_file(file);
        }
        self.children.set_secrets(&secrets);
        self.answer(code);
    }

    /// An old generation: stopped, its files removed (but the first's: the state directory).
    pub(super) fn retire(&mut self, old: Generation) {
        self.drain(&old);
        self.children.stop(&old.processes(), &|line| say(line));
        self.children.stop_orphans_in(&old.dir.join("copy"));
        self.release_ports(&old);
        if old.number > 1 {
            let _ = std::fs::remove_dir_all(&old.dir);
        } else {
            // The first generation's directory is the state directory: its copy (the venv)
            // and its other instances' files go; what the deployment keeps stays.
            let _ = std::fs::remove_dir_all(old.dir.join("copy"));
            for inst in old.instances.iter().skip(1) {
                let _ = std::fs::remove_dir_all(&inst.dir);
            }
        }
    }

    /// Waits, up to the grace period, until no connection from the front is left on the old
    /// generation's instances: the requests under way there finish before their app gets
    /// TERM. The front no longer sends them new ones; a connection it keeps open idle is
    /// closed at its next request, or ends with the grace period. A signal or another process's
    /// end meanwhile is kept for the supervision loop.
    pub(super) fn drain(&mut self, old: &Generation) {
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

    pub(super) fn release_ports(&mut self, gen: &Generation) {
        for (first, last) in gen.instances.iter().filter_map(|i| i.ports) {
            self.ports_taken.retain(|p| !(first..=last).contains(p));
        }
    }

    /// The redeploy's caller is gone: nothing more is said to it.
    pub(super) fn caller_left(&mut self) {
        crate::prefix::tee(None, 0);
        if let Some(caller) = self.caller.take() {
            self.children.unwatch(caller.stream.as_raw_fd());
        }
    }

    /// The verdict to the redeploy's caller, who then exits.
    pub(super) fn answer(&mut self, code: u8) {
        crate::prefix::tee(None, 0);
        if let Some(caller) = self.caller.take() {
            self.children.unwatch(caller.stream.as_raw_fd());
            caller.finish(code);
        }
    }
}
