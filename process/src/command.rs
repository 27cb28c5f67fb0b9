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
    if let Ok(found) = which::which_in(program, Some(path_var), cwd) {
        return Ok(found);
    }
    // `which` finds executables only; say so when the file is there but cannot run.
    let candidate = if program.contains('/') {
        Some(cwd.join(program))
    } else {
        std::env::split_paths(path_var)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    };
    match candidate {
        Some(path) if path.is_file() && !is_executable(&path) => {
            Err(ProgramError::NotExecutable(path))
        }
        _ => Err(ProgramError::NotFound),
    }
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
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

/// The argv that runs `command` through `/bin/sh` exactly as `/bin/sh -c COMMAND` would.
/// When the command is one simple command (words, redirections, leading `VAR=value`
/// assignments), `exec` goes before it so that the process the shell ends in is the command
/// itself, with the same PID (`VAR=value exec cmd` keeps the assignments, in dash and bash
/// alike). Anything else (a list, a pipeline, a background job, a compound command) is left as
/// written: the shell stays, and whoever runs it supervises it ([`shell_stays`]).
pub fn shell_argv(command: &str) -> Vec<String> {
    let script = match simple_command_start(command) {
        Some(at) => format!("{}exec {}", &command[..at], &command[at..]),
        None => command.to_string(),
    };
    vec!["/bin/sh".to_string(), "-c".to_string(), script]
}

/// Whether `argv` is a shell that stays alive around its commands (a list, a pipeline, a
/// background job, ...), rather than one that execs its single command: such a shell must be
/// supervised, its signals forwarded to everything it started.
pub fn shell_stays(argv: &[String]) -> bool {
    match argv {
        [sh, c, script] if sh == "/bin/sh" && c == "-c" => {
            simple_command_start(script).is_none_or(|at| !script[at..].starts_with("exec "))
        }
        _ => false,
    }
}

/// Words that open or close a compound command: a command starting with one is not simple.
const RESERVED: [&str; 19] = [
    "if", "then", "else", "elif", "fi", "do", "done", "case", "esac", "while", "until", "for",
    "in", "{", "}", "!", "function", "select", "[[",
];

/// Where the command word of a simple command starts (after its leading assignments), or
/// `None` when the command is not one simple command.
fn simple_command_start(command: &str) -> Option<usize> {
    let scan = scan(command);
    if scan.compound {
        return None;
    }
    let at = scan.command_at?;
    let word = command[at..].split_whitespace().next()?;
    // A command that starts with a redirection (`>log serve`) is left to the shell as written.
    let redirection = word
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .starts_with(['<', '>']);
    (!RESERVED.contains(&word) && !redirection).then_some(at)
}

#[derive(Debug, PartialEq, Eq)]
struct Scan {
    /// Shell syntax outside quotes: the words alone would not mean what the user wrote.
    needs_shell: bool,
    /// A list (`;`, `&&`, `||`, newline), a pipe, a background job or a subshell: more than
    /// one simple command.
    compound: bool,
    /// Byte offset of the first word that is not a `VAR=value` assignment.
    command_at: Option<usize>,
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
        compound: false,
        command_at: None,
    };
    let mut quote = Quote::None;
    let mut escaped = false;
    // Where the current word starts (outside a word: `None`), and whether it is so far an
    // assignment `NAME=`.
    let mut word: Option<usize> = None;
    let mut assignment = false;
    for (i, c) in command.char_indices() {
        let starts_word = word.is_none() && !c.is_whitespace();
        if starts_word {
            word = Some(i);
            assignment = false;
        }
        if escaped {
            escaped = false;
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
            ';' | '\n' | '&' | '|' | '(' | ')' => {
                scan.needs_shell = true;
                scan.compound = true;
            }
            '<' | '>' | '$' | '`' | '*' | '?' | '[' => scan.needs_shell = true,
            '~' | '#' if starts_word => scan.needs_shell = true,
            // `VAR=value cmd`: an assignment before the command.
            '=' if scan.command_at.is_none()
                && word.is_some_and(|start| is_name(&command[start..i])) =>
            {
                scan.needs_shell = true;
                assignment = true;
            }
            c if c.is_whitespace() => {
                if let Some(start) = word.take() {
                    if !assignment && scan.command_at.is_none() {
                        scan.command_at = Some(start);
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(start) = word {
        if !assignment && scan.command_at.is_none() {
            scan.command_at = Some(start);
        }
    }
    scan
}

fn is_name(word: &str) -> bool {
    let mut chars = word.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
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
            Ok(dir.path().join("tool"))
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
    fn the_shell_execs_one_simple_command_only() {
        let cases = [
            (
                "serve --port $PORT > log",
                "exec serve --port $PORT > log",
                false,
            ),
            (
                "FOO=1 uv run python app.py",
                "FOO=1 exec uv run python app.py",
                false,
            ),
            (
                "A=1 B='x y' serve $PORT",
                "A=1 B='x y' exec serve $PORT",
                false,
            ),
            ("echo 'a;b' $X", "exec echo 'a;b' $X", false),
            // Not one simple command: run exactly as written, the shell stays.
            ("migrate && serve", "migrate && serve", true),
            (
                "uv run python app.py && echo done",
                "uv run python app.py && echo done",
                true,
            ),
            ("a || b; c", "a || b; c", true),
            ("serve | tee log", "serve | tee log", true),
            ("a && serve &", "a && serve &", true),
            ("serve &", "serve &", true),
            ("(cd x && serve)", "(cd x && serve)", true),
            ("if true; then serve; fi", "if true; then serve; fi", true),
            ("echo hi; { serve; }", "echo hi; { serve; }", true),
            ("sleep 1; exit 7", "sleep 1; exit 7", true),
            ("{ serve; }", "{ serve; }", true),
            ("FOO=1", "FOO=1", true),
            (">log serve", ">log serve", true),
        ];
        for (command, script, stays) in cases {
            let argv = shell_argv(command);
            assert_eq!(argv, ["/bin/sh", "-c", script], "{command}");
            assert_eq!(shell_stays(&argv), stays, "{command}");
        }
        assert!(!shell_stays(&["uv".into(), "run".into()]));
    }

    /// Every form runs as `/bin/sh -c COMMAND` would: same output, same exit status.
    #[test]
    fn shell_commands_mean_what_sh_c_means() {
        for command in [
            "FOO=1 sh -c 'echo $FOO'",
            "if true; then echo yes; fi",
            "echo hi; { echo there; }",
            "true && echo done",
            "echo a | tr a b",
            "sleep 0; exit 7",
            "X=2 Y=3; echo $X$Y",
        ] {
            let run = |argv: &[String]| {
                std::process::Command::new(&argv[0])
                    .args(&argv[1..])
                    .output()
                    .unwrap()
            };
            let plain = run(&["/bin/sh".into(), "-c".into(), command.into()]);
            let ours = run(&shell_argv(command));
            assert_eq!(ours.stdout, plain.stdout, "{command}");
            assert_eq!(ours.status.code(), plain.status.code(), "{command}");
            assert!(
                ours.stderr.is_empty(),
                "{command}: {}",
                String::from_utf8_lossy(&ours.stderr)
            );
        }
    }
}
