//! `plan-export containerfile`: the image the manifests run, built the way uv's Docker guide
//! recommends: the dependencies alone first (`uv sync --locked --no-install-project`, the
//! lockfile bind-mounted, the uv cache in a cache mount), so that an unchanged `uv.lock`
//! reuses that layer; then the app, and `uv sync --locked` again. The build hooks run at
//! their places; the image holds Varnish when a hop needs it, and this workspace's
//! `launcher`, `healthcheck` and `otoroshi-challenge` (from a build context of their own,
//! `uvdeploy-tools`, which `scripts/image` gives: `--build-context uvdeploy-tools=DIR`, so
//! that they never enter the app's directory).
//!
//! The app's files are root's, as the build left them; the image runs as a user of its own
//! (not root, no write access to them), with a `HEALTHCHECK` that runs `healthcheck`.

use crate::kubernetes::{health_check_command, APP_DIR, APP_UID, TMP_DIR};
use plan::secret::{holds_a_secret, is_secret_variable};
use plan::{Env, Legacy, Mode, Plan};

/// An image with Python and uv, as uv's Docker guide shows: no interpreter is downloaded at
/// run time.
pub const DEFAULT_BASE: &str = "ghcr.io/astral-sh/uv:python3.12-bookworm-slim";

pub fn render(plan: &Plan, base: &str, env: &Env) -> String {
    if let Some(legacy) = plan.legacy.as_ref().filter(|_| plan.mode == Mode::Legacy) {
        return render_legacy(plan, legacy, base, env);
    }
    let no_dev = if plan.build.argv.iter().any(|a| a == "--no-dev") {
        " --no-dev"
    } else {
        ""
    };
    let hook = |name: &str| hook(name, env);
    let mut out = format!(
        "# syntax=docker/dockerfile:1\n\
         # The image of this deployment, rendered by `plan-export containerfile`; build it with\n\
         # `scripts/image APP_DIR`.\n\
         FROM {base}\n\
         ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never\n"
    );
    out.push_str(&varnish(plan));
    out.push_str(&app_user());
    out.push_str(&format!(
        "{tools}\
         WORKDIR {APP_DIR}\n\
         # The dependencies alone: an unchanged uv.lock reuses this layer.\n\
         RUN --mount=type=cache,target=/root/.cache/uv \\\n    \
         --mount=type=bind,source=uv.lock,target={APP_DIR}/uv.lock \\\n    \
         --mount=type=bind,source=pyproject.toml,target={APP_DIR}/pyproject.toml \\\n    \
         uv sync --locked --no-install-project{no_dev}\n\
         COPY . {APP_DIR}\n",
        tools = tools(),
    ));
    out.extend(hook("CC_PRE_BUILD_HOOK"));
    out.push_str(&format!(
        "RUN --mount=type=cache,target=/root/.cache/uv \\\n    uv sync --locked{no_dev}\n"
    ));
    out.extend(hook("CC_POST_BUILD_HOOK"));
    // `uv run` at run time finds the environment the build made: no sync (the app's files
    // are not the user's to change), uv's cache in the writable /tmp.
    out.push_str(&format!(
        "ENV PATH=\"{APP_DIR}/.venv/bin:$PATH\" PORT={port} UV_NO_SYNC=1 UV_CACHE_DIR={TMP_DIR}/uv-cache\n",
        port = plan.ports.app,
    ));
    out.push_str(&run_as_the_app(plan));
    out
}

/// The user every process of the image runs as: not root, with no write access to the app's
/// files (root's). Created at the start, so that the app's layers do not change with it.
fn app_user() -> String {
    format!(
        "# The app's user: not root; the app's files stay root's, read-only to it.\n\
         RUN groupadd --system --gid {APP_UID} app \\\n    \
         && useradd --system --uid {APP_UID} --gid {APP_UID} --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app\n"
    )
}

/// The end of every image: its user, its health check, its port and its command.
fn run_as_the_app(plan: &Plan) -> String {
    let port = plan.ports.app;
    let check = match plan.legacy.as_ref().and_then(|l| l.backend) {
        // uWSGI speaks its own protocol, not HTTP (Nginx, a sidecar in the pod, translates):
        // the image alone can only ask whether its port accepts.
        Some(plan::Backend::Uwsgi) if plan.mode == Mode::Legacy => serde_json::to_string(&[
            format!("{APP_DIR}/.venv/bin/python"),
            "-c".into(),
            format!("import socket; socket.create_connection(('127.0.0.1', {port}), 5).close()"),
        ]),
        _ => serde_json::to_string(&health_check_command(plan, port)),
    }
    .expect("strings serialize");
    format!(
        "USER {APP_UID}:{APP_UID}\n\
         HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD {check}\n\
         EXPOSE {port}\n\
         CMD {}\n",
        command(plan),
    )
}

