//! The platform's hooks (`CC_PRE_BUILD_HOOK`, `CC_POST_BUILD_HOOK`, `CC_PRE_RUN_HOOK`, ...):
//! a shell command, or a script path from the app root, run in the app with the app's
//! environment. Their output goes to stderr: stdout carries the tools' results.

use crate::env::Env;
use std::path::Path;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HookError {
    #[error("{hook} failed ({status}): `{command}`")]
    Failed {
        hook: &'static str,
        command: String,
        status: String,
        /// The hook's exit code, for a tool that passes it on.
        code: i32,
    },
    #[error("cannot run {hook} `{command}`: {reason}")]
    NotRun {
        hook: &'static str,
        command: String,
        reason: String,
    },
}

impl crate::report::Failure for HookError {
    /// A failed hook passes its own status on (a hook that cannot run at all: 1).
    fn exit_code(&self) -> u8 {
        match self {
            HookError::Failed { code, .. } => u8::try_from(*code).unwrap_or(1).max(1),
            HookError::NotRun { .. } => crate::report::exit::FAILED,
        }
    }
    fn hint(&self) -> Option<String> {
        let HookError::Failed { command, code, .. } = self else {
            return None;
        };
        let program = shell_words::split(command).ok()?.into_iter().next()?;
        match code {
            126 => Some(format!(
                "`{program}` is not executable: run `chmod +x {program}` and commit it (git keeps the executable bit)"
            )),
            127 => Some(format!("`{program}` was not found: a script path is taken from the application's root, a command from PATH")),
            _ => None,
        }
    }
}

/// Runs the hook named `hook` when `env` sets it.
pub fn run_if_set(
    hook: &'static str,
    env: &Env,
    app_dir: &Path,
    tool: &str,
) -> Result<(), HookError> {
    match env.non_empty(hook) {
        Some(command) => run(hook, command, env, app_dir, tool),
        None => Ok(()),
    }
}

/// Runs `command`, the hook named `hook`, in `app_dir` with `env`; says so on stderr,
/// secrets redacted.
pub fn run(
    hook: &'static str,
    command: &str,
    env: &Env,
    app_dir: &Path,
    tool: &str,
) -> Result<(), HookError> {
    // A secret in the hook, however it is spelled, is shown by name (`${{NAME}}`).
    let shown = crate::secret::hide_in_shell(command, env);
    crate::report::say(tool, format_args!("running {hook}: {shown}"), env);
    let status = Command::new("/bin/sh")
        .args(["-c", command])
        .current_dir(app_dir)
        .env_clear()
        .envs(env.iter())
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| HookError::NotRun {
            hook,
            command: shown.clone(),
            reason: e.to_string(),
        })?;
    if status.success() {
        return Ok(());
    }
    Err(HookError::Failed {
        hook,
        command: shown,
        status: status.to_string(),
        code: status.code().unwrap_or(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hook_runs_in_the_app_with_its_environment_and_its_failure_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let env: Env = [
            ("CC_PRE_BUILD_HOOK", "echo \"$GREETING\" > hooked"),
            ("GREETING", "hi"),
            ("PATH", "/usr/bin:/bin"),
        ]
        .into_iter()
        .collect();
        run_if_set("CC_PRE_BUILD_HOOK", &env, dir.path(), "test").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("hooked")).unwrap(),
            "hi\n"
        );

        let env: Env = [("CC_POST_BUILD_HOOK", "exit 4")].into_iter().collect();
        let err = run_if_set("CC_POST_BUILD_HOOK", &env, dir.path(), "test").unwrap_err();
        assert_eq!(
            err.to_string(),
            "CC_POST_BUILD_HOOK failed (exit status: 4): `exit 4`"
        );
        assert!(matches!(err, HookError::Failed { code: 4, .. }));

        assert_eq!(
            run_if_set("CC_PRE_RUN_HOOK", &Env::default(), dir.path(), "test"),
            Ok(())
        );

        // A secret spelled for the shell is named, not shown, in what is said of the hook.
        let env: Env = [
            ("CC_POST_BUILD_HOOK", r"test Zq9\ x\'K7 = x"),
            ("API_TOKEN", "Zq9 x'K7"),
            ("PATH", "/usr/bin:/bin"),
        ]
        .into_iter()
        .collect();
        let err = run_if_set("CC_POST_BUILD_HOOK", &env, dir.path(), "test").unwrap_err();
        assert_eq!(
            err.to_string(),
            "CC_POST_BUILD_HOOK failed (exit status: 1): `test ${{API_TOKEN}} = x`"
        );
    }
}
