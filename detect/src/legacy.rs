//! Legacy mode's settings, from the platform's Python variables (its Python, servers and
//! environment-variable reference pages): the pip build, the app server's command on the app
//! port, the Celery workers and what Nginx is told.

use crate::DetectError;
use plan::{Backend, Env, Legacy, Need, Nginx, Run, RunSource, StaticFiles, WorkspaceMember};
use std::path::Path;

/// The platform's defaults.
const HARAKIRI: u32 = 180;
const NGINX_READ_TIMEOUT: u32 = 300;
const WSGI_BUFFER_SIZE: u32 = 4096;
const WSGI_POST_BUFFERING: u32 = 4096;
const UWSGI_LISTEN: u32 = 500;
const GUNICORN_TIMEOUT: u32 = 30;
const GZIP_TYPES: &str = "text/plain text/css text/xml text/javascript application/json application/xml application/javascript image/svg+xml";

/// Files a modern project declares its dependencies in, which legacy mode does not read.
const NOT_READ: [&str; 3] = ["pyproject.toml", "Pipfile", "poetry.lock"];

/// What legacy mode adds to the plan.
pub struct LegacyPlan {
    pub legacy: Legacy,
    /// The app server's command, or `CC_RUN_COMMAND`; `None` when neither is set.
    pub run: Option<Run>,
    /// `CC_PYTHON_CELERY_MODULE`'s worker, its words: one of the plan's workers.
    pub celery: Option<Vec<String>>,
    pub reasons: Vec<String>,
    pub warnings: Vec<String>,
}

/// The variables legacy mode reads (uWSGI/Gunicorn + Nginx), which a uv deployment ignores:
/// "CC_PYTHON_MODULE and CC_PYTHON_BACKEND are ignored", "Server configuration settings do
/// not apply" (the platform's Python documentation lists these). With [`reads`], the one
/// table both the reader here and the uv mode's `ignored` list derive from (a test checks that
/// each is read below).
pub const READS: &[&str] = &[
    "CC_PYTHON_MODULE",
    "CC_PYTHON_BACKEND",
    "CC_PYTHON_USE_GEVENT",
    "CC_PIP_REQUIREMENTS_FILE",
    "CC_PYTHON_MANAGE_TASKS",
    "CC_GUNICORN_TIMEOUT",
    "CC_GUNICORN_WORKER_CLASS",
    "CC_GUNICORN_LOGLEVEL",
    "GUNICORN_WORKER_CLASS",
    "CC_UWSGI_EXTRA_CONFIG",
    "CC_UWSGI_DISABLE_FILE_WRAPPER",
    "CC_PYTHON_CELERY_MODULE",
    "CC_PYTHON_CELERY_USE_BEAT",
    "CC_PYTHON_CELERY_LOGFILE",
    "HARAKIRI",
    "PYTHON_SETUP_PY_GOAL",
    "STATIC_FILES_PATH",
    "STATIC_URL_PREFIX",
    "ENABLE_GZIP_COMPRESSION",
    "GZIP_TYPES",
    "NGINX_READ_TIMEOUT",
    "CC_NGINX_PROXY_BUFFERS",
    "CC_NGINX_PROXY_BUFFER_SIZE",
    "CC_HTTP_BASIC_AUTH",
    "UWSGI_ASYNC",
    "UWSGI_ASYNC_ENGINE",
    "UWSGI_INTERCEPT_ERRORS",
    "WSGI_WORKERS",
    "WSGI_THREADS",
    "WSGI_BUFFER_SIZE",
    "WSGI_POST_BUFFERING",
];

/// Whether legacy mode reads `name`: one of [`READS`], or a numbered basic-auth pair
/// (`CC_HTTP_BASIC_AUTH_2`).
pub fn reads(name: &str) -> bool {
    READS.contains(&name) || is_numbered_basic_auth(name)
}

