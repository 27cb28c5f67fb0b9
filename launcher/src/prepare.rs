//! What one process of the plan needs, worked out before anything runs: argv, working
//! directory, environment, the files a hop reads, the pre-run hook and the manage tasks.

use crate::{Launch, LaunchError, Target, RUN_HOOKS};
use plan::secret::{is_secret_variable, REDACTED};
use plan::{Env, EnvValue, Mode, Plan};
use process::command::shell_argv;

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

#[cfg(test)]
mod tests {
    use super::*;
    use plan::{
        Build, Environment, HealthCheck, Hop, HopFile, Ports, RequestFlow, Run, RunSource, SCHEMA,
    };
    use std::path::Path;

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
