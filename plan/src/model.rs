//! The plan's types. Field names are the contract between the tools: add fields, never rename
//! or drop one. Unknown fields are kept (`extra`) so a tool passes on what a newer tool added.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The only plan schema these tools understand.
pub const SCHEMA: u32 = 1;

/// The platform's public port: where the first hop (or the app) listens.
pub const DEFAULT_PUBLIC_PORT: u16 = 8080;
/// Where the app listens when at least one middleware sits in front of it.
pub const DEFAULT_APP_PORT: u16 = 9000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Plan {
    pub schema: u32,
    /// Absolute path of the application (the repository, or its `APP_FOLDER`).
    pub app_dir: PathBuf,
    pub mode: Mode,
    /// Why this mode, one sentence each.
    pub reasons: Vec<String>,
    pub environment: Environment,
    pub build: Build,
    /// `None` when neither run command variable is set (legacy mode only).
    pub run: Option<Run>,
    pub ports: Ports,
    /// Variables that are set but have no effect in this deployment.
    pub ignored: Vec<String>,
    /// Things that will work, but probably not as the user means (one sentence and a fix).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub health_check: HealthCheck,
    pub request_flow: RequestFlow,
    /// What is deployed (the commit, the working tree, or a directory), when `detect` was
    /// given what `checkout` made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// Legacy mode's settings (pip, the app server, Nginx); present in legacy mode only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy: Option<crate::Legacy>,
    /// The processes beside the app (`CC_WORKER_COMMAND`, `CC_WORKER_COMMAND_N`, legacy mode's
    /// Celery), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<crate::Worker>,
    /// The crons of `clevercloud/cron.json`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crons: Vec<crate::cron::Cron>,
    /// The add-ons the deployment runs (`--addon`, one of [`ADDON_KINDS`]): real servers that
    /// uvsupervise starts before the build, their variables given to every process.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addons: Vec<String>,
    /// Added by `flowctl`: where the hops' rendered files and working directories go (absent
    /// when none was named and no hop keeps files there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    /// Added by `flowctl`: one per middleware, in chain order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hops: Option<Vec<Hop>>,
    /// Fields this version does not know, passed on unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Plan {
    /// Brings a plan of an older version of the tools up to date: legacy mode's Celery
    /// workers, once in `legacy.workers`, join `workers`.
    pub fn migrate(&mut self) {
        let Some(legacy) = &mut self.legacy else {
            return;
        };
        for old in std::mem::take(&mut legacy.workers) {
            self.workers.push(crate::Worker {
                command: shell_words::join(&old.argv),
                argv: Some(old.argv),
                name: old.name,
                source: "CC_PYTHON_CELERY_MODULE".into(),
                restart: crate::Restart::default(),
                restart_delay_ms: 1000,
            });
        }
    }

    /// Where the deployment's virtual environment is: `build.venv`, else `APP_DIR/.venv`.
    pub fn venv(&self) -> PathBuf {
        self.build
            .venv
            .clone()
            .unwrap_or_else(|| self.app_dir.join(".venv"))
    }
}

