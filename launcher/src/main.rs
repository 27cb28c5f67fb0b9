use clap::Parser;
use launcher::{describe, die_with_parent, exec, prepare, Target};
use plan::cli::{exit, fail, EnvArgs, PlanArgs};
use plan::read_plan;

/// Become one process of the plan: the application (`--app`), one middleware hop
/// (`--hop NAME`), or a command given after `--`.
///
/// The working directory is the plan's `app_dir` and PORT is where the process must listen
/// (the app port, or the hop's listen port). The launcher replaces itself with the process:
/// same PID, the process's own signals and exit status. A run command with shell syntax runs
/// as `/bin/sh -c 'exec ...'`. CC_PRE_RUN_HOOK runs before the app starts.
#[derive(Parser)]
#[command(version)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["app", "hop", "command"])))]
struct Cli {
    /// Run the application's run command.
    #[arg(long)]
    app: bool,
    /// Run the middleware hop NAME (from the `hops` flowctl adds).
    #[arg(long, value_name = "NAME")]
    hop: Option<String>,
    /// Print what would be executed (argv, cwd, variables set, files) and exit.
    #[arg(long)]
    dry_run: bool,
    /// Stop (SIGTERM) when the process that started the launcher dies, even by SIGKILL: for
    /// supervisors such as scripts/deploy. Linux drops this setting when the program changes
    /// its credentials (varnishd does, dropping privileges).
    #[arg(long)]
    die_with_parent: bool,
    /// Set PORT to this instead of the plan's port.
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,
    #[command(flatten)]
    plan: PlanArgs,
    #[command(flatten)]
    env: EnvArgs,
    /// The command to run, for debugging by hand.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

fn main() {
    // Read first, before anything could outlive a parent that dies meanwhile.
    let parent = nix::unistd::getppid();
    let cli = Cli::parse();
    let target = match (&cli.hop, cli.app) {
        (Some(name), _) => Target::Hop(name.clone()),
        (None, true) => Target::App,
        (None, false) => Target::Command(cli.command.clone()),
    };
    let env = cli.env.env().unwrap_or_else(|e| fail(e, exit::USAGE));
    // A command by hand reads a plan only when one is named.
    let plan = match (&target, &cli.plan.plan) {
        (Target::Command(_), None) => None,
        _ => {
            Some(read_plan(&cli.plan.source(), "launcher").unwrap_or_else(|e| fail(e, exit::USAGE)))
        }
    };
    let launch = prepare(plan.as_ref(), &target, &env, cli.port)
        .unwrap_or_else(|e| fail(plan::secret::redact(&e.to_string(), &env), e.exit_code()));
    if cli.dry_run {
        print!("{}", describe(&launch));
        return;
    }
    if cli.die_with_parent {
        if let Err(e) = die_with_parent(parent) {
            fail(e.to_string(), e.exit_code());
        }
    }
    let error = exec(&launch);
    fail(
        plan::secret::redact(&error.to_string(), &env),
        error.exit_code(),
    );
}
