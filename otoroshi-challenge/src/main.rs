use clap::Parser;
use otoroshi_challenge::proxy::{serve, Proxy};
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

const SECRET_VARIABLE: &str = "OTOROSHI_CHALLENGE_SECRET";

/// The Otoroshi challenge middleware: a reverse proxy in front of the app that lets through
/// only requests whose `Otoroshi-State` header is a valid JWT (HS512, signed with
/// OTOROSHI_CHALLENGE_SECRET, issuer `Otoroshi`, not expired), and answers them with
/// `Otoroshi-State-Resp`. Other requests get 401 with the reason; 502 when the app is down.
/// The secret is read from the environment only. SIGTERM lets in-flight requests finish.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Port to listen on, on every interface [default: $PORT].
    #[arg(long, env = "PORT", value_name = "PORT")]
    listen: u16,
    /// Port of the next hop (or the app) on 127.0.0.1.
    #[arg(long, value_name = "PORT")]
    forward: u16,
}

fn main() {
    let cli = Cli::parse();
    let secret = match std::env::var(SECRET_VARIABLE) {
        Ok(secret) if !secret.is_empty() => secret,
        _ => {
            eprintln!("error: {SECRET_VARIABLE} is not set: it holds the secret shared with Otoroshi (set it in the environment; it is never read from the command line)");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| {
        eprintln!("error: cannot start the runtime: {e}");
        std::process::exit(1);
    });
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(("0.0.0.0", cli.listen)).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("error: cannot listen on 0.0.0.0:{}: {e}", cli.listen);
                std::process::exit(1);
            }
        };
        eprintln!(
            "otoroshi-challenge: listening on 0.0.0.0:{}, forwarding to 127.0.0.1:{}",
            cli.listen, cli.forward
        );
        let proxy = Arc::new(Proxy::new(secret.as_bytes(), cli.forward));
        serve(listener, proxy, stop_signal()).await;
        eprintln!("otoroshi-challenge: stopped");
    });
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
