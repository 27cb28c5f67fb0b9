//! Workers: the platform's background processes beside the app (`CC_WORKER_COMMAND`,
//! `CC_WORKER_COMMAND_0`, ...; legacy mode's Celery is one too), each run in the app's
//! directory with the app's environment, and restarted as the platform's systemd units are
//! (`CC_WORKER_RESTART`, `CC_WORKER_RESTART_DELAY`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// systemd's default start limit (`StartLimitBurst=5` within `StartLimitIntervalSec=10s`): a
/// worker started this many times within [`START_LIMIT_INTERVAL`] is given up.
pub const START_LIMIT_BURST: usize = 5;
/// See [`START_LIMIT_BURST`].
pub const START_LIMIT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// The longest `CC_WORKER_RESTART_DELAY` taken, in seconds (an hour).
pub const MAX_RESTART_DELAY_SECONDS: f64 = 3600.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Worker {
    /// `worker-0`, `worker-1`, ... in the variables' order (`celery` for legacy mode's Celery).
    pub name: String,
    /// The variable it comes from: `CC_WORKER_COMMAND`, `CC_WORKER_COMMAND_N` or
    /// `CC_PYTHON_CELERY_MODULE`.
    pub source: String,
    /// The command as the user wrote it (secrets by name).
    pub command: String,
    /// Its words; `None` when the command needs a shell (`/bin/sh -c COMMAND`).
    pub argv: Option<Vec<String>>,
    /// `CC_WORKER_RESTART`.
    pub restart: Restart,
    /// `CC_WORKER_RESTART_DELAY`, in milliseconds (1000 by default).
    pub restart_delay_ms: u64,
}

/// `CC_WORKER_RESTART`, with systemd's meaning (`Restart=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// After a non-zero exit, or an end by a signal other than the four systemd deems clean
    /// (HUP, INT, TERM, PIPE).
    #[default]
    OnFailure,
    /// After any end.
    Always,
    /// Never.
    No,
}

impl Restart {
    pub const VALID: &'static str = "`on-failure` (the default), `always` or `no`";

    pub fn parse(text: &str) -> Option<Restart> {
        match text.trim() {
            "on-failure" => Some(Restart::OnFailure),
            "always" => Some(Restart::Always),
            "no" => Some(Restart::No),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Restart::OnFailure => "on-failure",
            Restart::Always => "always",
            Restart::No => "no",
        }
    }

    /// Whether a process that ended with `status` (as a shell gives it: 128 + N for signal N)
    /// is started again, as systemd decides it.
    pub fn restarts_after(self, status: i32) -> bool {
        match self {
            Restart::Always => true,
            Restart::No => false,
            Restart::OnFailure => {
                // systemd's clean signals: SIGHUP, SIGINT, SIGTERM, SIGPIPE.
                let clean_signal = [1, 2, 15, 13].map(|sig| 128 + sig).contains(&status);
                status != 0 && !clean_signal
            }
        }
    }
}

/// `CC_WORKER_RESTART_DELAY`: a number of seconds from 0 to an hour (fractions allowed, as
/// systemd's `RestartSec=` takes them); `None` when it is not one.
pub fn parse_restart_delay(text: &str) -> Option<std::time::Duration> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && (0.0..=MAX_RESTART_DELAY_SECONDS).contains(s))
        .map(std::time::Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_follow_systemd() {
        for (status, on_failure) in [
            (0, false),
            (1, true),
            (2, true),
            (137, true),
            (143, false),
            (129, false),
            (130, false),
            (141, false),
            (139, true),
        ] {
            assert_eq!(
                Restart::OnFailure.restarts_after(status),
                on_failure,
                "{status}"
            );
            assert!(Restart::Always.restarts_after(status));
            assert!(!Restart::No.restarts_after(status));
        }
        assert_eq!(Restart::parse(" always "), Some(Restart::Always));
        assert_eq!(Restart::parse("on_failure"), None);
        assert_eq!(Restart::parse("yes"), None);
    }

    #[test]
    fn restart_delays_are_seconds_from_zero_to_an_hour() {
        assert_eq!(
            parse_restart_delay("1"),
            Some(std::time::Duration::from_secs(1))
        );
        assert_eq!(parse_restart_delay("0"), Some(std::time::Duration::ZERO));
        assert_eq!(
            parse_restart_delay("0.5"),
            Some(std::time::Duration::from_millis(500))
        );
        for bad in ["-1", "1s", "", "nan", "inf", "3601"] {
            assert_eq!(parse_restart_delay(bad), None, "{bad}");
        }
    }
}
