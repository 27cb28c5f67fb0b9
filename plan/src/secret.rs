//! Secrets never appear in a plan, an argv or a log line: the plan names the variable and the
//! process that needs the value reads it from its environment.

use crate::env::Env;

/// A variable whose name contains one of these is a secret: the ones the platform documents as
/// secrets among them (`OTOROSHI_CHALLENGE_SECRET`, `CC_REDIRECTIONIO_PROJECT_KEY`), and
/// (`BASIC_AUTH`) legacy mode's `CC_HTTP_BASIC_AUTH`, `CC_HTTP_BASIC_AUTH_n`, `login:password`
/// pairs.
const SECRET_WORDS: [&str; 5] = ["SECRET", "KEY", "TOKEN", "PASSWORD", "BASIC_AUTH"];
/// Shorter values are not redacted: replacing every `1` or `yes` in a log would hide more
/// than it protects.
const MIN_REDACTED_LEN: usize = 4;

pub const REDACTED: &str = "***";

pub fn is_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_WORDS.iter().any(|w| upper.contains(w))
}

/// The password of a URL with credentials (`postgresql://user:PASSWORD@host/db`, any
/// `scheme://user:pass@...`), when `value` is one.
pub fn url_password(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once("://")?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let (userinfo, _host) = authority.rsplit_once('@')?;
    let (_user, password) = userinfo.split_once(':')?;
    (scheme_ok && !password.is_empty()).then_some(password)
}

/// Whether `name` is one of the variables an add-on gives the app (`POSTGRESQL_ADDON_URI`,
/// `MYSQL_ADDON_HOST`, `REDIS_URL`, ...): a connection to a service, which manifests take from
/// a Secret as a whole, password or not.
pub fn is_addon_variable(name: &str) -> bool {
    const PREFIXES: [&str; 5] = [
        "POSTGRESQL_ADDON_",
        "MYSQL_ADDON_",
        "MONGODB_ADDON_",
        "REDIS_",
        "KV_",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
}

/// A variable whose value is a secret: by its name ([`is_secret`]), or by its value (a URL
/// with a password: `POSTGRESQL_ADDON_URI` and the like).
pub fn is_secret_variable(name: &str, value: &str) -> bool {
    is_secret(name) || url_password(value).is_some()
}

/// The secret variables of `env` worth hiding, as (name, value), longest value first, so that
/// a secret that contains another is replaced whole.
fn secrets_of(env: &Env) -> Vec<(&str, &str)> {
    let mut secrets: Vec<(&str, &str)> = env
        .iter()
        .filter(|(k, v)| is_secret_variable(k, v) && v.len() >= MIN_REDACTED_LEN)
        .collect();
    secrets.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
    secrets
}

/// Replaces the value of every secret variable of `env` found in `text` with `***`, and the
/// password of every URL with credentials.
pub fn redact(text: &str, env: &Env) -> String {
    redacted_values(env)
        .into_iter()
        .fold(text.to_string(), |acc, v| acc.replace(v, REDACTED))
}

/// The values [`redact`] replaces, longest first (so that a secret holding another is
/// replaced whole): for a reader of bytes, such as a process's output.
pub fn redacted_values(env: &Env) -> Vec<&str> {
    let mut values: Vec<&str> = secrets_of(env).into_iter().map(|(_, v)| v).collect();
    values.extend(
        env.iter()
            .filter_map(|(_, v)| url_password(v))
            .filter(|p| p.len() >= MIN_REDACTED_LEN),
    );
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values.dedup();
    values
}

/// Whether `value` (a variable's value) holds the value of one of `env`'s secrets, however
/// a shell would spell it (`my\ secret`, `'my secret'`): such a variable is a secret too
/// wherever it is written (`CC_PYTHON_UV_RUN_COMMAND` with a token in it).
pub fn holds_a_secret(value: &str, env: &Env) -> bool {
    secrets_of(env)
        .into_iter()
        .any(|(_, secret)| value.contains(secret) || unquoted(value).0.contains(secret))
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

/// Where a character of shell text stands: outside quotes, or inside `'...'` or `"..."`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    Plain,
    Single,
    Double,
}

/// One character of shell text as the shell means it: where it is in the meaning (a byte
/// offset), where its spelling is in the text, and the quoting it is in.
struct Meant {
    offset: usize,
    start: usize,
    end: usize,
    quoting: Quoting,
}

/// Shell text as the shell reads its characters: the string of characters it means (quotes
/// and escaping backslashes removed), each of them with its spelling, and for every byte of
/// `text` the quoting in force there. (`/bin/sh`'s rules: `'...'` literal, `"..."` with `\`
/// escaping only `$`, `` ` ``, `"`, `\` and newline, a newline after `\` removed.)
fn unquoted(text: &str) -> (String, Vec<Meant>, Vec<Quoting>) {
    let mut meant = String::new();
    let mut chars_meant = Vec::new();
    let mut at = vec![Quoting::Plain; text.len() + 1];
    let mut state = Quoting::Plain;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        at[i..i + c.len_utf8()].fill(state);
        let before = state;
        let escapes = |n: char| match state {
            Quoting::Plain => true,
            Quoting::Double => "$`\"\\\n".contains(n),
            Quoting::Single => false,
        };
        let m = match (state, c) {
            (Quoting::Plain | Quoting::Double, '\\') => match chars.peek().copied() {
                Some((j, n)) if escapes(n) => {
                    chars.next();
                    at[j..j + n.len_utf8()].fill(state);
                    (n != '\n').then_some(n)
                }
                _ => Some(c),
            },
            (Quoting::Plain, '\'') => {
                state = Quoting::Single;
                None
            }
            (Quoting::Plain, '"') => {
                state = Quoting::Double;
                None
            }
            (Quoting::Single, '\'') | (Quoting::Double, '"') => {
                state = Quoting::Plain;
                None
            }
            _ => Some(c),
        };
        if let Some(m) = m {
            let end = chars.peek().map_or(text.len(), |&(j, _)| j);
            chars_meant.push(Meant {
                offset: meant.len(),
                start: i,
                end,
                quoting: before,
            });
            meant.push(m);
        }
    }
    at[text.len()] = state;
    (meant, chars_meant, at)
}

