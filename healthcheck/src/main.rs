use clap::Parser;
use healthcheck::{parse_duration, render, run, Check};
use plan::cli::{exit, fail, PlanArgs};
use plan::read_plan;
use std::time::Duration;

/// The deployment health check, as the platform runs it.
///
/// Waits until the public port listens on a public address (bounded by --timeout), then
/// GETs every health check path (CC_HEALTH_CHECK_PATH, CC_HEALTH_CHECK_PATH_0, _1, ...) and
/// prints one `Response from GET <path> is <status>` line each, then the failures. A
/// configured path passes on 2xx; the default `/` on anything below 500. Redirects are not
/// followed. Exit 0 healthy, 1 unhealthy or not listening in time, 2 bad usage.
///
/// Reads the plan on stdin (or --plan FILE); --port and --path check by hand without one.
#[derive(Parser)]
#[command(version, args_override_self = true)]
struct Cli {
    #[command(flatten)]
    plan: PlanArgs,
    /// Check this port instead of the plan's public port (no plan is read).
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,
    /// Host to send the requests to.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// A path to GET (repeatable); with --port, the default is `/`, lenient.
    #[arg(long = "path", value_name = "PATH")]
    paths: Vec<String>,
    /// How long to wait for the port, e.g. `60s`, `500ms`.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,
    /// How long each request may take.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Print one JSON object (each path, status, duration, the verdict) instead of lines.
    #[arg(long)]
    json: bool,
}

fn main() {
    let cli = Cli::parse();
    let mut check = match cli.port {
        Some(port) => Check {
            host: cli.host.clone(),
            port,
            inner_ports: Vec::new(),
            paths: vec!["/".into()],
            lenient: true,
            timeout: cli.timeout,
            request_timeout: cli.request_timeout,
        },
        None => {
            let plan = read_plan(&cli.plan.source(), "healthcheck")
                .unwrap_or_else(|e| fail(e, exit::USAGE));
            let mut check = Check::from_plan(&plan, cli.timeout, cli.request_timeout);
            check.host = cli.host.clone();
            check
        }
    };
    if !cli.paths.is_empty() {
        if let Some(bad) = cli.paths.iter().find(|p| !p.starts_with('/')) {
            fail(
                format!("--path `{bad}` does not start with `/` (e.g. `/health`)"),
                exit::USAGE,
            );
        }
        check.paths = cli.paths.clone();
        check.lenient = false;
    }
    eprintln!(
        "healthcheck: waiting for port {} (up to {:?})",
        check.port, check.timeout
    );
    let verdict = run(&check);
    if cli.json {
        println!(
            "{}",
            serde_json::to_string(&verdict).expect("the verdict serializes")
        );
    } else {
        print!("{}", render(&verdict));
    }
    std::process::exit(if verdict.healthy { 0 } else { exit::FAILED });
}
