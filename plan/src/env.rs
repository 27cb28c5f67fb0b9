//! The environment a tool reads: the process environment, then each `--env-file`, then each
//! `--env KEY=VALUE`, later layers winning. Tools take an [`Env`], never `std::env` directly,
//! so every rule is testable with a literal environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("cannot read env file `{path}`: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("env file `{path}` line {line}: {reason} (expected `KEY=VALUE`, `export KEY=VALUE` or `# comment`)")]
    BadLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("--env `{given}`: expected `KEY=VALUE` with KEY made of letters, digits and `_`")]
    BadAssignment { given: String },
    /// The value is not shown: it may be a secret.
    #[error("{key} is too long: {size} bytes as `{key}=VALUE`, and a variable can be at most {MAX_VARIABLE_BYTES} bytes (the kernel's MAX_ARG_STRLEN, 128 KiB, with its NUL): no program could be started with it")]
    TooLong { key: String, size: usize },
}

/// The most a variable may take as `KEY=VALUE`: the kernel's `MAX_ARG_STRLEN` (128 KiB, 32
/// pages) less the terminating NUL. `execve` refuses a longer one with `Argument list too
/// long`, naming nothing, in whichever tool first starts a program.
pub const MAX_VARIABLE_BYTES: usize = 128 * 1024 - 1;

/// `KEY=VALUE` must fit in one string of a process's environment.
fn check_size(key: &str, value: &str) -> Result<(), EnvError> {
    let size = key.len() + 1 + value.len();
    if size > MAX_VARIABLE_BYTES {
        return Err(EnvError::TooLong {
            key: key.to_string(),
            size,
        });
    }
    Ok(())
}

