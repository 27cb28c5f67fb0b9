//! Supervising a shell that must stay: a run command, custom middleware or hook that is more
//! than one simple command (`migrate && serve`, `if …; fi`, `serve &`) runs exactly as
//! `/bin/sh -c COMMAND` would, and the launcher stays in its place:
//!
//! - the signals it gets (TERM, INT, HUP, QUIT) go to the shell and to everything the shell
//!   started, so that stopping the launcher stops the whole command;
//! - it is a subreaper: what the shell leaves behind becomes its child, and is seen;
//! - when the shell ends, whatever it left running is stopped (TERM, then KILL after
//!   [`GRACE`]). A command that ended on its own but left processes running (an app sent to
//!   the background with `&`) is a failed start, said plainly;
//! - it exits with the shell's status (128 + N for a shell killed by signal N).

use crate::Launch;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use plan::report::{exit, report, Message};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// How long what the shell left behind has to stop after TERM, before KILL: half the
/// deployment's grace, so that the launcher is done before its supervisor gives up on it.
pub const GRACE: Duration = Duration::from_millis(process::STOP_GRACE.as_millis() as u64 / 2);

const FORWARDED: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// Runs the shell of `launch` (its program already resolved as `program`), supervised, and
/// returns the exit code this process must end with.
pub fn run(program: &Path, launch: &Launch) -> u8 {
    let me = std::process::id() as i32;
    // Children this process had before it became the launcher are not the command's: a
    // shell's `cmd > >(prefixer) &` forks the prefixer from the very process that then execs
    // us. Only what appears from now on is supervised.
    let before = process::descendants(me);
    let ours = move || -> Vec<i32> {
        process::descendants(me)
            .into_iter()
            .filter(|pid| !before.contains(pid))
            .collect()
    };
    // Orphans of the shell become our children rather than init's, so they are seen and reaped.
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let mut mask = SigSet::empty();
    for signal in FORWARDED {
        mask.add(signal);
    }
    mask.add(Signal::SIGCHLD);
    mask.add(Signal::SIGALRM);
    // Blocked here and waited for below; the shell gets them unblocked, at their defaults.
    if let Err(e) = mask.thread_block() {
        return fail(&format!("cannot block signals: {}", e.desc()), launch);
    }
    let shell = match process::with_default_signals(&mut Command::new(program))
        .args(&launch.argv[1..])
        .current_dir(&launch.cwd)
        .env_clear()
        .envs(launch.env.iter())
        .spawn()
    {
        Ok(child) => Pid::from_raw(child.id() as i32),
        Err(e) => {
            return fail(
                &format!("cannot start `{}`: {e}", program.display()),
                launch,
            )
        }
    };

    let mut ended: Option<WaitStatus> = None;
    let mut asked_to_stop = false;
    let mut stopping_leftovers = false;
    let mut left_behind: Vec<String> = Vec::new();
    loop {
        // Reap whatever has ended: the shell, and anything reparented to us.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) if status.pid() == Some(shell) => ended = Some(status),
                Ok(_) => {}
            }
        }
        if ended.is_some() {
            let left = ours();
            if left.is_empty() {
                break;
            }
            if !stopping_leftovers {
                stopping_leftovers = true;
                if !asked_to_stop {
                    left_behind = left
                        .iter()
                        .map(|&pid| format!("PID {pid}: {}", settled_command_line(pid)))
                        .collect();
                }
                signal_all(&left, Signal::SIGTERM);
                nix::unistd::alarm::set(GRACE.as_secs() as u32);
            }
        }
        match mask.wait() {
            Ok(Signal::SIGALRM) => signal_all(&ours(), Signal::SIGKILL),
            Ok(signal) if FORWARDED.contains(&signal) => {
                asked_to_stop = true;
                signal_all(&ours(), signal);
            }
            _ => {}
        }
    }
    if !left_behind.is_empty() {
        let message = Message::failed(format!(
            "the command ended but left {} process(es) running in the background ({}): they were stopped",
            left_behind.len(),
            left_behind.join("; ")
        ))
        .with_hint("a run command must keep the app in the foreground: remove the `&` that sends it to the background");
        report(&message, &launch.env);
        return exit::FAILED;
    }
    match ended {
        Some(WaitStatus::Exited(_, code)) => u8::try_from(code).unwrap_or(exit::FAILED),
        Some(WaitStatus::Signaled(_, signal, _)) => 128u8.saturating_add(signal as u8),
        _ => exit::FAILED,
    }
}

/// The command line of a process the shell has just started: while it is still in `execve`,
/// the kernel shows an empty command line (and the new name), for a few microseconds. Read
/// again until it is there, briefly.
fn settled_command_line(pid: i32) -> String {
    let deadline = std::time::Instant::now() + Duration::from_millis(200);
    loop {
        let settled =
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|raw| !raw.is_empty());
        if settled || std::time::Instant::now() >= deadline {
            return process::command_line(pid);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn signal_all(pids: &[i32], signal: Signal) {
    for &pid in pids {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

fn fail(text: &str, launch: &Launch) -> u8 {
    report(&Message::failed(text), &launch.env);
    exit::FAILED
}
