//! `clevercloud/cron.json`, as the platform's Crons page has it: a JSON array of
//! `"M H d m w command"` strings, in UTC; `$ROOT` (that spelling only) is the application's
//! directory; the command is given by an absolute path; no `@reboot`.

use crate::DetectError;
use plan::cron::{Cron, Schedule};
use std::path::Path;

pub const FILE: &str = "clevercloud/cron.json";

/// The crons of the app at `app_dir` (none without the file); a bad file or entry is an error
/// naming the entry and what is wrong. Advice for entries that run, but not as meant, goes
/// to `warnings`.
pub fn crons(app_dir: &Path, warnings: &mut Vec<String>) -> Result<Vec<Cron>, DetectError> {
    let path = app_dir.join(FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(Vec::new());
    };
    let bad_file = |why: String| DetectError::Cron {
        entry: None,
        reason: why,
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad_file(format!("is not JSON ({e})")))?;
    let entries = value
        .as_array()
        .ok_or_else(|| bad_file("is not a JSON array of strings".into()))?;
    let mut crons = Vec::new();
    for entry in entries {
        let Some(entry) = entry.as_str() else {
            return Err(bad_file(format!("holds {entry}, which is not a string")));
        };
        let bad = |why: String| DetectError::Cron {
            entry: Some(entry.to_string()),
            reason: why,
        };
        let trimmed = entry.trim();
        if trimmed.starts_with('@') {
            let word = trimmed.split_whitespace().next().unwrap_or_default();
            return Err(bad(format!(
                "`{word}` is not available on the platform: write the five time fields (`M H d m w`)"
            )));
        }
        // The five fields word by word (any blanks between them), the command as written.
        let mut rest = trimmed;
        let mut fields = Vec::new();
        for _ in 0..5 {
            rest = rest.trim_start();
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            fields.push(&rest[..end]);
            rest = &rest[end..];
        }
        let command = rest.trim();
        if command.is_empty() {
            return Err(bad(
                "has no command after the five time fields (`M H d m w command`)".into(),
            ));
        }
        let schedule = fields.join(" ");
        Schedule::parse(&schedule).map_err(bad)?;
        if command.contains("${ROOT}") {
            return Err(bad(
                "uses `${ROOT}`, which the platform does not replace: write `$ROOT`".into(),
            ));
        }
        let command = command.replace("$ROOT", &app_dir.display().to_string());
        let program = command.split_whitespace().next().unwrap_or_default();
        if !program.starts_with('/') {
            return Err(bad(format!(
                "runs `{program}`, not an absolute path: the platform requires one (e.g. `$ROOT/clevercloud/task.sh`, or `/usr/bin/env`)"
            )));
        }
        let shells = ["/bin/bash", "/usr/bin/bash", "/bin/sh", "/usr/bin/sh"];
        let mut words = command.split_whitespace();
        if let (Some(shell), Some(script)) = (words.next(), words.next()) {
            if shells.contains(&shell) && !script.starts_with('-') {
                warnings.push(format!(
                    "{FILE}: `{entry}` runs the script through `{shell}`: as the platform's Crons page warns, that second shell cancels the script's `#!/bin/bash -l`, so the app's variables are not there; run the script itself (`$ROOT/...`), made executable, with `#!/bin/bash -l` as its first line"
                ));
            }
        }
        crons.push(Cron {
            name: format!("cron-{}", crons.len()),
            entry: entry.to_string(),
            schedule,
            command,
        });
    }
    Ok(crons)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(
        json: &str,
    ) -> (
        tempfile::TempDir,
        Result<Vec<Cron>, DetectError>,
        Vec<String>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("clevercloud")).unwrap();
        std::fs::write(dir.path().join(FILE), json).unwrap();
        let mut warnings = Vec::new();
        let crons = crons(dir.path(), &mut warnings);
        (dir, crons, warnings)
    }

    #[test]
    fn entries_become_crons_with_root_replaced() {
        let (dir, crons, warnings) = with(
            r#"["*/5 * * * * $ROOT/clevercloud/task.sh --all", "0  3 * * 1   /usr/bin/env true"]"#,
        );
        let crons = crons.unwrap();
        assert_eq!(crons.len(), 2);
        assert_eq!(crons[0].name, "cron-0");
        assert_eq!(crons[0].schedule, "*/5 * * * *");
        assert_eq!(
            crons[0].command,
            format!("{}/clevercloud/task.sh --all", dir.path().display())
        );
        assert_eq!(crons[1].schedule, "0 3 * * 1");
        assert_eq!(crons[1].command, "/usr/bin/env true");
        assert!(warnings.is_empty());
        let none = tempfile::tempdir().unwrap();
        assert!(super::crons(none.path(), &mut Vec::new())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn bad_entries_are_refused_naming_the_entry_and_what_is_wrong() {
        for (json, expected) in [
            (r#"["@reboot $ROOT/a.sh"]"#, "clevercloud/cron.json: entry `@reboot $ROOT/a.sh`: `@reboot` is not available on the platform"),
            (r#"["* * * * * task.sh"]"#, "clevercloud/cron.json: entry `* * * * * task.sh`: runs `task.sh`, not an absolute path"),
            (r#"["* * * * * ${ROOT}/a.sh"]"#, "clevercloud/cron.json: entry `* * * * * ${ROOT}/a.sh`: uses `${ROOT}`"),
            (r#"["61 * * * * /a.sh"]"#, "clevercloud/cron.json: entry `61 * * * * /a.sh`: the minute field `61` holds 61, outside 0-59"),
            (r#"["* * * * *"]"#, "clevercloud/cron.json: entry `* * * * *`: has no command"),
            (r#"{"a": 1}"#, "clevercloud/cron.json: is not a JSON array of strings"),
            (r#"[1]"#, "clevercloud/cron.json: holds 1, which is not a string"),
            ("[", "clevercloud/cron.json: is not JSON"),
        ] {
            let (_dir, crons, _) = with(json);
            let err = crons.unwrap_err().to_string();
            assert!(err.starts_with(expected), "{json}: {err}");
        }
    }

    #[test]
    fn a_script_run_through_bash_is_warned_about() {
        let (_dir, crons, warnings) = with(r#"["* * * * * /bin/bash $ROOT/task.sh"]"#);
        assert_eq!(crons.unwrap().len(), 1);
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("cancels the script's `#!/bin/bash -l`"),
            "{}",
            warnings[0]
        );
    }
}