/// [`hide`] for shell text (a run command that needs a shell, `CC_REQUEST_FLOW_CUSTOM`): a
/// secret is found however the text spells it (`my\ secret`, `'my secret'`, `"my secret"`),
/// and its spelling replaced by `${{NAME}}` outside any quotes (quotes closed before it and
/// opened again after it), so that [`reveal_in_shell`] quotes the value back whole.
pub fn hide_in_shell(text: &str, env: &Env) -> String {
    let quote = |q: Quoting| match q {
        Quoting::Plain => "",
        Quoting::Single => "'",
        Quoting::Double => "\"",
    };
    let mut text = text.to_string();
    for (name, value) in secrets_of(env) {
        // Past what was replaced already: a reference is never searched again.
        let mut from = 0;
        loop {
            let (meant, chars, at) = unquoted(&text);
            let found = meant.match_indices(value).find_map(|(offset, _)| {
                let first = chars.iter().position(|c| c.offset == offset)?;
                (chars[first].start >= from).then_some(first)
            });
            let Some(first) = found else { break };
            let last = first + value.chars().count() - 1;
            let (mut start, mut end) = (chars[first].start, chars[last].end);
            let (mut opened, mut closed) = (chars[first].quoting, chars[last].quoting);
            // Quotes around the secret alone go with it (`"${{NAME}}"` would reveal quoted
            // twice): the quote just before it that opens, the one just after it that closes.
            if opened != Quoting::Plain
                && text[..start].ends_with(quote(opened))
                && at[start - 1] == Quoting::Plain
            {
                start -= 1;
                opened = Quoting::Plain;
            }
            if closed != Quoting::Plain
                && text[end..].starts_with(quote(closed))
                && at[end] == closed
            {
                end += 1;
                closed = Quoting::Plain;
            }
            let replacement = format!("{}{}{}", quote(opened), reference(name), quote(closed));
            text.replace_range(start..end, &replacement);
            from = start + replacement.len();
        }
    }
    text
}

/// `text` (shell text) with each `${{NAME}}` replaced by what `with` makes of NAME and the
/// quoting the reference stands in.
pub fn map_shell_references<E>(
    text: &str,
    mut with: impl FnMut(&str, Quoting) -> Result<String, E>,
) -> Result<String, E> {
    let (_, _, at) = unquoted(text);
    let mut out = String::new();
    let mut done = 0;
    while let Some(found) = text[done..].find("${{") {
        let start = done + found;
        let Some(len) = text[start + 3..].find("}}") else {
            break;
        };
        out.push_str(&text[done..start]);
        out.push_str(&with(&text[start + 3..start + 3 + len], at[start])?);
        done = start + 3 + len + 2;
    }
    out.push_str(&text[done..]);
    Ok(out)
}

/// Shell text with each `${{NAME}}` made the shell's own expansion of the variable NAME
/// (`"${NAME}"`, quoted for where it stands), for where the secret is in the environment of
/// the shell rather than put back in the text (a pod's Secret, a build secret).
pub fn as_shell_variables(text: &str) -> String {
    let mapped = map_shell_references(text, |name, quoting| {
        Ok::<_, std::convert::Infallible>(match quoting {
            Quoting::Plain => format!("\"${{{name}}}\""),
            Quoting::Double => format!("${{{name}}}"),
            Quoting::Single => format!("'\"${{{name}}}\"'"),
        })
    });
    match mapped {
        Ok(text) => text,
        Err(never) => match never {},
    }
}

