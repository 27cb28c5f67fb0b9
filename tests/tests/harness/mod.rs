//! The harness of the end-to-end tests of a deployment: `Setup` says what to deploy and how,
//! `Deployment` is the running `scripts/deploy`, read line by line and stopped when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::{
    bin, copy_example, free_ports, processes_in_group, root, ProcessGuard, HIT_MARKING_VCL,
};

pub const SECRET: &str = "deploy-test-otoroshi-secret";

/// A running `scripts/deploy`, stopped (TERM, then KILL of its group and of every process
/// that carries its mark) when dropped.
pub struct Deployment {
    pub guard: ProcessGuard,
    pub lines: Receiver<String>,
    /// stdout and stderr, line by line as they came (the two interleave at random).
    pub output: Arc<Mutex<String>>,
    /// stdout alone, in its own order (the health check's verdict).
    pub stdout: Arc<Mutex<String>>,
    /// Each reader thread says here when its pipe reached its end.
    pub drained: Receiver<()>,
    /// `UVDEPLOY_TEST_MARK`'s value: every process the deployment starts inherits it, so
    /// what it leaves behind is found even outside its process group.
    pub mark: String,
    pub public: u16,
    pub app: u16,
    pub tmp: tempfile::TempDir,
    pub app_dir: PathBuf,
}

pub struct Setup {
    pub example: &'static str,
    /// What runs the deployment: `bash scripts/deploy` unless set.
    pub entry: Option<Vec<std::ffi::OsString>>,
    /// Let deploy make its own state directory (under `TMPDIR`, the test's) instead of
    /// naming one.
    pub own_state_dir: bool,
    /// Directories put first on PATH (stand-ins for programs not packaged here).
    pub path_first: Vec<PathBuf>,
    pub vars: Vec<(&'static str, String)>,
    /// Middlewares need this many ports from the public one on.
    pub chain_ports: u16,
    pub extra_args: Vec<String>,
    /// Deploy behind the front (Sōzu) on the public port, the chain on ports of its own;
    /// without, the chain takes the public port itself (`--front none`), as these tests of the
    /// chain expect.
    pub front: bool,
    /// The public port, when the test chooses it (a free one by default).
    pub public_port: Option<u16>,
}

impl Setup {
    pub fn new(example: &'static str) -> Self {
        Setup {
            example,
            entry: None,
            own_state_dir: false,
            path_first: vec![],
            vars: vec![("CC_PYTHON_UV_RUN_COMMAND", "uv run python app.py".into())],
            chain_ports: 1,
            extra_args: vec![],
            front: false,
            public_port: None,
        }
    }

    /// A legacy-mode example, deployed with its own `deploy.env`, as its README says, and
    /// pip's cache shared by the tests (as a user's is by their deployments).
    pub fn legacy(example: &'static str) -> Self {
        let env_file = root().join("examples").join(example).join("deploy.env");
        let pip_cache = root().join("target/test-pip-cache");
        Setup {
            vars: vec![("PIP_CACHE_DIR", pip_cache.display().to_string())],
            ..Setup::new(example)
        }
        .args(&["--env-file", env_file.to_str().unwrap()])
    }

    pub fn var(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.vars.push((key, value.into()));
        self
    }

    /// Behind the front, Sōzu.
    pub fn front(mut self) -> Self {
        self.front = true;
        self
    }

    pub fn ports(mut self, n: u16) -> Self {
        self.chain_ports = n;
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.extra_args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Prepares the app copy with `edit`, then starts the deployment.
    pub fn start_with(self, edit: impl FnOnce(&Path)) -> Deployment {
        let (tmp, app_dir) = copy_example(self.example);
        edit(&app_dir);
        self.launch(tmp, app_dir)
    }

    /// Makes the app a git repository: `committed` edits it before the first commit,
    /// `uncommitted` after; then starts the deployment.
    pub fn start_in_repo(
        self,
        committed: impl FnOnce(&Path),
        uncommitted: impl FnOnce(&Path),
    ) -> Deployment {
        let (tmp, app_dir) = copy_example(self.example);
        committed(&app_dir);
        git_repo(&app_dir);
        uncommitted(&app_dir);
        self.launch(tmp, app_dir)
    }

    pub fn launch(self, tmp: tempfile::TempDir, app_dir: PathBuf) -> Deployment {
        let public = self
            .public_port
            .unwrap_or_else(|| free_ports(self.chain_ports));
        let app = free_ports(1);
        let entry = self.entry.clone().unwrap_or_else(|| {
            vec![
                "bash".into(),
                root().join("scripts/deploy").into_os_string(),
            ]
        });
        let mut cmd = Command::new(&entry[0]);
        testkit::cleared(&mut cmd)
            .args(&entry[1..])
            .args([
                "--public-port",
                &public.to_string(),
                "--app-port",
                &app.to_string(),
            ])
            .args(if self.own_state_dir {
                vec![]
            } else {
                vec![
                    "--state-dir".into(),
                    tmp.path().join("state").into_os_string(),
                ]
            })
            .env("TMPDIR", tmp.path())
            .args(if self.front {
                vec![]
            } else {
                vec!["--front", "none"]
            })
            .args(&self.extra_args)
            .arg(&app_dir)
            .env("UVDEPLOY_BIN", bin("detect").parent().unwrap())
            .env("UV_PYTHON_DOWNLOADS", "never")
            .env("UV_CACHE_DIR", tmp.path().join("uv-cache"))
            .env("UVDEPLOY_CACHE_DIR", tmp.path().join("uvdeploy-cache"))
            .env("UVDEPLOY_GRACE_SECONDS", "5")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.envs(self.vars.iter().map(|(k, v)| (*k, v.as_str())));
        if !self.path_first.is_empty() {
            let mut path = self.path_first.clone();
            path.extend(std::env::split_paths(
                &std::env::var_os("PATH").unwrap_or_default(),
            ));
            cmd.env("PATH", std::env::join_paths(path).unwrap());
        }
        let mark = mark();
        cmd.env("UVDEPLOY_TEST_MARK", &mark);
        let mut guard = ProcessGuard::spawn(&mut cmd);
        let (sender, lines) = channel();
        let (done, drained) = channel();
        let output = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        for (stream, alone) in [
            (
                Box::new(guard.child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
                Some(stdout.clone()),
            ),
            (Box::new(guard.child.stderr.take().unwrap()), None),
        ] {
            let (sender, output, done) = (sender.clone(), output.clone(), done.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(alone) = &alone {
                        alone.lock().unwrap().push_str(&format!("{line}\n"));
                    }
                    output.lock().unwrap().push_str(&format!("{line}\n"));
                    let _ = sender.send(line);
                }
                let _ = done.send(());
            });
        }
        Deployment {
            guard,
            lines,
            output,
            stdout,
            drained,
            mark,
            public,
            app,
            tmp,
            app_dir,
        }
    }

