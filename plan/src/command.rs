//! Run commands: split into words with shell rules when that is all they need, or left to
//! `/bin/sh` when they use shell syntax (pipes, `&&`, `$VAR`, redirections, globs).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why a program cannot be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgramError {
    /// Nowhere on PATH (or, for a path, not there).
    NotFound,
    /// Found, but not executable.
    NotExecutable(PathBuf),
}

/// Finds `program` as `execvp` would: a name with a `/` from `cwd`, any other on `path_var`.
/// Resolving it ourselves also lets a child with its own PATH be started with `posix_spawn`
/// rather than `fork` (std falls back to `fork` for a bare name when the child's PATH differs).
pub fn find_program(program: &str, path_var: &str, cwd: &Path) -> Result<PathBuf, ProgramError> {
    let candidates: Vec<PathBuf> = if program.contains('/') {
        vec![cwd.join(program)]
    } else {
        path_var
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(program))
            .collect()
    };
    let mut not_executable = None;
    for candidate in candidates {
        let Ok(meta) = std::fs::metadata(&candidate) else {
            continue;
        };
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            return Ok(candidate);
        }
        not_executable.get_or_insert(candidate);
    }
    Err(not_executable.map_or(ProgramError::NotFound, ProgramError::NotExecutable))
}

/// Why a command cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("the command is empty")]
    Empty,
    #[error("the command cannot be parsed: {0}")]
    Unparseable(String),
}

/// The command's words, or `None` when it needs a shell.
pub fn split(command: &str) -> Result<Option<Vec<String>>, CommandError> {
    let words =
        shell_words::split(command).map_err(|e| CommandError::Unparseable(e.to_string()))?;
    if words.is_empty() {
        return Err(CommandError::Empty);
    }
    let scan = scan(command);
    Ok((!scan.needs_shell).then_some(words))
}

/// The argv that runs `command` through `/bin/sh`, so that the process the shell ends in is
/// the command itself: `exec` goes before the command, or before the last command of a list
/// (`migrate && exec serve`). Neither dash nor bash does that for a list on its own. A
/// pipeline, a background job or a subshell at the end is left as written.
pub fn shell_argv(command: &str) -> Vec<String> {
    let scan = scan(command);
    let tail = &command[scan.last_command_at..];
    let script = if scan.last_command_is_simple && !tail.trim().is_empty() {
        let head = &command[..scan.last_command_at + (tail.len() - tail.trim_start().len())];
        format!("{head}exec {}", tail.trim_start())
    } else {
        command.to_string()
    };
    vec!["/bin/sh".to_string(), "-c".to_string(), script]
}

#[derive(Debug, PartialEq, Eq)]
struct Scan {
    /// Shell syntax outside quotes: the words alone would not mean what the user wrote.
    needs_shell: bool,
    /// Byte offset where the last command of a list (`a && b`, `a; b`, `a || b`) starts.
    last_command_at: usize,
    /// The last command is not a pipeline, a background job or a subshell: it can be exec'd.
    last_command_is_simple: bool,
}