/// The build context that holds uvdeploy's own tools (`scripts/image` gives it).
pub const TOOLS_CONTEXT: &str = "uvdeploy-tools";

/// uvdeploy's own tools in the image, from their own build context.
fn tools() -> String {
    format!(
        "# uvdeploy's launcher, healthcheck (the probes) and otoroshi-challenge, from the build\n\
         # context {TOOLS_CONTEXT} (`--build-context {TOOLS_CONTEXT}=DIR`).\n\
         COPY --from={TOOLS_CONTEXT} . /usr/local/bin/\n"
    )
}

/// Varnish in the image when a hop needs varnishd.
fn varnish(plan: &Plan) -> String {
    let needed = plan
        .hops
        .iter()
        .flatten()
        .any(|h| h.kind().is_some_and(plan::HopKind::runs_varnishd));
    if needed {
        install_unless("varnishd", "Varnish hop: varnishd", "varnish")
    } else {
        String::new()
    }
}

/// The run command as the image runs it (JSON exec form), the plan's copy of the app made
/// the image's `/app`.
fn command(plan: &Plan) -> String {
    let app_dir = plan.app_dir.display().to_string();
    let words: Vec<String> = match plan.run.as_ref() {
        Some(run) => match &run.argv {
            Some(argv) => argv.clone(),
            None => process::command::shell_argv(&run.command),
        },
        None => Vec::new(),
    }
    .iter()
    .map(|w| w.replace(&app_dir, APP_DIR))
    .collect();
    // A secret the plan names (`${{NAME}}`) is the container's variable NAME at run time
    // (the pod's Secret): the shell expands it, since the exec form expands nothing.
    let words = if !words.iter().any(|w| w.contains("${{")) {
        words
    } else if process::command::shell_stays(&words) || words.len() == 3 && words[0] == "/bin/sh" {
        vec![
            words[0].clone(),
            words[1].clone(),
            plan::secret::as_shell_variables(&words[2]),
        ]
    } else {
        let script = format!("exec {}", shell_words::join(&words));
        vec![
            "/bin/sh".into(),
            "-c".into(),
            plan::secret::as_shell_variables(&script),
        ]
    };
    serde_json::to_string(&words).expect("strings serialize")
}

/// The build hooks, which the image's build runs.
const BUILD_HOOKS: [&str; 2] = ["CC_PRE_BUILD_HOOK", "CC_POST_BUILD_HOOK"];

/// Where a build secret is mounted while one `RUN` runs (the file is in no layer).
pub const SECRETS_DIR: &str = "/run/secrets";

/// The secret variables (by name or value) a hook command uses: written in it literally
/// (however a shell spells it), or read by it (`$NAME`, `${NAME}`).
fn secrets_used(command: &str, env: &Env) -> Vec<String> {
    env.iter()
        .filter(|(k, v)| is_secret_variable(k, v))
        .filter(|(k, v)| {
            let one: Env = [(*k, *v)].into_iter().collect();
            holds_a_secret(command, &one)
                || command.contains(&format!("${k}"))
                || command.contains(&format!("${{{k}}}"))
        })
        .map(|(k, _)| k.to_string())
        .collect()
}

