use clap::Parser;
use plan::cli::{EnvArgs, PortArgs};
use plan::report::{Fault, Message};
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
    /// What `checkout` printed: APP_DIR is its copy; the plan records what is deployed.
    #[arg(long, value_name = "FILE")]
    source: Option<PathBuf>,
    /// An add-on the deployment runs locally (`uvdeploy deploy --addon`), recorded in the
    /// plan; repeatable.
    #[arg(long = "addon", value_name = "KIND", value_parser = clap::builder::PossibleValuesParser::new(plan::ADDON_KINDS))]
    addons: Vec<String>,
}

fn main() -> ExitCode {
    plan::cli::main::<Cli>(|cli| Some(&cli.env), run)
}

fn run(cli: &Cli, env: &Env) -> Result<ExitCode, Fault> {
    let mut plan = detect::detect(&cli.app_dir, env, cli.ports.into())?;
    if let Some(file) = &cli.source {
        let text = std::fs::read_to_string(file).map_err(|e| {
            Message::usage(format!("cannot read the source `{}`: {e}", file.display()))
        })?;
        let source = serde_json::from_str(&text).map_err(|e| {
            Message::usage(format!(
                "`{}` is not what `checkout` prints: {e}",
                file.display()
            ))
        })?;
        detect::from_source(&mut plan, source);
    }
    plan.addons = cli.addons.clone();
    plan.addons.sort();
    plan.addons.dedup();
    detect::tell(&plan, "detect", env);
    print_plan(&plan, cli.pretty)?;
    Ok(ExitCode::SUCCESS)
}
