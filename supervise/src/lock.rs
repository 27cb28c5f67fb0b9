//! One deployment of an app at a time: the same app is the same directory. A deployment holds
//! a lock (`flock`) on a file named after the app's directory for as long as it runs; the
//! kernel drops it when the process ends, however it ends. The file says who holds it (PID,
//! state directory), so that a second `deploy` of the app is refused at once, naming them.

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// What the lock file says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub app_dir: PathBuf,
    pub state_dir: PathBuf,
    /// When the deployment started, in seconds since the Unix epoch.
    #[serde(default)]
    pub since: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("`{app}` is already deployed here, by PID {pid} (state directory `{state_dir}`)", app = .0.app_dir.display(), pid = .0.pid, state_dir = .0.state_dir.display())]
    Running(Holder),
    #[error("`{}` is being deployed here by another deployment, which is starting", .0.display())]
    Starting(PathBuf),
    #[error("cannot use the lock file `{path}`: {reason}")]
    File { path: PathBuf, reason: String },
}

impl plan::report::Failure for LockError {
    fn hint(&self) -> Option<String> {
        match self {
            LockError::Running(holder) => Some(format!(
                "stop it first (`uvdeploy stop`, Ctrl-C in its terminal, or `kill {}`): redeploying a running app is not supported yet",
                holder.pid
            )),
            LockError::Starting(_) => Some("wait for it to start (`uvdeploy status`), then stop it first (`uvdeploy stop`)".into()),
            LockError::File { .. } => None,
        }
    }
}

/// The lock, held until dropped.
pub struct AppLock {
    file: Flock<std::fs::File>,
    app_dir: PathBuf,
}

/// Where uvdeploy keeps what outlives a deployment: `UVDEPLOY_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/uvdeploy`, else `~/.cache/uvdeploy`.
pub fn cache_root(env: &plan::Env) -> PathBuf {
    if let Some(dir) = env.non_empty("UVDEPLOY_CACHE_DIR") {
        return dir.into();
    }
    match env.non_empty("XDG_CACHE_HOME") {
        Some(dir) => Path::new(dir).join("uvdeploy"),
        None => Path::new(env.non_empty("HOME").unwrap_or("/tmp"))
            .join(".cache")
            .join("uvdeploy"),
    }
}

/// The name uvdeploy gives the app in `app_dir` (already made absolute and canonical): its
/// directory's name, then a hash of its path (`shop-0123456789abcdef`). Its lock file and its
/// add-ons' data are named after it.
pub fn app_key(app_dir: &Path) -> String {
    let name: String = app_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    // FNV-1a: a stable name for the path, no cryptography needed.
    let hash = app_dir
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf29ce484222325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        });
    format!("{name}-{hash:016x}")
}

/// The lock file of the app in `app_dir` (already made absolute and canonical).
pub fn lock_path(root: &Path, app_dir: &Path) -> PathBuf {
    root.join("deployments")
        .join(format!("{}.lock", app_key(app_dir)))
}

/// Takes the app's lock, or says who holds it.
pub fn claim(root: &Path, app_dir: &Path) -> Result<AppLock, LockError> {
    let path = lock_path(root, app_dir);
    let err = |e: &dyn std::fmt::Display| LockError::File {
        path: path.clone(),
        reason: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| err(&e))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(file) => {
            let mut lock = AppLock {
                file,
                app_dir: app_dir.to_path_buf(),
            };
            // Who holds it, at once: the state directory follows when it is made.
            lock.record(Path::new("")).map_err(|e| err(&e))?;
            Ok(lock)
        }
        Err((mut file, nix::Error::EWOULDBLOCK)) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            // Written a moment after the lock is taken: a holder not said yet, or one whose PID
            // is not alive, is a deployment that is starting.
            match serde_json::from_str::<Holder>(&text) {
                Ok(holder) if holder.pid != 0 && alive(holder.pid) => {
                    Err(LockError::Running(holder))
                }
                _ => Err(LockError::Starting(app_dir.to_path_buf())),
            }
        }
        Err((_, e)) => Err(err(&e.desc())),
    }
}

