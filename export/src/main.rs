use clap::{CommandFactory, Parser, Subcommand};
use export::{containerfile, kubernetes, scaling, yaml, ExportError};
use plan::cli::{EnvArgs, PlanArgs, PortArgs};
use plan::report::{report, say, Fault, Message, WriteError};
use plan::{read_plan, Env};
use std::io::Write;
use std::path::{Path, PathBuf};
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
        /// The app's size, one of the platform's flavors (pico, nano, XS, S, M, L, XL, 2XL,
        /// 3XL): its vCPUs and memory become the app's requests and limits [default: XS].
        #[arg(long, value_name = "NAME")]
        flavor: Option<String>,
        /// How many pods, fixed (the platform's instances) [default: 1].
        #[arg(long, alias = "replicas", value_name = "N", conflicts_with_all = ["min_instances", "max_instances"])]
        instances: Option<u32>,
        /// The fewest pods when they scale on CPU (a HorizontalPodAutoscaler and a
        /// PodDisruptionBudget when fewer than --max-instances).
        #[arg(long, value_name = "N")]
        min_instances: Option<u32>,
        /// The most pods when they scale on CPU [default: --min-instances, or from 1].
        #[arg(long, value_name = "N")]
        max_instances: Option<u32>,
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
        /// Write each secret the build hooks use into DIR/NAME (mode 0600), to give the
        /// build as `--secret id=NAME,src=DIR/NAME` (`scripts/image` does).
        #[arg(long, value_name = "DIR")]
        secrets_dir: Option<PathBuf>,
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
            flavor,
            instances,
            min_instances,
            max_instances,
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
                flavor: match flavor {
                    Some(given) => scaling::Flavor::named(given)?,
                    None => scaling::Flavor::default(),
                },
                instances: scaling::Instances::new(*instances, *min_instances, *max_instances)?,
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
            yaml::noted(&manifests.documents, &manifests.notes)
        }
        Target::Containerfile {
            base,
            plan,
            env,
            secrets_dir,
        } => {
            let plan = read_plan(&plan.source(), "plan-export")?;
            let env = env.without_process()?;
            let needed = containerfile::build_secrets(&env);
            if let Some(dir) = secrets_dir {
                write_secrets(dir, &needed, &env)?;
            } else if !needed.is_empty() {
                let flags: Vec<String> = needed
                    .iter()
                    .map(|k| format!("--secret id={k},src=FILE"))
                    .collect();
                say(
                    "plan-export",
                    format_args!(
                        "the build hooks use secrets, given to the build as build secrets (never in a layer): podman build {} (scripts/image gives them)",
                        flags.join(" ")
                    ),
                    &Env::default(),
                );
            }
            containerfile::render(&plan, base, &env)
        }
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(WriteError)?;
    Ok(ExitCode::SUCCESS)
}

/// Each secret in `names` written into DIR/NAME, readable by its owner only, in a directory
/// made for them.
fn write_secrets(dir: &Path, names: &[String], env: &Env) -> Result<(), Fault> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let failed = |path: &Path, e: std::io::Error| -> Fault {
        Box::new(Message::failed(format!(
            "cannot write the build secrets into `{}`: {e}",
            path.display()
        )))
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| failed(dir, e))?;
    for name in names {
        let path = dir.join(name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| failed(&path, e))?;
        file.write_all(env.get(name).unwrap_or_default().as_bytes())
            .map_err(|e| failed(&path, e))?;
    }
    Ok(())
}
