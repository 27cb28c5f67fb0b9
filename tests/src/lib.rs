//! The test kit shared by every crate's tests and the end-to-end tests: where the built
//! binaries are, copies of the example apps, free ports, waiting with a deadline (never a
//! bare sleep), a tiny HTTP client, and a guard that stops what a test started.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A binary of the workspace, built by `cargo test` in the same target directory as the test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/<test> -> target/debug/<name>
    let path = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace`",
        path.display()
    );
    path
}

/// A directory that other users can read: `varnishd` drops privileges and must read the
/// files a test renders. `tempfile` makes 0700 directories, so open this one up.
pub fn shared_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("uvdeploy-test-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A copy of `examples/NAME` in a fresh readable temp dir; returns (guard, app path).
pub fn copy_example(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = shared_tempdir();
    let app = dir.path().join(name);
    copy_tree(&root().join("examples").join(name), &app);
    (dir, app)
}

/// A copy of `tests/fixtures/NAME` (an app made for one behaviour) in a fresh readable temp
/// dir; returns (guard, app path).
pub fn copy_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = shared_tempdir();
    let app = dir.path().join(name);
    copy_tree(&root().join("tests/fixtures").join(name), &app);
    (dir, app)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == ".venv" || name == "__pycache__" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `count` consecutive ports that are free on 127.0.0.1 now, in a range that tests running
/// in parallel do not share (each call moves on). They stay below the kernel's ephemeral
/// range (32768 and up), so no outgoing connection takes one between the pick and the bind.
pub fn free_ports(count: u16) -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 20000;
    const SPAN: u16 = 12000;
    // Start from a per-process offset so that test binaries running at once rarely collide.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let offset = (std::process::id() % 120) as u16 * 100;
    loop {
        let step = NEXT.fetch_add(count + 1, Ordering::SeqCst) % SPAN;
        let base = FIRST + (offset + step) % (SPAN - count);
        if (base..base + count).all(|p| TcpListener::bind(("0.0.0.0", p)).is_ok()) {
            return base;
        }
    }
}

pub fn free_port() -> u16 {
    free_ports(1)
}

/// Waits until `port` accepts connections on 127.0.0.1, or the deadline passes.
pub fn wait_for_port(port: u16, within: Duration) -> bool {
    wait_until(within, || TcpStream::connect(("127.0.0.1", port)).is_ok())
}

/// Polls `done` every 20 ms until it is true or `within` has passed.
pub fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A process started by a test, in its own process group; dropping the guard kills the whole
/// group, so nothing outlives the test even when it fails.
pub struct ProcessGuard {
    pub child: Child,
}

impl ProcessGuard {
    pub fn spawn(command: &mut Command) -> Self {
        command.process_group(0);
        // A test runner started as a background job inherits SIGINT and SIGQUIT ignored, and
        // a shell cannot trap a signal ignored at its start: give the child the defaults, so
        // that what a test proves does not depend on how the runner was started.
        process::with_default_signals(command);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        ProcessGuard { child }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `signal` to the process (not its group).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal);
    }

    /// Waits for the exit with a deadline; `None` if it is still running.
    pub fn wait_timeout(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut status = None;
        wait_until(within, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(-self.pid());
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 GET on 127.0.0.1 with extra headers; the connection is closed after it.
pub fn http_get(port: u16, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Response> {
    http_request("GET", port, path, headers)
}

/// One HTTP/1.1 request without a body (GET, POST, ...), as [`http_get`].
pub fn http_request(
    method: &str,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let text = String::from_utf8_lossy(raw);
    let bad = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad response: {text:?}"),
        )
    };
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut response = Response {
        status,
        headers,
        body: body.to_string(),
    };
    if response
        .header("Transfer-Encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        // A binary body (gzip) read as text may not split back into its chunks: kept as is.
        if let Some(body) = dechunked(body) {
            response.body = body;
        }
    }
    Ok(response)
}

/// A chunked body (`SIZE\r\nDATA\r\n`... `0\r\n\r\n`), put together.
fn dechunked(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

/// Clears `command`'s environment but for what belongs to the machine rather than to a
/// deployment (PATH, HOME, certificates, proxies, package indexes), so that a developer's
/// shell with `CC_HEALTH_CHECK_PATH_0` or `APP_FOLDER` set cannot change a result.
pub fn cleared(command: &mut Command) -> &mut Command {
    const KEPT: [&str; 10] = [
        "PATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "USER",
        "PYENV_ROOT",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
    ];
    const KEPT_PREFIXES: [&str; 4] = ["UV_INDEX", "UV_DEFAULT_INDEX", "UV_EXTRA_INDEX", "PIP_"];
    command.env_clear();
    for (key, value) in std::env::vars_os() {
        let Some(name) = key.to_str() else { continue };
        let kept = KEPT.contains(&name)
            || KEPT_PREFIXES.iter().any(|p| name.starts_with(p))
            || name.to_ascii_uppercase().ends_with("_PROXY");
        if kept {
            command.env(&key, value);
        }
    }
    command
}

/// The output of a command that must succeed: its stderr is the failure's message otherwise.
pub fn succeeded(output: std::process::Output) -> std::process::Output {
    assert!(
        output.status.success(),
        "{} failed:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A valid Otoroshi challenge token: HS512 with `secret`, issuer `Otoroshi`, `state`, valid
/// for 30 seconds from now.
pub fn otoroshi_token(secret: &str, state: &str) -> String {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims =
        serde_json::json!({"iss": "Otoroshi", "state": state, "iat": now, "exp": now + 30});
    encode(
        &Header::new(Algorithm::HS512),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// The environment every test gives uv: never download an interpreter.
pub fn uv_env(command: &mut Command) -> &mut Command {
    command
        .env("UV_PYTHON_DOWNLOADS", "never")
        .env("NO_COLOR", "1")
}

/// A real HTTP server on a thread, answering each path with a chosen status (404 for others;
/// status 0 means: accept, read, never answer). Stops when dropped.
pub struct TinyServer {
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl TinyServer {
    /// Serves on `bind:port` now.
    pub fn start(bind: &str, port: u16, routes: &[(&str, u16)]) -> Self {
        let listener = TcpListener::bind((bind, port)).unwrap();
        Self::serve(listener, routes)
    }

    /// Binds `bind:port` only after `delay`, as a slow app would.
    pub fn start_late(bind: &str, port: u16, routes: &[(&str, u16)], delay: Duration) -> Self {
        let routes: Vec<(String, u16)> = routes.iter().map(|(p, s)| (p.to_string(), *s)).collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let bind = bind.to_string();
        let handle = std::thread::spawn(move || {
            // Part of the server's behaviour under test, not synchronisation.
            std::thread::sleep(delay);
            if let Ok(listener) = TcpListener::bind((bind.as_str(), port)) {
                accept_loop(listener, routes, flag);
            }
        });
        TinyServer {
            port,
            stop,
            handle: Some(handle),
        }
    }

    fn serve(listener: TcpListener, routes: &[(&str, u16)]) -> Self {
        let port = listener.local_addr().unwrap().port();
        let routes: Vec<(String, u16)> = routes.iter().map(|(p, s)| (p.to_string(), *s)).collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || accept_loop(listener, routes, flag));
        TinyServer {
            port,
            stop,
            handle: Some(handle),
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    routes: Vec<(String, u16)>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering;
    listener.set_nonblocking(true).unwrap();
    let mut held = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut buf = [0u8; 4096];
                let n = stream.read(&mut buf).unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
                let status = routes
                    .iter()
                    .find(|(p, _)| *p == path)
                    .map(|(_, s)| *s)
                    .unwrap_or(404);
                if status == 0 {
                    held.push(stream);
                    continue;
                }
                let location = if (300..400).contains(&status) {
                    "Location: /elsewhere\r\n"
                } else {
                    ""
                };
                let _ = write!(stream, "HTTP/1.1 {status} X\r\n{location}Content-Length: 0\r\nConnection: close\r\n\r\n");
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

impl Drop for TinyServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// SPEC's example plan (a uv app behind Otoroshi challenge and Varnish), to edit in tests.
pub const EXAMPLE_PLAN: &str = include_str!("../../plan/tests/plan-example.json");

/// `python3 tests/fixtures/proxy.py @@LISTEN_PORT@@ @@FORWARD_PORT@@`: a custom middleware.
pub fn custom_proxy_command() -> String {
    format!(
        "python3 {} @@LISTEN_PORT@@ @@FORWARD_PORT@@",
        root().join("tests/fixtures/proxy.py").display()
    )
}

/// A VCL as users write it on the platform, marking cache hits in `X-Cache`.
pub const HIT_MARKING_VCL: &str = "sub vcl_deliver {\n    if (obj.hits > 0) {\n        set resp.http.X-Cache = \"HIT\";\n    } else {\n        set resp.http.X-Cache = \"MISS\";\n    }\n}\n";

/// Every file of a tree, links as their targets, byte for byte, but the entries named `skip`.
pub fn every_byte(dir: &Path, skip: &[&str]) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
            if skip.iter().any(|s| entry.file_name() == *s) {
                continue;
            }
            let kind = entry.file_type().unwrap();
            if kind.is_symlink() {
                let target = std::fs::read_link(entry.path()).unwrap();
                files.insert(entry.path(), target.into_os_string().into_encoded_bytes());
            } else if kind.is_dir() {
                stack.push(entry.path());
            } else {
                files.insert(entry.path(), std::fs::read(entry.path()).unwrap());
            }
        }
    }
    files
}

/// The PIDs of the live processes whose process group is `pgid`.
pub use process::processes_in_group;
