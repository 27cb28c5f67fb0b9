//! Detection: from an application directory and its environment, decide how the platform
//! would deploy it, as a [`Plan`]. `detect` prints it; `uvbuild APP_DIR` reuses it.

mod advice;
mod crons;
mod error;
mod flow;
mod health;
mod legacy;
mod workers;
mod workspace;

pub use error::DetectError;
pub use flow::request_flow;
pub use health::health_check;

pub use plan::PortSettings;
use plan::{Build, Env, Environment, Mode, Plan, Run, RunSource, Source, SourceKind, SCHEMA};
use process::command::{self, CommandError};
use std::path::{Path, PathBuf};

/// Makes the plan for the repository at `repo_dir` (the application is its `APP_FOLDER`).
pub fn detect(repo_dir: &Path, env: &Env, ports: PortSettings) -> Result<Plan, DetectError> {
    let app_dir = app_dir(repo_dir, env)?;
    let run = run_command(env)?;
    let member = workspace::member(&app_dir, repo_dir, env);
    let (mode, mut reasons) = mode(&app_dir, member.as_ref(), env);
    let (environment, environment_warning) = environment_of(env);
    let (request_flow, flow_ignored) = request_flow(env, &app_dir)?;
    let ports = ports.ports_for(&request_flow, mode);
    // Refuse a chain that does not fit now, not when a later tool lays it out.
    ports.chain(&request_flow, mode)?;
    let mut ignored = Vec::new();
    if mode == Mode::Uv {
        ignored.extend(
            env.iter()
                .filter(|(name, value)| legacy::reads(name) && !value.trim().is_empty())
                .map(|(name, _)| name.to_string()),
        );
    }
    ignored.extend(flow_ignored);
    let mut legacy_warnings = Vec::new();
    let mut celery = None;
    let (run, legacy) = match mode {
        Mode::Uv => (run, None),
        Mode::Legacy => {
            if run.as_ref().map(|r| r.source) == Some(RunSource::CcPythonUvRunCommand) {
                ignored.push("CC_PYTHON_UV_RUN_COMMAND".into());
            }
            let member = member.map(|(member, _)| member);
            let settings = legacy::legacy(&app_dir, env, run, ports.app, member)?;
            reasons.extend(settings.reasons);
            legacy_warnings = settings.warnings;
            celery = settings.celery;
            (settings.run, Some(settings.legacy))
        }
    };
    let workers = workers::workers(env, celery, &mut ignored)?;
    let mut cron_warnings = Vec::new();
    let crons = crons::crons(&app_dir, &mut cron_warnings)?;
    let venv = venv(mode, env, &app_dir);
    let warnings = run
        .as_ref()
        .filter(|_| mode == Mode::Uv)
        .and_then(|run| advice::uv_run_installs_dev_dependencies(run, environment, env, &app_dir))
        .into_iter()
        .chain(run.as_ref().and_then(advice::runs_through_a_shell))
        .chain(
            run.as_ref()
                .filter(|_| mode == Mode::Uv)
                .and_then(|run| advice::uv_run_package_installs_at_start_up(run, &app_dir)),
        )
        .chain(environment_warning)
        .chain(legacy_warnings)
        .chain(venv_outside_the_app(&venv, &app_dir))
        .chain(cron_warnings)
        .collect();
    Ok(Plan {
        schema: SCHEMA,
        build: Build {
            argv: build_argv(legacy.as_ref(), environment),
            cache_dir: cache_dir(mode, env)?,
            venv: Some(venv),
            result: None,
        },
        app_dir,
        mode,
        reasons,
        environment,
        run,
        ports,
        ignored,
        warnings,
        health_check: health_check(env)?,
        request_flow,
        source: None,
        legacy,
        workers,
        crons,
        // Asked of the deployment, not of the app: `detect --addon` (main) sets them.
        addons: Vec::new(),
        state_dir: None,
        hops: None,
        extra: Default::default(),
    })
}