/// `CC_HTTP_BASIC_AUTH_n`, n a number.
fn is_numbered_basic_auth(name: &str) -> bool {
    name.strip_prefix("CC_HTTP_BASIC_AUTH_")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `run` is `CC_RUN_COMMAND` when set (it replaces the app server, and must listen on the
/// app port); `app_port` is where the app server listens, behind Nginx.
pub fn legacy(
    app_dir: &Path,
    env: &Env,
    run: Option<Run>,
    app_port: u16,
    workspace_member: Option<WorkspaceMember>,
) -> Result<LegacyPlan, DetectError> {
    let mut reasons = Vec::new();
    let mut warnings = Vec::new();
    let python_version = python_version(env)?;
    let in_workspace = workspace_member.is_some();
    let requirements = requirements(app_dir, env, in_workspace, &mut reasons)?;
    let backend_choice = backend(env)?;
    let module = env
        .non_empty("CC_PYTHON_MODULE")
        .map(|m| m.trim().to_string());
    let gevent = flag(env, "CC_PYTHON_USE_GEVENT");
    let mut needs = Vec::new();
    let run = run.filter(|r| r.source == RunSource::CcRunCommand);
    let (backend, run) = match (run, &module) {
        (Some(run), _) => {
            if env.non_empty("CC_PYTHON_BACKEND").is_some() || module.is_some() {
                warnings.push(format!(
                    "CC_RUN_COMMAND replaces the app server: CC_PYTHON_BACKEND and CC_PYTHON_MODULE have no effect; the command must listen on 127.0.0.1:{app_port} (PORT), behind Nginx"
                ));
            }
            (None, Some(run))
        }
        (None, Some(module)) => {
            let argv = server_argv(backend_choice, module, app_dir, env, gevent, app_port)?;
            needs.push(need_for(backend_choice, env));
            let command = shell_words::join(&argv);
            (
                Some(backend_choice),
                Some(Run {
                    source: RunSource::CcPythonBackend,
                    command,
                    argv: Some(argv),
                }),
            )
        }
        (None, None) => (Some(backend_choice), None),
    };
    let celery = celery(env, app_dir, backend, &mut needs, &mut warnings);
    let manage_tasks = env
        .non_empty("CC_PYTHON_MANAGE_TASKS")
        .map(|tasks| {
            tasks
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    Ok(LegacyPlan {
        legacy: Legacy {
            python_version,
            requirements,
            setup_py_goal: env
                .non_empty("PYTHON_SETUP_PY_GOAL")
                .map(|g| g.trim().to_string()),
            backend,
            module,
            manage_tasks,
            workers: Vec::new(),
            needs,
            nginx: nginx(env, app_dir, &mut warnings)?,
            workspace_member,
        },
        run,
        celery,
        reasons,
        warnings,
    })
}

/// `CC_PYTHON_VERSION`: `3` (the default), `3.N`, `2` or `2.7`.
fn python_version(env: &Env) -> Result<String, DetectError> {
    let Some(value) = env.non_empty("CC_PYTHON_VERSION").map(str::trim) else {
        return Ok("3".into());
    };
    let valid = match value.split_once('.') {
        None => matches!(value, "2" | "3"),
        Some((major, minor)) => {
            matches!(major, "2" | "3")
                && !minor.is_empty()
                && minor.len() <= 2
                && minor.bytes().all(|b| b.is_ascii_digit())
        }
    };
    if valid {
        Ok(value.to_string())
    } else {
        Err(DetectError::Invalid {
            variable: "CC_PYTHON_VERSION".into(),
            value: value.into(),
            valid: "a major version, or major.minor: `3`, `3.11`, `2.7`".into(),
        })
    }
}

/// The requirements file, which must be inside the app; a reason when there is none, naming
/// the files legacy mode does not read (`in_workspace`: the app is a uv workspace member,
/// whose uv deployment is said already).
fn requirements(
    app_dir: &Path,
    env: &Env,
    in_workspace: bool,
    reasons: &mut Vec<String>,
) -> Result<Option<String>, DetectError> {
    let named = env.non_empty("CC_PIP_REQUIREMENTS_FILE").map(str::trim);
    // A file name with a newline or another control character is no one's requirements file,
    // and would break every line it is written into (a Containerfile's `RUN --mount`).
    if let Some(named) = named.filter(|n| n.chars().any(char::is_control)) {
        return Err(DetectError::Invalid {
            variable: "CC_PIP_REQUIREMENTS_FILE".into(),
            value: named.escape_default().to_string(),
            valid: "a file from the application's root, its name without control characters (newline, tab, ...)".into(),
        });
    }
    let file = named.unwrap_or("requirements.txt");
    let relative = file.trim_start_matches('/');
    let path = app_dir.join(relative);
    match path.canonicalize() {
        Ok(real) if real.is_file() && real.starts_with(app_dir) => {
            return Ok(Some(relative.to_string()))
        }
        Ok(real) if real.is_file() => {
            return Err(DetectError::Invalid {
                variable: "CC_PIP_REQUIREMENTS_FILE".into(),
                value: file.into(),
                valid: format!(
                    "a file of the application (it resolves to `{}`, outside `{}`)",
                    real.display(),
                    app_dir.display()
                ),
            })
        }
        _ => {}
    }
    if let Some(named) = named {
        return Err(DetectError::Invalid {
            variable: "CC_PIP_REQUIREMENTS_FILE".into(),
            value: named.into(),
            valid: format!(
                "a file from the application's root (`{}` does not exist)",
                path.display()
            ),
        });
    }
    let others: Vec<&str> = NOT_READ
        .into_iter()
        .filter(|f| app_dir.join(f).is_file())
        .collect();
    let mut reason = "no requirements.txt: pip installs nothing".to_string();
    if !others.is_empty() {
        let uv = if in_workspace {
            "deploy the workspace root for a uv deployment (above)"
        } else {
            "commit uv.lock and set CC_PYTHON_UV_RUN_COMMAND for a uv deployment"
        };
        reason.push_str(&format!(
            "; {} found, but legacy mode installs from requirements.txt only (no pyproject.toml, Pipfile or Poetry support): {uv}, or export the requirements (`uv export --no-hashes -o requirements.txt`)",
            others.join(", ")
        ));
    }
    reasons.push(reason);
    Ok(None)
}

/// `CC_PYTHON_BACKEND`: `uwsgi` (the default), `gunicorn`, `uvicorn` or `daphne`.
fn backend(env: &Env) -> Result<Backend, DetectError> {
    let Some(value) = env.non_empty("CC_PYTHON_BACKEND").map(str::trim) else {
        return Ok(Backend::Uwsgi);
    };
    Backend::ALL
        .into_iter()
        .find(|b| b.name() == value)
        .ok_or_else(|| DetectError::Invalid {
            variable: "CC_PYTHON_BACKEND".into(),
            value: value.into(),
            valid: "one of uwsgi, gunicorn, uvicorn, daphne".into(),
        })
}

/// A variable the platform reads as a boolean: `true` (and `on`, `yes`, `1`).
fn flag(env: &Env, name: &str) -> bool {
    env.non_empty(name)
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "true" | "on" | "yes" | "1"
            )
        })
        .unwrap_or(false)
}

/// A positive whole number; `None` when unset.
fn number(env: &Env, name: &str) -> Result<Option<u32>, DetectError> {
    let Some(value) = env.non_empty(name).map(str::trim) else {
        return Ok(None);
    };
    match value.parse::<u32>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(DetectError::Invalid {
            variable: name.into(),
            value: value.into(),
            valid: "a whole number above 0".into(),
        }),
    }
}

