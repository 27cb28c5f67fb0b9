//! What every tool's command line shares: the environment flags, the port flags, the plan
//! flag and durations. (How a tool ends with an error is [`crate::report`].)

use crate::env::{Env, EnvError};
use crate::model::{DEFAULT_APP_PORT, DEFAULT_PUBLIC_PORT};
use crate::report::Message;
use crate::PlanSource;
use std::path::PathBuf;
use std::process::ExitCode;

/// A TCP port a process can listen on: 1 to 65535 (0 would mean "any port").
pub fn port_value() -> clap::builder::RangedI64ValueParser<u16> {
    clap::value_parser!(u16).range(1..)
}

/// `--env-file FILE` and `--env KEY=VALUE`, layered over the process environment.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EnvArgs {
    /// Read variables from FILE (`KEY=VALUE` lines, as `clever env` prints them); repeatable.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Set one variable, over the environment and env files; repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub assignments: Vec<String>,
}

impl EnvArgs {
    pub fn env(&self) -> Result<Env, EnvError> {
        Env::layered(&self.env_files, &self.assignments)
    }

    /// Only what the env files and `--env` say, not this process's environment: the
    /// application's own variables, for a tool that writes them somewhere (`export`).
    pub fn without_process(&self) -> Result<Env, EnvError> {
        let mut env = Env::default();
        for file in &self.env_files {
            env.load_file(file)?;
        }
        for assignment in &self.assignments {
            let layered = Env::layered(&[], std::slice::from_ref(assignment))?;
            let (key, _) = assignment.split_once('=').unwrap_or_default();
            if let Some(value) = layered.get(key) {
                env.set(key, value);
            }
        }
        Ok(env)
    }
}

/// `--public-port` and `--app-port`: the platform's 8080 and 9000 unless shifted.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct PortArgs {
    /// The public port, where the first hop (or the app) listens [default: 8080].
    #[arg(long, value_name = "PORT", value_parser = port_value())]
    pub public_port: Option<u16>,
    /// Where the app listens when middlewares sit in front of it [default: 9000].
    #[arg(long, value_name = "PORT", value_parser = port_value())]
    pub app_port: Option<u16>,
}

impl From<PortArgs> for crate::PortSettings {
    fn from(args: PortArgs) -> Self {
        crate::PortSettings {
            public: args.public_port.unwrap_or(DEFAULT_PUBLIC_PORT),
            app: args.app_port.unwrap_or(DEFAULT_APP_PORT),
        }
    }
}

impl PortArgs {
    /// The ports are laid out once, by whatever makes the plan (`detect`, or `TOOL APP_DIR`),
    /// and other parts of the plan follow from them (the app server's address in legacy
    /// mode, the hops' ports): a tool that reads a made plan refuses them rather than
    /// ignoring them, or laying out again a chain that would no longer agree with its plan.
    pub fn refused_with_a_plan(&self, tool: &str, plan: &crate::Plan) -> Result<(), Message> {
        let given: Vec<String> = [
            ("--public-port", self.public_port),
            ("--app-port", self.app_port),
        ]
        .into_iter()
        .filter_map(|(flag, port)| Some(format!("{flag} {}", port?)))
        .collect();
        if given.is_empty() {
            return Ok(());
        }
        let given = given.join(" ");
        Err(Message::usage(format!(
            "`{given}` is for `{tool} APP_DIR`: the plan {tool} read already has its ports (public {}, app {})",
            plan.ports.public, plan.ports.app
        ))
        .with_hint(format!(
            "give the ports to the tool that makes the plan: `detect {given} APP_DIR | {tool}`"
        )))
    }
}

/// `--plan FILE` (or `-`, or nothing: stdin).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PlanArgs {
    /// Read the plan from FILE instead of stdin (`-` for stdin).
    #[arg(long = "plan", value_name = "FILE")]
    pub plan: Option<PathBuf>,
}

impl PlanArgs {
    pub fn source(&self) -> PlanSource {
        PlanSource::from_flag(self.plan.as_deref())
    }
}