/// Records what `checkout` copied (`detect --source FILE`): the plan says what is deployed,
/// and a `uv.lock` that is in the working tree but not in the commit is its own reason for
/// legacy mode.
pub fn from_source(plan: &mut Plan, source: Source) {
    let relative = plan
        .app_dir
        .strip_prefix(&source.copy)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let original = source.origin.join(&relative);
    let lock_left_out = source.kind == SourceKind::Commit
        && !plan.app_dir.join("uv.lock").is_file()
        && original.join("uv.lock").is_file();
    if lock_left_out {
        let commit = source.commit.clone().unwrap_or_default();
        for reason in plan
            .reasons
            .iter_mut()
            .filter(|r| r.starts_with("uv.lock not found"))
        {
            *reason = format!(
                "uv.lock not committed: it is in your working tree ({}) but not in commit {commit}, which is what is deployed; commit it (`git add uv.lock && git commit`)",
                original.join("uv.lock").display()
            );
        }
    }
    plan.source = Some(source);
}

/// Says on stderr what a person should know about the plan: legacy mode and why, warnings,
/// variables with no effect. (`flowctl APP_DIR` and `uvbuild APP_DIR` say it too.)
pub fn tell(plan: &Plan, tool: &str, env: &Env) {
    if let Some(folder) = env.non_empty("APP_FOLDER") {
        plan::report::say(
            tool,
            format_args!(
                "the application is APP_FOLDER `{}`: {}",
                folder.trim(),
                plan.app_dir.display()
            ),
            env,
        );
    }
    if plan.mode == Mode::Legacy {
        plan::report::say(
            tool,
            format!("note: legacy mode: {}", plan.reasons.join("; ")),
            env,
        );
    }
    if !plan.addons.is_empty() {
        plan::report::say(
            tool,
            format_args!(
                "add-ons: {} (local servers, started before the build; their variables replace any given)",
                plan.addons.join(", ")
            ),
            env,
        );
    }
    for warning in &plan.warnings {
        plan::report::say(tool, format!("warning: {warning}"), env);
    }
    for variable in &plan.ignored {
        plan::report::say(
            tool,
            format!("warning: {variable} is set but has no effect in this deployment"),
            env,
        );
    }
}

/// The repository directory, made absolute, then its `APP_FOLDER` when set.
fn app_dir(repo_dir: &Path, env: &Env) -> Result<PathBuf, DetectError> {
    if !repo_dir.exists() {
        return Err(DetectError::AppDirMissing(repo_dir.into()));
    }
    if !repo_dir.is_dir() {
        return Err(DetectError::AppDirNotDir(repo_dir.into()));
    }
    let repo = repo_dir
        .canonicalize()
        .map_err(|_| DetectError::AppDirMissing(repo_dir.into()))?;
    let Some(folder) = env.non_empty("APP_FOLDER").map(str::trim) else {
        return Ok(repo);
    };
    let candidate = repo.join(folder.trim_start_matches('/'));
    match candidate.canonicalize() {
        Ok(dir) if dir.is_dir() && dir.starts_with(&repo) => Ok(dir),
        _ => Err(DetectError::AppFolder {
            value: folder.into(),
            repo,
        }),
    }
}

/// `CC_RUN_COMMAND` wins over `CC_PYTHON_UV_RUN_COMMAND`; blank counts as unset.
fn run_command(env: &Env) -> Result<Option<Run>, DetectError> {
    let chosen = [RunSource::CcRunCommand, RunSource::CcPythonUvRunCommand]
        .into_iter()
        .find_map(|source| Some((source, env.non_empty(source.variable())?.trim())));
    let Some((source, command)) = chosen else {
        return Ok(None);
    };
    let argv = command::split(command).map_err(|e| DetectError::RunCommand {
        variable: source.variable(),
        value: command.into(),
        reason: match e {
            CommandError::Unparseable(r) => r,
            CommandError::Empty => "nothing to run".into(),
        },
    })?;
    // A secret written literally in the command stays out of the plan, however the command
    // spells it (`my\ secret`): launcher puts it back.
    let hide = |text: &str| plan::secret::hide(text, env);
    Ok(Some(Run {
        source,
        command: plan::secret::hide_in_shell(command, env),
        argv: argv.map(|words| words.iter().map(|w| hide(w)).collect()),
    }))
}

