//! Warnings: configurations that deploy, but probably not as the user means.

use plan::{Env, Environment, Run, RunSource};
use std::path::Path;

/// The platform's page says `CC_PYTHON_UV_RUN_COMMAND` "is executed directly, without shell
/// variable expansion": a command that needs a shell runs here (through `/bin/sh`) and may not
/// there.
pub fn runs_through_a_shell(run: &Run) -> Option<String> {
    (run.source == RunSource::CcPythonUvRunCommand && run.argv.is_none()).then(|| {
        format!(
            "CC_PYTHON_UV_RUN_COMMAND uses shell syntax (`{}`): uvdeploy runs it through /bin/sh, but the platform executes it directly, without shell expansion; write the port as a number (8080, or 9000 behind middlewares) or have the app read PORT, and drop the shell syntax",
            run.command
        )
    })
}

/// `uv run` syncs the environment before running, with the `dev` group unless told
/// otherwise: after a `--no-dev` build, it installs the dev dependencies at start-up.
pub fn uv_run_installs_dev_dependencies(
    run: &Run,
    environment: Environment,
    env: &Env,
    app_dir: &Path,
) -> Option<String> {
    if environment != Environment::Production || !runs_uv_run(&run.command) {
        return None;
    }
    let words = shell_words::split(&run.command).unwrap_or_default();
    if words.iter().any(|w| w == "--no-dev" || w == "--no-sync") {
        return None;
    }
    if ["UV_NO_DEV", "UV_NO_SYNC"]
        .iter()
        .any(|v| env.non_empty(v).is_some_and(|x| x != "0" && x != "false"))
    {
        return None;
    }
    if !declares_dev_dependencies(app_dir) {
        return None;
    }
    Some(format!(
        "{}: `uv run` syncs the environment with the dev dependencies before running, so the app installs at start-up what the build left out (`--no-dev`); use `uv run --no-dev ...` (or set UV_NO_DEV=1)",
        run.source.variable()
    ))
}

/// A `uv run` anywhere in the command (`uv run app`, `cd x && uv run app`).
fn runs_uv_run(command: &str) -> bool {
    let words = shell_words::split(command).unwrap_or_default();
    words
        .windows(2)
        .any(|pair| (pair[0] == "uv" || pair[0].ends_with("/uv")) && pair[1] == "run")
}

/// A `dev` dependency group, or `tool.uv.dev-dependencies`, in `pyproject.toml`.
/// `uv run --package NAME` from a workspace's root: the platform's build (`uv sync --locked
/// --no-dev` at the root) installs the root project's dependencies, not the member's, so
/// `uv run` installs the member's at start-up, on every start.
pub fn uv_run_package_installs_at_start_up(run: &Run, app_dir: &Path) -> Option<String> {
    let words = shell_words::split(&run.command).unwrap_or_default();
    let package = words
        .iter()
        .position(|w| w == "--package")
        .and_then(|i| words.get(i + 1))
        .cloned()
        .or_else(|| {
            words
                .iter()
                .find_map(|w| w.strip_prefix("--package=").map(String::from))
        })?;
    if !runs_uv_run(&run.command) || !is_workspace_root(app_dir) {
        return None;
    }
    Some(format!(
        "{}: `uv run --package {package}` installs the dependencies of the workspace member `{package}` when the app starts, not at build (the build runs `uv sync --locked --no-dev` at the workspace root); make the root project depend on the member (`dependencies = [\"{package}\"]` and `[tool.uv.sources] {package} = {{ workspace = true }}`) so that the build installs it",
        run.source.variable()
    ))
}

fn is_workspace_root(app_dir: &Path) -> bool {
    pyproject(app_dir).is_some_and(|p| {
        p.get("tool")
            .and_then(|t| t.get("uv"))
            .and_then(|u| u.get("workspace"))
            .is_some()
    })
}

fn pyproject(app_dir: &Path) -> Option<toml::Table> {
    std::fs::read_to_string(app_dir.join("pyproject.toml"))
        .ok()?
        .parse::<toml::Table>()
        .ok()
}

fn declares_dev_dependencies(app_dir: &Path) -> bool {
    let Some(pyproject) = pyproject(app_dir) else {
        return false;
    };
    let non_empty = |v: Option<&toml::Value>| {
        v.and_then(toml::Value::as_array)
            .is_some_and(|a| !a.is_empty())
    };
    let groups = pyproject
        .get("dependency-groups")
        .and_then(toml::Value::as_table);
    let tool_uv = pyproject
        .get("tool")
        .and_then(|t| t.get("uv"))
        .and_then(toml::Value::as_table);
    non_empty(groups.and_then(|g| g.get("dev")))
        || non_empty(tool_uv.and_then(|u| u.get("dev-dependencies")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use plan::RunSource;

    fn run(command: &str) -> Run {
        Run {
            source: RunSource::CcPythonUvRunCommand,
            command: command.into(),
            argv: None,
        }
    }

    fn app(pyproject: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pyproject.toml"), pyproject).unwrap();
        dir
    }

    const WITH_DEV: &str = "[project]\nname = \"x\"\n\n[dependency-groups]\ndev = [\"pytest\"]\n";

    #[test]
    fn warns_when_uv_run_would_install_dev_dependencies() {
        let dir = app(WITH_DEV);
        let warn = |command: &str, environment, vars: &[(&str, &str)]| {
            uv_run_installs_dev_dependencies(
                &run(command),
                environment,
                &vars.iter().copied().collect(),
                dir.path(),
            )
        };
        let production = Environment::Production;
        assert!(warn("uv run python app.py", production, &[])
            .unwrap()
            .starts_with("CC_PYTHON_UV_RUN_COMMAND: `uv run` syncs"));
        assert!(warn(
            "cd src && uv run gunicorn app:app -b 0.0.0.0:$PORT",
            production,
            &[]
        )
        .is_some());
        assert!(warn("uv run --no-dev python app.py", production, &[]).is_none());
        assert!(warn("uv run --no-sync python app.py", production, &[]).is_none());
        assert!(warn("uv run python app.py", production, &[("UV_NO_DEV", "1")]).is_none());
        assert!(warn("uv run python app.py", Environment::Development, &[]).is_none());
        assert!(warn(".venv/bin/python app.py", production, &[]).is_none());
    }

    #[test]
    fn only_projects_with_dev_dependencies() {
        for (pyproject, expected) in [
            (WITH_DEV, true),
            ("[tool.uv]\ndev-dependencies = [\"pytest\"]\n", true),
            ("[dependency-groups]\ndev = []\n", false),
            ("[project]\nname = \"x\"\n", false),
            ("not toml [", false),
        ] {
            assert_eq!(
                declares_dev_dependencies(app(pyproject).path()),
                expected,
                "{pyproject}"
            );
        }
    }
}
