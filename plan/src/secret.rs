//! Secrets never appear in a plan, an argv or a log line: the plan names the variable and the
//! process that needs the value reads it from its environment.

use crate::env::Env;

/// Variables the platform documents as secrets.
const NAMED_SECRETS: [&str; 2] = ["OTOROSHI_CHALLENGE_SECRET", "CC_REDIRECTIONIO_PROJECT_KEY"];
/// Any variable whose name contains one of these is a secret too (`BASIC_AUTH`: legacy mode's
/// `CC_HTTP_BASIC_AUTH`, `CC_HTTP_BASIC_AUTH_n`, `login:password` pairs).
const SECRET_WORDS: [&str; 5] = ["SECRET", "KEY", "TOKEN", "PASSWORD", "BASIC_AUTH"];
/// Shorter values are not redacted: replacing every `1` or `yes` in a log would hide more
/// than it protects.
const MIN_REDACTED_LEN: usize = 4;

pub const REDACTED: &str = "***";

pub fn is_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    NAMED_SECRETS.contains(&name) || SECRET_WORDS.iter().any(|w| upper.contains(w))
}

/// The secret variables of `env` worth hiding, as (name, value), longest value first, so that
/// a secret that contains another is replaced whole.
fn secrets_of(env: &Env) -> Vec<(&str, &str)> {
    let mut secrets: Vec<(&str, &str)> = env
        .iter()
        .filter(|(k, v)| is_secret(k) && v.len() >= MIN_REDACTED_LEN)
        .collect();
    secrets.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
    secrets
}

/// Replaces the value of every secret variable of `env` found in `text` with `***`.
pub fn redact(text: &str, env: &Env) -> String {
    secrets_of(env)
        .into_iter()
        .fold(text.to_string(), |acc, (_, v)| acc.replace(v, REDACTED))
}

/// A secret's value written literally in a command or a path is kept out of the plan: the
/// plan holds `${{NAME}}` in its place, and the process that runs the command puts the value
/// back from its own environment ([`reveal`]). (`${{` is not valid shell, so no command
/// means it.)
pub fn hide(text: &str, env: &Env) -> String {
    secrets_of(env)
        .into_iter()
        .fold(text.to_string(), |acc, (k, v)| {
            acc.replace(v, &reference(k))
        })
}

/// How the plan refers to the secret variable `name`: `${{NAME}}`.
pub fn reference(name: &str) -> String {
    format!("${{{{{name}}}}}")
}

/// `text` with each `${{NAME}}` replaced by what `with` makes of NAME.
pub fn map_references<E>(
    text: &str,
    mut with: impl FnMut(&str) -> Result<String, E>,
) -> Result<String, E> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        let Some(len) = rest[start + 3..].find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push_str(&with(&rest[start + 3..start + 3 + len])?);
        rest = &rest[start + 3 + len + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A `${{NAME}}` whose variable is not set where the command runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the plan refers to the secret {0}, which is not set in the environment")]
pub struct MissingSecret(pub String);

impl crate::report::Failure for MissingSecret {
    fn hint(&self) -> Option<String> {
        Some(format!(
            "set {} (or pass the env file that sets it)",
            self.0
        ))
    }
}

/// Puts back the secrets [`hide`] took out, from `env`.
pub fn reveal(text: &str, env: &Env) -> Result<String, MissingSecret> {
    map_references(text, |name| {
        env.get(name)
            .map(str::to_string)
            .ok_or_else(|| MissingSecret(name.to_string()))
    })
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
            "CC_HTTP_BASIC_AUTH",
            "CC_HTTP_BASIC_AUTH_2",
        ] {
            assert!(is_secret(name), "{name}");
        }
        for name in ["PATH", "CC_RUN_COMMAND", "PORT", "HOME"] {
            assert!(!is_secret(name), "{name}");
        }
    }

    #[test]
    fn a_literal_secret_is_hidden_from_the_plan_and_revealed_where_it_runs() {
        let env: Env = [("API_TOKEN", "s3cr3t-value"), ("PATH", "/bin")]
            .into_iter()
            .collect();
        let command = "serve --token 's3cr3t-value' --path /bin";
        let hidden = hide(command, &env);
        assert_eq!(hidden, "serve --token '${{API_TOKEN}}' --path /bin");
        assert_eq!(reveal(&hidden, &env).unwrap(), command);
        assert_eq!(
            reveal(&hidden, &Env::default()),
            Err(MissingSecret("API_TOKEN".into()))
        );
        assert_eq!(
            reveal("no ${secret} here", &env).unwrap(),
            "no ${secret} here"
        );
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