/// A positive whole number, the platform's `default` when unset.
fn number_or(env: &Env, name: &str, default: u32) -> Result<u32, DetectError> {
    Ok(number(env, name)?.unwrap_or(default))
}

/// The app server's command, with the platform's settings, on 127.0.0.1:`port`.
fn server_argv(
    backend: Backend,
    module: &str,
    app_dir: &Path,
    env: &Env,
    gevent: bool,
    port: u16,
) -> Result<Vec<String>, DetectError> {
    match backend {
        Backend::Uwsgi => uwsgi_argv(module, app_dir, env, gevent, port),
        Backend::Gunicorn => gunicorn_argv(module, env, gevent, port),
        Backend::Uvicorn => uvicorn_argv(module, env, port),
        Backend::Daphne => Ok(words(&[
            "daphne",
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            module,
        ])),
    }
}

/// Words of an argv, owned.
fn words(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// uWSGI, with the platform's settings (`HARAKIRI`, `WSGI_*`, `UWSGI_ASYNC*`, ...).
fn uwsgi_argv(
    module: &str,
    app_dir: &Path,
    env: &Env,
    gevent: bool,
    port: u16,
) -> Result<Vec<String>, DetectError> {
    // The venv's packages, found by uWSGI's own glob. Not `--virtualenv`: that takes the
    // standard library from the venv's Python too, and Debian's uwsgi embeds its own Python
    // (a pyenv 3.11.7 `_ssl` does not load into Debian's 3.11.2).
    let packages = app_dir.join(".venv/lib/python*/site-packages");
    // Debian's uwsgi loads Python as a plugin; a uwsgi from PyPI has it built in and only
    // notes that the plugin is not there.
    let mut argv = words(&["uwsgi", "--plugin", "python3", "--socket"]);
    argv.push(format!("127.0.0.1:{port}"));
    argv.extend(words(&["--module", module, "--pythonpath"]));
    argv.push(packages.display().to_string());
    argv.extend(words(&[
        "--master",
        "--need-app",
        "--lazy-apps",
        "--enable-threads",
    ]));
    // uWSGI 2.0 reloads on SIGTERM: the platform's stop must stop it.
    argv.push("--die-on-term".into());
    let numbers = [
        ("--harakiri", number_or(env, "HARAKIRI", HARAKIRI)?),
        ("--listen", UWSGI_LISTEN),
        (
            "--buffer-size",
            number_or(env, "WSGI_BUFFER_SIZE", WSGI_BUFFER_SIZE)?,
        ),
        (
            "--post-buffering",
            number_or(env, "WSGI_POST_BUFFERING", WSGI_POST_BUFFERING)?,
        ),
    ];
    for (option, n) in numbers {
        argv.extend([option.to_string(), n.to_string()]);
    }
    argv.extend(workers_and_threads(env, "--processes")?);
    if gevent {
        argv.extend(words(&["--gevent", "100"]));
    }
    if let Some(n) = number(env, "UWSGI_ASYNC")? {
        argv.extend(["--async".to_string(), n.to_string()]);
        match env.non_empty("UWSGI_ASYNC_ENGINE").map(str::trim) {
            Some(engine) => argv.push(format!("--{engine}")),
            None => argv.push("--ugreen".into()),
        }
    }
    if flag(env, "CC_UWSGI_DISABLE_FILE_WRAPPER") {
        argv.push("--wsgi-disable-file-wrapper".into());
    }
    if let Some(extra) = env.non_empty("CC_UWSGI_EXTRA_CONFIG") {
        argv.extend(uwsgi_extra_config(extra));
    }
    Ok(argv)
}

/// `WSGI_WORKERS` (as `workers_option`) and `WSGI_THREADS`, when set.
fn workers_and_threads(env: &Env, workers_option: &str) -> Result<Vec<String>, DetectError> {
    let mut argv = Vec::new();
    if let Some(n) = number(env, "WSGI_WORKERS")? {
        argv.extend([workers_option.to_string(), n.to_string()]);
    }
    if let Some(n) = number(env, "WSGI_THREADS")? {
        argv.extend(["--threads".to_string(), n.to_string()]);
    }
    Ok(argv)
}

/// `CC_UWSGI_EXTRA_CONFIG`: `key = value` lines, as in a uWSGI ini file, as options.
fn uwsgi_extra_config(extra: &str) -> Vec<String> {
    let mut argv = Vec::new();
    for line in extra
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(['#', ';', '[']))
    {
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        argv.push(format!("--{}", key.trim()));
        if !value.trim().is_empty() {
            argv.push(value.trim().to_string());
        }
    }
    argv
}