/// uv mode needs both `uv.lock` at the app's root and `CC_PYTHON_UV_RUN_COMMAND`. `member`:
/// the app is a uv workspace member, with the workspace's lockfile.
fn mode(
    app_dir: &Path,
    member: Option<&(plan::WorkspaceMember, String)>,
    env: &Env,
) -> (Mode, Vec<String>) {
    let has_lock = app_dir.join("uv.lock").is_file();
    let has_uv_command = env.non_empty("CC_PYTHON_UV_RUN_COMMAND").is_some();
    if has_lock && has_uv_command {
        return (
            Mode::Uv,
            vec![
                "uv.lock found at the project root".into(),
                "CC_PYTHON_UV_RUN_COMMAND is set".into(),
            ],
        );
    }
    let mut reasons = Vec::new();
    if !has_lock {
        let mut reason = format!(
            "uv.lock not found at the project root ({})",
            app_dir.display()
        );
        if let Some((member, lock)) = member {
            reason.push_str(&format!(
                "; APP_FOLDER is the uv workspace member `{}`, whose lockfile is `{lock}`, at the workspace root, where the platform does not look; {}",
                member.package,
                member.fix()
            ));
        }
        reasons.push(reason);
    }
    if !has_uv_command {
        let mut reason = "CC_PYTHON_UV_RUN_COMMAND is not set".to_string();
        if env.non_empty("CC_RUN_COMMAND").is_some() {
            reason.push_str(" (CC_RUN_COMMAND alone does not activate uv mode)");
        }
        reasons.push(reason);
    }
    (Mode::Legacy, reasons)
}

/// `ENVIRONMENT=development` keeps dev dependencies; any other value builds as production,
/// which is worth a warning when the value looks like a misspelt `development`.
fn environment_of(env: &Env) -> (Environment, Option<String>) {
    match env.non_empty("ENVIRONMENT").map(str::trim) {
        Some("development") => (Environment::Development, None),
        None | Some("production") => (Environment::Production, None),
        Some(other) => (
            Environment::Production,
            Some(format!(
                "ENVIRONMENT is `{other}`: only `development` keeps dev dependencies, so this builds as production (with `--no-dev`); set `ENVIRONMENT=development` for dev dependencies"
            )),
        ),
    }
}

/// What the build runs: `uv sync`, or in legacy mode pip on the requirements (in the venv
/// `uvbuild` makes with the chosen Python).
fn build_argv(legacy: Option<&plan::Legacy>, environment: Environment) -> Vec<String> {
    if let Some(legacy) = legacy {
        let mut argv: Vec<String> = ["pip", "install", "--disable-pip-version-check"]
            .map(String::from)
            .to_vec();
        if let Some(file) = &legacy.requirements {
            argv.extend(["-r".to_string(), file.clone()]);
        }
        return argv;
    }
    let mut argv: Vec<String> = ["uv", "sync", "--locked", "--no-progress"]
        .map(String::from)
        .to_vec();
    if environment == Environment::Production {
        argv.push("--no-dev".into());
    }
    argv
}

/// The deployment's own virtual environment: `.venv` in the app, or in uv mode
/// `UV_PROJECT_ENVIRONMENT` (relative to the project's root, as uv takes it). Legacy mode
/// makes its venv itself, in `.venv`.
fn venv(mode: Mode, env: &Env, app_dir: &Path) -> PathBuf {
    let Some(dir) = env
        .non_empty("UV_PROJECT_ENVIRONMENT")
        .filter(|_| mode == Mode::Uv)
    else {
        return app_dir.join(".venv");
    };
    // `..` taken as written (as uv does), so that `../shared` is seen to be outside the app.
    let mut venv = PathBuf::new();
    for part in app_dir.join(dir).components() {
        match part {
            std::path::Component::ParentDir => {
                venv.pop();
            }
            std::path::Component::CurDir => {}
            other => venv.push(other),
        }
    }
    venv
}

/// A venv outside the app (`UV_PROJECT_ENVIRONMENT=/abs/dir`) is one environment for every
/// deployment of the app: a second one rewrites the first's while it runs.
fn venv_outside_the_app(venv: &Path, app_dir: &Path) -> Option<String> {
    (!venv.starts_with(app_dir)).then(|| {
        format!(
            "UV_PROJECT_ENVIRONMENT is `{}`, outside the application: every deployment of it builds into that one environment, so a second deployment changes the one running; unset it (each deployment then has its own `.venv`) or make it relative to the application",
            venv.display()
        )
    })
}

