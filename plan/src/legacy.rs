//! Legacy mode, as the platform runs an app without uv: pip installs `requirements.txt` into
//! a virtual environment, an app server (uWSGI by default) listens on 127.0.0.1:9000, and
//! Nginx on the public side serves the static files and passes the rest to it. `detect`
//! fills these settings from the platform's variables; the other tools only read them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Legacy {
    /// `CC_PYTHON_VERSION` (`3` by default, `3.11` picks a minor): the build runs
    /// `python<version>` from PATH, never a downloaded one.
    pub python_version: String,
    /// The requirements file pip installs, relative to `app_dir` (`CC_PIP_REQUIREMENTS_FILE`,
    /// by default `requirements.txt`); `None` when there is none (nothing is installed).
    pub requirements: Option<String>,
    /// `PYTHON_SETUP_PY_GOAL`: `python setup.py GOAL`, after the requirements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_py_goal: Option<String>,
    /// The app server on the app port; `None` when `CC_RUN_COMMAND` replaces it.
    pub backend: Option<Backend>,
    /// `CC_PYTHON_MODULE` (`module:app`), what the app server serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// `CC_PYTHON_MANAGE_TASKS`: `python manage.py TASK` each, before the server starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manage_tasks: Vec<String>,
    /// Deprecated: plans made before the top-level `workers` held Celery here. Read, never
    /// written: [`crate::Plan::migrate`] moves it to `workers`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<LegacyWorker>,
    /// Python packages the build must have installed: the app server (unless the machine
    /// provides it) and Celery. A missing one fails the build with a clear error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<Need>,
    pub nginx: Nginx,
    /// `APP_FOLDER` names a member of a uv workspace: why the app is in legacy mode, and what
    /// would deploy it with uv (the last word of an error legacy mode ends on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_member: Option<WorkspaceMember>,
}

/// An `APP_FOLDER` on a member of a uv workspace: the workspace's `uv.lock` is at its root,
/// and the platform looks for it in `APP_FOLDER` only, so the member deploys in legacy mode.
/// A uv deployment deploys the workspace root and runs the member from there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WorkspaceMember {
    /// The member's package name (its `[project] name`, else its folder's name).
    pub package: String,
    /// The workspace root's folder in the repository: the `APP_FOLDER` to deploy (`""`: the
    /// repository itself, APP_FOLDER unset).
    pub root_folder: String,
    /// The run command from the root: the user's `CC_PYTHON_UV_RUN_COMMAND` with
    /// `--package PACKAGE` (literal secrets as `${{NAME}}`).
    pub run_command: String,
    /// Whether the root project depends on the member already; if not, the root's build
    /// (`uv sync` at the root) does not install it.
    pub root_depends_on_it: bool,
}

impl WorkspaceMember {
    /// What to do, in one sentence.
    pub fn fix(&self) -> String {
        let folder = if self.root_folder.is_empty() {
            "unset APP_FOLDER".to_string()
        } else {
            format!("set APP_FOLDER to `{}`", self.root_folder)
        };
        let mut fix = format!(
            "deploy the workspace root, where `uv.lock` is: {folder} and set CC_PYTHON_UV_RUN_COMMAND to `{}`",
            self.run_command
        );
        if !self.root_depends_on_it {
            let p = &self.package;
            fix.push_str(&format!(
                ", with the root project depending on `{p}` (`dependencies = [\"{p}\"]` and `[tool.uv.sources] {p} = {{ workspace = true }}` in its `pyproject.toml`) so that the build installs it"
            ));
        }
        fix
    }
}

/// The words a manage task runs, `python manage.py TASK...`: the task split as a shell splits
/// words, and nothing more (`check; touch x` is the task `check;` with the arguments `touch`
/// and `x`, no shell), wherever it runs (`launcher`, the pod's init containers).
pub fn manage_task_argv(task: &str) -> Vec<String> {
    let words = shell_words::split(task).unwrap_or_else(|_| vec![task.to_string()]);
    ["python".to_string(), "manage.py".to_string()]
        .into_iter()
        .chain(words)
        .collect()
}

/// `CC_PYTHON_BACKEND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Uwsgi,
    Gunicorn,
    Uvicorn,
    Daphne,
}

impl Backend {
    pub const ALL: [Backend; 4] = [
        Backend::Uwsgi,
        Backend::Gunicorn,
        Backend::Uvicorn,
        Backend::Daphne,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Uwsgi => "uwsgi",
            Backend::Gunicorn => "gunicorn",
            Backend::Uvicorn => "uvicorn",
            Backend::Daphne => "daphne",
        }
    }

    /// uWSGI speaks its own protocol to Nginx; the others speak HTTP.
    pub fn speaks_uwsgi(self) -> bool {
        self == Backend::Uwsgi
    }
}

/// Deprecated: a worker as plans before the top-level `workers` held it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LegacyWorker {
    pub name: String,
    pub argv: Vec<String>,
}

/// A program the build must have put in the venv, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Need {
    /// The program in the venv's `bin` (`gunicorn`, `celery`).
    pub program: String,
    /// The package to add to the requirements when it is missing.
    pub package: String,
    /// The variable that asks for it (`CC_PYTHON_BACKEND=gunicorn`).
    pub because: String,
    /// Also satisfied by this program on the machine's PATH (Debian's `uwsgi`: the platform
    /// provides uWSGI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub or_provided: Option<String>,
}

/// What Nginx is told, from the platform's variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Nginx {
    /// `STATIC_FILES_PATH` (relative to `app_dir`) served under `STATIC_URL_PREFIX`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_files: Option<StaticFiles>,
    /// `NGINX_READ_TIMEOUT`, seconds (300).
    pub read_timeout: u32,
    /// `GZIP_TYPES` when `ENABLE_GZIP_COMPRESSION` is on (`on`, `yes`, `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gzip_types: Option<String>,
    /// The variables holding `login:password` pairs (`CC_HTTP_BASIC_AUTH`,
    /// `CC_HTTP_BASIC_AUTH_n`): named, never held.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub basic_auth_env: Vec<String>,
    /// `CC_NGINX_PROXY_BUFFERS` (`8 16k`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_buffers: Option<String>,
    /// `CC_NGINX_PROXY_BUFFER_SIZE` (`16k`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_buffer_size: Option<String>,
    /// `UWSGI_INTERCEPT_ERRORS`: Nginx answers the app server's error statuses itself.
    #[serde(default)]
    pub intercept_errors: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StaticFiles {
    /// The directory, relative to `app_dir`.
    pub path: String,
    /// The URL prefix; `/` puts the app behind the `@app` fallback.
    pub prefix: String,
}