    pub fn start(self) -> Deployment {
        self.start_with(|_| {})
    }
}

impl Deployment {
    /// Waits for a line containing `needle`, up to `within`.
    pub fn wait_for(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    pub fn deployed(&self) {
        // A deadline, not a wait: legacy builds download from PyPI, several at once.
        assert!(
            self.wait_for("==> deployed", Duration::from_secs(180)),
            "not deployed:\n{}",
            self.output()
        );
        // The verdict came before, but on stdout, which another thread reads: a loaded
        // machine may not have read it yet.
        assert!(
            testkit::wait_until(Duration::from_secs(10), || self
                .stdout()
                .contains("Response from GET ")),
            "no verdict on stdout:\n{}",
            self.output()
        );
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// The exit status, waiting up to `within`; then the output read to its end (a process
    /// left behind holding the pipes open would show here as a missing end).
    pub fn exit(&mut self, within: Duration) -> ExitStatus {
        let status = self
            .guard
            .wait_timeout(within)
            .unwrap_or_else(|| panic!("still running:\n{}", self.output()));
        for _ in 0..2 {
            self.drained
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("the output never ended:\n{}", self.output()));
        }
        status
    }

    pub fn stop(&mut self) -> ExitStatus {
        self.guard.signal(nix::sys::signal::Signal::SIGTERM);
        self.exit(Duration::from_secs(30))
    }

    /// Neither deploy's process group nor any process it started (in any group) is left,
    /// within 2 s.
    pub fn nothing_left(&self) {
        let group = self.guard.pid();
        let left = || {
            let mut left = processes_in_group(group);
            left.extend(marked_processes(&self.mark));
            left
        };
        assert!(
            testkit::wait_until(Duration::from_secs(2), || left().is_empty()),
            "processes left: {:?}\n{}",
            left()
                .iter()
                .map(|&p| format!("{p}: {}", process::command_line(p)))
                .collect::<Vec<_>>(),
            self.output()
        );
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if self.guard.child.try_wait().ok().flatten().is_none() {
            self.guard.signal(nix::sys::signal::Signal::SIGTERM);
            self.guard.wait_timeout(Duration::from_secs(15));
        }
        // Whatever a failed test leaves, it must not outlive the test.
        for pid in marked_processes(&self.mark) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Makes `app_dir` a git repository with one commit of everything in it.
pub fn git_repo(app_dir: &Path) {
    for args in [
        &["init", "-q"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "commit",
            "-q",
            "-m",
            "The app as pushed",
        ],
    ] {
        let status = Command::new("git")
            .args(args)
            .current_dir(app_dir)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }
}

/// Sets the test clock (`UVDEPLOY_CLOCK`'s file) to `time`: written whole, then renamed, so
/// that it is never read half-written.
pub fn set_clock(file: &Path, time: &str) {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, time).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

/// A mark no other deployment carries.
pub fn mark() -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    )
}

/// The live processes whose environment carries `UVDEPLOY_TEST_MARK=mark`.
pub fn marked_processes(mark: &str) -> Vec<i32> {
    let needle = format!("UVDEPLOY_TEST_MARK={mark}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                !stat
                    .rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            });
            alive
                && std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == needle.as_bytes()))
        })
        .collect()
}

pub fn token() -> String {
    testkit::otoroshi_token(SECRET, "e2e")
}

pub fn with_vcl(app: &Path) {
    std::fs::create_dir_all(app.join("clevercloud")).unwrap();
    std::fs::write(app.join("clevercloud/varnish.vcl"), HIT_MARKING_VCL).unwrap();
}
