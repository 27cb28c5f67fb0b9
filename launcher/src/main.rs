use clap::Parser;
use launcher::{describe, die_with_parent, exec, lead_group, prepare, Target};
use plan::cli::{port_value, EnvArgs, PlanArgs};
use plan::report::{say, Fault};
use plan::{read_plan, Env};
use std::path::PathBuf;
use std::process::ExitCode;

/// Become one process of the plan: the application (`--app`), one middleware hop
/// (`--hop NAME`), a worker (`--worker NAME`: `CC_WORKER_COMMAND...`, legacy mode's Celery), a run hook (`--hook NAME`), or
/// a command given after `--`.
///
/// The working directory is the plan's `app_dir` and PORT is where the process must listen
/// (the app port, or the hop's listen port), checked free just before it starts. The launcher
/// replaces itself with the process: same PID, the process's own signals and exit status. A
/// run command that is one simple command with shell syntax runs as `/bin/sh -c 'exec ...'`;
/// anything more (a list, a pipeline, `if`, `&`) runs exactly as `/bin/sh -c COMMAND`, with
/// the launcher staying to pass signals on to all of it and report its exit status.
/// CC_PRE_RUN_HOOK runs before the app starts. In legacy mode the app server, workers and
/// CC_PYTHON_MANAGE_TASKS (`python manage.py TASK`, after the pre-run hook; one failing fails
/// the start) run in the app's venv.
#[derive(Parser)]
#[command(version)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["app", "hop", "hook", "worker", "command"])))]
struct Cli {
    /// Run the application's run command.
    #[arg(long)]
    app: bool,
    /// Run the middleware hop NAME (from the `hops` flowctl adds).
    #[arg(long, value_name = "NAME")]
    hop: Option<String>,
    /// Run the run hook NAME (CC_RUN_SUCCEEDED_HOOK or CC_RUN_FAILED_HOOK) in the app, when it
    /// is set; exits 0 when it is not, the hook's status otherwise.
    #[arg(long, value_name = "NAME")]
    hook: Option<String>,
    /// Run the worker NAME (from the plan's `workers`: `worker-0`, ..., `celery`) in the app,
    /// with the app's environment (its venv in legacy mode) but PORT.
    #[arg(long, value_name = "NAME")]
    worker: Option<String>,
    /// Print what would be executed (argv, cwd, variables set, files) and exit.
    #[arg(long)]
    dry_run: bool,
    /// Stop (SIGTERM) when the process that started the launcher dies, even by SIGKILL: for a
    /// supervisor of your own (scripts/deploy does not use it: uvsupervise sets
    /// PR_SET_PDEATHSIG itself). Linux drops this setting when the program changes its
    /// credentials (varnishd does, dropping privileges): see --group-file.
    #[arg(long)]
    die_with_parent: bool,
    /// Lead a new process group and append its ID (this PID) to FILE, so that a supervisor of
    /// your own stops the process and everything it starts with one signal to the group
    /// (scripts/deploy does not use it: uvsupervise makes the groups).
    #[arg(long, value_name = "FILE")]
    group_file: Option<PathBuf>,
    /// Set PORT to this instead of the plan's port.
    #[arg(long, value_name = "PORT", value_parser = port_value())]
    port: Option<u16>,
    #[command(flatten)]
    plan: PlanArgs,
    #[command(flatten)]
    env: EnvArgs,
    /// The command to run, for debugging by hand.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

fn main() -> ExitCode {
    // Read first, before anything could outlive a parent that dies meanwhile.
    let parent = nix::unistd::getppid();
    plan::cli::main::<Cli>(|cli| Some(&cli.env), |cli, env| run(cli, env, parent))
}

fn run(cli: &Cli, env: &Env, parent: nix::unistd::Pid) -> Result<ExitCode, Fault> {
    let target = match (&cli.hop, &cli.hook, &cli.worker, cli.app) {
        (Some(name), _, _, _) => Target::Hop(name.clone()),
        (_, Some(name), _, _) => Target::Hook(name.clone()),
        (_, _, Some(name), _) => Target::Worker(name.clone()),
        (None, None, None, true) => Target::App,
        (None, None, None, false) => Target::Command(cli.command.clone()),
    };
    // A command by hand reads a plan only when one is named; a hook needs the app's directory.
    let plan = match (&target, &cli.plan.plan) {
        (Target::Command(_), None) => None,
        _ => Some(read_plan(&cli.plan.source(), "launcher")?),
    };
    let launch = prepare(plan.as_ref(), &target, env, cli.port)?;
    if let Target::Hook(name) = &target {
        if launch.argv.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        say("launcher", format_args!("running {name}"), env);
    }
    if cli.dry_run {
        print!("{}", describe(&launch));
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(file) = &cli.group_file {
        lead_group(file)?;
    }
    if cli.die_with_parent {
        die_with_parent(parent)?;
    }
    Ok(ExitCode::from(exec(&launch)?))
}
