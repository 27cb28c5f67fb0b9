//! The processes of a deployment, and the signals that stop it.
//!
//! - TERM, INT and HUP are taken back to their default disposition (a signal ignored when we
//!   started, as in a background job of a script, would otherwise never come), then blocked and
//!   read from a `signalfd`, with SIGCHLD: one loop sees both, however many arrive, in any
//!   phase. The processes we start get the default dispositions and an empty signal mask.
//! - Every process leads a process group of its own, so that one signal reaches it and all it
//!   starts. A group is signalled only while its leader is our child and not yet reaped: its
//!   PID cannot have been reused.
//! - We are a subreaper: what a process leaves behind (a daemon started by a hook) becomes our
//!   child, is seen, and is stopped with the rest.
//! - Each process gets `PR_SET_PDEATHSIG`, and a watchdog ([`crate::watchdog`]) stops every group
//!   should we be killed outright.

use crate::prefix::{self, Style};
use crate::watchdog::Watchdog;
use nix::sys::signal::{kill, killpg, signal, SigHandler, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::{Duration, Instant};

/// The signals that stop a deployment.
pub const STOP_SIGNALS: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];

/// One process we started.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub pid: i32,
    pub started: Instant,
    /// The exit status, as a shell gives it (128 + N for signal N), once reaped.
    pub status: Option<i32>,
    /// Stopped after every other process (an add-on's server: the app may use it until it
    /// ends).
    pub last: bool,
}

/// What the loop saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// TERM, INT or HUP.
    Stop(Signal),
    /// The process of this index ended with this status.
    Exited(usize, i32),
    /// A process we did not start (an orphan we adopted) ended.
    OrphanReaped,
    /// A file we were asked to watch ([`Children::watch`]) is readable, or closed.
    Ready(RawFd),
}

/// Where a process's stdout and stderr go.
pub enum Output {
    /// Both to stderr, each line behind the process's name.
    Prefixed,
    /// stdout as the caller set it up (a file, the next step's stdin); stderr to ours as it
    /// is written (the build steps speak for themselves), but through the same relay: secrets
    /// hidden, control characters shown, not sent.
    Plain,
    /// Both to stderr as they are written, through the same relay (a tool that speaks for
    /// itself on both, the health check).
    Unlabelled,
    /// As the command was set up by the caller (stdout to a file or a pipe, stderr ours).
    AsSet,
}

pub struct Children {
    signals: SignalFd,
    pub procs: Vec<Proc>,
    events: std::collections::VecDeque<Event>,
    grace: Duration,
    style: Style,
    watchdog: Option<Watchdog>,
    /// The processes whose output is relayed, and where each relay says (with the process's
    /// index) that it has read that output to the end.
    relayed: std::collections::BTreeSet<usize>,
    relays_done: (Sender<usize>, Receiver<usize>),
    /// The stdout of the last process started, when it was a pipe: the next step's stdin.
    pending_stdout: Option<std::process::ChildStdout>,
    /// How many processes got a prefix: the next one's colour.
    painted: usize,
    /// The names' column: 8, or the longest name to come ([`Children::align`]).
    label_width: usize,
    /// The generation the processes started from now on belong to (their lines reach a
    /// redeploy's caller only when it is the one it asked for: [`prefix::tee`]).
    pub tag: u32,
    /// The secret values no process's output may show.
    secrets: std::sync::Arc<Vec<Vec<u8>>>,
    me: i32,
    /// Files whose readiness is an event too (the control socket, a redeploy's caller). Their
    /// owner keeps them open while they are watched.
    watched: Vec<RawFd>,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot set up signal handling: {0}")]
    Signals(String),
    #[error("cannot start the watchdog: {0}")]
    Watchdog(String),
}

impl plan::report::Failure for SetupError {}

