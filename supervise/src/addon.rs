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

use crate::children::{Children, Event, Output};
use plan::Env;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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

/// Where the add-ons' data of every app is: `$XDG_DATA_HOME/uvdeploy/addons`, else
/// `~/.local/share/uvdeploy/addons`.
pub fn data_root(env: &Env) -> PathBuf {
    match env.non_empty("XDG_DATA_HOME") {
        Some(dir) => Path::new(dir).join("uvdeploy").join("addons"),
        None => {
            Path::new(env.non_empty("HOME").unwrap_or("/tmp")).join(".local/share/uvdeploy/addons")
        }
    }
}

/// The directory of one app's add-on of `kind` (`app_dir` absolute and canonical).
pub fn home(env: &Env, app_dir: &Path, kind: Kind) -> PathBuf {
    data_root(env)
        .join(crate::lock::app_key(app_dir))
        .join(kind.name())
}

/// The credentials of one add-on, generated once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    pub db: String,
}

/// `n` random characters from `alphabet` (the kernel's random numbers).
fn random(n: usize, alphabet: &[u8]) -> std::io::Result<String> {
    let mut bytes = vec![0u8; n * 2];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes
        .chunks(2)
        .map(|pair| {
            let i = usize::from(u16::from_le_bytes([pair[0], pair[1]])) % alphabet.len();
            alphabet[i] as char
        })
        .collect())
}

const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl Credentials {
    /// New ones, named as the platform names them (`u…` users, `b…` databases).
    pub fn generate() -> std::io::Result<Self> {
        Ok(Credentials {
            user: format!("u{}", random(15, LOWER)?),
            password: random(24, ALNUM)?,
            db: format!("b{}", random(19, LOWER)?),
        })
    }

    fn parse(text: &str) -> Option<Self> {
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_string)
        };
        Some(Credentials {
            user: value("USER")?,
            password: value("PASSWORD")?,
            db: value("DB")?,
        })
    }

    /// The ones kept in `path`, or new ones written there, readable by the owner only.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Some(credentials) = Credentials::parse(&text) {
                return Ok(credentials);
            }
        }
        let credentials = Credentials::generate()?;
        write_private(
            path,
            &format!(
                "# Generated once by uvdeploy for this app's local add-on: keep it private.\nUSER={}\nPASSWORD={}\nDB={}\n",
                credentials.user, credentials.password, credentials.db
            ),
        )?;
        Ok(credentials)
    }
}

/// Writes `text` to `path`, mode 0600 from its creation.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Whom a server runs as: the kind's system user when we are root, else ourselves.
#[derive(Debug, Clone)]
struct RunAs {
    /// `None`: as ourselves.
    user: Option<(String, nix::unistd::Uid, nix::unistd::Gid)>,
}

impl RunAs {
    fn for_kind(kind: Kind) -> Self {
        if !nix::unistd::geteuid().is_root() {
            return RunAs { user: None };
        }
        let user = nix::unistd::User::from_name(kind.system_user())
            .ok()
            .flatten()
            .map(|u| (u.name, u.uid, u.gid));
        RunAs { user }
    }

    /// `program` run as that user. Through `setpriv`, with the one capability of reading
    /// directories it could not otherwise cross (a root's home is 0700): the data directory
    /// is in the deploying user's home, and the server needs to reach it.
    fn command(&self, program: &Path) -> Command {
        match &self.user {
            None => Command::new(program),
            Some((name, _, _)) => {
                let mut command = Command::new("setpriv");
                command
                    .arg(format!("--reuid={name}"))
                    .arg(format!("--regid={name}"))
                    .arg("--init-groups");
                if has_bounding_cap(2) {
                    // CAP_DAC_READ_SEARCH (2): search any directory, read, never write.
                    command
                        .arg("--inh-caps=+dac_read_search")
                        .arg("--ambient-caps=+dac_read_search");
                }
                command.arg("--").arg(program);
                command
            }
        }
    }

