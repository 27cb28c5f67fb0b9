//! Errors as data, rendered in one place. Every tool's error type says what it is
//! ([`Failure`]: its exit code, detail lines, a hint); [`report`] prints it the one way every
//! tool ends, as uv and coreutils do:
//!
//! ```text
//! error: the Varnish configuration `clevercloud/varnish.vcl` does not compile
//!   Message from VCC-compiler: ...
//!
//! hint: ...
//! ```
//!
//! Every line goes through the one redaction ([`crate::secret::redact`]), by value. The
//! environment and the secrets know nothing of reporting: what their errors say to the user
//! beyond their one line is here, so that `env` and `secret` come before `report` and no
//! module of the plan needs the one that needs it.

use crate::env::{Env, EnvError};
use crate::secret::MissingSecret;
use std::fmt::Display;
use std::process::ExitCode;

/// Exit codes shared by every tool.
pub mod exit {
    /// The check or the build failed.
    pub const FAILED: u8 = 1;
    /// Bad usage or configuration.
    pub const USAGE: u8 = 2;
}

/// What a tool's error tells the reporter, beyond its one-line `Display`.
pub trait Failure: Display {
    /// 1 (the default): the check or the build failed; 2: bad usage or configuration.
    fn exit_code(&self) -> u8 {
        exit::FAILED
    }
    /// Lines printed under the `error:` line (a compiler's message, ...).
    fn details(&self) -> Vec<String> {
        Vec::new()
    }
    /// What the user can do about it, printed after a blank line.
    fn hint(&self) -> Option<String> {
        None
    }
    /// An earlier step of the pipeline already said what went wrong: say nothing more.
    fn is_silent(&self) -> bool {
        false
    }
}

/// Any tool's error, for `main`'s `?`.
pub type Fault = Box<dyn Failure>;

impl<E: Failure + 'static> From<E> for Fault {
    fn from(error: E) -> Self {
        Box::new(error)
    }
}

/// A message and an exit code, for the few errors that are not worth a variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub text: String,
    pub code: u8,
    pub hint: Option<String>,
}

impl Message {
    pub fn usage(text: impl Into<String>) -> Self {
        Message {
            text: text.into(),
            code: exit::USAGE,
            hint: None,
        }
    }

    pub fn failed(text: impl Into<String>) -> Self {
        Message {
            text: text.into(),
            code: exit::FAILED,
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Failure for Message {
    fn exit_code(&self) -> u8 {
        self.code
    }
    fn hint(&self) -> Option<String> {
        self.hint.clone()
    }
}

impl Failure for EnvError {
    fn exit_code(&self) -> u8 {
        exit::USAGE
    }

    fn hint(&self) -> Option<String> {
        match self {
            EnvError::TooLong { key, .. } => Some(format!(
                "put the value in a file of the app and have {key} name that file"
            )),
            _ => None,
        }
    }
}

impl Failure for MissingSecret {
    fn hint(&self) -> Option<String> {
        Some(format!(
            "set {} (or pass the env file that sets it)",
            self.0
        ))
    }
}

/// The text of the report, secrets redacted: `error: …`, indented detail lines, then a blank
/// line and `hint: …` when there is one. Empty for a silent failure.
pub fn render(failure: &dyn Failure, env: &Env) -> String {
    if failure.is_silent() {
        return String::new();
    }
    let mut out = format!("error: {failure}\n");
    for line in failure.details() {
        out.push_str(&format!("  {line}\n"));
    }
    if let Some(hint) = failure.hint() {
        out.push_str(&format!("\nhint: {hint}\n"));
    }
    crate::secret::redact(&out, env)
}

/// Prints the report on stderr and gives the exit code `main` returns. (Written, not
/// `eprint!`ed: a stderr that is gone must not turn an error into a panic.)
pub fn report(failure: &dyn Failure, env: &Env) -> ExitCode {
    let _ = std::io::Write::write_all(&mut std::io::stderr(), render(failure, env).as_bytes());
    ExitCode::from(failure.exit_code())
}

/// Whether writing our result failed only because the reader went away (`detect | head`):
/// a quiet end, as in ripgrep, not an error.
pub fn is_closed_pipe(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::BrokenPipe
}

/// Writing the tool's result on stdout failed.
#[derive(Debug)]
pub struct WriteError(pub std::io::Error);

impl Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot write to stdout: {}", self.0)
    }
}

impl Failure for WriteError {
    fn is_silent(&self) -> bool {
        is_closed_pipe(&self.0)
    }
}

/// Prints one line of progress on stderr, secrets redacted.
pub fn say(tool: &str, line: impl Display, env: &Env) {
    let line = crate::secret::redact(&format!("{tool}: {line}\n"), env);
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Broken;

    impl Display for Broken {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("the VCL `v.vcl` does not compile with s3cr3t-value")
        }
    }

    impl Failure for Broken {
        fn exit_code(&self) -> u8 {
            exit::USAGE
        }
        fn details(&self) -> Vec<String> {
            vec!["line 1".into(), "line 2".into()]
        }
        fn hint(&self) -> Option<String> {
            Some("fix it".into())
        }
    }

    #[test]
    fn one_error_line_details_then_a_hint_with_secrets_redacted() {
        let env: Env = [("API_TOKEN", "s3cr3t-value")].into_iter().collect();
        assert_eq!(
            render(&Broken, &env),
            "error: the VCL `v.vcl` does not compile with ***\n  line 1\n  line 2\n\nhint: fix it\n"
        );
        assert_eq!(Broken.exit_code(), 2);
    }

    #[test]
    fn environment_and_secret_errors_say_what_to_do() {
        let long = EnvError::TooLong {
            key: "BIG".into(),
            size: 200_000,
        };
        assert_eq!(long.exit_code(), exit::USAGE);
        assert_eq!(
            long.hint().as_deref(),
            Some("put the value in a file of the app and have BIG name that file")
        );
        let bad = EnvError::BadAssignment { given: "=x".into() };
        assert_eq!((bad.exit_code(), bad.hint()), (exit::USAGE, None));
        let missing = MissingSecret("API_TOKEN".into());
        assert_eq!(
            render(&missing, &Env::default()),
            "error: the plan refers to the secret API_TOKEN, which is not set in the environment\n\
             \nhint: set API_TOKEN (or pass the env file that sets it)\n"
        );
        assert_eq!(missing.exit_code(), exit::FAILED);
    }

    #[test]
    fn a_closed_pipe_is_quiet() {
        let closed = WriteError(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert_eq!(render(&closed, &Env::default()), "");
        let full = WriteError(std::io::Error::other("disk full"));
        assert_eq!(
            render(&full, &Env::default()),
            "error: cannot write to stdout: disk full\n"
        );
    }
}
