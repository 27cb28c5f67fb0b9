use clap::Parser;
use plan::cli::{EnvArgs, PortArgs};
use plan::report::{report, Fault};
use plan::{print_plan, Env};
use std::path::PathBuf;
use std::process::ExitCode;

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = match cli.env.env() {
        Ok(env) => env,
        Err(e) => return report(&e, &Env::from_process()),
    };
    match run(&cli, &env) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&*e, &env),
    }
}

fn run(cli: &Cli, env: &Env) -> Result<(), Fault> {
    let plan = detect::detect(&cli.app_dir, env, cli.ports.into())?;
    detect::tell(&plan, "detect", env);
    print_plan(&plan, cli.pretty)?;
    Ok(())
}