    /// Makes `path` the server user's.
    fn own(&self, path: &Path) -> std::io::Result<()> {
        if let Some((_, uid, gid)) = &self.user {
            nix::unistd::chown(path, Some(*uid), Some(*gid))?;
        }
        Ok(())
    }
}

/// Whether capability `bit` is in this process's bounding set.
fn has_bounding_cap(bit: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))?
                .trim()
                .to_string();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << bit) != 0)
}

/// A program of the server's package: on PATH, in `/usr/sbin`, or (PostgreSQL) in the newest
/// `/usr/lib/postgresql/VERSION/bin`.
fn program(kind: Kind, name: &str) -> Result<PathBuf, AddonError> {
    let missing = || AddonError::Missing {
        kind,
        program: name.to_string(),
    };
    if kind == Kind::Postgresql && !matches!(name, "psql") {
        return postgres_bin()
            .map(|(dir, _)| dir.join(name))
            .filter(|p| p.is_file())
            .ok_or_else(missing);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(missing)
}

/// The newest PostgreSQL's `bin` directory, and its major version.
fn postgres_bin() -> Option<(PathBuf, String)> {
    let mut versions: Vec<(u32, String)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            Some((name.parse().ok()?, name))
        })
        .filter(|(_, name)| {
            Path::new("/usr/lib/postgresql")
                .join(name)
                .join("bin/postgres")
                .is_file()
        })
        .collect();
    versions.sort();
    let (_, version) = versions.pop()?;
    Some((
        Path::new("/usr/lib/postgresql").join(&version).join("bin"),
        version,
    ))
}

/// A free port on the loopback interface.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

/// One add-on of one deployment, ready to start.
pub struct Addon {
    pub kind: Kind,
    /// Kept across deployments: the credentials, the `data` directory.
    pub home: PathBuf,
    /// This deployment's: socket, PID file, configuration, logs.
    pub run: PathBuf,
    pub port: u16,
    pub credentials: Credentials,
    pub version: String,
    run_as: RunAs,
}

