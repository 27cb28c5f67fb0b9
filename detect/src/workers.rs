//! The platform's workers: `CC_WORKER_COMMAND`, then `CC_WORKER_COMMAND_0`, `_1`, ... in
//! numeric order, then legacy mode's Celery; each restarted as `CC_WORKER_RESTART` and
//! `CC_WORKER_RESTART_DELAY` say, for all of them.

use crate::DetectError;
use plan::worker::{parse_restart_delay, Restart, Worker};
use plan::Env;
use process::command::{self, CommandError};

const SINGLE: &str = "CC_WORKER_COMMAND";
const NUMBERED_PREFIX: &str = "CC_WORKER_COMMAND_";

/// The workers, in order; `celery` is legacy mode's Celery worker's words. Restart settings
/// set with no worker to restart are named in `ignored`.
pub fn workers(
    env: &Env,
    celery: Option<Vec<String>>,
    ignored: &mut Vec<String>,
) -> Result<Vec<Worker>, DetectError> {
    let mut numbered = Vec::new();
    for (name, value) in env.with_prefix(NUMBERED_PREFIX) {
        let suffix = &name[NUMBERED_PREFIX.len()..];
        let index: u32 = suffix.parse().map_err(|_| DetectError::Invalid {
            variable: name.to_string(),
            value: suffix.to_string(),
            valid: "the workers are CC_WORKER_COMMAND, or CC_WORKER_COMMAND_0, CC_WORKER_COMMAND_1, ... with a number after the `_`".into(),
        })?;
        if !value.trim().is_empty() {
            numbered.push((index, name.to_string(), value.trim().to_string()));
        }
    }
    // Numeric, not lexical: _10 comes after _9.
    numbered.sort_by_key(|(index, _, _)| *index);
    let commands = env
        .non_empty(SINGLE)
        .map(|v| (SINGLE.to_string(), v.trim().to_string()))
        .into_iter()
        .chain(numbered.into_iter().map(|(_, name, value)| (name, value)));

    let restart = match env.non_empty("CC_WORKER_RESTART") {
        None => Restart::default(),
        Some(value) => Restart::parse(value).ok_or_else(|| DetectError::Invalid {
            variable: "CC_WORKER_RESTART".into(),
            value: value.to_string(),
            valid: Restart::VALID.into(),
        })?,
    };
    let delay = match env.non_empty("CC_WORKER_RESTART_DELAY") {
        None => std::time::Duration::from_secs(1),
        Some(value) => parse_restart_delay(value).ok_or_else(|| DetectError::Invalid {
            variable: "CC_WORKER_RESTART_DELAY".into(),
            value: value.to_string(),
            valid: "a number of seconds from 0 to 3600, e.g. `1` (the default) or `0.5`".into(),
        })?,
    };
    let restart_delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);

    let mut workers = Vec::new();
    for (variable, command) in commands {
        let argv = command::split(&command).map_err(|e| DetectError::Invalid {
            variable: variable.clone(),
            value: plan::secret::hide_in_shell(&command, env),
            valid: match e {
                CommandError::Unparseable(r) => format!(
                    "{r}; write the command as you would in a shell, e.g. `uv run python worker.py`"
                ),
                CommandError::Empty => "nothing to run".into(),
            },
        })?;
        // A secret written literally stays out of the plan: launcher puts it back.
        workers.push(Worker {
            name: format!("worker-{}", workers.len()),
            source: variable,
            command: plan::secret::hide_in_shell(&command, env),
            argv: argv.map(|words| words.iter().map(|w| plan::secret::hide(w, env)).collect()),
            restart,
            restart_delay_ms,
        });
    }
    if let Some(argv) = celery {
        workers.push(Worker {
            name: "celery".into(),
            source: "CC_PYTHON_CELERY_MODULE".into(),
            command: shell_words::join(&argv),
            argv: Some(argv),
            restart,
            restart_delay_ms,
        });
    }
    if workers.is_empty() {
        ignored.extend(
            ["CC_WORKER_RESTART", "CC_WORKER_RESTART_DELAY"]
                .into_iter()
                .filter(|v| env.non_empty(v).is_some())
                .map(String::from),
        );
    }
    Ok(workers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(vars: &[(&str, &str)]) -> Result<Vec<Worker>, DetectError> {
        let env: Env = vars.iter().copied().collect();
        workers(&env, None, &mut Vec::new())
    }

    #[test]
    fn workers_in_numeric_order_the_single_one_first() {
        let workers = of(&[
            ("CC_WORKER_COMMAND_10", "python ten.py"),
            ("CC_WORKER_COMMAND_2", "python two.py"),
            ("CC_WORKER_COMMAND", "python single.py"),
            ("CC_WORKER_COMMAND_3", "  "),
            ("CC_WORKER_COMMAND_0", "python a.py | tee log"),
        ])
        .unwrap();
        let shown: Vec<(&str, &str, &str)> = workers
            .iter()
            .map(|w| (w.name.as_str(), w.source.as_str(), w.command.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                ("worker-0", "CC_WORKER_COMMAND", "python single.py"),
                ("worker-1", "CC_WORKER_COMMAND_0", "python a.py | tee log"),
                ("worker-2", "CC_WORKER_COMMAND_2", "python two.py"),
                ("worker-3", "CC_WORKER_COMMAND_10", "python ten.py"),
            ]
        );
        assert_eq!(
            workers[0].argv.as_deref(),
            Some(&["python".to_string(), "single.py".into()][..])
        );
        assert_eq!(workers[1].argv, None, "a pipeline needs the shell");
        assert!(workers
            .iter()
            .all(|w| w.restart == Restart::OnFailure && w.restart_delay_ms == 1000));
    }

    #[test]
    fn restart_settings_apply_to_every_worker_and_celery_is_one() {
        let env: Env = [
            ("CC_WORKER_COMMAND", "python w.py"),
            ("CC_WORKER_RESTART", "always"),
            ("CC_WORKER_RESTART_DELAY", "0.25"),
        ]
        .into_iter()
        .collect();
        let celery = Some(vec![
            "celery".into(),
            "--app".into(),
            "tasks".into(),
            "worker".into(),
        ]);
        let workers = workers(&env, celery, &mut Vec::new()).unwrap();
        assert_eq!(workers.len(), 2);
        assert_eq!(workers[1].name, "celery");
        assert_eq!(workers[1].command, "celery --app tasks worker");
        assert!(workers
            .iter()
            .all(|w| w.restart == Restart::Always && w.restart_delay_ms == 250));
    }

    #[test]
    fn bad_values_name_the_variable_the_value_and_what_is_valid() {
        for (vars, expected) in [
            (&[("CC_WORKER_COMMAND", "w"), ("CC_WORKER_RESTART", "sometimes")][..], "CC_WORKER_RESTART: `sometimes` is not valid (`on-failure` (the default), `always` or `no`)"),
            (&[("CC_WORKER_COMMAND", "w"), ("CC_WORKER_RESTART_DELAY", "5s")], "CC_WORKER_RESTART_DELAY: `5s` is not valid (a number of seconds"),
            (&[("CC_WORKER_COMMAND_X", "w")], "CC_WORKER_COMMAND_X: `X` is not valid"),
            (&[("CC_WORKER_COMMAND", "python 'open")], "CC_WORKER_COMMAND: `python 'open` is not valid"),
        ] {
            let err = of(vars).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{err}");
        }
    }

    #[test]
    fn restart_settings_without_a_worker_are_ignored_and_said() {
        let env: Env = [("CC_WORKER_RESTART", "no")].into_iter().collect();
        let mut ignored = Vec::new();
        assert!(workers(&env, None, &mut ignored).unwrap().is_empty());
        assert_eq!(ignored, ["CC_WORKER_RESTART"]);
    }
}
