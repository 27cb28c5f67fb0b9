//! The build of a generation: `checkout`, `detect | uvbuild | flowctl` into the first
//! instance's plan, the other instances' plans on their own ports.

use super::*;

impl Deployment<'_> {
    /// `checkout`, then `detect | uvbuild | flowctl` into the first instance's plan, then the
    /// other instances' plans (detect on their ports, the same build, flowctl into their
    /// directories). `Some(status)` when a step failed (said, and in deploy.json).
    pub(super) fn build(&mut self) -> Result<Option<u8>, Halt> {
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
    pub(super) fn detect(
        &self,
        n: usize,
        source: &std::path::Path,
        copy: &std::path::Path,
    ) -> Command {
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
    pub(super) fn plan_instance(
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

    pub(super) fn build_failed(&mut self, step: &str, status: i32) -> u8 {
        say(&format!(
            "{step} failed (exit {status}): nothing was started"
        ));
        self.gen.summary.status = "failed".into();
        self.gen.summary.fail(step, status);
        self.write_summary();
        u8::try_from(status).unwrap_or(exit::FAILED)
    }
}