/// Where uv keeps its cache, by uv's own rules; pip's in legacy mode, by pip's.
fn cache_dir(mode: Mode, env: &Env) -> Result<PathBuf, DetectError> {
    let (variable, name) = match mode {
        Mode::Uv => ("UV_CACHE_DIR", "uv"),
        Mode::Legacy => ("PIP_CACHE_DIR", "pip"),
    };
    user_cache(env, variable, name).ok_or(DetectError::NoCacheDir)
}

/// A cache directory by the XDG rules uv follows: the tool's own variable (`variable`), else
/// `$XDG_CACHE_HOME/NAME`, else `~/.cache/NAME`.
fn user_cache(env: &Env, variable: &str, name: &str) -> Option<PathBuf> {
    if let Some(dir) = env.non_empty(variable) {
        return Some(dir.into());
    }
    if let Some(dir) = env.non_empty("XDG_CACHE_HOME") {
        return Some(Path::new(dir).join(name));
    }
    env.non_empty("HOME")
        .map(|home| Path::new(home).join(".cache").join(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use plan::Ports;

    struct App {
        dir: tempfile::TempDir,
    }

    fn app(with_lock: bool) -> App {
        let dir = tempfile::tempdir().unwrap();
        if with_lock {
            std::fs::write(dir.path().join("uv.lock"), "version = 1\n").unwrap();
        }
        App { dir }
    }

    fn env(vars: &[(&str, &str)]) -> Env {
        let mut env: Env = [("HOME", "/home/deploy")].into_iter().collect();
        for (k, v) in vars {
            env.set(*k, *v);
        }
        env
    }

    fn plan_for(app: &App, vars: &[(&str, &str)]) -> Plan {
        detect(app.dir.path(), &env(vars), PortSettings::default()).unwrap()
    }

    const UV_RUN: (&str, &str) = ("CC_PYTHON_UV_RUN_COMMAND", "uv run python app.py");
    const NO_REQUIREMENTS: &str = "no requirements.txt: pip installs nothing";

    #[test]
    fn uv_mode_needs_lock_and_command() {
        type Case<'a> = (bool, &'a [(&'a str, &'a str)], Mode, &'a [&'a str]);
        let cases: &[Case] = &[
            (true, &[UV_RUN], Mode::Uv, &["uv.lock found at the project root", "CC_PYTHON_UV_RUN_COMMAND is set"]),
            (false, &[UV_RUN], Mode::Legacy, &["uv.lock not found at the project root", NO_REQUIREMENTS]),
            (true, &[], Mode::Legacy, &["CC_PYTHON_UV_RUN_COMMAND is not set", NO_REQUIREMENTS]),
            (true, &[("CC_PYTHON_UV_RUN_COMMAND", "  ")], Mode::Legacy, &["CC_PYTHON_UV_RUN_COMMAND is not set", NO_REQUIREMENTS]),
            (true, &[("CC_RUN_COMMAND", "python app.py")], Mode::Legacy, &["CC_PYTHON_UV_RUN_COMMAND is not set (CC_RUN_COMMAND alone does not activate uv mode)", NO_REQUIREMENTS]),
            (false, &[], Mode::Legacy, &["uv.lock not found", "CC_PYTHON_UV_RUN_COMMAND is not set", NO_REQUIREMENTS]),
        ];
        for (lock, vars, mode, reasons) in cases {
            let plan = plan_for(&app(*lock), vars);
            assert_eq!(plan.mode, *mode, "{vars:?}");
            assert_eq!(plan.reasons.len(), reasons.len(), "{:?}", plan.reasons);
            for (got, want) in plan.reasons.iter().zip(reasons.iter()) {
                assert!(got.starts_with(want), "{got} / {want}");
            }
        }
    }

    #[test]
    fn build_argv_follows_environment() {
        let a = app(true);
        assert_eq!(
            plan_for(&a, &[UV_RUN]).build.argv,
            ["uv", "sync", "--locked", "--no-progress", "--no-dev"]
        );
        let dev = plan_for(&a, &[UV_RUN, ("ENVIRONMENT", "development")]);
        assert_eq!(dev.environment, Environment::Development);
        assert_eq!(dev.build.argv, ["uv", "sync", "--locked", "--no-progress"]);
        let other = plan_for(&a, &[UV_RUN, ("ENVIRONMENT", "staging")]);
        assert_eq!(other.environment, Environment::Production);
    }

    #[test]
    fn cache_dir_by_uv_rules() {
        let a = app(true);
        assert_eq!(
            plan_for(&a, &[UV_RUN]).build.cache_dir,
            Path::new("/home/deploy/.cache/uv")
        );
        assert_eq!(
            plan_for(&a, &[UV_RUN, ("XDG_CACHE_HOME", "/xdg")])
                .build
                .cache_dir,
            Path::new("/xdg/uv")
        );
        assert_eq!(
            plan_for(
                &a,
                &[UV_RUN, ("XDG_CACHE_HOME", "/xdg"), ("UV_CACHE_DIR", "/c")]
            )
            .build
            .cache_dir,
            Path::new("/c")
        );
        // Legacy mode keeps pip's cache, by pip's rules.
        assert_eq!(
            plan_for(&a, &[]).build.cache_dir,
            Path::new("/home/deploy/.cache/pip")
        );
        assert_eq!(
            plan_for(&a, &[("UV_CACHE_DIR", "/c"), ("PIP_CACHE_DIR", "/p")])
                .build
                .cache_dir,
            Path::new("/p")
        );
        let no_home: Env = [UV_RUN].into_iter().collect();
        assert_eq!(
            detect(a.dir.path(), &no_home, PortSettings::default()).unwrap_err(),
            DetectError::NoCacheDir
        );
    }

    #[test]
    fn the_deployments_venv_is_in_the_app_or_where_uv_is_told() {
        let a = app(true);
        let app_dir = a.dir.path().canonicalize().unwrap();
        assert_eq!(
            plan_for(&a, &[UV_RUN]).build.venv,
            Some(app_dir.join(".venv"))
        );
        let told = |dir: &str| plan_for(&a, &[UV_RUN, ("UV_PROJECT_ENVIRONMENT", dir)]);
        assert_eq!(told("env").build.venv, Some(app_dir.join("env")));
        assert!(told("env").warnings.is_empty());
        assert_eq!(told("./a/../env").build.venv, Some(app_dir.join("env")));
        let parent = app_dir.parent().unwrap().join("shared");
        assert_eq!(told("../shared").build.venv, Some(parent));
        assert!(told("../shared").warnings[0].starts_with("UV_PROJECT_ENVIRONMENT is `"));
        let shared = told("/opt/venv");
        assert_eq!(shared.build.venv, Some("/opt/venv".into()));
        assert!(
            shared.warnings[0].starts_with("UV_PROJECT_ENVIRONMENT is `/opt/venv`, outside the application: every deployment of it builds into that one environment"),
            "{:?}",
            shared.warnings
        );
        // Legacy mode makes its venv itself, in `.venv`.
        let legacy = plan_for(&a, &[("UV_PROJECT_ENVIRONMENT", "env")]);
        assert_eq!(legacy.build.venv, Some(app_dir.join(".venv")));
    }

    #[test]
    fn run_command_precedence_and_splitting() {
        let a = app(true);
        let run = plan_for(&a, &[UV_RUN]).run.unwrap();
        assert_eq!(run.source, RunSource::CcPythonUvRunCommand);
        assert_eq!(run.argv.unwrap(), ["uv", "run", "python", "app.py"]);

        let run = plan_for(
            &a,
            &[
                UV_RUN,
                ("CC_RUN_COMMAND", "gunicorn app:app -b 0.0.0.0:$PORT"),
            ],
        )
        .run
        .unwrap();
        assert_eq!(run.source, RunSource::CcRunCommand);
        assert_eq!(run.command, "gunicorn app:app -b 0.0.0.0:$PORT");
        assert_eq!(run.argv, None);

        assert_eq!(plan_for(&app(false), &[]).run, None);

        let err = detect(
            a.dir.path(),
            &env(&[("CC_PYTHON_UV_RUN_COMMAND", "python 'app.py")]),
            PortSettings::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("CC_PYTHON_UV_RUN_COMMAND: missing closing quote in `python 'app.py`"),
            "{err}"
        );
    }

    #[test]
    fn ports_follow_the_request_flow() {
        let a = app(true);
        assert_eq!(
            plan_for(&a, &[UV_RUN]).ports,
            Ports {
                public: 8080,
                app: 8080
            }
        );
        let proxied = plan_for(&a, &[UV_RUN, ("OTOROSHI_CHALLENGE_SECRET", "s")]);
        assert_eq!(
            proxied.ports,
            Ports {
                public: 8080,
                app: 9000
            }
        );
        let blocked = plan_for(&a, &[UV_RUN, ("CC_REQUEST_FLOW", "block")]);
        assert_eq!(
            blocked.ports,
            Ports {
                public: 8080,
                app: 9000
            }
        );
        let shifted = detect(
            a.dir.path(),
            &env(&[UV_RUN, ("OTOROSHI_CHALLENGE_SECRET", "s")]),
            PortSettings {
                public: 18080,
                app: 19000,
            },
        )
        .unwrap();
        assert_eq!(
            shifted.ports,
            Ports {
                public: 18080,
                app: 19000
            }
        );
    }

    #[test]
    fn warnings_for_what_would_deploy_otherwise_on_the_platform() {
        let a = app(true);
        let shell = plan_for(
            &a,
            &[("CC_PYTHON_UV_RUN_COMMAND", "uv run app --port $PORT")],
        );
        assert!(
            shell.warnings[0].starts_with(
                "CC_PYTHON_UV_RUN_COMMAND uses shell syntax (`uv run app --port $PORT`)"
            ),
            "{:?}",
            shell.warnings
        );
        // CC_RUN_COMMAND is not what the page speaks of.
        let cc_run = plan_for(&a, &[UV_RUN, ("CC_RUN_COMMAND", "serve --port $PORT")]);
        assert!(cc_run.warnings.is_empty(), "{:?}", cc_run.warnings);
        let typo = plan_for(&a, &[UV_RUN, ("ENVIRONMENT", "Development")]);
        assert_eq!(typo.environment, Environment::Production);
        assert!(typo.warnings[0].starts_with(
            "ENVIRONMENT is `Development`: only `development` keeps dev dependencies"
        ));
        assert!(plan_for(&a, &[UV_RUN, ("ENVIRONMENT", "production")])
            .warnings
            .is_empty());
    }

    /// A uv workspace: the root's pyproject.toml and uv.lock, one member under packages/api.
    fn workspace() -> App {
        let a = app(true);
        std::fs::write(
            a.dir.path().join("pyproject.toml"),
            "[project]\nname = \"root\"\nversion = \"0.1.0\"\n\n[tool.uv.workspace]\nmembers = [\"packages/*\"]\n",
        )
        .unwrap();
        std::fs::create_dir_all(a.dir.path().join("packages/api")).unwrap();
        a
    }

    #[test]
    fn a_workspace_member_run_from_the_root_installs_at_start_up() {
        let ws = workspace();
        let plan = plan_for(
            &ws,
            &[(
                "CC_PYTHON_UV_RUN_COMMAND",
                "uv run --package api python -m api",
            )],
        );
        assert_eq!(plan.mode, Mode::Uv);
        assert!(
            plan.warnings.iter().any(|w| w.starts_with("CC_PYTHON_UV_RUN_COMMAND: `uv run --package api` installs the dependencies of the workspace member `api` when the app starts, not at build")
                && w.contains("[tool.uv.sources] api = { workspace = true }")),
            "{:?}",
            plan.warnings
        );
        let plain = plan_for(&ws, &[UV_RUN]);
        assert!(plain.warnings.iter().all(|w| !w.contains("--package")));
    }

    #[test]
    fn app_folder_on_a_workspace_member_says_where_the_lockfile_is_and_the_fix() {
        let ws = workspace();
        std::fs::write(
            ws.dir.path().join("packages/api/pyproject.toml"),
            "[project]\nname = \"api\"\nversion = \"0.1.0\"\n",
        )
        .unwrap();
        let plan = plan_for(
            &ws,
            &[
                ("CC_PYTHON_UV_RUN_COMMAND", "uv run gunicorn api:app"),
                ("APP_FOLDER", "packages/api"),
            ],
        );
        assert_eq!(plan.mode, Mode::Legacy);
        let lock = ws.dir.path().canonicalize().unwrap().join("uv.lock");
        let fix = "deploy the workspace root, where `uv.lock` is: unset APP_FOLDER and set CC_PYTHON_UV_RUN_COMMAND to `uv run --package api gunicorn api:app`, with the root project depending on `api`";
        assert!(
            plan.reasons[0].contains(&format!(
                "; APP_FOLDER is the uv workspace member `api`, whose lockfile is `{}`, at the workspace root, where the platform does not look; {fix}",
                lock.display()
            )),
            "{:?}",
            plan.reasons
        );
        // Not "commit uv.lock": it is committed, at the root.
        assert!(plan.reasons[1].contains("deploy the workspace root for a uv deployment (above)"));
        let member = plan.legacy.unwrap().workspace_member.unwrap();
        assert_eq!(member.root_folder, "");
        assert!(!member.root_depends_on_it);
        assert!(member.fix().starts_with(fix));
        // A workspace in a sub-folder of the repository.
        let repo = app(false);
        let nested = repo.dir.path().join("services");
        std::fs::create_dir_all(nested.join("packages/api")).unwrap();
        std::fs::write(nested.join("uv.lock"), "version = 1\n").unwrap();
        let plan = plan_for(&repo, &[UV_RUN, ("APP_FOLDER", "services/packages/api")]);
        let member = plan.legacy.unwrap().workspace_member.unwrap();
        assert_eq!(member.root_folder, "services");
        assert_eq!(member.package, "api");
        assert_eq!(member.run_command, "uv run --package api python app.py");
        assert!(member.fix().contains("set APP_FOLDER to `services`"));
    }

    #[test]
    fn ignored_variables_in_uv_mode_only() {
        let vars = [
            UV_RUN,
            ("CC_PYTHON_MODULE", "app:app"),
            ("CC_PYTHON_BACKEND", "gunicorn"),
            ("CC_HTTP_BASIC_AUTH_2", "ops:pw"),
        ];
        assert_eq!(
            plan_for(&app(true), &vars).ignored,
            [
                "CC_HTTP_BASIC_AUTH_2",
                "CC_PYTHON_BACKEND",
                "CC_PYTHON_MODULE"
            ]
        );
        // In legacy mode they count; the uv run command does not.
        assert_eq!(
            plan_for(&app(false), &vars).ignored,
            ["CC_PYTHON_UV_RUN_COMMAND"]
        );
    }

    #[test]
    fn app_folder_and_app_dir() {
        let repo = app(false);
        std::fs::create_dir(repo.dir.path().join("backend")).unwrap();
        std::fs::write(repo.dir.path().join("backend/uv.lock"), "").unwrap();
        let plan = plan_for(&repo, &[UV_RUN, ("APP_FOLDER", "backend")]);
        assert_eq!(plan.mode, Mode::Uv);
        assert!(plan.app_dir.ends_with("backend"));
        assert!(plan.app_dir.is_absolute());

        let e = env(&[("APP_FOLDER", "nope")]);
        assert!(matches!(
            detect(repo.dir.path(), &e, PortSettings::default()),
            Err(DetectError::AppFolder { .. })
        ));
        let e = env(&[("APP_FOLDER", "../..")]);
        assert!(matches!(
            detect(repo.dir.path(), &e, PortSettings::default()),
            Err(DetectError::AppFolder { .. })
        ));
        assert!(matches!(
            detect(
                Path::new("/nonexistent/app"),
                &env(&[]),
                PortSettings::default()
            ),
            Err(DetectError::AppDirMissing(_))
        ));
        let file = repo.dir.path().join("backend/uv.lock");
        assert!(matches!(
            detect(&file, &env(&[]), PortSettings::default()),
            Err(DetectError::AppDirNotDir(_))
        ));
    }
}