impl Addon {
    /// Makes the directories, reads or makes the credentials, picks a port.
    pub fn prepare(
        kind: Kind,
        env: &Env,
        app_dir: &Path,
        state: &Path,
    ) -> Result<Self, AddonError> {
        let home = home(env, app_dir, kind);
        let run = state.join("addons").join(kind.name());
        for dir in [&home, &run] {
            std::fs::create_dir_all(dir).map_err(io(kind, dir))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(kind, dir))?;
        }
        if let Some(app) = home.parent() {
            // For a human reading the data directory: whose add-ons these are.
            let _ = std::fs::write(app.join("app_dir"), format!("{}\n", app_dir.display()));
        }
        let run_as = RunAs::for_kind(kind);
        run_as.own(&run).map_err(io(kind, &run))?;
        let credentials =
            Credentials::load_or_create(&home.join("credentials")).map_err(io(kind, &home))?;
        let version = match kind {
            Kind::Postgresql => {
                postgres_bin()
                    .ok_or(AddonError::Missing {
                        kind,
                        program: "postgres".into(),
                    })?
                    .1
            }
            Kind::Mysql => mariadb_version(&program(kind, "mariadbd")?),
            Kind::Redis => {
                program(kind, "redis-server")?;
                String::new()
            }
        };
        let port = free_port().map_err(|e| AddonError::Spawn {
            kind,
            reason: format!("no free port on 127.0.0.1: {e}"),
        })?;
        Ok(Addon {
            kind,
            home,
            run,
            port,
            credentials,
            version,
            run_as,
        })
    }

    pub fn data(&self) -> PathBuf {
        self.home.join("data")
    }

    /// Written once the data directory is initialised and the database and user made.
    fn marker(&self) -> PathBuf {
        self.home.join("initialised")
    }

    pub fn initialised(&self) -> bool {
        self.marker().is_file()
    }

    /// An empty data directory, the server user's (what an interrupted first start left is
    /// started again from nothing).
    fn fresh_data(&self) -> Result<(), AddonError> {
        let data = self.data();
        if data.exists() {
            std::fs::remove_dir_all(&data).map_err(io(self.kind, &data))?;
        }
        std::fs::create_dir_all(&data).map_err(io(self.kind, &data))?;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))
            .map_err(io(self.kind, &data))?;
        self.run_as.own(&data).map_err(io(self.kind, &data))
    }

    /// `program`, as the server's user, its temporary files in this deployment's directory
    /// (TMPDIR may be one it cannot write).
    fn command(&self, program: &Path) -> Command {
        let mut command = self.run_as.command(program);
        command.env("TMPDIR", &self.run).current_dir(&self.run);
        command
    }

    /// The command that initialises the data directory, once.
    fn init_command(&self) -> Result<Option<Command>, AddonError> {
        let data = self.data();
        Ok(match self.kind {
            Kind::Postgresql => {
                let mut command = self.command(&program(self.kind, "initdb")?);
                command.arg("--pgdata").arg(&data).args([
                    "--username=postgres",
                    // The socket (in a 0700 directory) for the bootstrap; TCP by password.
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--no-instructions",
                ]);
                Some(command)
            }
            Kind::Mysql => {
                let mut command = self.command(&program(self.kind, "mariadb-install-db")?);
                command
                    .arg("--no-defaults")
                    .arg(format!("--datadir={}", data.display()))
                    .args(["--auth-root-authentication-method=socket", "--skip-test-db"]);
                Some(command)
            }
            Kind::Redis => None,
        })
    }

    /// The server, in the foreground, on 127.0.0.1 only.
    fn server_command(&self) -> Result<Command, AddonError> {
        let data = self.data();
        Ok(match self.kind {
            Kind::Postgresql => {
                let mut command = self.command(&program(self.kind, "postgres")?);
                command
                    .arg("-D")
                    .arg(&data)
                    .arg("-p")
                    .arg(self.port.to_string())
                    .args(["-c", "listen_addresses=127.0.0.1"])
                    .arg("-c")
                    .arg(format!("unix_socket_directories={}", self.run.display()))
                    .args(["-c", "unix_socket_permissions=0700"])
                    // A failed statement is never logged: it may hold a password.
                    .args(["-c", "log_min_error_statement=panic"]);
                command
            }
            Kind::Mysql => {
                let mut command = self.command(&program(self.kind, "mariadbd")?);
                command
                    .arg("--no-defaults")
                    .arg(format!("--datadir={}", data.display()))
                    .arg(format!("--port={}", self.port))
                    .arg("--bind-address=127.0.0.1")
                    .arg(format!("--socket={}", self.socket().display()))
                    .arg(format!(
                        "--pid-file={}",
                        self.run.join("mariadbd.pid").display()
                    ))
                    .arg(format!("--tmpdir={}", self.run.display()))
                    .args([
                        "--skip-name-resolve",
                        "--innodb-buffer-pool-size=32M",
                        "--performance-schema=OFF",
                    ]);
                command
            }
            Kind::Redis => {
                let conf = self.run.join("redis.conf");
                write_private(
                    &conf,
                    &format!(
                        "bind 127.0.0.1\nport {port}\nprotected-mode yes\ndaemonize no\ndir {data}\nappendonly yes\npidfile {pid}\nlogfile \"\"\nrequirepass {password}\n",
                        port = self.port,
                        data = data.display(),
                        pid = self.run.join("redis.pid").display(),
                        password = self.credentials.password,
                    ),
                )
                .map_err(io(self.kind, &conf))?;
                self.run_as.own(&conf).map_err(io(self.kind, &conf))?;
                let mut command = self.command(&program(self.kind, "redis-server")?);
                command.arg(&conf);
                command
            }
        })
    }

    fn socket(&self) -> PathBuf {
        self.run.join("mariadbd.sock")
    }

    /// The first start's database and user, created by the server's own client over its
    /// socket, the SQL on standard input (never on a command line).
    fn bootstrap_command(&self) -> Result<Option<(Command, String)>, AddonError> {
        let Credentials { user, password, db } = &self.credentials;
        Ok(match self.kind {
            Kind::Postgresql => {
                let mut command = Command::new(program(self.kind, "psql")?);
                command
                    .args([
                        "-X",
                        "-q",
                        "-v",
                        "ON_ERROR_STOP=1",
                        "-U",
                        "postgres",
                        "-d",
                        "postgres",
                    ])
                    .arg("-h")
                    .arg(&self.run)
                    .arg("-p")
                    .arg(self.port.to_string());
                let sql = format!(
                    "CREATE ROLE \"{user}\" LOGIN PASSWORD '{password}';\nCREATE DATABASE \"{db}\" OWNER \"{user}\";\n"
                );
                Some((command, sql))
            }
            Kind::Mysql => {
                let mut command = Command::new(program(self.kind, "mariadb")?);
                let me = if nix::unistd::geteuid().is_root() {
                    "root".to_string()
                } else {
                    nix::unistd::User::from_uid(nix::unistd::geteuid())
                        .ok()
                        .flatten()
                        .map(|u| u.name)
                        .unwrap_or_else(|| "root".into())
                };
                command
                    .arg("--no-defaults")
                    .arg("--protocol=socket")
                    .arg(format!("--socket={}", self.socket().display()))
                    .arg(format!("--user={me}"));
                let sql = format!(
                    "CREATE DATABASE `{db}`;\nCREATE USER '{user}'@'%' IDENTIFIED BY '{password}';\nGRANT ALL PRIVILEGES ON `{db}`.* TO '{user}'@'%';\n"
                );
                Some((command, sql))
            }
            Kind::Redis => None,
        })
    }

    /// Whether the server answers on its port, by its own protocol: PostgreSQL asks a new
    /// connection to authenticate, MariaDB greets it, Redis says PONG to an authenticated PING.
    pub fn answers(&self) -> Result<(), String> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))
            .map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 512];
        match self.kind {
            Kind::Postgresql => {
                let mut body = Vec::new();
                body.extend(196608u32.to_be_bytes()); // protocol 3.0
                for part in ["user", "postgres", "database", "postgres", ""] {
                    body.extend(part.as_bytes());
                    body.push(0);
                }
                let mut message = ((body.len() + 4) as u32).to_be_bytes().to_vec();
                message.extend(body);
                stream.write_all(&message).map_err(|e| e.to_string())?;
                let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
                match buf.first() {
                    Some(b'R') if n > 0 => Ok(()),
                    _ => Err(String::from_utf8_lossy(&buf[..n])
                        .chars()
                        .filter(|c| !c.is_control())
                        .collect()),
                }
            }
            Kind::Mysql => {
                // Its greeting (protocol 10); or, before the first start made a user that
                // may connect over TCP, error 1130 (this host may not connect): it answers.
                let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
                match buf.get(4..n.max(4)) {
                    Some([10, ..]) => Ok(()),
                    Some([0xff, low, high, ..]) if u16::from_le_bytes([*low, *high]) == 1130 => {
                        Ok(())
                    }
                    _ => Err(String::from_utf8_lossy(&buf[..n])
                        .chars()
                        .filter(|c| !c.is_control())
                        .collect()),
                }
            }
            Kind::Redis => {
                let password = &self.credentials.password;
                let message = format!(
                    "*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n*1\r\n$4\r\nPING\r\n",
                    password.len()
                );
                stream
                    .write_all(message.as_bytes())
                    .map_err(|e| e.to_string())?;
                let mut text = String::new();
                let deadline = Instant::now() + Duration::from_secs(2);
                while text.matches("\r\n").count() < 2 && Instant::now() < deadline {
                    let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
                    if n == 0 {
                        break;
                    }
                    text.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
                if text.contains("+PONG") {
                    Ok(())
                } else {
                    Err(text.trim().replace("\r\n", " "))
                }
            }
        }
    }

    /// The variables the app gets, as the platform names them.
    pub fn variables(&self) -> Vec<(&'static str, String)> {
        let host = "127.0.0.1";
        let port = self.port.to_string();
        let Credentials { user, password, db } = &self.credentials;
        match self.kind {
            Kind::Postgresql => {
                let uri = format!("postgresql://{user}:{password}@{host}:{port}/{db}");
                vec![
                    ("POSTGRESQL_ADDON_HOST", host.into()),
                    ("POSTGRESQL_ADDON_PORT", port.clone()),
                    ("POSTGRESQL_ADDON_DB", db.clone()),
                    ("POSTGRESQL_ADDON_USER", user.clone()),
                    ("POSTGRESQL_ADDON_PASSWORD", password.clone()),
                    ("POSTGRESQL_ADDON_URI", uri.clone()),
                    ("POSTGRESQL_ADDON_VERSION", self.version.clone()),
                    ("POSTGRESQL_ADDON_DIRECT_HOST", host.into()),
                    ("POSTGRESQL_ADDON_DIRECT_PORT", port),
                    ("POSTGRESQL_ADDON_DIRECT_URI", uri),
                ]
            }
            Kind::Mysql => vec![
                ("MYSQL_ADDON_HOST", host.into()),
                ("MYSQL_ADDON_PORT", port.clone()),
                ("MYSQL_ADDON_DB", db.clone()),
                ("MYSQL_ADDON_USER", user.clone()),
                ("MYSQL_ADDON_PASSWORD", password.clone()),
                (
                    "MYSQL_ADDON_URI",
                    format!("mysql://{user}:{password}@{host}:{port}/{db}"),
                ),
                ("MYSQL_ADDON_VERSION", self.version.clone()),
                ("MYSQL_ADDON_DIRECT_HOST", host.into()),
                ("MYSQL_ADDON_DIRECT_PORT", port),
            ],
            Kind::Redis => vec![
                ("REDIS_HOST", host.into()),
                ("REDIS_PORT", port.clone()),
                ("REDIS_PASSWORD", password.clone()),
                ("REDIS_URL", format!("redis://:{password}@{host}:{port}")),
            ],
        }
    }
}

