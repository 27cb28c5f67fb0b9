use clap::{Parser, ValueEnum};
use flowctl::{
    default_state_dir, otoroshi_challenge_command, plan_hops, text, varnish, FlowOptions,
};
use plan::cli::{exit, fail, EnvArgs, PlanArgs};
use plan::{read_plan, write_plan};
use std::path::PathBuf;

/// Request Flow: chain the plan's middlewares between the public port and the app.
///
/// Reads the plan on stdin (or --plan FILE) and prints it with `hops` added, one per
/// middleware in chain order: the first listens on the public port (8080), each forwards
/// to the next (8081, 8082, ...), the last to the app (9000). Renders the Varnish VCL
/// (with `vcl 4.1;` and the backend added, checked with `varnishd -C`), the Redirection.io
/// agent configuration, the custom command, and the blocking service of
/// CC_REQUEST_FLOW=block. Run each hop with `launcher --hop NAME`.
///
/// By hand, `flowctl APP_DIR` makes the plan itself, with detect's rules.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Plan this application directly instead of reading a plan.
    app_dir: Option<PathBuf>,
    #[command(flatten)]
    plan: PlanArgs,
    #[command(flatten)]
    env: EnvArgs,
    /// `json`: the plan with hops; `text`: the chain for a person; `hops`: hop names, one a
    /// line, in chain order (for scripts).
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Shift the chain: the first hop (or the app) listens here; hops follow (N+1, N+2, ...).
    #[arg(long, value_name = "PORT")]
    public_port: Option<u16>,
    /// Where the app listens behind the middlewares.
    #[arg(long, value_name = "PORT")]
    app_port: Option<u16>,
    /// Where rendered files and varnishd's working directory go [default: $TMPDIR/uvdeploy/APP-PORT].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Do not refuse ports already in use (to show the plan of a running deployment).
    #[arg(long)]
    no_port_check: bool,
    /// Indent the JSON for people.
    #[arg(long)]
    pretty: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Text,
    Hops,
}

fn main() {
    let cli = Cli::parse();
    let mut plan = match &cli.app_dir {
        Some(dir) => {
            let env = cli.env.env().unwrap_or_else(|e| fail(e, exit::USAGE));
            detect::detect(dir, &env, detect::PortSettings::default())
                .unwrap_or_else(|e| fail(e, exit::USAGE))
        }
        None => read_plan(&cli.plan.source(), "flowctl").unwrap_or_else(|e| fail(e, exit::USAGE)),
    };
    let public = cli.public_port.unwrap_or(plan.ports.public);
    let state_dir = cli
        .state_dir
        .clone()
        .unwrap_or_else(|| default_state_dir(&plan, public));
    let options = FlowOptions {
        state_dir: std::path::absolute(&state_dir).unwrap_or(state_dir),
        public_port: cli.public_port,
        app_port: cli.app_port,
        check_ports: !cli.no_port_check,
        varnishd: varnish::find_varnishd(&std::env::var("PATH").unwrap_or_default()),
        otoroshi_challenge: otoroshi_challenge_command(std::env::current_exe().ok().as_deref()),
    };
    let notes = plan_hops(&mut plan, &options).unwrap_or_else(|e| fail(e, exit::USAGE));
    for note in notes {
        eprintln!("flowctl: note: {note}");
    }
    match cli.format {
        Format::Text => println!("{}", text::chain(&plan)),
        Format::Hops => plan
            .hops
            .iter()
            .flatten()
            .for_each(|hop| println!("{}", hop.name)),
        Format::Json => {
            // Progress for people watching a pipe; the plan goes to stdout.
            eprintln!("flowctl: chain: {}", text::chain(&plan));
            write_plan(&plan, cli.pretty, &mut std::io::stdout().lock())
                .unwrap_or_else(|e| fail(format!("cannot write the plan: {e}"), exit::FAILED))
        }
    }
}
