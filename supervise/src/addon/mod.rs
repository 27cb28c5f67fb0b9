//! A local add-on server for an app: how to run it, when it answers, its variables.
//!
//! `deploy --addon postgresql` (or `mysql`, `redis`) runs the real server from Debian's
//! packages, not Debian's service: its own data directory, kept per app across deployments and
//! reboots in the user's data directory (`$XDG_DATA_HOME/uvdeploy/addons/APP-KEY/KIND`, else
//! `~/.local/share/...`), initialised once; credentials generated once and kept beside it
//! (0600); a free loopback port; its socket, PID and temporary files in the deployment's state
//! directory. It is started before the build (hooks migrate), waited for by a real protocol
//! exchange, and stopped last, by the deployment's stop machinery ([`crate::children`]).
//!
//! As the platform does, the app gets the add-on's variables (the add-on pages' names); they
//! reach every tool through one env file, last, so that a production value copied from
//! `clever env` is replaced, and said, by name. No password is ever on a command line: the
//! servers read theirs from a file or from SQL on standard input.

mod cli;
mod data;
mod server;

pub use cli::{addons, AddonsOptions};
pub use data::{data_root, home, Credentials};
pub use server::Addon;

use crate::children::{Children, Event, Output};
use data::write_private;
use plan::Env;
use std::io::{Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server has to answer once started.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The add-ons this rehearses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Kind {
    Postgresql,
    Mysql,
    Redis,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Postgresql, Kind::Mysql, Kind::Redis];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Postgresql => "postgresql",
            Kind::Mysql => "mysql",
            Kind::Redis => "redis",
        }
    }

    /// The variables the platform gives an app linked to this add-on (its environment variable
    /// reference and add-on pages), every one of which the local server's value replaces.
    pub fn variables(self) -> &'static [&'static str] {
        match self {
            Kind::Postgresql => &[
                "POSTGRESQL_ADDON_HOST",
                "POSTGRESQL_ADDON_PORT",
                "POSTGRESQL_ADDON_DB",
                "POSTGRESQL_ADDON_USER",
                "POSTGRESQL_ADDON_PASSWORD",
                "POSTGRESQL_ADDON_URI",
                "POSTGRESQL_ADDON_VERSION",
                "POSTGRESQL_ADDON_DIRECT_HOST",
                "POSTGRESQL_ADDON_DIRECT_PORT",
                "POSTGRESQL_ADDON_DIRECT_URI",
            ],
            Kind::Mysql => &[
                "MYSQL_ADDON_HOST",
                "MYSQL_ADDON_PORT",
                "MYSQL_ADDON_DB",
                "MYSQL_ADDON_USER",
                "MYSQL_ADDON_PASSWORD",
                "MYSQL_ADDON_URI",
                "MYSQL_ADDON_VERSION",
                "MYSQL_ADDON_DIRECT_HOST",
                "MYSQL_ADDON_DIRECT_PORT",
            ],
            Kind::Redis => &["REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_URL"],
        }
    }

    /// Variables of the production add-on this one does not give (`POSTGRESQL_ADDON_ROLE`, a
    /// key-value add-on's `REDIS_CLI_URL`...): emptied, so that nothing points at production.
    fn owns(self, name: &str) -> bool {
        match self {
            Kind::Postgresql => name.starts_with("POSTGRESQL_ADDON_"),
            Kind::Mysql => name.starts_with("MYSQL_ADDON_"),
            Kind::Redis => matches!(name, "REDIS_CLI_URL" | "REDISCLI_AUTH"),
        }
    }

    /// The system user Debian runs the server as (used when we are root: postgres refuses
    /// root, and the others should not need it).
    fn system_user(self) -> &'static str {
        match self {
            Kind::Postgresql => "postgres",
            Kind::Mysql => "mysql",
            Kind::Redis => "redis",
        }
    }

    /// The Debian package that provides the server.
    fn package(self) -> &'static str {
        match self {
            Kind::Postgresql => "postgresql",
            Kind::Mysql => "mariadb-server",
            Kind::Redis => "redis-server",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AddonError {
    #[error("the {kind} add-on needs `{program}`, which is not installed")]
    Missing { kind: Kind, program: String },
    #[error("the {kind} add-on: cannot use `{path}`: {reason}")]
    Io {
        kind: Kind,
        path: PathBuf,
        reason: String,
    },
    #[error("the {kind} add-on: {what} failed (exit {status}); its output is in `{log}`")]
    Step {
        kind: Kind,
        what: &'static str,
        status: i32,
        log: PathBuf,
    },
    #[error("the {kind} add-on exited with status {status} before it answered")]
    Died { kind: Kind, status: i32 },
    #[error("the {kind} add-on did not answer on 127.0.0.1:{port} within {secs}s ({last})", secs = READY_TIMEOUT.as_secs())]
    NoAnswer { kind: Kind, port: u16, last: String },
    #[error("cannot start the {kind} add-on: {reason}")]
    Spawn { kind: Kind, reason: String },
    #[error("`{app}` is deployed now (PID {pid}): its add-on data cannot be removed while it runs", app = .app.display())]
    Deployed { app: PathBuf, pid: u32 },
    #[error("`{app}` has no {kind} add-on data (looked in `{dir}`)", app = .app.display(), dir = .dir.display())]
    NoData {
        kind: Kind,
        app: PathBuf,
        dir: PathBuf,
    },
}

impl plan::report::Failure for AddonError {
    fn exit_code(&self) -> u8 {
        match self {
            AddonError::Missing { .. } | AddonError::NoData { .. } => plan::report::exit::USAGE,
            _ => plan::report::exit::FAILED,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            AddonError::Missing { kind, .. } => Some(format!(
                "install Debian's `{}` package: `scripts/setup` does (as root)",
                kind.package()
            )),
            AddonError::Deployed { pid, .. } => Some(format!(
                "stop the deployment first (Ctrl-C in its terminal, or `kill {pid}`)"
            )),
            _ => None,
        }
    }
}

fn io(kind: Kind, path: &Path) -> impl Fn(std::io::Error) -> AddonError + '_ {
    move |e| AddonError::Io {
        kind,
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// What the add-ons of a deployment left for the rest of it.
#[derive(Debug, Default)]
pub struct Started {
    /// The env file of their variables (0600), passed last to every tool.
    pub env_file: Option<PathBuf>,
    /// Every variable the env file sets: a `--env` of one of them is not passed on.
    pub names: Vec<String>,
    /// The servers: name and index in [`Children`].
    pub servers: Vec<(String, usize)>,
}

impl Started {
    /// Whether the `--env KEY=VALUE` `assignment` sets a variable an add-on replaces.
    pub fn replaces(&self, assignment: &str) -> bool {
        let key = assignment.split_once('=').map_or(assignment, |(k, _)| k);
        self.names.iter().any(|n| n == key)
    }

    pub fn is_server(&self, index: usize) -> bool {
        self.servers.iter().any(|(_, i)| *i == index)
    }
}

/// Why the add-ons did not all start.
pub enum Halted {
    /// TERM, INT or HUP.
    Stop,
    Failed(AddonError),
}

impl From<AddonError> for Halted {
    fn from(e: AddonError) -> Self {
        Halted::Failed(e)
    }
}

/// The env file's lines: the add-ons' variables, and the other variables of their production
/// namespaces that `given` sets, emptied. Returns the text and the names given (replaced).
pub fn env_file(
    addons: &[(Kind, Vec<(&'static str, String)>)],
    given: &Env,
) -> (String, Vec<String>, Vec<String>) {
    let mut text =
        String::from("# The local add-ons' variables (uvdeploy deploy --addon): private.\n");
    let mut names = Vec::new();
    let mut replaced = Vec::new();
    for (kind, variables) in addons {
        for (name, value) in variables {
            text.push_str(&format!("{name}={value}\n"));
            names.push(name.to_string());
        }
        for (name, _) in given.iter() {
            if kind.owns(name) && !names.iter().any(|n| n == name) {
                text.push_str(&format!("{name}=\n"));
                names.push(name.to_string());
            }
        }
    }
    for name in &names {
        if given.get(name).is_some() {
            replaced.push(name.clone());
        }
    }
    (text, names, replaced)
}

/// Starts each add-on asked for, in order: initialised on its first start, then the server
/// (stopped last: [`Children::stop_last`]), waited for, the database and user made on the first
/// start; then their variables written for the tools. `say` speaks for the deployment.
pub fn start(
    kinds: &[Kind],
    app_dir: &Path,
    state: &Path,
    env: &Env,
    children: &mut Children,
    say: &dyn Fn(&str),
) -> Result<Started, Halted> {
    let mut started = Started::default();
    let mut all = Vec::new();
    let mut kinds = kinds.to_vec();
    kinds.dedup();
    let mut seen = Vec::new();
    for kind in kinds {
        if seen.contains(&kind) {
            continue;
        }
        seen.push(kind);
        let addon = Addon::prepare(kind, env, app_dir, state)?;
        let first = !addon.initialised();
        if first {
            say(&format!(
                "{kind}: a new data directory for this app: {}",
                addon.data().display()
            ));
            addon.fresh_data()?;
            if let Some(mut command) = addon.init_command()? {
                let log = addon.run.join("init.log");
                run_step(
                    children,
                    &started,
                    kind,
                    "initialisation",
                    &mut command,
                    None,
                    &log,
                )?;
            }
        }
        let mut server = addon.server_command()?;
        let index = children
            .spawn(kind.name(), &mut server, Output::Prefixed)
            .map_err(|e| AddonError::Spawn {
                kind,
                reason: e.to_string(),
            })?;
        children.stop_last(index);
        started.servers.push((kind.name().to_string(), index));
        wait_until_answers(children, &started, &addon, index)?;
        if first {
            if let Some((mut command, sql)) = addon.bootstrap_command()? {
                let log = addon.run.join("bootstrap.log");
                run_step(
                    children,
                    &started,
                    kind,
                    "creating the database and user",
                    &mut command,
                    Some(&sql),
                    &log,
                )?;
            }
            std::fs::write(addon.marker(), "").map_err(io(kind, &addon.home))?;
        }
        say(&format!(
            "{kind}: answering on 127.0.0.1:{} (pid {}; data kept in {})",
            addon.port,
            children.procs[index].pid,
            addon.home.display()
        ));
        all.push((kind, addon.variables()));
    }
    let (text, names, replaced) = env_file(&all, env);
    let path = state.join("addons.env");
    write_private(&path, &text).map_err(|e| {
        Halted::Failed(AddonError::Io {
            kind: all.first().map_or(Kind::Postgresql, |a| a.0),
            path: path.clone(),
            reason: e.to_string(),
        })
    })?;
    for name in &replaced {
        say(&format!(
            "{name} was given (env file, --env or environment): replaced by the local add-on's value"
        ));
    }
    started.env_file = Some(path);
    started.names = names;
    Ok(started)
}

/// Removes, once the deployment is over, the files of the state directory that hold an
/// add-on's password (the env file, Redis's configuration, the crons' login profile): a state
/// directory kept after the stop (`--keep-state`, a failure) keeps no secret of them. The
/// credentials stay beside the data.
pub fn forget_secrets(state: &Path) {
    let _ = std::fs::remove_file(state.join("addons.env"));
    let _ = std::fs::remove_file(state.join("addons/redis/redis.conf"));
    // The crons' login profile holds the app's variables, the add-ons' among them.
    let _ = std::fs::remove_file(state.join("cron-home/.bash_profile"));
}

/// Runs one setup step of an add-on to its end, its output in `log` (0600): it may name a
/// password. `stdin`: text given on its standard input, through an unnamed file.
#[allow(clippy::too_many_arguments)]
fn run_step(
    children: &mut Children,
    started: &Started,
    kind: Kind,
    what: &'static str,
    command: &mut Command,
    stdin: Option<&str>,
    log: &Path,
) -> Result<(), Halted> {
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(log)
        .map_err(io(kind, log))?;
    let err = out.try_clone().map_err(io(kind, log))?;
    command.stdout(out).stderr(err);
    match stdin {
        Some(text) => {
            let mut file = tempfile::tempfile().map_err(io(kind, log))?;
            file.write_all(text.as_bytes()).map_err(io(kind, log))?;
            file.rewind().map_err(io(kind, log))?;
            command.stdin(file);
        }
        None => {
            command.stdin(Stdio::null());
        }
    }
    let index = children
        .spawn(&format!("{kind}-{what}"), command, Output::AsSet)
        .map_err(|e| AddonError::Spawn {
            kind,
            reason: e.to_string(),
        })?;
    let status = loop {
        match children.wait(index, None) {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(Event::Stop(_)) => return Err(Halted::Stop),
            Err(Event::Exited(i, status)) if started.is_server(i) => {
                return Err(AddonError::Died { kind, status }.into())
            }
            Err(Event::Exited(..) | Event::OrphanReaped | Event::Ready(_)) => {}
        }
    };
    if status != 0 {
        return Err(AddonError::Step {
            kind,
            what,
            status,
            log: log.to_path_buf(),
        }
        .into());
    }
    Ok(())
}

/// Asks the server until it answers, up to [`READY_TIMEOUT`]; its end, or a signal, ends the
/// wait.
fn wait_until_answers(
    children: &mut Children,
    started: &Started,
    addon: &Addon,
    index: usize,
) -> Result<(), Halted> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let last = match addon.answers() {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        if Instant::now() >= deadline {
            return Err(AddonError::NoAnswer {
                kind: addon.kind,
                port: addon.port,
                last,
            }
            .into());
        }
        // The pause between two questions is a wait for events: a signal or the server's end
        // is seen at once.
        match children.next(Some(Instant::now() + Duration::from_millis(100))) {
            None => {}
            Some(Event::Stop(_)) => return Err(Halted::Stop),
            Some(Event::Exited(i, status)) if i == index || started.is_server(i) => {
                let kind = Kind::ALL
                    .into_iter()
                    .find(|k| {
                        Some(k.name())
                            == started
                                .servers
                                .iter()
                                .find(|s| s.1 == i)
                                .map(|s| s.0.as_str())
                    })
                    .unwrap_or(addon.kind);
                return Err(AddonError::Died { kind, status }.into());
            }
            Some(Event::Exited(..) | Event::OrphanReaped | Event::Ready(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_env_file_replaces_what_was_given_and_empties_the_rest_of_the_namespace() {
        let given: Env = [
            (
                "POSTGRESQL_ADDON_URI",
                "postgresql://prod:pw@db.example.com/prod",
            ),
            ("POSTGRESQL_ADDON_ROLE", "prod"),
            ("REDIS_URL", "redis://:x@r.example.com:6379"),
            ("OTHER", "kept"),
        ]
        .into_iter()
        .collect();
        let pg = vec![
            (
                "POSTGRESQL_ADDON_URI",
                "postgresql://u:p@127.0.0.1:5/b".to_string(),
            ),
            ("POSTGRESQL_ADDON_HOST", "127.0.0.1".to_string()),
        ];
        let (text, names, replaced) = env_file(&[(Kind::Postgresql, pg)], &given);
        assert!(text.contains("POSTGRESQL_ADDON_URI=postgresql://u:p@127.0.0.1:5/b\n"));
        assert!(text.contains("POSTGRESQL_ADDON_ROLE=\n"));
        // Redis was not asked for: its variables are used as given.
        assert!(!text.contains("REDIS_URL"));
        assert_eq!(replaced, ["POSTGRESQL_ADDON_URI", "POSTGRESQL_ADDON_ROLE"]);
        assert_eq!(names.len(), 3);
        let parsed = plan::env::parse_env_file(&text, Path::new("addons.env")).unwrap();
        assert_eq!(parsed.len(), 3);
        let started = Started {
            names,
            ..Started::default()
        };
        assert!(started.replaces("POSTGRESQL_ADDON_URI=x"));
        assert!(!started.replaces("OTHER=x"));
    }
}