fn alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

/// Who holds the lock file at `path`, if anyone does now (a lock file outlives its
/// deployment; only a held one names a running deployment).
pub fn holder_if_held(path: &Path) -> Option<Holder> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        // We could take it: nobody holds it.
        Ok(_) => None,
        Err((_, nix::Error::EWOULDBLOCK)) => serde_json::from_str(&text).ok(),
        Err(_) => None,
    }
}

/// A state directory's own lock (`deploy.lock` in it), held by the deployment that uses it:
/// two deployments never share one, and `uvdeploy kept` never removes one in use, however its
/// path is spelled.
pub struct StateLock {
    _file: Flock<std::fs::File>,
}

/// The name of the lock file in a state directory.
pub const STATE_LOCK: &str = "deploy.lock";

impl StateLock {
    pub fn take(dir: &Path) -> Result<Self, String> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(STATE_LOCK))
            .map_err(|e| format!("cannot be locked: {e}"))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(file) => Ok(StateLock { _file: file }),
            Err((_, nix::Error::EWOULDBLOCK)) => Err("is used by another deployment".into()),
            Err((_, e)) => Err(format!("cannot be locked: {}", e.desc())),
        }
    }
}

/// Whether a deployment (or an image build) uses the state directory `dir` now.
pub fn state_in_use(dir: &Path) -> bool {
    let Ok(file) = std::fs::File::open(dir.join(STATE_LOCK)) else {
        return false;
    };
    matches!(
        Flock::lock(file, FlockArg::LockSharedNonblock),
        Err((_, nix::Error::EWOULDBLOCK))
    )
}

/// Every deployment running now, by the locks held in `root` (sorted by app).
pub fn running(root: &Path) -> Vec<Holder> {
    let mut held: Vec<Holder> = std::fs::read_dir(root.join("deployments"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| holder_if_held(&e.path()))
                .collect()
        })
        .unwrap_or_default();
    held.sort_by(|a, b| a.app_dir.cmp(&b.app_dir));
    held
}

/// Waits, up to `timeout`, until nobody holds the lock at `path` (its deployment has ended):
/// whether it was released. Blocks on the lock itself, in a thread: no polling.
pub fn wait_released(path: &Path, timeout: std::time::Duration) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return true;
    };
    let (released, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = Flock::lock(file, FlockArg::LockShared);
        let _ = released.send(());
    });
    wait.recv_timeout(timeout).is_ok()
}

impl AppLock {
    /// The lock file's descriptor, for a process that must hold the lock with us.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.file.as_raw_fd()
    }

    /// Writes who holds the lock.
    pub fn record(&mut self, state_dir: &Path) -> std::io::Result<()> {
        let holder = Holder {
            pid: std::process::id(),
            app_dir: self.app_dir.clone(),
            state_dir: state_dir.to_path_buf(),
            since: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.file
            .write_all(serde_json::to_string(&holder)?.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_is_refused_naming_the_holder_until_the_first_is_dropped() {
        let root = tempfile::tempdir().unwrap();
        let app = Path::new("/srv/my app");
        let mut first = claim(root.path(), app).unwrap();
        first.record(Path::new("/tmp/state")).unwrap();
        match claim(root.path(), app) {
            Err(LockError::Running(holder)) => {
                assert_eq!(holder.pid, std::process::id());
                assert_eq!(holder.state_dir, Path::new("/tmp/state"));
            }
            other => panic!("not refused: {:?}", other.err()),
        }
        // Another app is another lock.
        assert!(claim(root.path(), Path::new("/srv/other")).is_ok());
        drop(first);
        assert!(claim(root.path(), app).is_ok());
    }

    #[test]
    fn lock_files_are_named_after_the_app_and_never_collide_on_the_name() {
        let root = Path::new("/c");
        let a = lock_path(root, Path::new("/a/shop"));
        let b = lock_path(root, Path::new("/b/shop"));
        assert_ne!(a, b);
        assert!(a
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("shop-"));
        let odd = lock_path(root, Path::new("/x/we\"ird\nname"));
        assert!(odd
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("we_ird_name-"));
    }
}
