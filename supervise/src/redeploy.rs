//! Redeploys: `uvdeploy deploy APP` while APP is deployed asks the running deployment, through
//! the control socket in its state directory, to deploy again. The running `uvsupervise` does
//! the work (it owns the processes and the front); the caller only shows what it says and
//! exits with its verdict.
//!
//! The caller sends one JSON line (a [`Request`]); the deployment answers with frames: `o` and
//! bytes, output for the caller's stderr; `x` and one byte, the exit status, last. The caller
//! that goes away (Ctrl-C) cancels the redeploy: its new instances are stopped, the old ones
//! serve on.

use plan::Env;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The control socket's name in the state directory.
pub const SOCKET: &str = "control.sock";

/// What the caller of a redeploy asks: its environment and options.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Request {
    /// The caller's PID, for what is said.
    pub pid: u32,
    /// The caller's environment, env files and `--env` layered over it.
    pub env: BTreeMap<String, String>,
    /// Absolute: the deployment does not run in the caller's directory.
    pub env_files: Vec<PathBuf>,
    pub assignments: Vec<String>,
    pub working_tree: bool,
    pub timeout_ms: u64,
    /// How many instances; 0: as many as now (1 for a first deployment).
    pub instances: u32,
    pub public_port: Option<u16>,
    pub addons: Vec<String>,
}

impl Request {
    pub fn env(&self) -> Env {
        let mut env = Env::default();
        for (key, value) in &self.env {
            env.set(key.clone(), value.clone());
        }
        env
    }
}

/// The longest path a Unix socket may have, its final NUL included (`sun_path`).
const SOCKET_PATH_MAX: usize = 108;

/// Where a deployment's sockets go: `state`, unless a socket's path there would be too long
/// (a deep TMPDIR): then a new private directory under /tmp, which the caller removes at the
/// end (`true`).
pub fn sockets_dir(state: &Path) -> std::io::Result<(PathBuf, bool)> {
    // The longest name: the front's `front/sozu.sock`... in the state directory itself.
    let longest = state
        .join("sozu.sock")
        .as_os_str()
        .len()
        .max(state.join(SOCKET).as_os_str().len());
    if longest < SOCKET_PATH_MAX {
        return Ok((state.to_path_buf(), false));
    }
    let dir = tempfile::Builder::new()
        .prefix("uvdeploy-sockets.")
        .tempdir_in("/tmp")?
        .keep();
    Ok((dir, true))
}

/// The control socket, made in `sockets` (linked from `state` when that is elsewhere): only
/// its owner may connect (mode 0600).
pub fn listen(state: &Path, sockets: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = sockets.join(SOCKET);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    if sockets != state {
        let link = state.join(SOCKET);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&path, &link)?;
    }
    Ok(listener)
}

/// One caller, on the deployment's side.
pub struct Caller {
    pub stream: UnixStream,
}

impl Caller {
    /// The next caller waiting, and what it asks; `None` when none is, or it asked nothing
    /// readable (it is told).
    pub fn accept(listener: &UnixListener) -> Option<(Caller, Result<Request, String>)> {
        let (stream, _) = listener.accept().ok()?;
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        let mut line = String::new();
        let read = std::io::BufReader::new(&stream)
            .take(64 << 20)
            .read_line(&mut line);
        let request = match read {
            Ok(_) => {
                serde_json::from_str(&line).map_err(|e| format!("a request it cannot read: {e}"))
            }
            Err(e) => Err(format!("no request: {e}")),
        };
        Some((Caller { stream }, request))
    }

    /// Output for the caller's stderr.
    pub fn say(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        frame(&mut self.stream, b'o', bytes)
    }

    /// The verdict: the caller exits with `status`.
    pub fn finish(mut self, status: u8) {
        let _ = frame(&mut self.stream, b'x', &[status]);
    }

    /// A sink for [`crate::prefix::tee`]: what is said meanwhile reaches the caller too.
    pub fn sink(&self) -> std::io::Result<impl FnMut(&[u8]) -> std::io::Result<()> + Send> {
        let mut stream = self.stream.try_clone()?;
        Ok(move |bytes: &[u8]| frame(&mut stream, b'o', bytes))
    }
}

fn frame(out: &mut impl Write, kind: u8, bytes: &[u8]) -> std::io::Result<()> {
    let mut message = Vec::with_capacity(bytes.len() + 5);
    message.push(kind);
    message.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    message.extend_from_slice(bytes);
    out.write_all(&message)
}

/// The caller's side: sends `request` to the deployment whose state directory is `state`,
/// shows what it says on stderr, and returns its verdict (1 when it ended without one).
pub fn ask(state: &Path, request: &Request) -> Result<u8, String> {
    // A link to where it is, when the state directory's path is too long for a socket's.
    let path = state.join(SOCKET);
    let path = std::fs::read_link(&path).unwrap_or(path);
    let mut stream = UnixStream::connect(&path).map_err(|e| {
        format!(
            "cannot reach the running deployment through `{}`: {e}",
            path.display()
        )
    })?;
    let mut line = serde_json::to_string(request).map_err(|e| e.to_string())?;
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut header = [0u8; 5];
    loop {
        if stream.read_exact(&mut header).is_err() {
            crate::prefix::to_stderr(
                b"deploy: the running deployment ended before the redeploy's verdict\n",
            );
            return Ok(plan::report::exit::FAILED);
        }
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut body = vec![0u8; len];
        if stream.read_exact(&mut body).is_err() {
            return Ok(plan::report::exit::FAILED);
        }
        match header[0] {
            b'x' => return Ok(body.first().copied().unwrap_or(plan::report::exit::FAILED)),
            _ => crate::prefix::to_stderr(&body),
        }
    }
}
