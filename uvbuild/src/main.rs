use clap::Parser;
use plan::cli::{EnvArgs, PlanArgs, PortArgs};
use plan::report::{say, Fault};
use plan::{print_plan, read_plan, Env};
use std::path::PathBuf;
use std::process::ExitCode;

/// The build phase, as the platform runs it: `uv sync --locked --no-progress --no-dev`
/// (`--no-dev` dropped when ENVIRONMENT=development) in the app, with the uv cache kept
/// between builds, between CC_PRE_BUILD_HOOK and CC_POST_BUILD_HOOK.
///
/// Reads the plan on stdin (or --plan FILE) and prints it with `build.result` added, so the
/// pipe goes on: `detect APP_DIR | uvbuild | flowctl`. By hand, `uvbuild APP_DIR` makes the
/// plan itself, with detect's rules. uv's output goes to stderr.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Build this application directly instead of reading a plan.
    app_dir: Option<PathBuf>,
    #[command(flatten)]
    plan: PlanArgs,
    /// Keep the uv cache in DIR instead of the plan's `build.cache_dir`.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Indent the JSON for people.
    #[arg(long)]
    pretty: bool,
    #[command(flatten)]
    env: EnvArgs,
    /// With APP_DIR: the ports to plan with (a plan read from stdin or --plan has its own:
    /// refused there).
    #[command(flatten)]
    ports: PortArgs,
}

fn main() -> ExitCode {
    plan::cli::main::<Cli>(|cli| Some(&cli.env), run)
}

fn run(cli: &Cli, env: &Env) -> Result<ExitCode, Fault> {
    let mut plan = match &cli.app_dir {
        Some(dir) => {
            let plan = detect::detect(dir, env, cli.ports.into())?;
            detect::tell(&plan, "uvbuild", env);
            plan
        }
        None => {
            let plan = read_plan(&cli.plan.source(), "uvbuild")?;
            cli.ports.refused_with_a_plan("uvbuild", &plan)?;
            plan
        }
    };
    if let Some(dir) = &cli.cache_dir {
        plan.build.cache_dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
    }
    uvbuild::build(&mut plan, env)?;
    if let Some(result) = &plan.build.result {
        say(
            "uvbuild",
            format_args!(
                "built in {} ms, Python {} in {}",
                result.duration_ms,
                result.python_version.as_deref().unwrap_or("(unknown)"),
                result.venv.display()
            ),
            env,
        );
    }
    print_plan(&plan, cli.pretty)?;
    Ok(ExitCode::SUCCESS)
}
