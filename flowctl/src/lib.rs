//! Request Flow: the plan's middlewares become `hops`, chained from the public port to the
//! app: with two middlewares 8080 → 8081 → 9000, with three 8080 → 8081 → 8082 → 9000. Each
//! hop carries what `launcher --hop` needs: argv, environment (secrets by name), and the
//! configuration files rendered for it (Varnish VCL, Redirection.io agent configuration).

pub mod redirectionio;
pub mod text;
pub mod varnish;

use plan::command::shell_argv;
use plan::{EnvValue, Hop, HopFile, Middleware, Plan, PortSettings, Ports, DEFAULT_APP_PORT};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlowError {
    #[error("the state directory `{state_dir}` is inside the application `{app_dir}`, which uvdeploy never modifies\n\nhint: choose another with `--state-dir`")]
    StateDirInsideApp {
        state_dir: PathBuf,
        app_dir: PathBuf,
    },
    #[error("cannot read the Varnish configuration `{path}`: {reason}")]
    ReadVcl { path: PathBuf, reason: String },
    #[error("the Varnish configuration `{file}` does not compile:\n{message}")]
    VclCompile { file: String, message: String },
    #[error("port {port} ({hop}) is already in use on this machine\n\nhint: stop what listens there, or shift the chain with `--public-port` and `--app-port`")]
    PortInUse { port: u16, hop: String },
    #[error("the app port {app} falls inside the chain of middleware ports {first}..={last}\n\nhint: choose an --app-port outside it")]
    AppPortInChain { app: u16, first: u16, last: u16 },
}

/// How to plan the hops.
#[derive(Debug, Clone)]
pub struct FlowOptions {
    /// Where rendered files and working directories go: outside the app, readable by the
    /// `varnish` user.
    pub state_dir: PathBuf,
    pub public_port: Option<u16>,
    pub app_port: Option<u16>,
    /// Refuse ports that something already listens on.
    pub check_ports: bool,
    /// `varnishd`, when installed: used in argv and to compile the VCL.
    pub varnishd: Option<PathBuf>,
    /// How to run the workspace's Otoroshi challenge proxy.
    pub otoroshi_challenge: String,
}

/// Adds `hops` to the plan (replacing any), with ports shifted as asked. Returns notes for
/// the user (a VCL line kept, ...).
pub fn plan_hops(plan: &mut Plan, options: &FlowOptions) -> Result<Vec<String>, FlowError> {
    if options.state_dir.starts_with(&plan.app_dir) {
        return Err(FlowError::StateDirInsideApp {
            state_dir: options.state_dir.clone(),
            app_dir: plan.app_dir.clone(),
        });
    }
    plan.ports = ports(plan, options);
    let mut notes = Vec::new();
    let hops = if plan.request_flow.blocked {
        vec![block_hop(plan, options)]
    } else {
        let count = plan.request_flow.middlewares.len() as u16;
        if count > 0 {
            let (first, last) = (plan.ports.public, plan.ports.public + count - 1);
            if (first..=last).contains(&plan.ports.app) {
                return Err(FlowError::AppPortInChain {
                    app: plan.ports.app,
                    first,
                    last,
                });
            }
        }
        let mut hops = Vec::new();
        for (i, middleware) in plan.request_flow.middlewares.iter().enumerate() {
            let listen = plan.ports.public + i as u16;
            let forward = if i as u16 + 1 == count {
                plan.ports.app
            } else {
                listen + 1
            };
            hops.push(middleware_hop(
                middleware, listen, forward, plan, options, &mut notes,
            )?);
        }
        hops
    };
    if options.check_ports {
        check_ports_free(&hops, plan)?;
    }
    plan.hops = Some(hops);
    Ok(notes)
}

/// The plan's ports, shifted as asked: the app moves behind the chain when there is one.
fn ports(plan: &Plan, options: &FlowOptions) -> Ports {
    let behind = if plan.ports.app != plan.ports.public {
        plan.ports.app
    } else {
        DEFAULT_APP_PORT
    };
    PortSettings {
        public: options.public_port.unwrap_or(plan.ports.public),
        app: options.app_port.unwrap_or(behind),
    }
    .ports_for(&plan.request_flow)
}

