//! Request Flow: the plan's middlewares become `hops`, chained from the public port to the
//! app: with two middlewares 8080 → 8081 → 9000, with three 8080 → 8081 → 8082 → 9000. Each
//! hop carries what `launcher --hop` needs: argv, environment (secrets by name), and the
//! configuration files rendered for it (Varnish VCL, Redirection.io agent configuration).
//! The renderers take a [`Layout`]: `flowctl` renders for this machine's, and `plan-export
//! kubernetes` calls the same ones ([`hops`]) with the pod's.

pub mod layout;
pub mod nginx;
pub mod redirectionio;
pub mod text;
pub mod varnish;

pub use layout::Layout;
use plan::report::{exit, Failure};
use plan::{EnvValue, Hop, HopFile, HopPorts, LayoutError, Legacy, Middleware, Mode, Plan};
use process::command::shell_argv;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlowError {
    #[error("the state directory `{state_dir}` is inside the application `{app_dir}`, which uvdeploy never modifies")]
    StateDirInsideApp {
        state_dir: PathBuf,
        app_dir: PathBuf,
    },
    #[error("cannot create a state directory: {0}")]
    StateDir(String),
    #[error("the Varnish configuration `{vcl}` resolves outside the application `{app_dir}`")]
    VclOutsideApp { vcl: String, app_dir: PathBuf },
    #[error("cannot read the Varnish configuration `{path}`: {reason}")]
    ReadVcl { path: PathBuf, reason: String },
    #[error("the Varnish configuration `{file}` does not compile")]
    VclCompile { file: String, message: String },
    #[error("STATIC_FILES_PATH `{path}` resolves outside the application `{app_dir}`")]
    StaticOutsideApp { path: String, app_dir: PathBuf },
    #[error("the Nginx configuration rendered from the plan does not pass `nginx -t`")]
    NginxConfig { message: String },
    #[error("the plan is in legacy mode but has no legacy settings (make it again with `detect`)")]
    NoLegacySettings,
    #[error("the Varnish hop on port {listen} has no rendered VCL in the plan (make it again with `flowctl`)")]
    NoVcl { listen: u16 },
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

impl Failure for FlowError {
    fn exit_code(&self) -> u8 {
        exit::USAGE
    }
    fn details(&self) -> Vec<String> {
        match self {
            FlowError::VclCompile { message, .. } | FlowError::NginxConfig { message } => {
                message.lines().map(String::from).collect()
            }
            _ => Vec::new(),
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            FlowError::StateDirInsideApp { .. } => Some("choose another with `--state-dir`".into()),
            FlowError::Layout(e) => e.hint(),
            _ => None,
        }
    }
}

/// How to plan the hops.
#[derive(Debug, Clone)]
pub struct FlowOptions {
    /// Where rendered files and working directories go: outside the app, readable by the
    /// `varnish` user.
    pub state_dir: PathBuf,
    /// `varnishd`, when installed: used in argv and to compile the VCL.
    pub varnishd: Option<PathBuf>,
    /// How to run the workspace's Otoroshi challenge proxy.
    pub otoroshi_challenge: String,
    /// `nginx`, when installed: used in argv and to check the configuration (legacy mode).
    pub nginx: Option<PathBuf>,
    /// Whether the hops run as root (Nginx's workers then stay root: see [`Layout`]).
    pub as_root: bool,
}

impl FlowOptions {
    /// The programs as the hops' argv names them: where this machine has them.
    pub fn programs(&self) -> Programs {
        let found = |program: &Option<PathBuf>, name: &str| {
            program
                .as_ref()
                .map_or_else(|| name.to_string(), |p| p.display().to_string())
        };
        Programs {
            varnishd: found(&self.varnishd, "varnishd"),
            nginx: found(&self.nginx, "nginx"),
            otoroshi_challenge: self.otoroshi_challenge.clone(),
        }
    }
}

/// The programs the hops run, as their argv names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Programs {
    pub varnishd: String,
    pub nginx: String,
    pub otoroshi_challenge: String,
}

/// Adds `hops` to the plan (replacing any), on the ports the plan lays out, for this
/// machine's layout. Returns notes for the user (a VCL line kept, ...). Nothing is probed:
/// whether a port is free is checked by `launcher`, just before each process binds it.
pub fn plan_hops(plan: &mut Plan, options: &FlowOptions) -> Result<Vec<String>, FlowError> {
    let state_dir = resolved(&options.state_dir);
    if state_dir.starts_with(&plan.app_dir) {
        return Err(FlowError::StateDirInsideApp {
            state_dir,
            app_dir: plan.app_dir.clone(),
        });
    }
    let layout = Layout::local(&plan.app_dir, &options.state_dir, options.as_root);
    let chain = plan.ports.chain(&plan.request_flow, plan.mode)?;
    if plan.mode == Mode::Legacy {
        let nginx = *chain.last().expect("legacy chains end with Nginx");
        check_nginx(plan, nginx, &layout, options)?;
    }
    let mut notes = Vec::new();
    let vcls = user_vcls(plan, &chain, options, &mut notes)?;
    plan.hops = Some(hops(plan, &layout, &options.programs(), &vcls)?);
    plan.state_dir = Some(options.state_dir.clone());
    Ok(notes)
}

