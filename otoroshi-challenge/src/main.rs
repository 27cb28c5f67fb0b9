use clap::{Parser, Subcommand};
use otoroshi_challenge::proxy::{self, serve, Limits, Proxy};
use otoroshi_challenge::token::{new_state, Otoroshi, STATE_TTL};
use plan::cli::parse_duration;
use plan::cli::port_value;
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
/// environment only. SIGTERM lets in-flight requests finish and closes idle connections.
///
/// `otoroshi-challenge token` prints a valid token, to try the chain by hand:
/// curl -H "Otoroshi-State: $(otoroshi-challenge token)" localhost:8080/
#[derive(Parser)]
#[command(version, subcommand_negates_reqs = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Port to listen on, on every interface [default: $PORT].
    #[arg(long, env = "PORT", value_name = "PORT", value_parser = port_value(), required = true)]
    listen: Option<u16>,
    /// Port of the next hop (or the app) on 127.0.0.1.
    #[arg(long, value_name = "PORT", value_parser = port_value(), required = true)]
    forward: Option<u16>,
    /// How long the app has to answer a request before the client gets 504, e.g. `30s`.
    #[arg(long, env = "OTOROSHI_CHALLENGE_APP_TIMEOUT", value_name = "DURATION", default_value_t = Wait(proxy::DEFAULT_APP_TIMEOUT), value_parser = wait)]
    app_timeout: Wait,
    /// How long a client has to send a whole request head once it has begun it; and, after
    /// SIGTERM, how long a request body may stall before the connection is closed.
    #[arg(long, env = "OTOROSHI_CHALLENGE_HEADER_TIMEOUT", value_name = "DURATION", default_value_t = Wait(proxy::DEFAULT_HEADER_TIMEOUT), value_parser = positive_wait)]
    header_timeout: Wait,
    /// How long a connection may stay open without a request (kept alive, or never used).
    #[arg(long, env = "OTOROSHI_CHALLENGE_IDLE_TIMEOUT", value_name = "DURATION", default_value_t = Wait(proxy::DEFAULT_IDLE_TIMEOUT), value_parser = positive_wait)]
    idle_timeout: Wait,
    /// Client connections held at once; past it, the longest idle one is closed to make room
    /// [default: from the open files limit, two descriptors a connection].
    #[arg(long, env = "OTOROSHI_CHALLENGE_MAX_CONNECTIONS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,
}

#[derive(Subcommand)]
enum Command {
    /// Print a valid `Otoroshi-State` token, signed with OTOROSHI_CHALLENGE_SECRET (read from
    /// the environment only), as Otoroshi sends it: to try a chain by hand, e.g.
    /// curl -H "Otoroshi-State: $(otoroshi-challenge token)" localhost:8080/
    Token {
        /// The token's `state` claim, which the answer's `Otoroshi-State-Resp` carries back
        /// [default: a new one each time].
        #[arg(long)]
        state: Option<String>,
        /// How long the token is valid, in whole seconds.
        #[arg(long, value_name = "DURATION", default_value_t = Wait(STATE_TTL), value_parser = wait)]
        ttl: Wait,
    },
}

/// A duration as `--help` shows it (`10s`) and as the user writes it.
#[derive(Clone, Copy)]
struct Wait(Duration);

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

fn wait(text: &str) -> Result<Wait, String> {
    parse_duration(text).map(Wait)
}

/// A timeout that can expire: zero would close every connection at once.
fn positive_wait(text: &str) -> Result<Wait, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err(format!(
            "`{text}` would close every connection at once: give a duration above zero (e.g. `10s`)"
        )),
        duration => Ok(Wait(duration)),
    }
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
    if let Some(Command::Token {
        state,
        ttl: Wait(ttl),
    }) = &cli.command
    {
        if ttl.as_secs() == 0 {
            return report(
                &Message::usage(format!(
                    "--ttl `{}` is shorter than a second: a token lives whole seconds (e.g. `30s`)",
                    humantime::format_duration(*ttl)
                )),
                &env,
            );
        }
        let state = state.clone().unwrap_or_else(new_state);
        let token = Otoroshi::new(secret.as_bytes()).state_token(&state, *ttl);
        let _ = std::io::Write::write_all(&mut std::io::stdout(), format!("{token}\n").as_bytes());
        return ExitCode::SUCCESS;
    }
    // Both are required without a subcommand: clap has checked them.
    let (Some(listen), Some(forward)) = (cli.listen, cli.forward) else {
        return report(&Message::usage("--listen and --forward are required"), &env);
    };
    let limits = Limits {
        header_timeout: cli.header_timeout.0,
        idle_timeout: cli.idle_timeout.0,
        max_connections: cli
            .max_connections
            .map_or_else(proxy::max_connections_from_limit, |n| n as usize),
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
        let listener = match tokio::net::TcpListener::bind(("0.0.0.0", listen)).await {
            Ok(listener) => listener,
            Err(e) => {
                let message = Message::failed(format!("cannot listen on 0.0.0.0:{listen}: {e}"));
                return report(&message, &env);
            }
        };
        eprintln!(
            "otoroshi-challenge: listening on 0.0.0.0:{listen}, forwarding to 127.0.0.1:{forward}"
        );
        let proxy = Arc::new(Proxy::new(secret.as_bytes(), forward, cli.app_timeout.0));
        serve(listener, proxy, limits, stop_signal()).await;
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