impl Env {
    /// The process environment (variables that are not UTF-8 are left out).
    pub fn from_process() -> Self {
        Env {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// The process environment with env files and `--env KEY=VALUE` layered over it.
    pub fn layered(env_files: &[PathBuf], assignments: &[String]) -> Result<Self, EnvError> {
        let mut env = Env::from_process();
        for file in env_files {
            env.load_file(file)?;
        }
        for assignment in assignments {
            let (key, value) =
                parse_assignment(assignment).ok_or_else(|| EnvError::BadAssignment {
                    given: assignment.clone(),
                })?;
            check_size(key, value)?;
            env.set(key, value);
        }
        Ok(env)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    /// The value when set and not blank: the platform treats an empty variable as unset.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.trim().is_empty())
    }

    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.vars.insert(key.into(), value.into());
    }

    pub fn remove(&mut self, key: &str) {
        self.vars.remove(key);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Variables whose name starts with `prefix`.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.iter().filter(move |(k, _)| k.starts_with(prefix))
    }

    pub fn load_file(&mut self, path: &Path) -> Result<(), EnvError> {
        let text = std::fs::read_to_string(path).map_err(|e| EnvError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        for (key, value) in parse_env_file(&text, path)? {
            check_size(&key, &value)?;
            self.set(key, value);
        }
        Ok(())
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Env {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Env {
            vars: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

fn is_name(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `KEY=VALUE`, value taken literally (a command-line flag has no quoting of its own).
fn parse_assignment(s: &str) -> Option<(&str, &str)> {
    let (key, value) = s.split_once('=')?;
    is_name(key).then_some((key, value))
}

/// Parses what `clever env` and `.env` files contain: `KEY=VALUE`, `export KEY=VALUE`, values
/// in double quotes (with `\n`, `\"`, `\\` escapes, and spanning lines), in single quotes
/// (literal), or bare (a ` #` starts a comment); blank lines and `#` comments.
pub fn parse_env_file(text: &str, path: &Path) -> Result<Vec<(String, String)>, EnvError> {
    // A byte order mark (editors on Windows write one) is not part of the first name.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut pairs = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, raw)) = lines.next() {
        let line_no = index + 1;
        let bad = |reason: &str| EnvError::BadLine {
            path: path.to_path_buf(),
            line: line_no,
            reason: reason.to_string(),
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let (key, rest) = line.split_once('=').ok_or_else(|| bad("no `=`"))?;
        let key = key.trim_end();
        if !is_name(key) {
            return Err(bad(&format!("`{key}` is not a variable name")));
        }
        let rest = rest.trim_start();
        let value = if let Some(body) = rest.strip_prefix('"') {
            // A double-quoted value may span lines, as `clever env` prints multi-line values:
            // each line is read once, so a value of many lines costs no more than its length.
            let mut quoted = DoubleQuoted::default();
            if !quoted.read(body) {
                loop {
                    let (_, next) = lines.next().ok_or_else(|| bad("unterminated `\"`"))?;
                    quoted.read("\n");
                    if quoted.read(next) {
                        break;
                    }
                }
            }
            quoted.value
        } else if let Some(body) = rest.strip_prefix('\'') {
            let end = body.find('\'').ok_or_else(|| bad("unterminated `'`"))?;
            body[..end].to_string()
        } else {
            let bare = match rest.find(" #") {
                Some(i) => &rest[..i],
                None => rest,
            };
            bare.trim_end().to_string()
        };
        pairs.push((key.to_string(), value));
    }
    Ok(pairs)
}

/// A double-quoted value being read, its opening quote already consumed: the text so far,
/// and whether a backslash waits for the character it escapes.
#[derive(Default)]
struct DoubleQuoted {
    value: String,
    escaping: bool,
}

impl DoubleQuoted {
    /// Reads `text` on; true once the closing quote is read (what follows it is ignored).
    fn read(&mut self, text: &str) -> bool {
        for c in text.chars() {
            if std::mem::take(&mut self.escaping) {
                match c {
                    'n' => self.value.push('\n'),
                    't' => self.value.push('\t'),
                    '"' | '\\' | '$' | '`' => self.value.push(c),
                    other => {
                        self.value.push('\\');
                        self.value.push(other);
                    }
                }
                continue;
            }
            match c {
                '"' => return true,
                '\\' => self.escaping = true,
                c => self.value.push(c),
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<(String, String)>, EnvError> {
        parse_env_file(text, Path::new("app.env"))
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn env_file_lines_of_every_form() {
        let text = r#"
# a comment
PLAIN=value
export EXPORTED=yes
DOUBLE="a \"quoted\" value # not a comment"
SINGLE='literal $HOME \n'
BARE=word # trailing comment
EMPTY=
SPACED = around
MULTI="line one
line two"
ESCAPED="a\nb"
"#;
        assert_eq!(
            parse(text).unwrap(),
            vec![
                pair("PLAIN", "value"),
                pair("EXPORTED", "yes"),
                pair("DOUBLE", "a \"quoted\" value # not a comment"),
                pair("SINGLE", "literal $HOME \\n"),
                pair("BARE", "word"),
                pair("EMPTY", ""),
                pair("SPACED", "around"),
                pair("MULTI", "line one\nline two"),
                pair("ESCAPED", "a\nb"),
            ]
        );
    }

    /// A value of many lines is read in one pass: 40,000 lines took a minute when each new
    /// line read the value again from its start.
    #[test]
    fn a_value_of_many_lines_is_read_once() {
        let lines: Vec<String> = (0..40_000).map(|i| format!("line {i} \\\"x\\\"")).collect();
        let text = format!("BIG=\"{}\"\nAFTER=1\n", lines.join("\n"));
        let pairs = parse(&text).unwrap();
        let expected: Vec<String> = (0..40_000).map(|i| format!("line {i} \"x\"")).collect();
        assert_eq!(pairs[0], pair("BIG", &expected.join("\n")));
        assert_eq!(pairs[1], pair("AFTER", "1"));
        // A backslash that ends a line escapes nothing: it stays, and so does the line break.
        assert_eq!(
            parse("A=\"x\\\ny\" ignored\n").unwrap(),
            vec![pair("A", "x\\\ny")]
        );
        assert!(matches!(
            parse("A=\"x\ny\\\"\n"),
            Err(EnvError::BadLine { line: 1, .. })
        ));
    }

    /// A variable longer than the kernel takes would fail the first program started with it
    /// (`Argument list too long`, naming nothing): refused at once, by name, value unshown.
    #[test]
    fn a_variable_too_long_for_exec_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.env");
        let fits = "v".repeat(MAX_VARIABLE_BYTES - "UVDEPLOY_TEST_BIG=".len());
        std::fs::write(&file, format!("UVDEPLOY_TEST_BIG={fits}\n")).unwrap();
        let env = Env::layered(std::slice::from_ref(&file), &[]).unwrap();
        assert_eq!(env.get("UVDEPLOY_TEST_BIG"), Some(fits.as_str()));

        std::fs::write(&file, format!("UVDEPLOY_TEST_BIG=\"{fits}w\"\n")).unwrap();
        let err = Env::layered(std::slice::from_ref(&file), &[]).unwrap_err();
        assert_eq!(
            err,
            EnvError::TooLong {
                key: "UVDEPLOY_TEST_BIG".into(),
                size: MAX_VARIABLE_BYTES + 1
            }
        );
        let text = err.to_string();
        assert!(
            text.starts_with("UVDEPLOY_TEST_BIG is too long: 131072 bytes"),
            "{text}"
        );
        assert!(
            text.contains("at most 131071 bytes") && !text.contains("vvv"),
            "{text}"
        );

        let flag = format!("UVDEPLOY_TEST_BIG={fits}w");
        assert!(matches!(
            Env::layered(&[], &[flag]),
            Err(EnvError::TooLong { .. })
        ));
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_name() {
        assert_eq!(
            parse("\u{feff}FIRST=1\n").unwrap(),
            vec![pair("FIRST", "1")]
        );
    }

    #[test]
    fn bad_lines_name_the_file_and_line() {
        let err = parse("OK=1\nnot a line\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "env file `app.env` line 2: no `=` (expected `KEY=VALUE`, `export KEY=VALUE` or `# comment`)"
        );
        assert!(matches!(
            parse("1X=a"),
            Err(EnvError::BadLine { line: 1, .. })
        ));
        assert!(matches!(parse("A=\"open"), Err(EnvError::BadLine { .. })));
        assert!(matches!(parse("A='open"), Err(EnvError::BadLine { .. })));
    }

    #[test]
    fn later_layers_win() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.env");
        std::fs::write(
            &file,
            "UVDEPLOY_TEST_LAYER=file\nUVDEPLOY_TEST_ONLY_FILE=f\n",
        )
        .unwrap();
        let env = Env::layered(&[file], &["UVDEPLOY_TEST_LAYER=flag=with=equals".into()]).unwrap();
        assert_eq!(env.get("UVDEPLOY_TEST_LAYER"), Some("flag=with=equals"));
        assert_eq!(env.get("UVDEPLOY_TEST_ONLY_FILE"), Some("f"));
    }

    #[test]
    fn bad_layers_are_errors() {
        assert!(matches!(
            Env::layered(&["/nonexistent/x.env".into()], &[]),
            Err(EnvError::Unreadable { .. })
        ));
        assert!(matches!(
            Env::layered(&[], &["NOEQUALS".into()]),
            Err(EnvError::BadAssignment { .. })
        ));
    }

    #[test]
    fn blank_counts_as_unset() {
        let env: Env = [("A", "  "), ("B", "x")].into_iter().collect();
        assert_eq!(env.non_empty("A"), None);
        assert_eq!(env.non_empty("B"), Some("x"));
        assert_eq!(env.non_empty("C"), None);
    }
}
