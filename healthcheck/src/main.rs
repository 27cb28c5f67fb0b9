use clap::Parser;
use healthcheck::{render, run, Check};
use otoroshi_challenge::token::Otoroshi;
use plan::cli::parse_duration;
use plan::cli::{port_value, EnvArgs, PlanArgs};
use plan::report::{exit, say, Fault, Message, WriteError};
use plan::secret::MissingSecret;
use plan::{read_plan, Env};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// The deployment health check, as the platform runs it.
///
/// Waits until the public port listens on a public address (and every port behind it),
/// then GETs every health check path (CC_HEALTH_CHECK_PATH, CC_HEALTH_CHECK_PATH_0, _1, ...)
/// and prints one `Response from GET <path> is <status>` line each, then the failures. A
/// configured path passes on 2xx; the default `/` on anything below 500. Redirects are not
/// followed. --timeout bounds the whole check, requests included. Exit 0 healthy, 1
/// unhealthy or not listening in time, 2 bad usage.
///
/// With an Otoroshi challenge in the plan's chain, each request carries a valid
/// `Otoroshi-State` token signed with the secret the plan names (read from the environment),
/// and only an answer the challenge signed back counts: the verdict is on the app's answer.
/// With --owner, an answer counts only if the ports are held by those processes.
///
/// Reads the plan on stdin (or --plan FILE); --port and --path check by hand without one.
#[derive(Parser)]
#[command(version, args_override_self = true)]
struct Cli {
    #[command(flatten)]
    plan: PlanArgs,
    /// Check this port instead of the plan's public port (no plan is read).
    #[arg(long, value_name = "PORT", value_parser = port_value())]
    port: Option<u16>,
    /// Host to send the requests to.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// A path to GET (repeatable); with --port, the default is `/`, lenient.
    #[arg(long = "path", value_name = "PATH")]
    paths: Vec<String>,
    /// The whole check's deadline (waiting for the ports, then the requests), e.g. `60s`,
    /// `500ms`, `2m`; at most `24h`.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,
    /// How long each request may take (within --timeout).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// The app's PID (its launcher's): when the app does not listen where it must, the
    /// diagnosis names the ports its own processes listen on.
    #[arg(long, value_name = "PID")]
    pid: Option<i32>,
    /// A process of the deployment (repeatable): an answer counts only if every socket
    /// listening on the checked ports belongs to one of these PIDs or their descendants;
    /// otherwise the check fails at once, naming the PID and command that holds the port.
    #[arg(long = "owner", value_name = "PID", value_parser = clap::value_parser!(i32).range(1..))]
    owners: Vec<i32>,
    /// Print one JSON object (each path, status, duration, the verdict) instead of lines.
    #[arg(long)]
    json: bool,
    /// Also write that JSON object to FILE (the lines still go to stdout).
    #[arg(long, value_name = "FILE")]
    report: Option<std::path::PathBuf>,
    /// Where a secret the plan names (a token in a health check path) is set.
    #[command(flatten)]
    env: EnvArgs,
}

fn main() -> ExitCode {
    plan::cli::main::<Cli>(|cli| Some(&cli.env), check)
}

/// Exit 0 when the deployment is healthy, 1 when it is not.
fn check(cli: &Cli, env: &Env) -> Result<ExitCode, Fault> {
    let mut check = match cli.port {
        Some(port) => Check {
            host: cli.host.clone(),
            port,
            inner_ports: Vec::new(),
            paths: vec!["/".into()],
            lenient: true,
            timeout: cli.timeout,
            request_timeout: cli.request_timeout,
            app_pid: None,
            legacy: false,
            otoroshi_secret_env: None,
            owners: Vec::new(),
        },
        None => {
            let plan = read_plan(&cli.plan.source(), "healthcheck")?;
            let mut check = Check::from_plan(&plan, cli.timeout, cli.request_timeout);
            check.host = cli.host.clone();
            check
        }
    };
    check.app_pid = cli.pid;
    if !cli.owners.is_empty() && !healthcheck::is_local(&check.host) {
        return Err(Message::usage(format!(
            "--owner tells who listens on this machine, and --host `{}` is another one",
            check.host
        ))
        .with_hint("leave out --host, or --owner")
        .into());
    }
    check.owners = cli.owners.clone();
    // The challenge in the chain lets through only requests signed with its secret.
    let otoroshi = match &check.otoroshi_secret_env {
        Some(variable) => match env.non_empty(variable) {
            Some(secret) => Some(Otoroshi::new(secret.as_bytes())),
            None => return Err(MissingSecret(variable.clone()).into()),
        },
        None => None,
    };
    if !cli.paths.is_empty() {
        if let Some(bad) = cli.paths.iter().find(|p| !p.starts_with('/')) {
            return Err(Message::usage(format!(
                "--path `{bad}` does not start with `/` (e.g. `/health`)"
            ))
            .into());
        }
        check.paths = cli.paths.clone();
        check.lenient = false;
    }
    // The plan names secrets in paths; the requests need their values.
    check.paths = check
        .paths
        .iter()
        .map(|path| plan::secret::reveal(path, env))
        .collect::<Result<_, _>>()?;
    say(
        "healthcheck",
        format_args!(
            "waiting for port {} (up to {})",
            check.port,
            humantime::format_duration(check.timeout)
        ),
        env,
    );
    let verdict = run(&check, otoroshi.as_ref());
    let json = format!(
        "{}\n",
        serde_json::to_string(&verdict).expect("the verdict serializes")
    );
    if let Some(file) = &cli.report {
        std::fs::write(file, plan::secret::redact(&json, env)).map_err(|e| {
            Message::failed(format!("cannot write the report `{}`: {e}", file.display()))
        })?;
    }
    let text = if cli.json { json } else { render(&verdict) };
    std::io::stdout()
        .write_all(plan::secret::redact(&text, env).as_bytes())
        .map_err(WriteError)?;
    Ok(if verdict.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::FAILED)
    })
}