/// For packagers (`scripts/install`): `TOOL --generate-man` prints the tool's man page and
/// `TOOL --generate-completions bash|zsh|fish|elvish|powershell` its completion script, both
/// from its clap definition. Looked for before parsing, so that a tool's required arguments do
/// not stand in the way; not in `--help`, since users do not need them. `None` when neither
/// was asked; else the exit code `main` returns.
pub fn generated<C: clap::CommandFactory>() -> Option<ExitCode> {
    generated_status::<C>().map(ExitCode::from)
}

/// [`generated`], as the number (`0`, `1` output failed, `2` bad usage).
fn generated_status<C: clap::CommandFactory>() -> Option<u8> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut out = std::io::stdout();
    let mut command = C::command();
    let name = command.get_name().to_string();
    let result = match args.first().map(String::as_str) {
        Some("--generate-man") => clap_mangen::Man::new(command).render(&mut out),
        Some("--generate-completions") => {
            let given = args.get(1).map(String::as_str);
            let Some(shell) = given.and_then(|s| s.parse::<clap_complete::Shell>().ok()) else {
                let message = Message::usage(format!(
                    "--generate-completions takes a shell{}: bash, zsh, fish, elvish or powershell",
                    given.map_or(String::new(), |s| format!(", not `{s}`"))
                ));
                crate::report::report(&message, &Env::default());
                return Some(crate::report::Failure::exit_code(&message));
            };
            clap_complete::generate(shell, &mut command, name, &mut out);
            Ok(())
        }
        _ => return None,
    };
    Some(match result {
        Ok(()) => 0,
        Err(e) => {
            let failure = crate::report::WriteError(e);
            crate::report::report(&failure, &Env::default());
            crate::report::Failure::exit_code(&failure)
        }
    })
}

/// [`generated`] for a `main` that does not return its exit code: exits when it printed
/// something. Kept for `otoroshi-challenge` until its `main` returns [`generated`]'s code;
/// every other tool goes through [`main`].
pub fn generate_if_asked<C: clap::CommandFactory>() {
    if let Some(status) = generated_status::<C>() {
        let _ = std::io::Write::flush(&mut std::io::stdout());
        std::process::exit(i32::from(status));
    }
}

/// The shape of every tool's `main`: answer `--generate-man`/`--generate-completions`, parse
/// the command line, layer the environment (`env_args`: the tool's `--env-file`/`--env`, or
/// `None` for the process environment alone), run, and end the one way errors end
/// ([`crate::report::report`], secrets redacted with that environment). The exit code is
/// returned, never a `std::process::exit`: what is buffered is written and destructors run.
pub fn main<C: clap::Parser>(
    env_args: impl Fn(&C) -> Option<&EnvArgs>,
    run: impl FnOnce(&C, &Env) -> Result<ExitCode, crate::report::Fault>,
) -> ExitCode {
    if let Some(code) = generated::<C>() {
        return code;
    }
    let cli = match C::try_parse() {
        Ok(cli) => cli,
        // clap's own words (usage errors on stderr, `--help` and `--version` on stdout).
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let env = match env_args(&cli).map(EnvArgs::env).transpose() {
        Ok(env) => env.unwrap_or_else(Env::from_process),
        Err(e) => return crate::report::report(&e, &Env::from_process()),
    };
    match run(&cli, &env) {
        Ok(code) => code,
        Err(e) => crate::report::report(&*e, &env),
    }
}

/// Durations as people write them: `60s`, `500ms`, `2m`, `1m 30s`, or plain seconds; at most
/// a day, so that a deadline never overflows.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    const MAX: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
    let text = text.trim();
    let too_long = || format!("`{text}` is longer than a day (the longest wait is `24h`)");
    let duration = match text.parse::<u64>() {
        Ok(seconds) => std::time::Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(text).map_err(|e| match e {
            humantime::DurationError::NumberOverflow => too_long(),
            e => format!("`{text}` is not a duration ({e}; e.g. `60s`, `500ms`, `2m`)"),
        })?,
    };
    if duration > MAX {
        return Err(too_long());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        use std::time::Duration;
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
        assert!(parse_duration("25h").is_err());
    }
}
