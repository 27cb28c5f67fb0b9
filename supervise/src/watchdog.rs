//! Should the supervisor be killed outright (SIGKILL), nothing it started may survive. Linux's
//! `PR_SET_PDEATHSIG` covers the processes it started directly, but not what they start, and
//! not a program that changes its credentials (varnishd drops privileges). So a watchdog, a
//! second process of ours, learns each process group as it is made, through a pipe; when the
//! pipe ends without a last `done`, the supervisor is gone: the watchdog stops every group
//! still there (TERM, then KILL after the grace period).
//!
//! The watchdog holds neither the supervisor's stdout nor its stderr (they are `/dev/null` for
//! it): a caller reading the supervisor's output to the end is never kept waiting by it.

use nix::sys::signal::{killpg, signal, SigHandler, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Watchdog {
    child: Child,
}

impl Watchdog {
    /// Starts this program again as the watchdog (`--watchdog`). It holds the file `hold` (the
    /// app's lock) open too: the app is not free again until the watchdog has stopped what we
    /// left, should we be killed.
    pub fn start(grace: Duration, hold: Option<std::os::fd::RawFd>) -> std::io::Result<Self> {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(std::env::current_exe()?);
        process::with_default_signals(&mut command);
        if let Some(fd) = hold {
            // SAFETY: fcntl is async-signal-safe; `fd` stays open in this process meanwhile.
            unsafe {
                command.pre_exec(move || {
                    nix::fcntl::fcntl(
                        fd,
                        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
                    )?;
                    Ok(())
                });
            }
        }
        let child = command
            .arg("--watchdog")
            .arg(grace.as_millis().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Out of the terminal's foreground group: Ctrl-C is for the supervisor.
            .process_group(0)
            .spawn()?;
        Ok(Watchdog { child })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn tell(&mut self, line: &str) {
        if let Some(stdin) = &mut self.child.stdin {
            let _ = stdin.write_all(line.as_bytes());
        }
    }

    /// A new process group, led by `pid`.
    pub fn watch(&mut self, pid: i32) {
        let start = process::tree::start_time(pid).unwrap_or(0);
        self.tell(&format!("+{pid} {start}\n"));
    }

    /// The leader `pid` was reaped.
    pub fn forget(&mut self, pid: i32) {
        if pid != self.pid() {
            self.tell(&format!("-{pid}\n"));
        }
    }

    /// What runs in `dir` (its working directory is in it: a generation's copy) is the
    /// deployment's too: a daemon a hook or a worker left with a session of its
    /// own (`setsid`) is in no group we know, and is stopped all the same.
    pub fn dir(&mut self, dir: &std::path::Path) {
        // In hex: a path may hold a newline, which ends a line here.
        let hex: String = dir
            .as_os_str()
            .as_encoded_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.tell(&format!("={hex}\n"));
    }

    /// Everything is stopped: the watchdog ends, and is reaped.
    pub fn done(mut self) {
        self.tell("done\n");
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The watchdog itself: reads `+PID START`, `-PID` and `done` lines on stdin.
pub fn run(grace: Duration) -> u8 {
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        // SAFETY: ignoring a signal installs no handler.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
    let mut groups: BTreeMap<i32, u64> = BTreeMap::new();
    let mut dirs: Vec<std::path::PathBuf> = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line == "done" {
            return 0;
        }
        if let Some(rest) = line.strip_prefix('+') {
            let mut words = rest.split(' ');
            if let (Some(Ok(pid)), Some(Ok(start))) = (
                words.next().map(str::parse::<i32>),
                words.next().map(str::parse::<u64>),
            ) {
                groups.insert(pid, start);
            }
        } else if let Some(Ok(pid)) = line.strip_prefix('-').map(str::parse::<i32>) {
            groups.remove(&pid);
        } else if let Some(hex) = line.strip_prefix('=') {
            let bytes: Option<Vec<u8>> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect();
            if let Some(bytes) = bytes {
                use std::os::unix::ffi::OsStringExt;
                dirs.push(std::path::PathBuf::from(std::ffi::OsString::from_vec(
                    bytes,
                )));
            }
        }
    }
    // The supervisor is gone. A group is still ours while it has members and its leader, if
    // alive, is the process we were told of (a group ID is not reused while it has members).
    let ours = |(&pgid, &start): (&i32, &u64)| {
        let members = process::processes_in_group(pgid);
        let leader_ok = !members.contains(&pgid) || process::tree::start_time(pgid) == Some(start);
        (!members.is_empty() && leader_ok).then_some(pgid)
    };
    // What works in a copy, but this watchdog (started wherever the supervisor was).
    let me = std::process::id() as i32;
    let strays = || -> Vec<i32> {
        let mut pids = process::tree::working_in(&dirs);
        pids.retain(|&pid| pid != me);
        pids
    };
    let stop = |sig: Signal| -> usize {
        let live: Vec<i32> = groups.iter().filter_map(ours).collect();
        for &pgid in &live {
            let _ = killpg(Pid::from_raw(pgid), sig);
        }
        let strays = strays();
        for &pid in &strays {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
        }
        live.len() + strays.len()
    };
    stop(Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if groups.iter().filter_map(ours).next().is_none() && strays().is_empty() {
            return 0;
        }
        // Nothing to wait on but time: the processes are not our children.
        std::thread::sleep(Duration::from_millis(50));
    }
    stop(Signal::SIGKILL);
    0
}
