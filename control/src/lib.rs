//! `uvcontrol`: `uvdeploy status [APP_DIR]` says what serves an app (the deployment's PID and
//! since when, the commit, its processes, the verdict), from the lock its deployment holds and
//! the `deploy.json` it writes; `uvdeploy stop [APP_DIR]` stops it from another terminal, as
//! Ctrl-C in its own would, and waits until it has stopped.

use plan::report::Message;
use plan::Env;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use supervise::lock::{self, Holder};

/// What serves an app (`status`), or stop its deployment (`stop`). The app is the directory
/// it was deployed from (the current directory by default); `status` without one lists every
/// running deployment.
#[derive(Debug, clap::Parser)]
#[command(name = "uvcontrol", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Say what serves APP_DIR (every running deployment without APP_DIR); exit 1 when nothing
    /// does.
    Status {
        /// The app's directory, as it was given to `uvdeploy deploy`.
        app_dir: Option<PathBuf>,
        /// Print the running deployments' `deploy.json` and lock, as JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Stop the deployment of APP_DIR (TERM, as Ctrl-C in its terminal), and wait until it
    /// has stopped; exit 1 when nothing serves it.
    Stop {
        /// The app's directory (the current directory by default).
        app_dir: Option<PathBuf>,
        /// How long to wait for the stop, processes' grace period included.
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = plan::cli::parse_duration)]
        timeout: Duration,
    },
}

fn holder_of(env: &Env, app_dir: &Path) -> Result<Option<Holder>, Message> {
    let canonical = std::fs::canonicalize(app_dir)
        .map_err(|e| Message::usage(format!("cannot use APP_DIR `{}`: {e}", app_dir.display())))?;
    Ok(lock::holder_if_held(&lock::lock_path(
        &lock::cache_root(env),
        &canonical,
    )))
}

/// The lines `status` prints for one deployment.
pub fn describe(holder: &Holder, summary: Option<&serde_json::Value>, now: SystemTime) -> String {
    let since = UNIX_EPOCH + Duration::from_secs(holder.since);
    let age = now.duration_since(since).unwrap_or_default();
    let age = humantime::format_duration(Duration::from_secs(age.as_secs()));
    let status = summary
        .and_then(|s| s["status"].as_str())
        .unwrap_or("starting (no verdict yet)");
    let mut out = format!(
        "{}: {status}, PID {} since {} ({age})\n",
        holder.app_dir.display(),
        holder.pid,
        humantime::format_rfc3339_seconds(since)
    );
    let source = summary.map(|s| &s["plan"]["source"]);
    if let Some(source) = source.filter(|s| !s.is_null()) {
        let what = match (source["commit"].as_str(), source["subject"].as_str()) {
            (Some(commit), Some(subject)) => format!("commit {commit} “{subject}”"),
            (Some(commit), None) => format!("commit {commit}"),
            _ => match source["kind"].as_str() {
                Some("working-tree") => "the working tree, as it was".to_string(),
                _ => "the directory, as it was".to_string(),
            },
        };
        let generation = summary
            .and_then(|s| s["generation"].as_u64())
            .map(|g| {
                let instances = summary.and_then(|s| s["instances"].as_u64()).unwrap_or(1);
                let since = summary
                    .and_then(|s| s["serving_since"].as_u64())
                    .map(|t| {
                        format!(
                            " since {}",
                            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t))
                        )
                    })
                    .unwrap_or_default();
                format!(" (generation {g}, {instances} instance(s){since})")
            })
            .unwrap_or_default();
        out.push_str(&format!("  serves   {what}{generation}\n"));
    }
    if let Some(processes) = summary.and_then(|s| s["processes"].as_object()) {
        let list: Vec<String> = processes
            .iter()
            .map(|(name, pid)| format!("{name} {pid}"))
            .collect();
        out.push_str(&format!("  processes {}\n", list.join(", ")));
    }
    out.push_str(&format!("  state    {}\n", holder.state_dir.display()));
    out
}

fn summary_of(holder: &Holder) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(holder.state_dir.join("deploy.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn print(text: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
}

pub fn run(cli: &Cli, env: &Env) -> Result<ExitCode, plan::report::Fault> {
    match &cli.command {
        Command::Status { app_dir, json } => {
            let holders = match app_dir {
                Some(dir) => holder_of(env, dir)?.into_iter().collect(),
                None => lock::running(&lock::cache_root(env)),
            };
            if holders.is_empty() {
                let what = match app_dir {
                    Some(dir) => format!("`{}` is not deployed here\n", dir.display()),
                    None => "no deployment is running\n".to_string(),
                };
                if !json {
                    print(&what);
                }
                return Ok(ExitCode::from(plan::report::exit::FAILED));
            }
            for holder in holders {
                let summary = summary_of(&holder);
                if *json {
                    let line = serde_json::json!({
                        "pid": holder.pid,
                        "app_dir": holder.app_dir,
                        "state_dir": holder.state_dir,
                        "since": holder.since,
                        "deploy": summary,
                    });
                    print(&format!("{line}\n"));
                } else {
                    print(&describe(&holder, summary.as_ref(), SystemTime::now()));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Stop { app_dir, timeout } => {
            let dir = app_dir.clone().unwrap_or_else(|| ".".into());
            let Some(holder) = holder_of(env, &dir)? else {
                print(&format!("`{}` is not deployed here\n", dir.display()));
                return Ok(ExitCode::from(plan::report::exit::FAILED));
            };
            let pid = nix::unistd::Pid::from_raw(holder.pid as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).map_err(|e| {
                Message::failed(format!("cannot stop PID {}: {}", holder.pid, e.desc()))
            })?;
            eprintln!(
                "uvcontrol: stopping {} (PID {})",
                holder.app_dir.display(),
                holder.pid
            );
            // The lock is released when the deployment's process ends, after its stop.
            let path = lock::lock_path(&lock::cache_root(env), &holder.app_dir);
            if !lock::wait_released(&path, *timeout) {
                return Err(Message::failed(format!(
                    "PID {} is still stopping after {}",
                    holder.pid,
                    humantime::format_duration(*timeout)
                ))
                .into());
            }
            eprintln!("uvcontrol: stopped");
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_says_what_serves_since_when() {
        let holder = Holder {
            pid: 42,
            app_dir: "/srv/shop".into(),
            state_dir: "/tmp/uvdeploy-shop.abcdef".into(),
            since: 1_000_000,
        };
        let summary = serde_json::json!({
            "status": "healthy",
            "processes": {"app": 43, "varnish": 44},
            "plan": {"source": {"kind": "commit", "commit": "1b28495", "subject": "Fix the cart"}},
        });
        let now = UNIX_EPOCH + Duration::from_secs(1_000_065);
        assert_eq!(
            describe(&holder, Some(&summary), now),
            "/srv/shop: healthy, PID 42 since 1970-01-12T13:46:40Z (1m 5s)\n  serves   commit 1b28495 “Fix the cart”\n  processes app 43, varnish 44\n  state    /tmp/uvdeploy-shop.abcdef\n"
        );
        assert!(describe(&holder, None, now).contains("starting (no verdict yet)"));
    }
}