fn middleware_hop(
    middleware: &Middleware,
    listen: u16,
    forward: u16,
    plan: &Plan,
    options: &FlowOptions,
    notes: &mut Vec<String>,
) -> Result<Hop, FlowError> {
    let mut hop = Hop {
        name: middleware.name().to_string(),
        listen,
        forward: Some(forward),
        argv: Vec::new(),
        env: BTreeMap::new(),
        files: Vec::new(),
    };
    match middleware {
        Middleware::OtoroshiChallenge { secret_env } => {
            hop.argv = vec![
                options.otoroshi_challenge.clone(),
                "--listen".into(),
                listen.to_string(),
                "--forward".into(),
                forward.to_string(),
            ];
            hop.env.insert(
                secret_env.clone(),
                EnvValue::FromEnv {
                    from_env: secret_env.clone(),
                },
            );
        }
        Middleware::Varnish { vcl, storage_size } => {
            let source = plan.app_dir.join(vcl);
            let user_vcl = std::fs::read_to_string(&source).map_err(|e| FlowError::ReadVcl {
                path: source.clone(),
                reason: e.to_string(),
            })?;
            let (rendered, vcl_notes) = varnish::render_vcl(&user_vcl, vcl, forward);
            notes.extend(vcl_notes);
            hop.files
                .push(varnish_file(&rendered, vcl, listen, options)?);
            hop.argv = varnishd_argv(listen, storage_size, options);
        }
        Middleware::Redirectionio {
            project_key_env,
            instance_name,
        } => {
            let dir = options.state_dir.join(format!("redirectionio-{listen}"));
            let config = dir.join("agent.yml");
            hop.files.push(HopFile {
                path: config.clone(),
                content: redirectionio::agent_config(
                    instance_name,
                    project_key_env,
                    listen,
                    forward,
                    &dir.join("data"),
                ),
            });
            hop.argv = vec![
                "redirectionio-agent".into(),
                "--config-file".into(),
                config.display().to_string(),
            ];
            hop.env.insert(
                project_key_env.clone(),
                EnvValue::FromEnv {
                    from_env: project_key_env.clone(),
                },
            );
        }
        Middleware::Custom { command } => {
            let command = command
                .replace("@@LISTEN_PORT@@", &listen.to_string())
                .replace("@@FORWARD_PORT@@", &forward.to_string());
            hop.argv = shell_argv(&command);
        }
    }
    Ok(hop)
}

/// The blocking service on the public port, a real `varnishd` answering `200 OK`.
fn block_hop(plan: &Plan, options: &FlowOptions) -> Hop {
    let listen = plan.ports.public;
    // Configured health check paths still reach the app, so the verdict stays true.
    let health_paths =
        (!plan.health_check.is_default()).then_some(plan.health_check.paths.as_slice());
    let vcl = varnish::block_vcl(plan.ports.app, health_paths);
    Hop {
        name: "block".into(),
        listen,
        forward: health_paths.map(|_| plan.ports.app),
        argv: varnishd_argv(listen, "16M", options),
        env: BTreeMap::new(),
        files: vec![HopFile {
            path: vcl_path(listen, options),
            content: vcl,
        }],
    }
}

fn varnishd_argv(listen: u16, storage_size: &str, options: &FlowOptions) -> Vec<String> {
    let varnishd = options
        .varnishd
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "varnishd".into());
    varnish::varnishd_argv(
        &varnishd,
        listen,
        &vcl_path(listen, options),
        storage_size,
        &options.state_dir.join(format!("varnish-{listen}")),
    )
}

fn vcl_path(listen: u16, options: &FlowOptions) -> PathBuf {
    options.state_dir.join(format!("varnish-{listen}.vcl"))
}

/// The rendered VCL as a hop file, compiled first when varnishd is here.
fn varnish_file(
    rendered: &str,
    source: &str,
    listen: u16,
    options: &FlowOptions,
) -> Result<HopFile, FlowError> {
    if let Some(varnishd) = &options.varnishd {
        varnish::compile(varnishd, rendered, source).map_err(|message| FlowError::VclCompile {
            file: source.to_string(),
            message,
        })?;
    }
    Ok(HopFile {
        path: vcl_path(listen, options),
        content: rendered.to_string(),
    })
}

/// Every port of the chain must be free now, so that a deployment does not fail half-started.
fn check_ports_free(hops: &[Hop], plan: &Plan) -> Result<(), FlowError> {
    let mut ports: Vec<(u16, String)> = hops
        .iter()
        .map(|h| (h.listen, format!("hop {}", h.name)))
        .collect();
    ports.push((plan.ports.app, "the app".into()));
    for (port, hop) in ports {
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_err() {
            return Err(FlowError::PortInUse { port, hop });
        }
    }
    Ok(())
}

/// The default state directory: under the temp dir, which every user can traverse (the
/// `varnish` user must read the rendered VCL), one per app and public port.
pub fn default_state_dir(plan: &Plan, public_port: u16) -> PathBuf {
    let name = plan
        .app_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "app".into());
    std::env::temp_dir()
        .join("uvdeploy")
        .join(format!("{name}-{public_port}"))
}

/// The Otoroshi challenge proxy next to this binary (a cargo build puts them together), or
/// on PATH.
pub fn otoroshi_challenge_command(this_exe: Option<&Path>) -> String {
    this_exe
        .and_then(|exe| exe.parent())
        .map(|dir| dir.join("otoroshi-challenge"))
        .filter(|p| p.is_file())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "otoroshi-challenge".into())
}
