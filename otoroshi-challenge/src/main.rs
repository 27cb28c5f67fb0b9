use clap::Parser;
use otoroshi_challenge::proxy::{serve, Proxy};
use plan::cli::port_value;
use plan::command::parse_duration;
use plan::report::{report, Message};
use plan::Env;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

const SECRET_VARIABLE: &str = "OTOROSHI_CHALLENGE_SECRET";

/// The Otoroshi challenge middleware: a reverse proxy in front of the app that lets through
/// only requests whose `Otoroshi-State` header is a valid JWT (HS512, signed with
/// OTOROSHI_CHALLENGE_SECRET, issuer `Otoroshi`, not expired), and answers them with
/// `Otoroshi-State-Resp`. Other requests get 401 with the reason; 502 when the app is down.
/// 504 when the app does not answer within --app-timeout. The secret is read from the
/// environment only. SIGTERM lets in-flight requests finish.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Port to listen on, on every interface [default: $PORT].
    #[arg(long, env = "PORT", value_name = "PORT", value_parser = port_value())]
    listen: u16,
    /// Port of the next hop (or the app) on 127.0.0.1.
    #[arg(long, value_name = "PORT", value_parser = port_value())]
    forward: u16,
    /// How long the app has to answer a request before the client gets 504, e.g. `30s`.
    #[arg(long, env = "OTOROSHI_CHALLENGE_APP_TIMEOUT", value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    app_timeout: Duration,
}

fn main() -> ExitCode {
    plan::cli::generate_if_asked::<Cli>();
    let cli = Cli::parse();
    let env = Env::from_process();
    let secret = match env.non_empty(SECRET_VARIABLE) {
        Some(secret) => secret.to_string(),
        None => {
            return report(&Message::usage(format!("{SECRET_VARIABLE} is not set: it holds the secret shared with Otoroshi (set it in the environment; it is never read from the command line)")), &env);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            return report(
                &Message::failed(format!("cannot start the runtime: {e}")),
                &env,
            )
        }
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(("0.0.0.0", cli.listen)).await {
            Ok(listener) => listener,
            Err(e) => {
                let message =
                    Message::failed(format!("cannot listen on 0.0.0.0:{}: {e}", cli.listen));
                return report(&message, &env);
            }
        };
        eprintln!(
            "otoroshi-challenge: listening on 0.0.0.0:{}, forwarding to 127.0.0.1:{}",
            cli.listen, cli.forward
        );
        let proxy = Arc::new(Proxy::new(secret.as_bytes(), cli.forward, cli.app_timeout));
        serve(listener, proxy, stop_signal()).await;
        eprintln!("otoroshi-challenge: stopped");
        ExitCode::SUCCESS
    })
}

/// SIGTERM or SIGINT.
async fn stop_signal() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