/// `10.11` from `mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for ...`.
fn mariadb_version(mariadbd: &Path) -> String {
    let out = Command::new(mariadbd)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    parse_mariadb_version(&out)
}

fn parse_mariadb_version(text: &str) -> String {
    text.split_whitespace()
        .skip_while(|w| *w != "Ver")
        .nth(1)
        .map(|v| v.split('.').take(2).collect::<Vec<_>>().join("."))
        .unwrap_or_default()
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
/// add-on's password (the env file, Redis's configuration): a state directory kept after the
/// stop (`--keep-state`, a failure) keeps no secret of them. The credentials stay beside the
/// data.
pub fn forget_secrets(state: &Path) {
    let _ = std::fs::remove_file(state.join("addons.env"));
    let _ = std::fs::remove_file(state.join("addons/redis/redis.conf"));
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
            Err(Event::Exited(..)) => {}
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
            Some(Event::Exited(..)) => {}
        }
    }
}

/// `uvdeploy addons`: lists an app's add-on data, or removes one kind of it.
///
/// The data of the app's local add-ons (`deploy --addon`): where it is, how big, the user and
/// database (never the password). With --remove KIND, that add-on's data is deleted, credentials
/// included (refused while the app is deployed).
#[derive(Debug, clap::Parser)]
#[command(name = "uvaddons", bin_name = "uvdeploy addons", version)]
pub struct AddonsOptions {
    /// Delete this add-on's data and credentials (postgresql, mysql or redis).
    #[arg(long, value_name = "KIND")]
    pub remove: Option<Kind>,
    /// The application's directory (the current directory by default).
    #[arg(value_name = "APP_DIR")]
    pub app_dir: Option<PathBuf>,
}

