//! `export containerfile`: the image the manifests run, built the way uv's Docker guide
//! recommends: the dependencies alone first (`uv sync --locked --no-install-project`, the
//! lockfile bind-mounted, the uv cache in a cache mount), so that an unchanged `uv.lock`
//! reuses that layer; then the app, and `uv sync --locked` again. The build hooks run at
//! their places; the image holds Varnish when a hop needs it, and this workspace's
//! `launcher`, `healthcheck` and `otoroshi-challenge` (copied into the build context by
//! `scripts/image`, under `.uvdeploy/bin`).

use crate::kubernetes::APP_DIR;
use plan::{Env, Plan};

/// An image with Python and uv, as uv's Docker guide shows: no interpreter is downloaded at
/// run time.
pub const DEFAULT_BASE: &str = "ghcr.io/astral-sh/uv:python3.12-bookworm-slim";

pub fn render(plan: &Plan, base: &str, env: &Env) -> String {
    let no_dev = if plan.build.argv.iter().any(|a| a == "--no-dev") {
        " --no-dev"
    } else {
        ""
    };
    let needs_varnish = plan
        .hops
        .iter()
        .flatten()
        .any(|h| h.name == "varnish" || h.name == "block");
    let hook = |name: &str| {
        env.non_empty(name).map(|command| {
            format!(
                "# {name}\nRUN {}\n",
                serde_json::to_string(&["/bin/sh", "-c", command]).expect("strings serialize")
            )
        })
    };
    let mut out = format!(
        "# syntax=docker/dockerfile:1\n\
         # The image of this deployment, rendered by `export containerfile`; build it with\n\
         # `scripts/image APP_DIR`.\n\
         FROM {base}\n\
         ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never\n"
    );
    if needs_varnish {
        out.push_str(
            "# The chain has a Varnish hop: varnishd, unless the base image has it already.\n\
             RUN command -v varnishd >/dev/null || (apt-get update \\\n    \
             && apt-get install -y --no-install-recommends varnish \\\n    \
             && rm -rf /var/lib/apt/lists/*)\n",
        );
    }
    out.push_str(&format!(
        "# uvdeploy's launcher, healthcheck (the probes) and otoroshi-challenge.\n\
         COPY .uvdeploy/bin/ /usr/local/bin/\n\
         WORKDIR {APP_DIR}\n\
         # The dependencies alone: an unchanged uv.lock reuses this layer.\n\
         RUN --mount=type=cache,target=/root/.cache/uv \\\n    \
         --mount=type=bind,source=uv.lock,target={APP_DIR}/uv.lock \\\n    \
         --mount=type=bind,source=pyproject.toml,target={APP_DIR}/pyproject.toml \\\n    \
         uv sync --locked --no-install-project{no_dev}\n\
         COPY . {APP_DIR}\n\
         RUN rm -rf {APP_DIR}/.uvdeploy\n"
    ));
    out.extend(hook("CC_PRE_BUILD_HOOK"));
    out.push_str(&format!(
        "RUN --mount=type=cache,target=/root/.cache/uv \\\n    uv sync --locked{no_dev}\n"
    ));
    out.extend(hook("CC_POST_BUILD_HOOK"));
    let command = match plan.run.as_ref() {
        Some(run) => match &run.argv {
            Some(argv) => argv.clone(),
            None => plan::command::shell_argv(&run.command),
        },
        None => Vec::new(),
    };
    out.push_str(&format!(
        "ENV PATH=\"{APP_DIR}/.venv/bin:$PATH\" PORT={port}\n\
         EXPOSE {port}\n\
         CMD {}\n",
        serde_json::to_string(&command).expect("strings serialize"),
        port = plan.ports.app,
    ));
    out
}
