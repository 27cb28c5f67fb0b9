//! The front: Sōzu, the platform's own reverse proxy, on the public port, in front of every
//! instance of the deployment. Its backends are added and removed while it runs, through its
//! command socket (`sozu backend add|remove`): that is how a redeploy moves the traffic to new
//! instances without a failed request, and how several instances share the public port, round
//! robin. Each instance keeps its own chain (Otoroshi, Varnish...) behind it, as on the platform.

use crate::children::{Children, Output};
use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How to get Sōzu where it is missing.
pub const HOW_TO_GET: &str = "install it with `cargo install sozu --locked` (it needs `protoc`: \
     `apt-get install protobuf-compiler`), or run `scripts/setup`";

/// The one cluster of the front: the app.
const CLUSTER: &str = "app";

/// A running front.
pub struct Front {
    pub port: u16,
    pub index: usize,
    sozu: PathBuf,
    config: PathBuf,
    log: PathBuf,
    /// The backends it sends to: id and port.
    pub backends: Vec<(String, u16)>,
}

/// `sozu` on PATH, else where `cargo install` puts it.
pub fn find(env: &plan::Env) -> Option<PathBuf> {
    let cargo_home = match (env.non_empty("CARGO_HOME"), env.non_empty("HOME")) {
        (Some(dir), _) => Some(PathBuf::from(dir)),
        (None, Some(home)) => Some(Path::new(home).join(".cargo")),
        (None, None) => None,
    };
    let path = env.get("PATH").unwrap_or_default();
    std::env::split_paths(path)
        .chain(cargo_home.map(|dir| dir.join("bin")))
        .map(|dir| dir.join("sozu"))
        .find(|candidate| candidate.is_file())
}

/// Sōzu's configuration: one HTTP listener on the public port, one cluster, round robin, that
/// takes every host; no backend until an instance is healthy (until then, Sōzu answers 503).
pub fn config(port: u16, socket: &Path) -> String {
    let socket = toml_string(&socket.display().to_string());
    format!(
        r#"# The deployment's front, written by uvdeploy.
command_socket = {socket}
log_level = "error"
log_target = "stdout"
worker_count = 1
worker_automatic_restart = true
activate_listeners = true
max_connections = 2048
ctl_command_timeout = 5000

[[listeners]]
protocol = "http"
address = "0.0.0.0:{port}"

[clusters.{CLUSTER}]
protocol = "http"
load_balancing = "ROUND_ROBIN"
# `*` at position POST matches every host: a rehearsal is reached by its address.
frontends = [{{ address = "0.0.0.0:{port}", hostname = "*", position = "POST" }}]
backends = []
"#
    )
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

impl Front {
    /// Starts Sōzu on `port`, its files in `dir`. It takes a moment to listen
    /// ([`Front::listening`]): the build goes on meanwhile. `socket`: its command socket's
    /// path (short: a Unix socket's path has 108 bytes at most).
    pub fn start(
        sozu: &Path,
        port: u16,
        dir: &Path,
        socket: &Path,
        children: &mut Children,
    ) -> Result<Front, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        let config = dir.join("sozu.toml");
        std::fs::write(&config, self::config(port, socket))
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        if TcpListener::bind(("0.0.0.0", port)).is_err() {
            let holder = process::listeners()
                .and_then(|table| process::holder_of(port, &table))
                .map(|(pid, command)| format!(" by PID {pid} ({command})"))
                .unwrap_or_default();
            return Err(format!("the public port {port} is taken{holder}"));
        }
        // Its own log, not the deployment's: Sōzu says where its logs go at each start, and
        // logs only errors here.
        let log = dir.join("sozu.log");
        let file = std::fs::File::create(&log)
            .map_err(|e| format!("cannot write {}: {e}", log.display()))?;
        let mut command = Command::new(sozu);
        command
            .arg("start")
            .arg("--config")
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone().map_err(|e| e.to_string())?)
            .stderr(file);
        let index = children
            .spawn("front", &mut command, Output::AsSet)
            .map_err(|e| format!("cannot start {}: {e}", sozu.display()))?;
        Ok(Front {
            port,
            index,
            sozu: sozu.to_path_buf(),
            config,
            log,
            backends: Vec::new(),
        })
    }

    /// Whether it listens yet.
    pub fn listening(&self) -> bool {
        process::listeners().is_some_and(|table| table.iter().any(|l| l.port == self.port))
    }

    /// What it said, for a failure.
    pub fn said(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        format!("its log, {}:\n{}", self.log.display(), text.trim_end())
    }

    /// Sends traffic to `port` too, as backend `id`.
    pub fn add(&mut self, id: &str, port: u16) -> Result<(), String> {
        self.backend("add", id, port)?;
        self.backends.push((id.to_string(), port));
        Ok(())
    }

    /// No new request goes to backend `id`; those under way finish.
    pub fn remove(&mut self, id: &str) -> Result<(), String> {
        let Some(at) = self.backends.iter().position(|(b, _)| b == id) else {
            return Ok(());
        };
        self.backend("remove", id, self.backends[at].1)?;
        self.backends.remove(at);
        Ok(())
    }

    /// `sozu backend add|remove` of backend `id` on `port`, in the app's cluster.
    fn backend(&self, action: &str, id: &str, port: u16) -> Result<(), String> {
        let address = format!("127.0.0.1:{port}");
        self.ctl(&[
            "backend",
            action,
            "--id",
            CLUSTER,
            "--backend-id",
            id,
            "--address",
            &address,
        ])
    }

    fn ctl(&self, args: &[&str]) -> Result<(), String> {
        let out = Command::new(&self.sozu)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.sozu.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`sozu {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

/// Ports for an instance's chain when the front holds the public port: a block of ten free
/// ports (the hops from the first, the app on the last), none of them `taken` already.
pub fn instance_ports(taken: &mut BTreeSet<u16>) -> Option<(u16, u16)> {
    const BLOCK: u16 = 10;
    const FIRST: u16 = 40000;
    const SPAN: u16 = 20000;
    // Where to start looking: at random, so that deployments starting at once rarely race
    // for a block that is free until its app binds it.
    let random = {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.finish()
    };
    let start = (random % u64::from(SPAN / BLOCK)) as u16 * BLOCK;
    (0..SPAN / BLOCK)
        .map(|n| FIRST + (start + n * BLOCK) % SPAN)
        .find(|&base| {
            (base..base + BLOCK)
                .all(|p| !taken.contains(&p) && TcpListener::bind(("0.0.0.0", p)).is_ok())
        })
        .map(|base| {
            taken.extend(base..base + BLOCK);
            (base, base + BLOCK - 1)
        })
}