/// The bytes under `path`.
fn size_of(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_dir() {
        std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| size_of(&e.path()))
                    .sum()
            })
            .unwrap_or(0)
    } else {
        meta.len()
    }
}

fn human(bytes: u64) -> String {
    let mut value = bytes as f64;
    for unit in ["B", "KiB", "MiB", "GiB"] {
        if value < 1024.0 || unit == "GiB" {
            return if unit == "B" {
                format!("{bytes} B")
            } else {
                format!("{value:.1} {unit}")
            };
        }
        value /= 1024.0;
    }
    unreachable!()
}

/// Runs `uvdeploy addons`.
pub fn addons(
    options: &AddonsOptions,
    env: &Env,
) -> Result<std::process::ExitCode, plan::report::Fault> {
    let app_dir = options.app_dir.clone().unwrap_or_else(|| ".".into());
    let app = std::fs::canonicalize(&app_dir).map_err(|e| {
        plan::report::Message::usage(format!("cannot use APP_DIR `{}`: {e}", app_dir.display()))
    })?;
    if let Some(kind) = options.remove {
        let dir = home(env, &app, kind);
        if !dir.exists() {
            return Err(AddonError::NoData { kind, app, dir }.into());
        }
        // Held while removing: no deployment of the app starts meanwhile.
        let _lock = match crate::lock::claim(&crate::lock::cache_root(env), &app) {
            Ok(lock) => lock,
            Err(crate::lock::LockError::Running(holder)) => {
                return Err(AddonError::Deployed {
                    app,
                    pid: holder.pid,
                }
                .into())
            }
            Err(e) => return Err(e.into()),
        };
        std::fs::remove_dir_all(&dir).map_err(io(kind, &dir))?;
        eprintln!(
            "addons: removed the {kind} add-on's data of `{}` ({})",
            app.display(),
            dir.display()
        );
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let mut out = String::new();
    for kind in Kind::ALL {
        let dir = home(env, &app, kind);
        if !dir.exists() {
            continue;
        }
        let credentials = std::fs::read_to_string(dir.join("credentials"))
            .ok()
            .and_then(|t| Credentials::parse(&t));
        let (user, db) = match (&credentials, kind) {
            (Some(_), Kind::Redis) => ("-".to_string(), "-".to_string()),
            (Some(c), _) => (c.user.clone(), c.db.clone()),
            (None, _) => ("-".into(), "-".into()),
        };
        out.push_str(&format!(
            "{kind}\t{}\tuser={user}\tdb={db}\t{}\n",
            human(size_of(&dir)),
            dir.display()
        ));
    }
    if out.is_empty() {
        eprintln!(
            "addons: `{}` has no add-on data (in {})",
            app.display(),
            data_root(env).display()
        );
    }
    print!("{out}");
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let first = Credentials::load_or_create(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(first.user.starts_with('u') && first.user.len() == 16);
        assert!(first.db.starts_with('b') && first.db.len() == 20);
        assert!(
            first.password.len() == 24 && first.password.chars().all(|c| c.is_ascii_alphanumeric())
        );
        assert_eq!(Credentials::load_or_create(&path).unwrap(), first);
        assert_ne!(Credentials::generate().unwrap().password, first.password);
    }

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

    #[test]
    fn versions_and_sizes_read_as_people_write_them() {
        assert_eq!(
            parse_mariadb_version("mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu"),
            "10.11"
        );
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 * 1024 * 1024), "3.0 MiB");
    }

    #[test]
    fn each_app_has_its_own_data_directory_under_the_users_data_directory() {
        let env: Env = [("XDG_DATA_HOME", "/d"), ("HOME", "/h")]
            .into_iter()
            .collect();
        let a = home(&env, Path::new("/srv/shop"), Kind::Postgresql);
        assert!(a.starts_with("/d/uvdeploy/addons/"));
        assert!(a.ends_with("postgresql"));
        assert_ne!(a, home(&env, Path::new("/other/shop"), Kind::Postgresql));
        let env: Env = [("HOME", "/h")].into_iter().collect();
        assert!(home(&env, Path::new("/srv/shop"), Kind::Redis)
            .display()
            .to_string()
            .starts_with("/h/.local/share/uvdeploy/addons/shop-"));
    }
}
