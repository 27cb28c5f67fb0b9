//! `APP_FOLDER` on a member of a uv workspace. The platform looks for `uv.lock` in
//! `APP_FOLDER`; a workspace has one lockfile, at its root, so a member named as the
//! application deploys in legacy mode. What deploys it with uv is the workspace root, with the
//! member run from there (`uv run --package MEMBER ...`).

use plan::{Env, WorkspaceMember};
use std::path::Path;

/// The workspace member `app_dir` is, when its lockfile is in a folder above it, inside
/// `repo` (the repository, or its copy).
pub fn member(app_dir: &Path, repo: &Path, env: &Env) -> Option<(WorkspaceMember, String)> {
    let repo = repo.canonicalize().unwrap_or_else(|_| repo.to_path_buf());
    let root = app_dir
        .ancestors()
        .skip(1)
        .take_while(|dir| dir.starts_with(&repo))
        .find(|dir| dir.join("uv.lock").is_file())?;
    let package = project_name(app_dir).unwrap_or_else(|| {
        app_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let root_folder = root
        .strip_prefix(&repo)
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let lock = root.join("uv.lock").display().to_string();
    let member = WorkspaceMember {
        run_command: plan::secret::hide(&run_command(env, &package), env),
        root_depends_on_it: depends_on(root, &package),
        package,
        root_folder,
    };
    Some((member, lock))
}

/// The user's `CC_PYTHON_UV_RUN_COMMAND` run from the root for `package`: `--package
/// PACKAGE` after its `uv run`, or the command under `uv run --package PACKAGE`.
fn run_command(env: &Env, package: &str) -> String {
    let command = env
        .non_empty("CC_PYTHON_UV_RUN_COMMAND")
        .map(str::trim)
        .unwrap_or("COMMAND");
    let Ok(mut words) = shell_words::split(command) else {
        return format!("uv run --package {package} {command}");
    };
    let uv_run = words
        .windows(2)
        .position(|pair| (pair[0] == "uv" || pair[0].ends_with("/uv")) && pair[1] == "run");
    match uv_run {
        Some(_)
            if words
                .iter()
                .any(|w| w == "--package" || w.starts_with("--package=")) => {}
        Some(at) => {
            words.splice(
                at + 2..at + 2,
                ["--package".to_string(), package.to_string()],
            );
        }
        None => {
            words.splice(0..0, ["uv", "run", "--package", package].map(String::from));
        }
    }
    shell_words::join(words)
}

fn pyproject(dir: &Path) -> Option<toml::Table> {
    std::fs::read_to_string(dir.join("pyproject.toml"))
        .ok()?
        .parse()
        .ok()
}

fn project_name(dir: &Path) -> Option<String> {
    pyproject(dir)?
        .get("project")?
        .get("name")?
        .as_str()
        .map(String::from)
}

/// Names compared as Python packaging does: case, `-`, `_` and `.` do not matter.
fn normalized(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

/// The root project lists `package` in its dependencies, from the workspace
/// (`[tool.uv.sources] package = { workspace = true }`).
fn depends_on(root: &Path, package: &str) -> bool {
    let Some(pyproject) = pyproject(root) else {
        return false;
    };
    let wanted = normalized(package);
    let listed = pyproject
        .get("project")
        .and_then(|p| p.get("dependencies"))
        .and_then(toml::Value::as_array)
        .is_some_and(|deps| {
            deps.iter().filter_map(toml::Value::as_str).any(|dep| {
                let name: String = dep
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    .collect();
                normalized(&name) == wanted
            })
        });
    let from_workspace = pyproject
        .get("tool")
        .and_then(|t| t.get("uv"))
        .and_then(|u| u.get("sources"))
        .and_then(toml::Value::as_table)
        .is_some_and(|sources| {
            sources.iter().any(|(name, source)| {
                normalized(name) == wanted
                    && source.get("workspace").and_then(toml::Value::as_bool) == Some(true)
            })
        });
    listed && from_workspace
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_command_from_the_root() {
        let env = |command: &str| -> Env {
            [("CC_PYTHON_UV_RUN_COMMAND", command)]
                .into_iter()
                .collect()
        };
        assert_eq!(
            run_command(&env("uv run gunicorn api:app"), "api"),
            "uv run --package api gunicorn api:app"
        );
        assert_eq!(
            run_command(&env("uv run --package api python -m api"), "api"),
            "uv run --package api python -m api"
        );
        assert_eq!(
            run_command(&env("python -m api"), "api"),
            "uv run --package api python -m api"
        );
        assert_eq!(
            run_command(&Env::default(), "api"),
            "uv run --package api COMMAND"
        );
    }

    #[test]
    fn a_dependency_of_the_root_from_the_workspace() {
        let dir = tempfile::tempdir().unwrap();
        let write = |text: &str| std::fs::write(dir.path().join("pyproject.toml"), text).unwrap();
        write("[project]\nname = \"root\"\ndependencies = [\"My_Api>=1\"]\n[tool.uv.sources]\nmy-api = { workspace = true }\n");
        assert!(depends_on(dir.path(), "my-api"));
        write("[project]\nname = \"root\"\ndependencies = [\"my-api\"]\n");
        assert!(!depends_on(dir.path(), "my-api"));
        write("[project]\nname = \"root\"\n[tool.uv.sources]\nmy-api = { workspace = true }\n");
        assert!(!depends_on(dir.path(), "my-api"));
    }
}
