//! The platform's variables in every process of the deployment ([`plan::instance`]): what
//! this deployment's instance is, and where the user's own values of them are replaced.

use plan::instance::{Instance, InstanceType, VARIABLES};
use plan::{Env, Source, SourceKind};
use std::path::{Path, PathBuf};

/// The variables as `--env KEY=VALUE` arguments: every tool layers them last, over the
/// process's environment and the env files, so they are what its processes see.
pub fn env_args(instance: &Instance, kind: InstanceType) -> Vec<String> {
    instance
        .variables(kind)
        .into_iter()
        .flat_map(|(key, value)| ["--env".to_string(), format!("{key}={value}")])
        .collect()
}

/// The platform's variables the user set (in the environment, an env file or `--env`): the
/// platform replaces them, and so does this deployment.
pub fn set_by_the_user(env: &Env) -> Vec<&'static str> {
    VARIABLES
        .into_iter()
        .filter(|name| env.get(name).is_some())
        .collect()
}

/// The application's directory in the copy: the copy, or its `APP_FOLDER`, as `detect` makes
/// it (the plan's `app_dir` says it once there is a plan).
pub fn app_home(copy: &Path, env: &Env) -> PathBuf {
    let copy = std::fs::canonicalize(copy).unwrap_or_else(|_| copy.to_path_buf());
    match env.non_empty("APP_FOLDER").map(str::trim) {
        Some(folder) => copy.join(folder.trim_start_matches('/')),
        None => copy,
    }
}

/// The commit `checkout` copied (its `source.json`), when what is deployed is a commit: its
/// full hash, as the platform gives it, read from the repository (the short one `checkout`
/// recorded when git cannot say).
pub fn commit_of(source_json: &Path) -> Option<String> {
    let text = std::fs::read_to_string(source_json).ok()?;
    let source: Source = serde_json::from_str(&text).ok()?;
    let short = (source.kind == SourceKind::Commit)
        .then_some(source.commit)
        .flatten()?;
    let full = std::process::Command::new("git")
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("{short}^{{commit}}"))
        .current_dir(&source.origin)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|hash| hash.len() >= short.len() && hash.starts_with(&short));
    Some(full.unwrap_or(short))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variables_go_last_as_env_arguments_and_the_users_are_named() {
        let instance = Instance::new(Path::new("/srv/app"), Path::new("/s/copy"));
        let args = env_args(&instance, InstanceType::Build);
        assert_eq!(args[..2], ["--env", "INSTANCE_TYPE=build"]);
        assert!(args.contains(&"INSTANCE_NUMBER=0".to_string()));
        let env: Env = [("APP_ID", "mine"), ("INSTANCE_TYPE", "x"), ("OTHER", "1")]
            .into_iter()
            .collect();
        assert_eq!(set_by_the_user(&env), ["INSTANCE_TYPE", "APP_ID"]);
    }

    #[test]
    fn the_commit_only_when_a_commit_was_deployed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("source.json");
        let source = |kind: &str| {
            format!(
                r#"{{"kind":"{kind}","origin":"/a","copy":"/b","commit":"abc1234","subject":"s"}}"#
            )
        };
        std::fs::write(&file, source("commit")).unwrap();
        assert_eq!(commit_of(&file).as_deref(), Some("abc1234"));
        std::fs::write(&file, source("working-tree")).unwrap();
        assert_eq!(commit_of(&file), None);
        assert_eq!(commit_of(&dir.path().join("none.json")), None);
    }
}