/// What is deployed, as `checkout` copied it: the platform deploys the pushed commit, so
/// that is what a rehearsal deploys unless told otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Source {
    pub kind: SourceKind,
    /// The directory the user named (in the developer's working tree, never written).
    pub origin: PathBuf,
    /// The clean copy, where the build and the app run.
    pub copy: PathBuf,
    /// The commit (short hash) and its subject, in a git work tree with commits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Uncommitted changes (`git status --porcelain` lines): left out of a commit's copy,
    /// included in a working tree's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// The committed tree (`HEAD`), as a push sends it.
    Commit,
    /// The files as they are, tracked and untracked, but what `.gitignore` ignores.
    WorkingTree,
    /// Not in a git work tree: the directory as it is.
    Directory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Uv,
    Legacy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Production,
    Development,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Build {
    pub argv: Vec<String>,
    /// The cache kept between builds (uv's; pip's in legacy mode): what outlives a deployment.
    pub cache_dir: PathBuf,
    /// The deployment's own virtual environment (absolute): `.venv` in the app, or in uv mode
    /// `UV_PROJECT_ENVIRONMENT` when set. Each deployment builds one in its own copy, and no
    /// other deployment writes it; only the caches (`cache_dir`) outlive a deployment. Plans
    /// made before this field mean `APP_DIR/.venv` ([`Plan::venv`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venv: Option<PathBuf>,
    /// Added by `uvbuild` once the build ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<BuildResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BuildResult {
    /// `"ok"` (a failed build prints no plan).
    pub status: String,
    pub duration_ms: u64,
    pub venv: PathBuf,
    /// As the venv's interpreter reports it, e.g. `3.11.7`.
    pub python_version: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RunSource {
    #[serde(rename = "CC_RUN_COMMAND")]
    CcRunCommand,
    #[serde(rename = "CC_PYTHON_UV_RUN_COMMAND")]
    CcPythonUvRunCommand,
    /// Legacy mode: the app server `CC_PYTHON_BACKEND` chose, serving `CC_PYTHON_MODULE`.
    #[serde(rename = "CC_PYTHON_BACKEND")]
    CcPythonBackend,
}

impl RunSource {
    pub fn variable(self) -> &'static str {
        match self {
            RunSource::CcRunCommand => "CC_RUN_COMMAND",
            RunSource::CcPythonUvRunCommand => "CC_PYTHON_UV_RUN_COMMAND",
            RunSource::CcPythonBackend => "CC_PYTHON_BACKEND",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Run {
    pub source: RunSource,
    /// The command as the user wrote it.
    pub command: String,
    /// Its words; `None` when the command needs a shell.
    pub argv: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Ports {
    pub public: u16,
    /// Equal to `public` without middleware.
    pub app: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HealthCheck {
    /// `"CC_HEALTH_CHECK_PATH"`, `"CC_HEALTH_CHECK_PATH_N"` or `"default"`.
    pub source: String,
    pub paths: Vec<String>,
}

impl HealthCheck {
    /// The default check (`/`, nothing configured) is lenient: any answer below 500 passes.
    pub fn is_default(&self) -> bool {
        self.source == "default"
    }
}

/// The ports to plan with: the platform's by default, shifted for tests or a busy machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSettings {
    pub public: u16,
    /// Where the app listens behind middlewares.
    pub app: u16,
}

impl Default for PortSettings {
    fn default() -> Self {
        PortSettings {
            public: DEFAULT_PUBLIC_PORT,
            app: DEFAULT_APP_PORT,
        }
    }
}

impl PortSettings {
    /// The app listens on the public port itself unless something sits in front of it: a
    /// middleware, or in legacy mode Nginx.
    pub fn ports_for(self, flow: &RequestFlow, mode: Mode) -> Ports {
        Ports {
            public: self.public,
            app: if flow.is_proxied() || mode == Mode::Legacy {
                self.app
            } else {
                self.public
            },
        }
    }
}

/// Where one hop of the chain listens, and where it forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HopPorts {
    pub listen: u16,
    pub forward: u16,
}

/// A chain that cannot be laid out on this machine's ports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("a chain of {count} hop(s) from the public port {public} runs past port 65535")]
    PastLastPort { public: u16, count: usize },
    #[error("the app port {app} falls inside the chain of middleware ports {first}..={last}")]
    AppPortInChain { app: u16, first: u16, last: u16 },
}

impl crate::report::Failure for LayoutError {
    fn exit_code(&self) -> u8 {
        crate::report::exit::USAGE
    }
    fn hint(&self) -> Option<String> {
        Some("shift the chain with `--public-port` and `--app-port`".into())
    }
}

impl Ports {
    /// The chain in front of the app, the one layout every tool reads: the first hop on the
    /// public port, each next one on the port after, the last forwarding to the app; `block`
    /// is one hop on the public port (forwarding the health check paths on). In legacy mode
    /// Nginx is the last hop, right in front of the app server: the platform does not say
    /// where Nginx goes when there are middlewares, and the app server stays on the app port,
    /// where `CC_RUN_COMMAND` must listen. The arithmetic is checked: a chain never wraps
    /// past 65535.
    pub fn chain(self, flow: &RequestFlow, mode: Mode) -> Result<Vec<HopPorts>, LayoutError> {
        let nginx = usize::from(mode == Mode::Legacy);
        let count = if flow.blocked {
            1
        } else {
            flow.middlewares.len()
        } + nginx;
        if count == 0 {
            return Ok(Vec::new());
        }
        let past = LayoutError::PastLastPort {
            public: self.public,
            count,
        };
        let last = u16::try_from(count - 1)
            .ok()
            .and_then(|n| self.public.checked_add(n))
            .ok_or(past)?;
        if (self.public..=last).contains(&self.app) {
            return Err(LayoutError::AppPortInChain {
                app: self.app,
                first: self.public,
                last,
            });
        }
        Ok((self.public..=last)
            .map(|listen| HopPorts {
                listen,
                forward: if listen == last { self.app } else { listen + 1 },
            })
            .collect())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequestFlow {
    /// `"auto"`, `"CC_REQUEST_FLOW"`.
    pub source: String,
    pub blocked: bool,
    pub middlewares: Vec<Middleware>,
}

impl RequestFlow {
    /// Something listens on the public port in front of the app: a middleware, or `block`.
    pub fn is_proxied(&self) -> bool {
        self.blocked || !self.middlewares.is_empty()
    }
}

/// One service of the request flow, with the settings it needs. Secrets are named, never held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "name")]
pub enum Middleware {
    #[serde(rename = "otoroshi-challenge")]
    OtoroshiChallenge { secret_env: String },
    #[serde(rename = "varnish")]
    Varnish {
        /// Path of the user's VCL, relative to `app_dir`.
        vcl: String,
        storage_size: String,
    },
    #[serde(rename = "redirectionio")]
    Redirectionio {
        project_key_env: String,
        instance_name: String,
    },
    #[serde(rename = "custom")]
    Custom {
        /// `CC_REQUEST_FLOW_CUSTOM` with its `@@LISTEN_PORT@@` / `@@FORWARD_PORT@@` placeholders.
        command: String,
    },
}

impl Middleware {
    /// The names `CC_REQUEST_FLOW` accepts for middlewares.
    pub const NAMES: [&'static str; 4] =
        ["otoroshi-challenge", "varnish", "redirectionio", "custom"];

    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// The hop this middleware becomes.
    pub fn kind(&self) -> HopKind {
        match self {
            Middleware::OtoroshiChallenge { .. } => HopKind::OtoroshiChallenge,
            Middleware::Varnish { .. } => HopKind::Varnish,
            Middleware::Redirectionio { .. } => HopKind::Redirectionio,
            Middleware::Custom { .. } => HopKind::Custom,
        }
    }
}

/// The add-ons `--addon` runs locally, by the platform's names.
pub const ADDON_KINDS: [&str; 3] = ["postgresql", "mysql", "redis"];

/// What a hop of the chain is. A chain holds one hop of each kind at most, so a hop's name in
/// the plan is its kind's ([`HopKind::name`]): the one place the names are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HopKind {
    OtoroshiChallenge,
    Varnish,
    Redirectionio,
    Custom,
    /// `CC_REQUEST_FLOW=block`: answers by itself.
    Block,
    /// Legacy mode's Nginx, in front of the app server.
    Nginx,
}

impl HopKind {
    pub const ALL: [HopKind; 6] = [
        HopKind::OtoroshiChallenge,
        HopKind::Varnish,
        HopKind::Redirectionio,
        HopKind::Custom,
        HopKind::Block,
        HopKind::Nginx,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HopKind::OtoroshiChallenge => "otoroshi-challenge",
            HopKind::Varnish => "varnish",
            HopKind::Redirectionio => "redirectionio",
            HopKind::Custom => "custom",
            HopKind::Block => "block",
            HopKind::Nginx => "nginx",
        }
    }

    /// The kind named `name`, if it is one.
    pub fn named(name: &str) -> Option<Self> {
        HopKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether its process is varnishd (Varnish, and the block hop, which Varnish answers).
    pub fn runs_varnishd(self) -> bool {
        matches!(self, HopKind::Varnish | HopKind::Block)
    }
}

impl Hop {
    /// What the hop is, by its name.
    pub fn kind(&self) -> Option<HopKind> {
        HopKind::named(&self.name)
    }
}

/// One process of the proxy chain, as `flowctl` planned it and `launcher --hop` runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Hop {
    pub name: String,
    pub listen: u16,
    /// `None` for the blocking hop, which forwards nothing.
    pub forward: Option<u16>,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, EnvValue>,
    /// Rendered configuration files the hop reads; `launcher` writes them before the exec.
    pub files: Vec<HopFile>,
}

/// A hop's environment variable: a literal, or taken from the launcher's own environment
/// (how secrets travel: the plan names them, the process reads them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum EnvValue {
    FromEnv { from_env: String },
    Literal(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HopFile {
    pub path: PathBuf,
    pub content: String,
    /// An htpasswd file for Nginx's basic authentication: `launcher` appends one
    /// `login:{SHA}hash` line for each of these variables (each holding
    /// `login:password`), read when it writes the file, so the plan never holds a password.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub htpasswd_from_env: Vec<String>,
}

impl HopFile {
    pub fn new(path: PathBuf, content: String) -> Self {
        HopFile {
            path,
            content,
            htpasswd_from_env: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(names: &[&str], blocked: bool) -> RequestFlow {
        RequestFlow {
            source: "test".into(),
            blocked,
            middlewares: names
                .iter()
                .map(|name| match *name {
                    "otoroshi-challenge" => Middleware::OtoroshiChallenge {
                        secret_env: "S".into(),
                    },
                    "varnish" => Middleware::Varnish {
                        vcl: "v.vcl".into(),
                        storage_size: "1G".into(),
                    },
                    "redirectionio" => Middleware::Redirectionio {
                        project_key_env: "K".into(),
                        instance_name: "i".into(),
                    },
                    _ => Middleware::Custom {
                        command: "c @@LISTEN_PORT@@ @@FORWARD_PORT@@".into(),
                    },
                })
                .collect(),
        }
    }

    fn hops(pairs: &[(u16, u16)]) -> Vec<HopPorts> {
        pairs
            .iter()
            .map(|&(listen, forward)| HopPorts { listen, forward })
            .collect()
    }

    /// Every shape of request flow, on the platform's ports and at the edges of the range.
    #[test]
    fn the_chain_for_every_flow_and_port_edge() {
        let all = ["otoroshi-challenge", "varnish", "redirectionio", "custom"];
        type Case<'a> = (
            u16,
            u16,
            &'a [&'a str],
            bool,
            Result<Vec<HopPorts>, LayoutError>,
        );
        let cases: Vec<Case> = vec![
            (8080, 9000, &[], false, Ok(vec![])),
            (8080, 9000, &all[..1], false, Ok(hops(&[(8080, 9000)]))),
            (
                8080,
                9000,
                &all[..2],
                false,
                Ok(hops(&[(8080, 8081), (8081, 9000)])),
            ),
            (
                8080,
                9000,
                &all[..3],
                false,
                Ok(hops(&[(8080, 8081), (8081, 8082), (8082, 9000)])),
            ),
            (
                8080,
                9000,
                &all,
                false,
                Ok(hops(&[
                    (8080, 8081),
                    (8081, 8082),
                    (8082, 8083),
                    (8083, 9000),
                ])),
            ),
            (8080, 9000, &[], true, Ok(hops(&[(8080, 9000)]))),
            // The last port there is.
            (65535, 9000, &all[..1], false, Ok(hops(&[(65535, 9000)]))),
            (
                65534,
                9000,
                &all[..2],
                false,
                Ok(hops(&[(65534, 65535), (65535, 9000)])),
            ),
            (
                65535,
                9000,
                &all[..2],
                false,
                Err(LayoutError::PastLastPort {
                    public: 65535,
                    count: 2,
                }),
            ),
            (
                65533,
                9000,
                &all,
                false,
                Err(LayoutError::PastLastPort {
                    public: 65533,
                    count: 4,
                }),
            ),
            // The app inside the chain.
            (
                8080,
                8081,
                &all[..2],
                false,
                Err(LayoutError::AppPortInChain {
                    app: 8081,
                    first: 8080,
                    last: 8081,
                }),
            ),
            (
                8080,
                8080,
                &all[..1],
                false,
                Err(LayoutError::AppPortInChain {
                    app: 8080,
                    first: 8080,
                    last: 8080,
                }),
            ),
            (
                8080,
                8082,
                &all[..2],
                false,
                Ok(hops(&[(8080, 8081), (8081, 8082)])),
            ),
        ];
        for (public, app, names, blocked, expected) in cases {
            let flow = flow(names, blocked);
            let ports = PortSettings { public, app }.ports_for(&flow, Mode::Uv);
            assert_eq!(
                ports.chain(&flow, Mode::Uv),
                expected,
                "{public} {app} {names:?} {blocked}"
            );
        }
    }

    /// Legacy mode: Nginx is the last hop, after the middlewares (or `block`), in front of
    /// the app server on the app port.
    #[test]
    fn legacy_chains_end_with_nginx() {
        let settings = PortSettings {
            public: 8080,
            app: 9000,
        };
        let cases: [(&[&str], bool, Vec<HopPorts>); 4] = [
            (&[], false, hops(&[(8080, 9000)])),
            (&["varnish"], false, hops(&[(8080, 8081), (8081, 9000)])),
            (
                &["otoroshi-challenge", "varnish"],
                false,
                hops(&[(8080, 8081), (8081, 8082), (8082, 9000)]),
            ),
            (&[], true, hops(&[(8080, 8081), (8081, 9000)])),
        ];
        for (names, blocked, expected) in cases {
            let flow = flow(names, blocked);
            let ports = settings.ports_for(&flow, Mode::Legacy);
            assert_eq!(
                ports.app, 9000,
                "the app server is never on the public port"
            );
            assert_eq!(ports.chain(&flow, Mode::Legacy), Ok(expected), "{names:?}");
        }
        let past = PortSettings {
            public: 65535,
            app: 9000,
        };
        let flow = flow(&["varnish"], false);
        assert_eq!(
            past.ports_for(&flow, Mode::Legacy)
                .chain(&flow, Mode::Legacy),
            Err(LayoutError::PastLastPort {
                public: 65535,
                count: 2
            })
        );
    }

    #[test]
    fn without_middleware_the_app_is_on_the_public_port() {
        let ports = PortSettings {
            public: 8080,
            app: 9000,
        }
        .ports_for(&flow(&[], false), Mode::Uv);
        assert_eq!(
            ports,
            Ports {
                public: 8080,
                app: 8080
            }
        );
    }
}
