//! One add-on server: whom it runs as, its programs, its commands (initialisation, the
//! server, the first start's database and user), the protocol check that says it answers, and
//! the variables the app gets.

use super::data::write_private;
use super::{home, io, AddonError, Credentials, Kind};
use plan::Env;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    pub(super) fn marker(&self) -> PathBuf {
        self.home.join("initialised")
    }

    pub fn initialised(&self) -> bool {
        self.marker().is_file()
    }

    /// An empty data directory, the server user's (what an interrupted first start left is
    /// started again from nothing).
    pub(super) fn fresh_data(&self) -> Result<(), AddonError> {
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
    pub(super) fn init_command(&self) -> Result<Option<Command>, AddonError> {
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
    pub(super) fn server_command(&self) -> Result<Command, AddonError> {
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
    pub(super) fn bootstrap_command(&self) -> Result<Option<(Command, String)>, AddonError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_sizes_read_as_people_write_them() {
        assert_eq!(
            parse_mariadb_version("mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu"),
            "10.11"
        );
    }
}
