use clap::{Parser, ValueEnum};
use flowctl::{
    find_daemon, needs_state_dir, new_state_dir, otoroshi_challenge_command, plan_hops, text,
    varnish, FlowOptions,
};
use plan::cli::{EnvArgs, PlanArgs, PortArgs};
use plan::report::{say, Fault, WriteError};
use plan::{print_plan, read_plan, Env};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Request Flow: chain the plan's middlewares between the public port and the app.
///
/// Reads the plan on stdin (or --plan FILE) and prints it with `hops` added, one per
/// middleware in chain order: the first listens on the public port (8080), each forwards
/// to the next (8081, 8082, ...), the last to the app (9000), as the plan's ports lay out.
/// Renders the Varnish VCL (with `vcl 4.1;` and the backend added, checked with
/// `varnishd -C`), the Redirection.io agent configuration, the custom command, and the
/// blocking service of CC_REQUEST_FLOW=block. In legacy mode, Nginx is the last hop, in front
/// of the app server: its configuration is rendered from the platform's variables and
/// checked with `nginx -t`. Run each hop with `launcher --hop NAME`, which
/// checks that its port is free just before it starts.
///
/// By hand, `flowctl APP_DIR` makes the plan itself, with detect's rules.
#[derive(Parser)]
#[command(version, args_override_self = true)]
struct Cli {
    /// Plan this application directly instead of reading a plan.
    app_dir: Option<PathBuf>,
    #[command(flatten)]
    plan: PlanArgs,
    #[command(flatten)]
    env: EnvArgs,
    /// With APP_DIR: the ports to plan with (a plan read from stdin or --plan has its own:
    /// refused there).
    #[command(flatten)]
    ports: PortArgs,
    /// `json`: the plan with hops; `text`: the chain for a person; `hops`: hop names, one a
    /// line, in chain order (for scripts; a plan that has hops is listed as it is);
    /// `workers`: the names of the processes beside the app (`CC_WORKER_COMMAND...`, legacy
    /// mode's Celery), one a line.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Where rendered files and varnishd's working directory go [default: when a hop keeps
    /// files there (Varnish, Redirection.io, Nginx), a new private directory
    /// $TMPDIR/uvdeploy-APP.XXXXXX; else none].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Indent the JSON for people.
    #[arg(long)]
    pretty: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Json,
    Text,
    Hops,
    Workers,
}

fn main() -> ExitCode {
    plan::cli::main::<Cli>(|cli| Some(&cli.env), run)
}

fn run(cli: &Cli, env: &Env) -> Result<ExitCode, Fault> {
    let mut plan = match &cli.app_dir {
        Some(dir) => {
            let plan = detect::detect(dir, env, cli.ports.into())?;
            detect::tell(&plan, "flowctl", env);
            plan
        }
        None => {
            let plan = read_plan(&cli.plan.source(), "flowctl")?;
            cli.ports.refused_with_a_plan("flowctl", &plan)?;
            plan
        }
    };
    // Listing the hops of a planned chain plans nothing again (no second `varnishd -C`).
    let planned = cli.format != Format::Json && plan.hops.is_some();
    if !planned {
        // Only a plan that may be run, with hops that keep files, needs a directory of its
        // own: no tool that only prints a plan leaves an empty one behind.
        let made = cli.state_dir.is_none() && cli.format == Format::Json && needs_state_dir(&plan);
        let state_dir = match &cli.state_dir {
            Some(dir) => std::path::absolute(dir).unwrap_or_else(|_| dir.clone()),
            None if made => new_state_dir(&plan)?,
            None => std::env::temp_dir(),
        };
        let path = std::env::var("PATH").unwrap_or_default();
        let options = FlowOptions {
            state_dir,
            varnishd: varnish::find_varnishd(&path),
            otoroshi_challenge: otoroshi_challenge_command(std::env::current_exe().ok().as_deref()),
            nginx: find_daemon("nginx", &path),
            as_root: nix::unistd::geteuid().is_root(),
        };
        for note in plan_hops(&mut plan, &options)? {
            say("flowctl", format_args!("note: {note}"), env);
        }
        if made {
            say(
                "flowctl",
                format_args!(
                    "note: the hops' files go to {} (made for this plan: remove it when done, or name one with --state-dir)",
                    options.state_dir.display()
                ),
                env,
            );
        } else if cli.state_dir.is_none() {
            // Nothing of this plan is kept in a directory.
            plan.state_dir = None;
        }
    }
    let mut out = std::io::stdout().lock();
    match cli.format {
        Format::Text => writeln!(out, "{}", plan::secret::redact(&text::chain(&plan), env))
            .map_err(WriteError)?,
        Format::Hops => {
            for hop in plan.hops.iter().flatten() {
                writeln!(out, "{}", hop.name).map_err(WriteError)?;
            }
        }
        Format::Workers => {
            for worker in &plan.workers {
                writeln!(out, "{}", worker.name).map_err(WriteError)?;
            }
        }
        Format::Json => {
            // Progress for people watching a pipe; the plan goes to stdout.
            say(
                "flowctl",
                format_args!("chain: {}", text::chain(&plan)),
                env,
            );
            for worker in &plan.workers {
                say(
                    "flowctl",
                    format_args!("{}: {} ({})", worker.name, worker.command, worker.source),
                    env,
                );
            }
            for cron in &plan.crons {
                say(
                    "flowctl",
                    format_args!("{}: {} (clevercloud/cron.json, UTC)", cron.name, cron.entry),
                    env,
                );
            }
            drop(out);
            print_plan(&plan, cli.pretty)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
