//! `uvkept` (`uvdeploy kept`): what uvdeploy keeps between deployments, and room made.
//!
//! - the deployments running now (their locks, held: see `supervise::lock`);
//! - the state directories left in TMPDIR (a failed deployment keeps its own for debugging, as
//!   does `--keep-state`), each with its size and whether a running deployment uses it;
//! - the caches builds share (uv's, pip's), which only speed builds up: emptied by their own
//!   tools (`uv cache clean`, `pip cache purge`), never here;
//! - what older versions left (the kept venvs, `UVDEPLOY_CACHE_DIR/venvs`).
//!
//! `--clean` removes the state directories no running deployment uses and what older versions
//! left, nothing else.

use plan::Env;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Show what uvdeploy keeps between deployments (running deployments, state directories left
/// in TMPDIR, the shared caches, what older versions left) and, with --clean, remove the state
/// directories no running deployment uses and what older versions left.
#[derive(Debug, clap::Parser)]
#[command(name = "uvkept", bin_name = "uvdeploy kept", version)]
pub struct Cli {
    /// Remove the state directories that no running deployment uses, and the venvs older
    /// versions kept. Caches are left to their tools (`uv cache clean`, `pip cache purge`).
    #[arg(long)]
    pub clean: bool,
}

/// The files one of uvdeploy's state directories holds (one at least).
const MARKS: [&str; 4] = [
    supervise::lock::STATE_LOCK,
    "plan.json",
    "source.json",
    "deploy.json",
];

/// Who uses a state directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InUse {
    /// The deployment of this PID.
    Deployment(u32),
    /// A deployment or image build whose PID its lock does not say.
    Unknown,
}

/// One state directory in TMPDIR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    pub path: PathBuf,
    pub bytes: u64,
    /// Who uses it now, if anyone.
    pub in_use_by: Option<InUse>,
}

/// The state directories uvdeploy made in `tmp` (`uvdeploy-NAME.XXXXXX`, this user's, not a
/// link), with their sizes and users.
pub fn state_dirs(tmp: &Path, running: &[supervise::lock::Holder]) -> Vec<StateDir> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return Vec::new();
    };
    let mut dirs: Vec<StateDir> = entries
        .filter_map(Result::ok)
        .filter(|e| is_state_dir_name(&e.file_name().to_string_lossy()))
        .filter(|e| std::fs::symlink_metadata(e.path()).is_ok_and(|m| m.is_dir() && m.uid() == me))
        // uvdeploy's own: it holds what a deployment, plan or image leaves there.
        .filter(|e| MARKS.iter().any(|mark| e.path().join(mark).exists()))
        .map(|e| {
            let path = e.path();
            let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            let holder = running
                .iter()
                .find(|h| std::fs::canonicalize(&h.state_dir).is_ok_and(|d| d == real))
                .map(|h| h.pid);
            StateDir {
                bytes: size(&path),
                // A deployment holds its state directory's lock, whatever its cache directory
                // or however TMPDIR is spelled; an image build too.
                in_use_by: match holder {
                    Some(pid) => Some(InUse::Deployment(pid)),
                    None if supervise::lock::state_in_use(&path) => Some(InUse::Unknown),
                    None => None,
                },
                path,
            }
        })
        .collect();
    dirs.sort_by(|a, b| a.path.cmp(&b.path));
    dirs
}

/// `uvdeploy-NAME.XXXXXX`, as deploy, plan and image name the directories they make (the
/// suffix random): not the test suite's `uvdeploy-test-…`, nor anything else.
pub fn is_state_dir_name(name: &str) -> bool {
    name.strip_prefix("uvdeploy-")
        .and_then(|rest| rest.rsplit_once('.'))
        .is_some_and(|(app, suffix)| {
            !app.is_empty()
                && suffix.len() == 6
                && suffix.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// Bytes under `path`, links not followed.
pub fn size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| size(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}

/// `12.3 MB`.
pub fn human(bytes: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < units.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

fn home(env: &Env) -> PathBuf {
    PathBuf::from(env.non_empty("HOME").unwrap_or("/"))
}

/// The caches builds share: (name, directory).
fn caches(env: &Env) -> Vec<(&'static str, PathBuf)> {
    let cache_home = env
        .non_empty("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home(env).join(".cache"));
    let uv = env
        .non_empty("UV_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_home.join("uv"));
    let pip = env
        .non_empty("PIP_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_home.join("pip"));
    vec![("uv cache", uv), ("pip cache", pip)]
}

pub fn run(cli: &Cli, env: &Env) -> Result<ExitCode, plan::report::Fault> {
    let running = supervise::lock::running(&supervise::lock::cache_root(env));
    let tmp = PathBuf::from(env.non_empty("TMPDIR").unwrap_or("/tmp"));
    let dirs = state_dirs(&tmp, &running);
    let old_venvs = supervise::lock::cache_root(env).join("venvs");
    let mut out = String::new();
    out.push_str("running deployments:\n");
    if running.is_empty() {
        out.push_str("  none\n");
    }
    for holder in &running {
        out.push_str(&format!(
            "  {}  PID {}  state {}\n",
            holder.app_dir.display(),
            holder.pid,
            holder.state_dir.display()
        ));
    }
    out.push_str(&format!("state directories in {}:\n", tmp.display()));
    if dirs.is_empty() {
        out.push_str("  none\n");
    }
    for dir in &dirs {
        let status = match dir.in_use_by {
            Some(InUse::Deployment(pid)) => format!("in use by PID {pid}"),
            Some(InUse::Unknown) => "in use".to_string(),
            None if cli.clean => match std::fs::remove_dir_all(&dir.path) {
                Ok(()) => "removed".to_string(),
                Err(e) => format!("not removed: {e}"),
            },
            None => "not in use (--clean removes it)".to_string(),
        };
        out.push_str(&format!(
            "  {}  {}  {status}\n",
            dir.path.display(),
            human(dir.bytes)
        ));
    }
    out.push_str("caches builds share (`uv cache clean`, `pip cache purge` empty them):\n");
    for (name, dir) in caches(env) {
        if dir.is_dir() {
            out.push_str(&format!(
                "  {name}  {}  {}\n",
                dir.display(),
                human(size(&dir))
            ));
        }
    }
    if old_venvs.is_dir() {
        let bytes = size(&old_venvs);
        let status = if cli.clean {
            match std::fs::remove_dir_all(&old_venvs) {
                Ok(()) => "removed".to_string(),
                Err(e) => format!("not removed: {e}"),
            }
        } else {
            "no longer used (--clean removes it)".to_string()
        };
        out.push_str(&format!(
            "left by older versions:\n  {}  {}  {status}\n",
            old_venvs.display(),
            human(bytes)
        ));
    }
    let _ = std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_names_uvdeploy_gives_its_state_directories() {
        assert!(is_state_dir_name("uvdeploy-hello.Xa81bC"));
        assert!(is_state_dir_name("uvdeploy-my.app.Xa81bC"));
        for other in [
            "uvdeploy-test-8aAmee",
            "uvdeploy-bench-XXXXXX",
            "uvdeploy-.abcdef",
            "uvdeploy-x.abc",
            "other.abcdef",
        ] {
            assert!(!is_state_dir_name(other), "{other}");
        }
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human(999), "999 B");
        assert_eq!(human(12_300_000), "12.3 MB");
    }
}