/// The secrets the image's build needs (its hooks use them), each to be given to the build
/// as a build secret of that id (`podman build --secret id=NAME,src=FILE`).
pub fn build_secrets(env: &Env) -> Vec<String> {
    let mut names: Vec<String> = BUILD_HOOKS
        .iter()
        .filter_map(|hook| env.non_empty(hook))
        .flat_map(|command| secrets_used(command, env))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// A build hook as a RUN step, when it is set. A secret it uses comes from a build secret
/// mount, read into its variable for that step only: its value is never in the
/// Containerfile, nor in the image's history (a value written in the hook becomes a
/// reference to the variable).
fn hook(name: &str, env: &Env) -> Option<String> {
    env.non_empty(name).map(|command| {
        let used = secrets_used(command, env);
        if used.is_empty() {
            return format!(
                "# {name}\nRUN {}\n",
                serde_json::to_string(&["/bin/sh", "-c", command]).expect("strings serialize")
            );
        }
        let only: Env = env
            .iter()
            .filter(|(k, _)| used.iter().any(|u| u == k))
            .collect();
        let hidden = plan::secret::hide_in_shell(command, &only);
        let script = plan::secret::as_shell_variables(&hidden);
        let reads: String = used
            .iter()
            .map(|k| format!("{k}=$(cat {SECRETS_DIR}/{k}) && export {k} && "))
            .collect();
        let mounts: String = used
            .iter()
            .map(|k| format!("--mount=type=secret,id={k} "))
            .collect();
        format!(
            "# {name} (with the build secrets {})\nRUN {mounts}{}\n",
            used.join(", "),
            serde_json::to_string(&["/bin/sh", "-c", &format!("{reads}{script}")])
                .expect("strings serialize")
        )
    })
}

/// Debian's `packages`, unless the base image has `program` already.
fn install_unless(program: &str, why: &str, packages: &str) -> String {
    format!(
        "# The chain has a {why}, unless the base image has it already.\n\
         RUN command -v {program} >/dev/null || (apt-get update \\\n    \
         && apt-get install -y --no-install-recommends {packages} \\\n    \
         && rm -rf /var/lib/apt/lists/*)\n"
    )
}

/// Legacy mode's image, as the platform builds it: Nginx and uWSGI from Debian, a venv of the
/// Python `CC_PYTHON_VERSION` names, pip on the requirements alone first (with the file
/// bind-mounted and pip's cache in a cache mount, so that unchanged requirements reuse the
/// layer), then the app, `setup.py GOAL` and the build hooks.
fn render_legacy(plan: &Plan, legacy: &Legacy, base: &str, env: &Env) -> String {
    let python = format!("python{}", legacy.python_version);
    let mut out = format!(
        "# syntax=docker/dockerfile:1\n\
         # The image of this deployment (legacy mode), rendered by `plan-export containerfile`;\n\
         # build it with `scripts/image APP_DIR`.\n\
         FROM {base}\n\
         ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1\n"
    );
    out.push_str(&varnish(plan));
    out.push_str(&install_unless(
        "nginx",
        "Nginx hop (legacy mode): Nginx",
        "nginx-light",
    ));
    if legacy.backend == Some(plan::Backend::Uwsgi) {
        out.push_str(&install_unless(
            "uwsgi",
            "uWSGI app server (the platform provides it): uWSGI",
            "uwsgi-core uwsgi-plugin-python3",
        ));
    }
    out.push_str(&app_user());
    out.push_str(&format!(
        "{tools}\
         WORKDIR {APP_DIR}\n\
         RUN {python} -m venv {APP_DIR}/.venv\n",
        tools = tools(),
    ));
    // pip in exec form (JSON): the file's name is one argument, whatever its characters.
    let pip = |file: &str| {
        serde_json::to_string(&[
            format!("{APP_DIR}/.venv/bin/python"),
            "-m".into(),
            "pip".into(),
            "install".into(),
            "-r".into(),
            format!("{APP_DIR}/{file}"),
        ])
        .expect("strings serialize")
    };
    // A name a `--mount` option can hold as it is (its options are comma-separated
    // `key=value` pairs): the requirements alone first; any other name after the app.
    let (early, late) = match &legacy.requirements {
        Some(file) if mountable(file) => (Some(file), None),
        other => (None, other.as_ref()),
    };
    if let Some(file) = early {
        out.push_str(&format!(
            "# The requirements alone: an unchanged {file} reuses this layer.\n\
             RUN --mount=type=cache,target=/root/.cache/pip \\\n    \
             --mount=type=bind,source={file},target={APP_DIR}/{file} \\\n    \
             {}\n",
            pip(file)
        ));
    }
    out.push_str(&format!("COPY . {APP_DIR}\n"));
    if let Some(file) = late {
        out.push_str(&format!(
            "# The requirements (a name a bind mount cannot take as it is: installed with the app).\n\
             RUN --mount=type=cache,target=/root/.cache/pip {}\n",
            pip(file)
        ));
    }
    out.extend(hook("CC_PRE_BUILD_HOOK", env));
    if let Some(goal) = &legacy.setup_py_goal {
        out.push_str(&format!(
            "RUN {}\n",
            serde_json::to_string(&[&format!("{APP_DIR}/.venv/bin/python"), "setup.py", goal])
                .expect("strings serialize")
        ));
    }
    out.extend(hook("CC_POST_BUILD_HOOK", env));
    out.push_str(&format!(
        "ENV PATH=\"{APP_DIR}/.venv/bin:$PATH\" VIRTUAL_ENV={APP_DIR}/.venv PORT={port}\n",
        port = plan.ports.app,
    ));
    out.push_str(&run_as_the_app(plan));
    out
}

/// A path a `--mount=type=bind,source=PATH` option takes as it is: letters, digits and
/// `._-/+@`, no `..`.
fn mountable(path: &str) -> bool {
    !path.is_empty()
        && !path.split('/').any(|part| part == "..")
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/+@".contains(c))
}
