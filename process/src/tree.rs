//! The processes of this machine as `/proc` shows them (parent, process group, command
//! line), and how a child is started and given time to stop.

/// The fields of `/proc/PID/stat` after the command name, from the state (field 3) on: the
/// name (field 2) may hold spaces and parentheses, so they are counted from its end.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// The live processes of this machine, as (pid, parent pid, process group).
pub(crate) fn processes() -> Vec<(i32, i32, i32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let fields = stat_fields(pid)?;
            if fields.first().map(String::as_str) == Some("Z") {
                return None;
            }
            Some((
                pid,
                fields.get(1)?.parse().ok()?,
                fields.get(2)?.parse().ok()?,
            ))
        })
        .collect()
}

/// Whether process `pid` works in `dir`: its working directory is `dir` or below it, also
/// when it was removed under it (the kernel then says `... (deleted)`).
pub fn works_in(pid: i32, dir: &std::path::Path) -> bool {
    let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else {
        return false;
    };
    let cwd = cwd.to_string_lossy();
    std::path::Path::new(cwd.trim_end_matches(" (deleted)")).starts_with(dir)
}

/// The live processes (not zombies) that work in one of `dirs` ([`works_in`]).
pub fn working_in(dirs: &[std::path::PathBuf]) -> Vec<i32> {
    if dirs.is_empty() {
        return Vec::new();
    }
    processes()
        .into_iter()
        .map(|(pid, _, _)| pid)
        .filter(|&pid| dirs.iter().any(|dir| works_in(pid, dir)))
        .collect()
}

/// When process `pid` started, in clock ticks since boot (field 22): with the PID, it names
/// one process, never a later one that reused the PID.
pub fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// The live processes whose process group is `pgid`.
pub fn processes_in_group(pgid: i32) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|&(_, _, group)| group == pgid)
        .map(|(pid, _, _)| pid)
        .collect()
}

/// How long the processes of a deployment have to stop after TERM, before KILL: the one owner
/// of the number (`uvsupervise --grace` overrides it; launcher gives what a shell left behind
/// half of it, so that it is done before its own supervisor gives up on it).
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_millis(10_000);

/// Makes `command` start its program with the default disposition of the stop signals and
/// nothing blocked, whatever this process set for itself: a supervisor that blocks signals to
/// read them in a loop, or that was started with INT ignored (a background job of a script),
/// must not hand that on. (Rust's `Command` resets only SIGPIPE.)
pub fn with_default_signals(command: &mut std::process::Command) -> &mut std::process::Command {
    use nix::sys::signal::{signal, SigHandler, SigSet, SigmaskHow, Signal};
    use std::os::unix::process::CommandExt;
    // SAFETY: sigprocmask and signal are async-signal-safe, as pre_exec requires.
    unsafe {
        command.pre_exec(|| {
            for sig in [
                Signal::SIGTERM,
                Signal::SIGINT,
                Signal::SIGHUP,
                Signal::SIGQUIT,
                Signal::SIGPIPE,
            ] {
                signal(sig, SigHandler::SigDfl)?;
            }
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
            Ok(())
        })
    }
}

/// The live descendants of `pid` (children, their children, ...), `pid` left out.
pub fn descendants(pid: i32) -> Vec<i32> {
    let all = processes();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(all.iter().filter(|p| p.1 == parent).map(|p| p.0));
        i += 1;
    }
    found.remove(0);
    found
}

/// `pids` and all their live descendants.
pub fn trees_of(pids: &[i32]) -> Vec<i32> {
    let all = processes();
    let mut found = pids.to_vec();
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            all.iter()
                .filter(|p| p.1 == parent && !pids.contains(&p.0))
                .map(|p| p.0),
        );
        i += 1;
    }
    found
}

/// The command line of `pid`, words joined by spaces (its name when it has none).
pub fn command_line(pid: i32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let words: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    if words.is_empty() {
        return std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| c.trim().to_string())
            .unwrap_or_default();
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendants_and_groups() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let me = std::process::id() as i32;
        assert!(descendants(me).contains(&(child.id() as i32)));
        let tree = trees_of(&[me, child.id() as i32]);
        assert_eq!(tree[..2], [me, child.id() as i32]);
        assert_eq!(tree.iter().filter(|&&p| p == child.id() as i32).count(), 1);
        // The child's command line is `sleep 30` once its exec is through: on a loaded machine
        // that can be a moment after spawn returns, so wait for it, with a deadline.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !command_line(child.id() as i32).starts_with("sleep 30") {
            assert!(
                std::time::Instant::now() < deadline,
                "`{}`",
                command_line(child.id() as i32)
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!descendants(me).contains(&(child.id() as i32)));
    }
}
