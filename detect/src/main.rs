use clap::Parser;
use detect::detect;
use plan::cli::{exit, fail, EnvArgs, PortArgs};
use plan::{write_plan, Mode};
use std::path::PathBuf;

/// Decide how the platform would deploy the application in APP_DIR, and print the plan as
/// JSON on stdout.
///
/// uv mode needs `uv.lock` at the project root and CC_PYTHON_UV_RUN_COMMAND; otherwise the
/// plan says legacy mode and why. The plan feeds the other tools:
/// `detect APP_DIR | uvbuild | flowctl > plan.json`.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// The application's repository (its APP_FOLDER, when set, holds the application).
    #[arg(default_value = ".")]
    app_dir: PathBuf,
    /// Indent the JSON for people.
    #[arg(long)]
    pretty: bool,
    #[command(flatten)]
    env: EnvArgs,
    #[command(flatten)]
    ports: PortArgs,
}

fn main() {
    let cli = Cli::parse();
    let env = cli.env.env().unwrap_or_else(|e| fail(e, exit::USAGE));
    let plan =
        detect(&cli.app_dir, &env, cli.ports.into()).unwrap_or_else(|e| fail(e, exit::USAGE));
    if plan.mode == Mode::Legacy {
        eprintln!("note: legacy mode: {}", plan.reasons.join("; "));
    }
    for warning in &plan.warnings {
        eprintln!("warning: {warning}");
    }
    for variable in &plan.ignored {
        eprintln!("warning: {variable} is set but has no effect in this deployment");
    }
    write_plan(&plan, cli.pretty, &mut std::io::stdout().lock())
        .unwrap_or_else(|e| fail(format!("cannot write the plan: {e}"), exit::FAILED));
}
