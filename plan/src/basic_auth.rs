//! Legacy mode's basic authentication: `CC_HTTP_BASIC_AUTH` and `CC_HTTP_BASIC_AUTH_n` each
//! hold one `login:password` pair. The one rule for reading a pair, used by `detect` (which
//! refuses a bad one before anything runs), `launcher` (which writes Nginx's password file)
//! and, as the same rule in POSIX sh, by the pods `export kubernetes` describes.
//!
//! The login ends at the first `:`, so the password may hold any character, `:` included,
//! but a line break: a line of Nginx's password file is one user, and a line break in a pair
//! would add a user of the pair's choosing.

/// What a pair is, for error messages.
pub const PAIR: &str = "a `login:password` pair on one line, its login not empty (the password may hold any other character, `:` included)";

/// Why a pair cannot be used. (Never the value: it is a secret.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadPair {
    #[error("it holds a line break, which would start another user")]
    LineBreak,
    #[error("it has no `:` between the login and the password")]
    NoColon,
    #[error("its login, before the first `:`, is empty")]
    EmptyLogin,
}

/// A variable whose pair cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}; expected {PAIR}")]
pub struct BadBasicAuth {
    pub variable: String,
    pub problem: BadPair,
}

impl crate::report::Failure for BadBasicAuth {
    fn exit_code(&self) -> u8 {
        crate::report::exit::USAGE
    }
}

/// Splits a pair into its login and its password, at the first `:`.
pub fn split(pair: &str) -> Result<(&str, &str), BadPair> {
    if pair.contains('\n') {
        return Err(BadPair::LineBreak);
    }
    let (login, password) = pair.split_once(':').ok_or(BadPair::NoColon)?;
    if login.is_empty() {
        return Err(BadPair::EmptyLogin);
    }
    Ok((login, password))
}

/// [`split`] for the pair in `variable`, the error naming the variable.
pub fn split_variable<'a>(
    variable: &str,
    pair: &'a str,
) -> Result<(&'a str, &'a str), BadBasicAuth> {
    split(pair).map_err(|problem| BadBasicAuth {
        variable: variable.to_string(),
        problem,
    })
}

/// The same rule in POSIX sh, for a shell that has the variable's name in `$v`: sets `login`
/// and `password`, or says on stderr what is wrong (naming the variable, never showing its
/// value) and exits 2. Ends with `;`, to be followed by what uses them.
pub fn shell_split() -> String {
    let fail = |problem: BadPair| {
        format!("{{ echo \"error: $v\"' is not a `login:password` pair: {problem}' >&2; exit 2; }}")
    };
    // `$(...)` drops every trailing line break: a `.` after printenv's own keeps them.
    format!(
        "pair=$(printenv \"$v\" && echo .) || {{ echo \"error: $v is not set\" >&2; exit 2; }}; \
         pair=${{pair%?.}}; nl=$(printf '\\n.'); nl=${{nl%.}}; \
         case $pair in *\"$nl\"*) {line};; *:*) ;; *) {colon};; esac; \
         login=${{pair%%:*}}; password=${{pair#*:}}; \
         [ -n \"$login\" ] || {empty};",
        line = fail(BadPair::LineBreak),
        colon = fail(BadPair::NoColon),
        empty = fail(BadPair::EmptyLogin),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pair, and how it splits.
    type Case = (&'static str, Result<(&'static str, &'static str), BadPair>);

    const CASES: [Case; 9] = [
        ("admin:s3cret", Ok(("admin", "s3cret"))),
        ("admin:pa:ss", Ok(("admin", "pa:ss"))),
        ("admin::", Ok(("admin", ":"))),
        ("admin:", Ok(("admin", ""))),
        ("ad min:p w'\"$x`\\\r#", Ok(("ad min", "p w'\"$x`\\\r#"))),
        ("admin:pw\nmallory:evil", Err(BadPair::LineBreak)),
        ("admin:pw\n", Err(BadPair::LineBreak)),
        ("nopassword", Err(BadPair::NoColon)),
        (":pw", Err(BadPair::EmptyLogin)),
    ];

    #[test]
    fn the_login_ends_at_the_first_colon_and_a_line_break_is_refused() {
        for (pair, expected) in CASES {
            assert_eq!(split(pair), expected, "{pair:?}");
        }
        let err = split_variable("CC_HTTP_BASIC_AUTH_2", "a:b\nmallory:evil").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("CC_HTTP_BASIC_AUTH_2: it holds a line break, which would start another user; expected {PAIR}")
        );
        assert!(!err.to_string().contains("evil"));
    }

    /// The shell's rule is the same: run with the system's `sh` on every case.
    #[test]
    fn the_shell_agrees() {
        for (pair, expected) in CASES {
            let script = format!(
                "v=CC_HTTP_BASIC_AUTH; {} printf '%s\\0%s' \"$login\" \"$password\"",
                shell_split()
            );
            let out = std::process::Command::new("/bin/sh")
                .args(["-c", &script])
                .env_clear()
                .env("CC_HTTP_BASIC_AUTH", pair)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            match expected {
                Ok((login, password)) => {
                    assert!(out.status.success(), "{pair:?}: {stderr}");
                    assert_eq!(
                        String::from_utf8_lossy(&out.stdout),
                        format!("{login}\0{password}"),
                        "{pair:?}"
                    );
                }
                Err(problem) => {
                    assert_eq!(out.status.code(), Some(2), "{pair:?}");
                    assert_eq!(
                        stderr,
                        format!(
                            "error: CC_HTTP_BASIC_AUTH is not a `login:password` pair: {problem}\n"
                        ),
                        "{pair:?}"
                    );
                    assert!(out.stdout.is_empty());
                }
            }
        }
        let unset = std::process::Command::new("/bin/sh")
            .args([
                "-c",
                &format!("v=CC_HTTP_BASIC_AUTH; {} echo reached", shell_split()),
            ])
            .env_clear()
            .output()
            .unwrap();
        assert_eq!(unset.status.code(), Some(2));
        assert_eq!(
            String::from_utf8_lossy(&unset.stderr),
            "error: CC_HTTP_BASIC_AUTH is not set\n"
        );
    }
}