/// Gunicorn, with the platform's settings (`CC_GUNICORN_*`, `WSGI_*`).
fn gunicorn_argv(
    module: &str,
    env: &Env,
    gevent: bool,
    port: u16,
) -> Result<Vec<String>, DetectError> {
    let class = env
        .non_empty("CC_GUNICORN_WORKER_CLASS")
        .or_else(|| env.non_empty("GUNICORN_WORKER_CLASS"))
        .map(str::trim)
        .unwrap_or(if gevent { "gevent" } else { "sync" });
    let timeout = number_or(env, "CC_GUNICORN_TIMEOUT", GUNICORN_TIMEOUT)?.to_string();
    let level = env
        .non_empty("CC_GUNICORN_LOGLEVEL")
        .map(str::trim)
        .unwrap_or("info");
    let address = format!("127.0.0.1:{port}");
    let mut argv = words(&["gunicorn", module, "--bind", &address]);
    argv.extend(words(&["--worker-class", class, "--timeout", &timeout]));
    argv.extend(words(&["--log-level", level]));
    argv.extend(workers_and_threads(env, "--workers")?);
    Ok(argv)
}

/// Uvicorn (an ASGI app), with `WSGI_WORKERS`.
fn uvicorn_argv(module: &str, env: &Env, port: u16) -> Result<Vec<String>, DetectError> {
    let mut argv = words(&["uvicorn", module, "--host", "127.0.0.1"]);
    argv.extend(["--port".to_string(), port.to_string()]);
    if let Some(n) = number(env, "WSGI_WORKERS")? {
        argv.extend(["--workers".to_string(), n.to_string()]);
    }
    Ok(argv)
}

/// The app server must come from the requirements; uWSGI may also be the machine's.
fn need_for(backend: Backend, env: &Env) -> Need {
    let because = match env.non_empty("CC_PYTHON_BACKEND") {
        Some(_) => format!("CC_PYTHON_BACKEND={}", backend.name()),
        None => "CC_PYTHON_BACKEND (uwsgi by default)".into(),
    };
    Need {
        program: backend.name().into(),
        package: backend.name().into(),
        because,
        or_provided: backend.speaks_uwsgi().then(|| "uwsgi".into()),
    }
}

/// `CC_PYTHON_CELERY_MODULE`: the words of a Celery worker beside the app server (with beat when
/// `CC_PYTHON_CELERY_USE_BEAT`, logging into `CC_PYTHON_CELERY_LOGFILE`, a directory of the
/// app); celery must be in the requirements.
fn celery(
    env: &Env,
    app_dir: &Path,
    backend: Option<Backend>,
    needs: &mut Vec<Need>,
    warnings: &mut Vec<String>,
) -> Option<Vec<String>> {
    let module = env.non_empty("CC_PYTHON_CELERY_MODULE").map(str::trim)?;
    let mut argv: Vec<String> = ["celery", "--app", module, "worker"]
        .map(String::from)
        .to_vec();
    if flag(env, "CC_PYTHON_CELERY_USE_BEAT") {
        argv.push("--beat".into());
    }
    if let Some(dir) = env.non_empty("CC_PYTHON_CELERY_LOGFILE").map(str::trim) {
        let file = app_dir.join(dir.trim_start_matches('/')).join("celery.log");
        argv.push(format!("--logfile={}", file.display()));
    }
    if backend == Some(Backend::Gunicorn) {
        warnings.push("CC_PYTHON_CELERY_MODULE with CC_PYTHON_BACKEND=gunicorn: the platform's documentation says Celery is not supported with gunicorn yet; uvdeploy starts the worker anyway".into());
    }
    needs.push(Need {
        program: "celery".into(),
        package: "celery".into(),
        because: "CC_PYTHON_CELERY_MODULE".into(),
        or_provided: None,
    });
    Some(argv)
}