impl Children {
    /// Takes the signals over and starts the watchdog. Must run before any thread starts.
    /// `hold`: a file the watchdog keeps open as long as it lives (the app's lock).
    pub fn new(
        grace: Duration,
        style: Style,
        hold: Option<std::os::fd::RawFd>,
    ) -> Result<Self, SetupError> {
        let err = |e: nix::Error| SetupError::Signals(e.desc().to_string());
        let mut mask = SigSet::empty();
        for sig in STOP_SIGNALS {
            // SAFETY: no handler is installed, only the default disposition restored.
            unsafe { signal(sig, SigHandler::SigDfl) }.map_err(err)?;
            mask.add(sig);
        }
        // Ignored SIGCHLD would make the kernel reap our children itself: we would never
        // know how they ended.
        // SAFETY: as above.
        unsafe { signal(Signal::SIGCHLD, SigHandler::SigDfl) }.map_err(err)?;
        mask.add(Signal::SIGCHLD);
        mask.thread_block().map_err(err)?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(err)?;
        let _ = nix::sys::prctl::set_child_subreaper(true);
        let watchdog =
            Watchdog::start(grace, hold).map_err(|e| SetupError::Watchdog(e.to_string()))?;
        Ok(Children {
            signals,
            procs: Vec::new(),
            events: Default::default(),
            grace,
            style,
            watchdog: Some(watchdog),
            relayed: Default::default(),
            relays_done: channel(),
            pending_stdout: None,
            painted: 0,
            label_width: 8,
            tag: 1,
            secrets: Default::default(),
            me: std::process::id() as i32,
            watched: Vec::new(),
        })
    }

    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Starts `command` as `name`, leading a process group of its own; returns its index.
    pub fn spawn(
        &mut self,
        name: &str,
        command: &mut Command,
        output: Output,
    ) -> std::io::Result<usize> {
        let me = self.me;
        command.process_group(0);
        process::with_default_signals(command);
        // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
        unsafe {
            command.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
                if nix::unistd::getppid().as_raw() != me {
                    nix::libc::_exit(1);
                }
                Ok(())
            });
        }
        let mut reader = None;
        match output {
            Output::Prefixed => {
                let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
                let write2: OwnedFd = write.as_fd().try_clone_to_owned()?;
                command
                    .stdin(Stdio::null())
                    .stdout(Stdio::from(write))
                    .stderr(Stdio::from(write2));
                reader = Some((read, true));
            }
            Output::Plain => {
                let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
                command.stderr(Stdio::from(write));
                reader = Some((read, false));
            }
            Output::Unlabelled => {
                let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
                let write2: OwnedFd = write.as_fd().try_clone_to_owned()?;
                command
                    .stdout(Stdio::from(write))
                    .stderr(Stdio::from(write2));
                reader = Some((read, false));
            }
            Output::AsSet => {}
        }
        let spawned = command.spawn();
        // The write ends are the child's alone now: the relay sees the end when it ends.
        command.stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = spawned?;
        self.pending_stdout = child.stdout.take();
        let pid = child.id() as i32;
        if let Some(watchdog) = &mut self.watchdog {
            watchdog.watch(pid);
        }
        let index = self.procs.len();
        if let Some((read, labelled)) = reader {
            let label = if labelled {
                self.painted += 1;
                prefix::label(name, self.painted - 1, self.style.colour, self.label_width)
            } else {
                Vec::new()
            };
            let style = self.style;
            let done = self.relays_done.0.clone();
            self.relayed.insert(index);
            let secrets = self.secrets.clone();
            let tag = self.tag;
            std::thread::spawn(move || {
                prefix::relay(
                    std::fs::File::from(read),
                    &label,
                    style,
                    &secrets,
                    move |block: &[u8]| prefix::to_stderr_from(tag, block),
                );
                let _ = done.send(index);
            });
        }
        self.procs.push(Proc {
            name: name.to_string(),
            pid,
            started: Instant::now(),
            status: None,
            last: false,
        });
        Ok(self.procs.len() - 1)
    }

    /// The names of processes to come: their lines and the others' align on the longest (8
    /// columns at least; never narrower than before).
    pub fn align<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        for name in names {
            self.label_width = self.label_width.max(name.chars().count());
        }
    }

    /// What runs in `dir` is the deployment's too, should we be killed ([`Watchdog::dir`]).
    pub fn watch_dir(&mut self, dir: &std::path::Path) {
        if let Some(watchdog) = &mut self.watchdog {
            watchdog.dir(dir);
        }
    }

    /// Process `index` is to be stopped after all the others.
    pub fn stop_last(&mut self, index: usize) {
        self.procs[index].last = true;
    }

    /// The secret values that the output of the processes started from now on never shows.
    pub fn set_secrets(&mut self, env: &plan::Env) {
        let values = plan::secret::redacted_values(env);
        self.secrets = std::sync::Arc::new(values.iter().map(|v| v.as_bytes().to_vec()).collect());
        prefix::set_secrets(self.secrets.clone());
    }

    /// Events taken out of order, given back: the next calls to [`Children::next`] return
    /// them first, in this order.
    pub fn keep(&mut self, events: Vec<Event>) {
        for event in events.into_iter().rev() {
            self.events.push_front(event);
        }
    }

    /// `fd` readable (or closed) is an event from now on, until [`Children::unwatch`]. The
    /// caller keeps it open meanwhile.
    pub fn watch(&mut self, fd: RawFd) {
        self.watched.push(fd);
    }

    pub fn unwatch(&mut self, fd: RawFd) {
        self.watched.retain(|&f| f != fd);
    }

    /// The stdout of the last process started, when it was set up as a pipe.
    pub fn take_stdout(&mut self) -> Option<Stdio> {
        self.pending_stdout.take().map(Stdio::from)
    }

    /// The next event, waiting up to `deadline` (for ever with `None`); `None` at the deadline.
    pub fn next(&mut self, deadline: Option<Instant>) -> Option<Event> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Some(event);
            }
            let timeout = match deadline {
                None => nix::poll::PollTimeout::NONE,
                Some(d) => {
                    let left = d.checked_duration_since(Instant::now())?;
                    // Rounded up: a deadline is not missed by a millisecond's truncation.
                    let ms = left.as_millis().saturating_add(1).min(i32::MAX as u128);
                    nix::poll::PollTimeout::try_from(ms as i32)
                        .unwrap_or(nix::poll::PollTimeout::MAX)
                }
            };
            let mut fds = vec![nix::poll::PollFd::new(
                self.signals.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            for &fd in &self.watched {
                // SAFETY: a watched file is kept open by its owner until it is unwatched.
                let fd = unsafe { BorrowedFd::borrow_raw(fd) };
                fds.push(nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN));
            }
            match nix::poll::poll(&mut fds, timeout) {
                Ok(0) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return None;
                    }
                }
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(_) => return None,
            }
            let ready: Vec<RawFd> = fds[1..]
                .iter()
                .zip(&self.watched)
                .filter(|(p, _)| p.revents().is_some_and(|r| !r.is_empty()))
                .map(|(_, &fd)| fd)
                .collect();
            drop(fds);
            for fd in ready {
                self.events.push_back(Event::Ready(fd));
            }
            while let Ok(Some(info)) = self.signals.read_signal() {
                let signo = info.ssi_signo as i32;
                match Signal::try_from(signo) {
                    Ok(Signal::SIGCHLD) => self.reap(),
                    Ok(sig) if STOP_SIGNALS.contains(&sig) => {
                        self.events.push_back(Event::Stop(sig))
                    }
                    _ => {}
                }
            }
        }
    }

    /// Reaps whatever has ended: our processes (an event each), the orphans we adopted.
    fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) => {
                    let Some(pid) = status.pid() else { continue };
                    let code = match status {
                        WaitStatus::Exited(_, code) => code,
                        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
                        _ => continue,
                    };
                    if let Some(watchdog) = &mut self.watchdog {
                        watchdog.forget(pid.as_raw());
                    }
                    match self.procs.iter().position(|p| p.pid == pid.as_raw()) {
                        Some(i) => {
                            self.procs[i].status = Some(code);
                            self.events.push_back(Event::Exited(i, code));
                        }
                        // Said too, so that a stop waiting for the last orphan sees it go.
                        None => self.events.push_back(Event::OrphanReaped),
                    }
                }
            }
        }
    }

    /// Waits for process `index` to end, up to `deadline`. Other events are given back
    /// first, in order: `Err(event)` for the first that is not this process's end.
    pub fn wait(&mut self, index: usize, deadline: Option<Instant>) -> Result<Option<i32>, Event> {
        if let Some(status) = self.procs[index].status {
            // Its event may still be queued: drop it.
            self.events.retain(|e| *e != Event::Exited(index, status));
            return Ok(Some(status));
        }
        match self.next(deadline) {
            None => Ok(None),
            Some(Event::Exited(i, status)) if i == index => Ok(Some(status)),
            Some(other) => Err(other),
        }
    }

    /// Our children that we did not start: orphans reparented to us.
    fn adopted(&self) -> Vec<i32> {
        let watchdog = self.watchdog.as_ref().map(Watchdog::pid);
        children_of(self.me)
            .into_iter()
            .filter(|pid| Some(*pid) != watchdog && !self.procs.iter().any(|p| p.pid == *pid))
            .collect()
    }

    /// TERM to the orphans we adopted (a daemon a hook or a worker left) that run in `dir`
    /// (their working directory is in it): a generation's, when it stops. They are reaped as
    /// they end; one that ignores TERM is stopped with the rest at the end.
    pub fn stop_orphans_in(&self, dir: &std::path::Path) {
        for pid in self.adopted() {
            if process::tree::works_in(pid, dir) {
                signal_orphan(pid, Signal::SIGTERM);
            }
        }
    }

    fn live(&self) -> Vec<usize> {
        (0..self.procs.len())
            .filter(|&i| self.procs[i].status.is_none())
            .collect()
    }

    /// Stops everything: TERM to each group whose leader is still ours and to each orphan we
    /// adopted, KILL after the grace period to what is left (said once per process), and every
    /// process reaped; then the same for the processes to stop last ([`Children::stop_last`]),
    /// with a grace period of their own. Signals arriving meanwhile change nothing.
    pub fn stop_all(&mut self, say: &dyn Fn(&str)) {
        for last in [false, true] {
            self.stop_wave(last, say);
        }
        self.events.clear();
    }

    fn live_of(&self, last: bool) -> Vec<usize> {
        self.live()
            .into_iter()
            .filter(|&i| self.procs[i].last == last)
            .collect()
    }

    /// Stops the processes `indexes` (an old generation, a new one that failed): TERM to each
    /// group, KILL after the grace period, each reaped. The events of the others that come
    /// meanwhile are kept, in order, for the caller.
    pub fn stop(&mut self, indexes: &[usize], say: &dyn Fn(&str)) {
        let live = |c: &Children| -> Vec<usize> {
            indexes
                .iter()
                .copied()
                .filter(|&i| c.procs[i].status.is_none())
                .collect()
        };
        let mut kept = Vec::new();
        for sig in [Signal::SIGTERM, Signal::SIGKILL] {
            let deadline = Instant::now()
                + if sig == Signal::SIGTERM {
                    self.grace
                } else {
                    Duration::from_secs(10)
                };
            for i in live(self) {
                if sig == Signal::SIGKILL {
                    say(&format!(
                        "{} did not stop within {}: killing it",
                        self.procs[i].name,
                        crate::seconds(self.grace)
                    ));
                }
                let _ = killpg(Pid::from_raw(self.procs[i].pid), sig);
            }
            while !live(self).is_empty() {
                match self.next(Some(deadline)) {
                    None => break,
                    Some(Event::Exited(i, _)) if indexes.contains(&i) => {}
                    // A watched file stays readable: once is enough to say it.
                    Some(other) if kept.contains(&other) => {}
                    Some(other) => kept.push(other),
                }
            }
        }
        self.keep(kept);
    }

    fn stop_wave(&mut self, last: bool, say: &dyn Fn(&str)) {
        let deadline = Instant::now() + self.grace;
        let mut signalled: Vec<i32> = Vec::new();
        loop {
            for i in self.live_of(last) {
                let pid = self.procs[i].pid;
                if !signalled.contains(&pid) {
                    let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
                    signalled.push(pid);
                }
            }
            let adopted = self.adopted();
            for &pid in &adopted {
                if !signalled.contains(&pid) {
                    signal_orphan(pid, Signal::SIGTERM);
                    signalled.push(pid);
                }
            }
            if self.live_of(last).is_empty() && adopted.is_empty() {
                break;
            }
            if self.next(Some(deadline)).is_none() {
                break;
            }
        }
        let grace = crate::seconds(self.grace);
        for i in self.live_of(last) {
            say(&format!(
                "{} did not stop within {grace}: killing it",
                self.procs[i].name
            ));
            let _ = killpg(Pid::from_raw(self.procs[i].pid), Signal::SIGKILL);
        }
        for pid in self.adopted() {
            say(&format!(
                "PID {pid} ({}) did not stop within {grace}: killing it",
                process::command_line(pid)
            ));
            signal_orphan(pid, Signal::SIGKILL);
        }
        // KILL cannot be ignored: this ends, unless a process is stuck in the kernel.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(self.live_of(last).is_empty() && self.adopted().is_empty()) {
            if self.next(Some(deadline)).is_none() {
                break;
            }
        }
    }

    /// Ends supervision: the watchdog is told all is stopped, and the relays finish the
    /// lines they hold (a relay still fed by a process that escaped us is not waited for).
    pub fn finish(&mut self) {
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.done();
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.relayed.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.relays_done.1.recv_timeout(left) {
                Ok(index) => {
                    self.relayed.remove(&index);
                }
                Err(_) => break,
            }
        }
    }

    /// Waits, briefly, until the output of process `index` (which has ended) is all shown:
    /// what we say next comes after its last line. Not for ever: a daemon it left may hold
    /// its pipe.
    pub fn drain(&mut self, index: usize) {
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.relayed.contains(&index) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.relays_done.1.recv_timeout(left) {
                Ok(done) => {
                    self.relayed.remove(&done);
                }
                Err(_) => break,
            }
        }
    }
}

/// TERM or KILL to an orphan, and to its group when it leads one (a daemon's `setsid`).
fn signal_orphan(pid: i32, sig: Signal) {
    let _ = kill(Pid::from_raw(pid), sig);
    if nix::unistd::getpgid(Some(Pid::from_raw(pid))).ok() == Some(Pid::from_raw(pid)) {
        let _ = killpg(Pid::from_raw(pid), sig);
    }
}

/// The children of `pid` (all its threads'), from `/proc`.
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}
