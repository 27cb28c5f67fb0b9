//! Secrets never appear in a plan, an argv or a log line: the plan names the variable and the
//! process that needs the value reads it from its environment.

use crate::env::Env;

/// Variables the platform documents as secrets.
const NAMED_SECRETS: [&str; 2] = ["OTOROSHI_CHALLENGE_SECRET", "CC_REDIRECTIONIO_PROJECT_KEY"];
/// Any variable whose name contains one of these is a secret too.
const SECRET_WORDS: [&str; 4] = ["SECRET", "KEY", "TOKEN", "PASSWORD"];
/// Shorter values are not redacted: replacing every `1` or `yes` in a log would hide more
/// than it protects.
const MIN_REDACTED_LEN: usize = 4;

pub const REDACTED: &str = "***";

pub fn is_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    NAMED_SECRETS.contains(&name) || SECRET_WORDS.iter().any(|w| upper.contains(w))
}

/// Replaces the value of every secret variable of `env` found in `text` with `***`.
pub fn redact(text: &str, env: &Env) -> String {
    let mut values: Vec<&str> = env
        .iter()
        .filter(|(k, v)| is_secret(k) && v.len() >= MIN_REDACTED_LEN)
        .map(|(_, v)| v)
        .collect();
    // Longest first, so a secret that contains another is replaced whole.
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values
        .into_iter()
        .fold(text.to_string(), |acc, v| acc.replace(v, REDACTED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for name in [
            "OTOROSHI_CHALLENGE_SECRET",
            "CC_REDIRECTIONIO_PROJECT_KEY",
            "DJANGO_SECRET_KEY",
            "GITHUB_TOKEN",
            "db_password",
        ] {
            assert!(is_secret(name), "{name}");
        }
        for name in ["PATH", "CC_RUN_COMMAND", "PORT", "HOME"] {
            assert!(!is_secret(name), "{name}");
        }
    }

    #[test]
    fn redaction_replaces_secret_values_only() {
        let env: Env = [
            ("API_TOKEN", "s3cr3t-value"),
            ("SHORT_KEY", "1"),
            ("GREETING", "hello"),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            redact("token=s3cr3t-value greeting=hello n=1", &env),
            "token=*** greeting=hello n=1"
        );
    }
}