/// The chain's hops on the ports the plan lays out, rendered for `layout` (this machine's,
/// or a pod's), running `programs`. `vcls` holds the rendered VCL of each Varnish middleware,
/// in chain order: [`plan_hops`] renders them from the app's files, and a plan's Varnish
/// hops hold them (a VCL names no path).
pub fn hops(
    plan: &Plan,
    layout: &Layout,
    programs: &Programs,
    vcls: &[String],
) -> Result<Vec<Hop>, FlowError> {
    let mut chain = plan.ports.chain(&plan.request_flow, plan.mode)?;
    // In legacy mode, Nginx is the last hop, in front of the app server.
    let nginx = match plan.mode {
        Mode::Legacy => Some(nginx_hop(
            plan,
            chain.pop().expect("legacy chains end with Nginx"),
            layout,
            programs,
        )?),
        Mode::Uv => None,
    };
    let mut vcls = vcls.iter();
    let mut hops: Vec<Hop> = if plan.request_flow.blocked {
        vec![block_hop(plan, chain[0], layout, programs)]
    } else {
        plan.request_flow
            .middlewares
            .iter()
            .zip(chain)
            .map(|(middleware, ports)| {
                middleware_hop(middleware, ports, layout, programs, &mut vcls)
            })
            .collect::<Result<_, _>>()?
    };
    hops.extend(nginx);
    Ok(hops)
}

/// The user's VCL of each Varnish middleware made whole for its place in `chain` (read from
/// the app, never outside it; compiled with `varnishd -C` when varnishd is here), in chain
/// order. A blocked flow runs none.
fn user_vcls(
    plan: &Plan,
    chain: &[HopPorts],
    options: &FlowOptions,
    notes: &mut Vec<String>,
) -> Result<Vec<String>, FlowError> {
    if plan.request_flow.blocked {
        return Ok(Vec::new());
    }
    let mut vcls = Vec::new();
    for (middleware, ports) in plan.request_flow.middlewares.iter().zip(chain) {
        let Middleware::Varnish { vcl, .. } = middleware else {
            continue;
        };
        // detect checked it, but the plan may come from elsewhere: read nothing outside
        // the app (a link to another file would have varnishd quote its lines).
        let source = resolved(&plan.app_dir.join(vcl));
        if !source.starts_with(&plan.app_dir) {
            return Err(FlowError::VclOutsideApp {
                vcl: vcl.clone(),
                app_dir: plan.app_dir.clone(),
            });
        }
        let user_vcl = std::fs::read_to_string(&source).map_err(|e| FlowError::ReadVcl {
            path: source.clone(),
            reason: e.to_string(),
        })?;
        let (rendered, vcl_notes) = varnish::render_vcl(&user_vcl, vcl, ports.forward);
        notes.extend(vcl_notes);
        if let Some(varnishd) = &options.varnishd {
            varnish::compile(varnishd, &rendered, vcl).map_err(|message| {
                FlowError::VclCompile {
                    file: vcl.clone(),
                    message,
                }
            })?;
        }
        vcls.push(rendered);
    }
    Ok(vcls)
}

/// `path` with its symbolic links resolved, as far as it exists (the rest appended as is).
fn resolved(path: &Path) -> PathBuf {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = path.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |acc, part| acc.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return path,
        }
    }
}

/// Whether the chain keeps anything in a state directory: Varnish's VCL and working
/// directory (`block` too), Redirection.io's agent configuration, Nginx's. The Otoroshi
/// challenge and a custom proxy keep nothing there, and an app alone has no hop at all.
pub fn needs_state_dir(plan: &Plan) -> bool {
    plan.mode == Mode::Legacy
        || plan.request_flow.blocked
        || plan.request_flow.middlewares.iter().any(|m| {
            !matches!(
                m,
                Middleware::OtoroshiChallenge { .. } | Middleware::Custom { .. }
            )
        })
}

/// A new private state directory under the temp dir, for a plan made by hand without
/// `--state-dir` (`scripts/deploy` makes its own): unpredictable, so that no other user can
/// prepare it, and open for reading, since `varnishd` reads its files as its own user.
pub fn new_state_dir(plan: &Plan) -> Result<PathBuf, FlowError> {
    let name = plan
        .app_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "app".into());
    plan::io::new_state_dir(&name, &std::env::temp_dir())
        .map_err(|e| FlowError::StateDir(e.to_string()))
}