fn scan(command: &str) -> Scan {
    #[derive(PartialEq)]
    enum Quote {
        None,
        Single,
        Double,
    }
    let mut scan = Scan {
        needs_shell: false,
        last_command_at: 0,
        last_command_is_simple: true,
    };
    let mut quote = Quote::None;
    let mut escaped = false;
    let mut word_start = true;
    let mut first_word = true;
    let mut chars = command.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if escaped {
            escaped = false;
            word_start = false;
            continue;
        }
        match quote {
            Quote::Single => {
                if c == '\'' {
                    quote = Quote::None;
                }
                continue;
            }
            Quote::Double => {
                match c {
                    '"' => quote = Quote::None,
                    '\\' => escaped = true,
                    '$' | '`' => scan.needs_shell = true,
                    _ => {}
                }
                continue;
            }
            Quote::None => {}
        }
        match c {
            '\\' => escaped = true,
            '\'' => quote = Quote::Single,
            '"' => quote = Quote::Double,
            // A list separator: the next command starts after it.
            ';' | '\n' | '&' | '|'
                if c == ';' || c == '\n' || chars.peek().map(|p| p.1) == Some(c) =>
            {
                if c == '&' || c == '|' {
                    chars.next();
                }
                scan.needs_shell = true;
                scan.last_command_at = i + if c == ';' || c == '\n' { 1 } else { 2 };
                scan.last_command_is_simple = true;
                first_word = true;
                word_start = true;
                continue;
            }
            // A pipe, a background job or a subshell: not one process to exec.
            '&' | '|' | '(' | ')' => {
                scan.needs_shell = true;
                scan.last_command_is_simple = false;
            }
            '<' | '>' | '$' | '`' | '*' | '?' | '[' => scan.needs_shell = true,
            '~' | '#' if word_start => scan.needs_shell = true,
            // `VAR=value cmd`: an assignment before the command.
            '=' if first_word => scan.needs_shell = true,
            c if c.is_whitespace() => {
                if !word_start {
                    first_word = false;
                }
                word_start = true;
                continue;
            }
            _ => {}
        }
        word_start = false;
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn plain_commands_are_split() {
        let cases: &[(&str, Option<Vec<String>>)] = &[
            (
                "uv run python app.py",
                words(&["uv", "run", "python", "app.py"]),
            ),
            (
                "uv run gunicorn 'app:create_app()' --bind 0.0.0.0:8080",
                words(&[
                    "uv",
                    "run",
                    "gunicorn",
                    "app:create_app()",
                    "--bind",
                    "0.0.0.0:8080",
                ]),
            ),
            (
                "python -c 'print(1); x=$y'",
                words(&["python", "-c", "print(1); x=$y"]),
            ),
            ("echo \"a b\" c=d", words(&["echo", "a b", "c=d"])),
            ("echo a\\;b", words(&["echo", "a;b"])),
        ];
        for (command, expected) in cases {
            assert_eq!(&split(command).unwrap(), expected, "{command}");
        }
    }

    #[test]
    fn shell_syntax_is_left_to_the_shell() {
        for command in [
            "uv run gunicorn app:app --bind 0.0.0.0:$PORT",
            "echo \"$PORT\"",
            "migrate && serve",
            "serve | tee log",
            "serve > log 2>&1",
            "serve; echo done",
            "serve &",
            "PYTHONUNBUFFERED=1 python app.py",
            "python *.py",
            "cd ~/app",
            "echo `date`",
            "(cd sub && serve)",
        ] {
            assert_eq!(split(command).unwrap(), None, "{command}");
        }
    }

    #[test]
    fn programs_are_found_as_execvp_would() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("tool");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let path = format!("/nonexistent:{}", dir.path().display());
        assert_eq!(
            find_program("tool", &path, Path::new("/")),
            Err(ProgramError::NotExecutable(script.clone()))
        );
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            find_program("tool", &path, Path::new("/")),
            Ok(script.clone())
        );
        assert_eq!(
            find_program("./tool", "", dir.path()),
            Ok(dir.path().join("./tool"))
        );
        assert_eq!(
            find_program("tool", "/nonexistent", Path::new("/")),
            Err(ProgramError::NotFound)
        );
    }

    #[test]
    fn broken_commands_are_errors() {
        assert!(matches!(
            split("echo 'open"),
            Err(CommandError::Unparseable(_))
        ));
        assert!(matches!(
            split("echo \"open"),
            Err(CommandError::Unparseable(_))
        ));
        assert_eq!(split("   "), Err(CommandError::Empty));
    }

    #[test]
    fn the_shell_execs_the_last_command() {
        let cases = [
            ("serve --port $PORT > log", "exec serve --port $PORT > log"),
            ("migrate && serve", "migrate && exec serve"),
            ("migrate&&serve", "migrate&&exec serve"),
            ("a || b; c", "a || b; exec c"),
            ("echo 'a;b' $X", "exec echo 'a;b' $X"),
            ("a &&\nserve", "a &&\nexec serve"),
            // Not one process: left to the shell.
            ("serve | tee log", "serve | tee log"),
            ("a && serve &", "a && serve &"),
            ("a && (cd x && serve)", "a && (cd x && serve)"),
            ("serve;", "serve;"),
        ];
        for (command, script) in cases {
            assert_eq!(shell_argv(command), ["/bin/sh", "-c", script], "{command}");
        }
    }
}