/// What Nginx is told. The static directory is checked by `flowctl`, which renders the
/// configuration.
fn nginx(env: &Env, app_dir: &Path, warnings: &mut Vec<String>) -> Result<Nginx, DetectError> {
    // In this order, so that the first of several mistakes is the one named.
    let static_files = static_files(env, app_dir, warnings)?;
    let basic_auth_env = basic_auth_variables(env)?;
    let gzip_types = gzip_types(env)?;
    Ok(Nginx {
        static_files,
        read_timeout: number_or(env, "NGINX_READ_TIMEOUT", NGINX_READ_TIMEOUT)?,
        gzip_types,
        basic_auth_env,
        proxy_buffers: nginx_size(env, "CC_NGINX_PROXY_BUFFERS", 2, "8 16k")?,
        proxy_buffer_size: nginx_size(env, "CC_NGINX_PROXY_BUFFER_SIZE", 1, "16k")?,
        intercept_errors: flag(env, "UWSGI_INTERCEPT_ERRORS"),
    })
}

/// `STATIC_FILES_PATH` served under `STATIC_URL_PREFIX`, when both are set.
fn static_files(
    env: &Env,
    app_dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<Option<StaticFiles>, DetectError> {
    let path = env.non_empty("STATIC_FILES_PATH").map(str::trim);
    let prefix = env.non_empty("STATIC_URL_PREFIX").map(str::trim);
    let (path, prefix) = match (path, prefix) {
        (Some(path), Some(prefix)) => (path, prefix),
        (Some(_), None) | (None, Some(_)) => {
            warnings.push("static files need both STATIC_FILES_PATH and STATIC_URL_PREFIX: with one only, Nginx serves none".into());
            return Ok(None);
        }
        (None, None) => return Ok(None),
    };
    if !prefix.starts_with('/') {
        return Err(DetectError::Invalid {
            variable: "STATIC_URL_PREFIX".into(),
            value: prefix.into(),
            valid: "a URL path starting with `/`, e.g. `/public`".into(),
        });
    }
    let relative = path.trim_start_matches('/').to_string();
    if !app_dir.join(&relative).is_dir() {
        warnings.push(format!(
            "STATIC_FILES_PATH `{path}` is not a directory of the application: Nginx will answer 404 under {prefix}"
        ));
    }
    Ok(Some(StaticFiles {
        path: relative,
        prefix: prefix.to_string(),
    }))
}

/// The set `CC_HTTP_BASIC_AUTH` and `CC_HTTP_BASIC_AUTH_n` variables, sorted, each holding a
/// valid `login:password` pair (the value never shown).
fn basic_auth_variables(env: &Env) -> Result<Vec<String>, DetectError> {
    let mut names: Vec<String> = env
        .iter()
        .filter(|(name, value)| {
            (*name == "CC_HTTP_BASIC_AUTH" || is_numbered_basic_auth(name))
                && !value.trim().is_empty()
        })
        .map(|(name, _)| name.to_string())
        .collect();
    names.sort();
    for name in &names {
        if let Err(problem) = plan::basic_auth::split(env.get(name).unwrap_or_default()) {
            return Err(DetectError::Invalid {
                variable: name.clone(),
                value: plan::secret::REDACTED.into(),
                valid: format!("{problem}; expected {}", plan::basic_auth::PAIR),
            });
        }
    }
    Ok(names)
}

/// An Nginx size setting of `count` sizes (`16k`, `8 16k`), when set. It goes into Nginx's
/// configuration: only the shapes Nginx takes, nothing that could end a directive.
fn nginx_size(
    env: &Env,
    name: &str,
    count: usize,
    example: &str,
) -> Result<Option<String>, DetectError> {
    let Some(value) = env.non_empty(name).map(str::trim) else {
        return Ok(None);
    };
    let ok = value.split_whitespace().count() == count
        && value.split_whitespace().all(|w| {
            let digits = w.trim_end_matches(['k', 'K', 'm', 'M']);
            !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && w.len() - digits.len() <= 1
        });
    if !ok {
        return Err(DetectError::Invalid {
            variable: name.into(),
            value: value.into(),
            valid: format!("an Nginx size, e.g. `{example}`"),
        });
    }
    Ok(Some(value.split_whitespace().collect::<Vec<_>>().join(" ")))
}

/// The MIME types Nginx compresses (`GZIP_TYPES`, or the platform's), when
/// `ENABLE_GZIP_COMPRESSION` is set. They go into Nginx's configuration too.
fn gzip_types(env: &Env) -> Result<Option<String>, DetectError> {
    if !flag(env, "ENABLE_GZIP_COMPRESSION") {
        return Ok(None);
    }
    let types = env
        .non_empty("GZIP_TYPES")
        .map(str::trim)
        .unwrap_or(GZIP_TYPES);
    let valid = |t: &str| {
        t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/+-.*".contains(&b))
    };
    if !types.split_whitespace().all(valid) {
        return Err(DetectError::Invalid {
            variable: "GZIP_TYPES".into(),
            value: types.into(),
            valid: "MIME types separated by spaces, e.g. `text/plain application/json`".into(),
        });
    }
    Ok(Some(types.split_whitespace().collect::<Vec<_>>().join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Env {
        vars.iter().copied().collect()
    }

    /// The legacy settings for an app with a requirements file.
    fn settings(vars: &[(&str, &str)]) -> Result<LegacyPlan, DetectError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("requirements.txt"), "flask\n").unwrap();
        std::fs::create_dir(dir.path().join("static")).unwrap();
        let app = dir.path().canonicalize().unwrap();
        legacy(&app, &env(vars), None, 9000, None)
    }

    fn argv(vars: &[(&str, &str)]) -> String {
        let mut all = vec![("CC_PYTHON_MODULE", "app:app")];
        all.extend_from_slice(vars);
        let plan = settings(&all).unwrap();
        let argv = plan.run.unwrap().argv.unwrap();
        // The app's temporary directory varies: the words after it do not.
        shell_words::join(argv.iter().map(|w| match w.find("/.venv/") {
            Some(at) => &w[at..],
            None => w.as_str(),
        }))
    }

    /// Each variable of the app servers, and what it becomes on the command line.
    #[test]
    fn every_app_server_variable_reaches_its_command() {
        let uwsgi = argv(&[]);
        assert_eq!(
            uwsgi,
            "uwsgi --plugin python3 --socket 127.0.0.1:9000 --module app:app --pythonpath '/.venv/lib/python*/site-packages' --master --need-app --lazy-apps --enable-threads --die-on-term --harakiri 180 --listen 500 --buffer-size 4096 --post-buffering 4096"
        );
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (&[("HARAKIRI", "30")], "--harakiri 30 "),
            (&[("WSGI_BUFFER_SIZE", "8192")], "--buffer-size 8192 "),
            (&[("WSGI_POST_BUFFERING", "65536")], "--post-buffering 65536"),
            (&[("WSGI_WORKERS", "4")], "--processes 4"),
            (&[("WSGI_THREADS", "8")], "--threads 8"),
            (&[("CC_PYTHON_USE_GEVENT", "true")], "--gevent 100"),
            (&[("UWSGI_ASYNC", "10")], "--async 10 --ugreen"),
            (&[("UWSGI_ASYNC", "10"), ("UWSGI_ASYNC_ENGINE", "gevent")], "--async 10 --gevent"),
            (&[("CC_UWSGI_DISABLE_FILE_WRAPPER", "true")], "--wsgi-disable-file-wrapper"),
            (&[("CC_UWSGI_EXTRA_CONFIG", "max-requests = 1000\n# a comment\nvacuum")], "--max-requests 1000 --vacuum"),
            (&[("CC_PYTHON_BACKEND", "gunicorn")], "gunicorn app:app --bind 127.0.0.1:9000 --worker-class sync --timeout 30 --log-level info"),
            (&[("CC_PYTHON_BACKEND", "gunicorn"), ("CC_GUNICORN_WORKER_CLASS", "gthread")], "--worker-class gthread "),
            (&[("CC_PYTHON_BACKEND", "gunicorn"), ("GUNICORN_WORKER_CLASS", "eventlet")], "--worker-class eventlet "),
            (&[("CC_PYTHON_BACKEND", "gunicorn"), ("CC_PYTHON_USE_GEVENT", "true")], "--worker-class gevent "),
            (&[("CC_PYTHON_BACKEND", "gunicorn"), ("CC_GUNICORN_TIMEOUT", "120")], "--timeout 120 "),
            (&[("CC_PYTHON_BACKEND", "gunicorn"), ("CC_GUNICORN_LOGLEVEL", "debug")], "--log-level debug"),
            (&[("CC_PYTHON_BACKEND", "gunicorn"), ("WSGI_WORKERS", "3")], "--workers 3"),
            (&[("CC_PYTHON_BACKEND", "uvicorn")], "uvicorn app:app --host 127.0.0.1 --port 9000"),
            (&[("CC_PYTHON_BACKEND", "daphne")], "daphne --bind 127.0.0.1 --port 9000 app:app"),
        ];
        for (vars, expected) in cases {
            let got = argv(vars);
            assert!(got.contains(expected), "{vars:?}: {got}");
        }
    }

    #[test]
    fn the_build_the_workers_and_the_tasks() {
        let settings = settings(&[
            ("CC_PYTHON_MODULE", "app:app"),
            ("CC_PYTHON_VERSION", "3.11"),
            ("PYTHON_SETUP_PY_GOAL", "build_ext"),
            (
                "CC_PYTHON_MANAGE_TASKS",
                "migrate, collectstatic --no-input ,",
            ),
            ("CC_PYTHON_CELERY_MODULE", "tasks"),
            ("CC_PYTHON_CELERY_USE_BEAT", "true"),
            ("CC_PYTHON_CELERY_LOGFILE", "/logs"),
        ])
        .unwrap();
        let celery = settings.celery.unwrap();
        let plan = settings.legacy;
        assert_eq!(plan.python_version, "3.11");
        assert_eq!(plan.requirements.as_deref(), Some("requirements.txt"));
        assert_eq!(plan.setup_py_goal.as_deref(), Some("build_ext"));
        assert_eq!(plan.manage_tasks, ["migrate", "collectstatic --no-input"]);
        assert_eq!(
            celery[..5],
            ["celery", "--app", "tasks", "worker", "--beat"]
        );
        assert!(celery[5].starts_with("--logfile=/") && celery[5].ends_with("/logs/celery.log"));
        let needs: Vec<&str> = plan.needs.iter().map(|n| n.program.as_str()).collect();
        assert_eq!(needs, ["uwsgi", "celery"]);
        assert_eq!(plan.needs[0].or_provided.as_deref(), Some("uwsgi"));
        assert_eq!(plan.backend, Some(Backend::Uwsgi));
    }

    #[test]
    fn cc_run_command_replaces_the_app_server() {
        let run = Run {
            source: RunSource::CcRunCommand,
            command: "python serve.py".into(),
            argv: Some(vec!["python".into(), "serve.py".into()]),
        };
        let dir = tempfile::tempdir().unwrap();
        let plan = legacy(
            dir.path(),
            &env(&[("CC_PYTHON_MODULE", "app:app")]),
            Some(run.clone()),
            9000,
            None,
        )
        .unwrap();
        assert_eq!(plan.run, Some(run));
        assert_eq!(plan.legacy.backend, None);
        assert!(plan.legacy.needs.is_empty());
        assert!(plan.warnings[0].starts_with("CC_RUN_COMMAND replaces the app server"));
    }

    #[test]
    fn what_nginx_is_told() {
        let nginx = |vars: &[(&str, &str)]| settings(vars).unwrap().legacy.nginx;
        let default = nginx(&[]);
        assert_eq!(default.read_timeout, 300);
        assert_eq!(default.gzip_types, None);
        assert_eq!(default.static_files, None);
        let all = nginx(&[
            ("STATIC_FILES_PATH", "/static/"),
            ("STATIC_URL_PREFIX", "/public"),
            ("NGINX_READ_TIMEOUT", "60"),
            ("ENABLE_GZIP_COMPRESSION", "yes"),
            ("CC_HTTP_BASIC_AUTH_2", "b:c:d"),
            ("CC_HTTP_BASIC_AUTH", "a:b"),
            ("CC_NGINX_PROXY_BUFFERS", "16  8k"),
            ("CC_NGINX_PROXY_BUFFER_SIZE", "32k"),
            ("UWSGI_INTERCEPT_ERRORS", "true"),
        ]);
        assert_eq!(
            all.static_files,
            Some(StaticFiles {
                path: "static/".into(),
                prefix: "/public".into()
            })
        );
        assert_eq!(all.read_timeout, 60);
        assert_eq!(all.gzip_types.as_deref(), Some(GZIP_TYPES));
        assert_eq!(
            all.basic_auth_env,
            ["CC_HTTP_BASIC_AUTH", "CC_HTTP_BASIC_AUTH_2"]
        );
        assert_eq!(all.proxy_buffers.as_deref(), Some("16 8k"));
        assert_eq!(all.proxy_buffer_size.as_deref(), Some("32k"));
        assert!(all.intercept_errors);
        let types = nginx(&[
            ("ENABLE_GZIP_COMPRESSION", "on"),
            ("GZIP_TYPES", "text/html"),
        ]);
        assert_eq!(types.gzip_types.as_deref(), Some("text/html"));
        // One of the two static variables: a warning, no static files.
        let half = settings(&[("STATIC_FILES_PATH", "static")]).unwrap();
        assert_eq!(half.legacy.nginx.static_files, None);
        assert!(half.warnings[0].starts_with("static files need both"));
    }

    #[test]
    fn bad_values_name_the_variable_and_what_is_valid() {
        for (name, value) in [
            ("CC_PYTHON_VERSION", "3.x"),
            ("CC_PYTHON_VERSION", "4"),
            ("CC_PYTHON_BACKEND", "waitress"),
            ("HARAKIRI", "0"),
            ("NGINX_READ_TIMEOUT", "5m"),
            ("STATIC_URL_PREFIX", "public"),
            ("CC_NGINX_PROXY_BUFFER_SIZE", "16k;"),
            ("GZIP_TYPES", "text/html;"),
            ("CC_HTTP_BASIC_AUTH", "nopassword"),
            ("CC_HTTP_BASIC_AUTH", "admin:pw\nmallory:evil"),
            ("CC_HTTP_BASIC_AUTH_3", ":pw"),
            ("CC_PIP_REQUIREMENTS_FILE", "missing.txt"),
        ] {
            let vars = [
                ("CC_PYTHON_MODULE", "app:app"),
                ("STATIC_FILES_PATH", "static"),
                ("ENABLE_GZIP_COMPRESSION", "true"),
                (name, value),
            ];
            match settings(&vars) {
                Err(DetectError::Invalid { variable, .. }) => assert_eq!(variable, name),
                Err(other) => panic!("{name}={value}: {other}"),
                Ok(_) => panic!("{name}={value} was accepted"),
            }
        }
    }

    /// A newline in the file's name would add lines to what is written from it (a
    /// Containerfile's `RUN --mount`): refused, even when such a file exists.
    #[test]
    fn a_requirements_file_name_with_a_control_character_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["req.txt\nRUN touch pwned", "req\t.txt", "req\u{85}.txt"] {
            std::fs::write(dir.path().join(name), "").unwrap();
            let Err(err) = legacy(
                dir.path(),
                &env(&[("CC_PIP_REQUIREMENTS_FILE", name)]),
                None,
                9000,
                None,
            ) else {
                panic!("{name:?} was accepted");
            };
            let shown = name.escape_default().to_string();
            assert_eq!(
                err,
                DetectError::Invalid {
                    variable: "CC_PIP_REQUIREMENTS_FILE".into(),
                    value: shown.clone(),
                    valid: "a file from the application's root, its name without control characters (newline, tab, ...)".into(),
                }
            );
            assert!(!err.to_string().contains('\n'), "one line: {err}");
        }
    }

    /// A pair is refused without its value, which is a secret.
    #[test]
    fn a_bad_pair_is_not_shown() {
        let Err(err) = settings(&[
            ("CC_PYTHON_MODULE", "app:app"),
            ("CC_HTTP_BASIC_AUTH", "admin:pw\nmallory:evil"),
        ]) else {
            panic!("a line break in a pair was accepted");
        };
        let text = err.to_string();
        assert!(
            text.starts_with("CC_HTTP_BASIC_AUTH: `***` is not valid (it holds a line break, which would start another user; expected a `login:password` pair on one line"),
            "{text}"
        );
        assert!(
            !text.contains("evil") && !text.contains("mallory"),
            "{text}"
        );
    }

    #[test]
    fn no_requirements_says_what_legacy_mode_does_not_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pyproject.toml"), "").unwrap();
        std::fs::write(dir.path().join("Pipfile"), "").unwrap();
        let plan = legacy(dir.path(), &env(&[]), None, 9000, None).unwrap();
        assert_eq!(plan.legacy.requirements, None);
        assert!(plan.reasons[0].starts_with("no requirements.txt: pip installs nothing; pyproject.toml, Pipfile found, but legacy mode installs from requirements.txt only (no pyproject.toml, Pipfile or Poetry support)"), "{:?}", plan.reasons);
        // A requirements file named elsewhere.
        std::fs::create_dir(dir.path().join("config")).unwrap();
        std::fs::write(dir.path().join("config/prod.txt"), "").unwrap();
        let named = legacy(
            dir.path(),
            &env(&[("CC_PIP_REQUIREMENTS_FILE", "/config/prod.txt")]),
            None,
            9000,
            None,
        )
        .unwrap();
        assert_eq!(
            named.legacy.requirements.as_deref(),
            Some("config/prod.txt")
        );
        assert!(named.reasons.is_empty());
    }

    /// Every variable of the table is read by this module (STATIC_WEBROOT, read by nothing,
    /// was in it), and the numbered basic-auth pairs count as read.
    #[test]
    fn the_table_of_legacy_variables_is_what_this_module_reads() {
        let source = include_str!("legacy.rs");
        let code = &source[..source.find("#[cfg(test)]").unwrap()];
        let table_end = code.find("pub fn reads").unwrap();
        for name in READS {
            let quoted = format!("\"{name}\"");
            assert!(
                code[table_end..].contains(&quoted),
                "{name} is in READS but never read"
            );
        }
        assert!(reads("CC_HTTP_BASIC_AUTH_2") && reads("CC_PYTHON_MODULE"));
        assert!(
            !reads("CC_HTTP_BASIC_AUTH_")
                && !reads("CC_HTTP_BASIC_AUTH_x")
                && !reads("STATIC_WEBROOT")
        );
    }
}
