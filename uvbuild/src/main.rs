use clap::Parser;
use detect::detect;
use plan::cli::{exit, fail, EnvArgs, PlanArgs, PortArgs};
use plan::{read_plan, write_plan};
use std::path::PathBuf;

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
    #[command(flatten)]
    ports: PortArgs,
}

fn main() {
    let cli = Cli::parse();
    let env = cli.env.env().unwrap_or_else(|e| fail(e, exit::USAGE));
    let mut plan = match &cli.app_dir {
        Some(dir) => detect(dir, &env, cli.ports.into()).unwrap_or_else(|e| fail(e, exit::USAGE)),
        None => read_plan(&cli.plan.source(), "uvbuild").unwrap_or_else(|e| fail(e, exit::USAGE)),
    };
    if let Some(dir) = &cli.cache_dir {
        plan.build.cache_dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
    }
    if let Err(e) = uvbuild::build(&mut plan, &env) {
        fail(e.to_string(), e.exit_code());
    }
    if let Some(result) = &plan.build.result {
        eprintln!(
            "uvbuild: built in {} ms, Python {} in {}",
            result.duration_ms,
            result.python_version.as_deref().unwrap_or("(unknown)"),
            result.venv.display()
        );
    }
    write_plan(&plan, cli.pretty, &mut std::io::stdout().lock())
        .unwrap_or_else(|e| fail(format!("cannot write the plan: {e}"), exit::FAILED));
}