/// The names of the `${{NAME}}` references in `text`.
pub fn references(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let _ = map_references(text, |name| {
        names.push(name.to_string());
        Ok::<_, std::convert::Infallible>(String::new())
    });
    names
}

/// [`reveal`] for shell text: each value quoted for where its reference stands, so that the
/// shell reads the value, spaces and quotes included, as one piece of one word.
pub fn reveal_in_shell(text: &str, env: &Env) -> Result<String, MissingSecret> {
    map_shell_references(text, |name, quoting| {
        let value = env
            .get(name)
            .ok_or_else(|| MissingSecret(name.to_string()))?;
        Ok(match quoting {
            Quoting::Plain => shell_words::quote(value).into_owned(),
            Quoting::Single => value.replace('\'', "'\\''"),
            Quoting::Double => value.chars().fold(String::new(), |mut out, c| {
                if "$`\"\\".contains(c) {
                    out.push('\\');
                }
                out.push(c);
                out
            }),
        })
    })
}

/// A `${{NAME}}` whose variable is not set where the command runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the plan refers to the secret {0}, which is not set in the environment")]
pub struct MissingSecret(pub String);

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
        // The platform's documented secrets are found by the words, like any other.
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

    /// However a shell command spells a secret, the plan's text holds none of it, and the
    /// shell reads back what the user wrote.
    #[test]
    fn a_secret_spelled_for_a_shell_is_hidden_and_revealed_whole() {
        let secret = "my se'cr\"et $x";
        let env: Env = [("API_TOKEN", secret)].into_iter().collect();
        let spelled = [
            shell_words::quote(secret).into_owned(),
            "my\\ se\\'cr\\\"et\\ \\$x".to_string(),
            "\"my se'cr\\\"et \\$x\"".to_string(),
            "'my se'\"'\"'cr\"et $x'".to_string(),
            "my' 'se\\'cr'\"'et\" \\$x\"".to_string(),
        ];
        for spelling in spelled {
            let command = format!("serve --token {spelling} --then 'a b'; echo \"[$PORT]\"");
            let words = |script: &str| {
                let out = std::process::Command::new("/bin/sh")
                    .args([
                        "-c",
                        &format!("for w in {script}; do printf '%s|' \"$w\"; done"),
                    ])
                    .env("PORT", "1")
                    .output()
                    .unwrap();
                String::from_utf8(out.stdout).unwrap()
            };
            let meant = words(&command.replace(';', "\\;"));
            assert!(meant.contains(&format!("|{secret}|")), "{command}: {meant}");
            let hidden = hide_in_shell(&command, &env);
            assert!(
                !hidden.contains("my") && !hidden.contains("cr"),
                "{command} -> {hidden}"
            );
            assert!(hidden.contains("${{API_TOKEN}}"), "{hidden}");
            let revealed = reveal_in_shell(&hidden, &env).unwrap();
            assert_eq!(
                words(&revealed.replace(';', "\\;")),
                meant,
                "{command} -> {hidden} -> {revealed}"
            );
            assert!(holds_a_secret(&command, &env), "{command}");
        }
        // A reference inside quotes (as plain `hide` leaves them) is revealed for its quotes.
        let inside = "echo '${{API_TOKEN}}' \"${{API_TOKEN}}\" ${{API_TOKEN}}";
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", &reveal_in_shell(inside, &env).unwrap()])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("{secret} {secret} {secret}\n")
        );
        assert!(!holds_a_secret("serve --token other", &env));
        // Or expanded by the shell from its environment, where the secret is a variable.
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", &as_shell_variables(inside)])
            .env("API_TOKEN", secret)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("{secret} {secret} {secret}\n")
        );
        assert_eq!(references(inside), ["API_TOKEN"; 3]);
    }

    #[test]
    fn a_url_with_a_password_is_a_secret() {
        for (value, password) in [
            ("postgresql://user:PASSWORD@host/db", Some("PASSWORD")),
            ("redis://:p%40ss@cache:6379/0", Some("p%40ss")),
            ("mysql://u:pa@ss@h/db", Some("pa@ss")),
            ("https://host/path?x=a:b@c", None),
            ("postgresql://user@host/db", None),
            ("postgresql://user:@host/db", None),
            ("not a url: a:b@c", None),
        ] {
            assert_eq!(url_password(value), password, "{value}");
            assert_eq!(
                is_secret_variable("DATABASE_URL", value),
                password.is_some()
            );
        }
        let env: Env = [("POSTGRESQL_ADDON_URI", "postgresql://u:s3cr3t-pw@h/db")]
            .into_iter()
            .collect();
        assert_eq!(redact("pw s3cr3t-pw", &env), "pw ***");
        assert_eq!(redact("postgresql://u:s3cr3t-pw@h/db", &env), "***");
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