fn middleware_hop<'a>(
    middleware: &Middleware,
    HopPorts { listen, forward }: HopPorts,
    layout: &Layout,
    programs: &Programs,
    vcls: &mut impl Iterator<Item = &'a String>,
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
                programs.otoroshi_challenge.clone(),
                "--listen".into(),
                listen.to_string(),
                "--forward".into(),
                forward.to_string(),
            ];
            hop.env = BTreeMap::from([from_env(secret_env)]);
        }
        Middleware::Varnish { storage_size, .. } => {
            let vcl = vcls.next().ok_or(FlowError::NoVcl { listen })?;
            hop.files
                .push(HopFile::new(vcl_path(listen, layout), vcl.clone()));
            hop.argv = varnishd_argv(listen, storage_size, layout, programs);
        }
        Middleware::Redirectionio {
            project_key_env,
            instance_name,
        } => {
            let config = redirectionio::agent_config(
                instance_name,
                project_key_env,
                listen,
                forward,
                &redirectionio::datadir(layout, listen),
            );
            hop.files
                .push(HopFile::new(redirectionio::config(layout, listen), config));
            hop.argv = redirectionio::argv(layout, listen);
            hop.env = BTreeMap::from([from_env(project_key_env)]);
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

/// The hop's variable `name`, taken from the launcher's environment (a secret).
fn from_env(name: &str) -> (String, EnvValue) {
    let value = EnvValue::FromEnv {
        from_env: name.to_string(),
    };
    (name.to_string(), value)
}

/// What Nginx's configuration is rendered from.
fn nginx_site<'a>(legacy: &'a Legacy, ports: HopPorts, layout: &'a Layout) -> nginx::Site<'a> {
    nginx::Site {
        nginx: &legacy.nginx,
        layout,
        // `None` when CC_RUN_COMMAND replaced the app server: HTTP then.
        backend: legacy.backend,
        listen: ports.listen,
        forward: ports.forward,
    }
}

/// Nginx's static files are the app's, and its configuration passes `nginx -t` when Nginx
/// is here.
fn check_nginx(
    plan: &Plan,
    ports: HopPorts,
    layout: &Layout,
    options: &FlowOptions,
) -> Result<(), FlowError> {
    let legacy = plan.legacy.as_ref().ok_or(FlowError::NoLegacySettings)?;
    if let Some(files) = &legacy.nginx.static_files {
        // Nginx serves what it finds there: nothing outside the app.
        let real = resolved(&plan.app_dir.join(&files.path));
        if !real.starts_with(&plan.app_dir) {
            return Err(FlowError::StaticOutsideApp {
                path: files.path.clone(),
                app_dir: plan.app_dir.clone(),
            });
        }
    }
    if let Some(program) = &options.nginx {
        nginx::check(program, &nginx_site(legacy, ports, layout))
            .map_err(|message| FlowError::NginxConfig { message })?;
    }
    Ok(())
}

/// Nginx in front of the app server (legacy mode): its configuration rendered from the
/// plan's legacy settings, and its password file, written from the environment at start.
fn nginx_hop(
    plan: &Plan,
    ports: HopPorts,
    layout: &Layout,
    programs: &Programs,
) -> Result<Hop, FlowError> {
    let legacy = plan.legacy.as_ref().ok_or(FlowError::NoLegacySettings)?;
    let site = nginx_site(legacy, ports, layout);
    let mut files = vec![HopFile::new(
        nginx::conf(layout, ports.listen),
        nginx::render(&site),
    )];
    if !legacy.nginx.basic_auth_env.is_empty() {
        files.push(HopFile {
            htpasswd_from_env: legacy.nginx.basic_auth_env.clone(),
            ..HopFile::new(nginx::htpasswd(layout, ports.listen), String::new())
        });
    }
    Ok(Hop {
        name: plan::HopKind::Nginx.name().into(),
        listen: ports.listen,
        forward: Some(ports.forward),
        argv: nginx::argv(&programs.nginx, layout, ports.listen),
        env: legacy
            .nginx
            .basic_auth_env
            .iter()
            .map(|name| from_env(name))
            .collect(),
        files,
    })
}

/// The blocking service on the public port, a real `varnishd` answering `200 OK`.
fn block_hop(plan: &Plan, ports: HopPorts, layout: &Layout, programs: &Programs) -> Hop {
    // Configured health check paths still reach the app, so the verdict stays true.
    let health_paths =
        (!plan.health_check.is_default()).then_some(plan.health_check.paths.as_slice());
    let vcl = varnish::block_vcl(ports.forward, health_paths);
    Hop {
        name: plan::HopKind::Block.name().into(),
        listen: ports.listen,
        forward: health_paths.map(|_| ports.forward),
        argv: varnishd_argv(ports.listen, "16M", layout, programs),
        env: BTreeMap::new(),
        files: vec![HopFile::new(vcl_path(ports.listen, layout), vcl)],
    }
}

fn varnishd_argv(
    listen: u16,
    storage_size: &str,
    layout: &Layout,
    programs: &Programs,
) -> Vec<String> {
    varnish::varnishd_argv(
        &programs.varnishd,
        listen,
        &vcl_path(listen, layout),
        storage_size,
        &layout.state(&format!("varnish-{listen}")),
    )
}

fn vcl_path(listen: u16, layout: &Layout) -> PathBuf {
    layout.rendered(&format!("varnish-{listen}.vcl"))
}

/// A daemon (`varnishd`, `nginx`) on PATH or in the sbin directories, which a user's PATH
/// often lacks.
pub fn find_daemon(name: &str, path_var: &str) -> Option<PathBuf> {
    let path = format!("{path_var}:/usr/sbin:/usr/local/sbin");
    which::which_in(name, Some(path), "/").ok()
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
