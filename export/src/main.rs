use clap::{CommandFactory, Parser, Subcommand};
use export::{containerfile, kubernetes, yaml, ExportError};
use plan::cli::{EnvArgs, PlanArgs, PortArgs};
use plan::report::{report, say, Fault, Message, WriteError};
use plan::{read_plan, Env};
use std::io::Write;
use std::process::ExitCode;

/// The same deployment beyond one machine: the plan (after flowctl) as what an existing
/// engine runs.
///
///   detect APP | uvbuild | flowctl | plan-export kubernetes --image IMAGE > app.yaml
///   detect APP | flowctl | plan-export containerfile > Containerfile
///
/// Plan on stdin or --plan FILE, result on stdout. Secrets never appear in the output: they
/// come from a Secret NAME-secrets that you create (the command is printed on stderr).
#[derive(Parser)]
#[command(
    name = "plan-export",
    version,
    subcommand_required = true,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    target: Target,
}

#[derive(Subcommand)]
enum Target {
    /// Kubernetes manifests (multi-document YAML): a Deployment whose pod runs the app with
    /// every hop as a native sidecar (Kubernetes 1.29+), a ConfigMap of the hops' files, a
    /// Service on the public port.
    Kubernetes {
        /// The image every container runs (built with `scripts/image`).
        #[arg(long, value_name = "IMAGE")]
        image: String,
        /// The name of every object [default: the app directory's name, as a DNS label].
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        #[arg(long, default_value_t = 1, value_name = "N")]
        replicas: u32,
        /// The pod's ports (the platform's by default, whatever the plan's).
        #[command(flatten)]
        ports: PortArgs,
        #[command(flatten)]
        plan: PlanArgs,
        /// The application's variables (only these: not this shell's environment).
        #[command(flatten)]
        env: EnvArgs,
    },
    /// The Containerfile of the image: uv's recommended layers, Varnish when a hop needs
    /// it, and uvdeploy's own tools.
    Containerfile {
        /// The base image: Python and uv, nothing downloaded at run time.
        #[arg(long, value_name = "IMAGE", default_value = containerfile::DEFAULT_BASE)]
        base: String,
        #[command(flatten)]
        plan: PlanArgs,
        /// The build hooks' variables (CC_PRE_BUILD_HOOK, CC_POST_BUILD_HOOK).
        #[command(flatten)]
        env: EnvArgs,
    },
}

fn main() -> ExitCode {
    // clap would only say `unrecognized subcommand`: name the targets there are.
    let targets: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|target| target.get_name().to_string())
        .collect();
    if let Some(first) = std::env::args().nth(1) {
        if !first.starts_with('-') && first != "help" && !targets.contains(&first) {
            let message = Message::usage(format!(
                "unknown target `{first}` (targets: {})",
                targets.join(", ")
            ))
            .with_hint("`plan-export kubernetes --image IMAGE` or `plan-export containerfile`");
            return report(&message, &Env::from_process());
        }
    }
    plan::cli::main::<Cli>(|_| None, |cli, _| run(cli))
}

fn run(cli: &Cli) -> Result<ExitCode, Fault> {
    let text = match &cli.target {
        Target::Kubernetes {
            image,
            name,
            replicas,
            ports,
            plan,
            env,
        } => {
            let plan = read_plan(&plan.source(), "plan-export")?;
            let given = name.clone().unwrap_or_else(|| kubernetes::app_name(&plan));
            let name = kubernetes::dns_label(&given).ok_or(ExportError::BadName(given))?;
            let options = kubernetes::Options {
                image: image.clone(),
                name: name.clone(),
                replicas: *replicas,
                ports: (*ports).into(),
                env: env.without_process()?,
            };
            let manifests = kubernetes::manifests(&plan, &options)?;
            if !manifests.secrets.is_empty() {
                let literals: Vec<String> = manifests
                    .secrets
                    .iter()
                    .map(|s| format!("--from-literal={s}=…"))
                    .collect();
                say(
                    "plan-export",
                    format_args!(
                        "the secrets come from a Secret; create it first: kubectl create secret generic {name}-secrets {}",
                        literals.join(" ")
                    ),
                    &Env::default(),
                );
            }
            yaml::documents(&manifests.documents)
        }
        Target::Containerfile { base, plan, env } => {
            let plan = read_plan(&plan.source(), "plan-export")?;
            containerfile::render(&plan, base, &env.without_process()?)
        }
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(WriteError)?;
    Ok(ExitCode::SUCCESS)
}
