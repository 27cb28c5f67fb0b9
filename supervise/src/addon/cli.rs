//! `uvdeploy addons`: an app's add-on data, listed or removed.

use super::{data_root, home, io, AddonError, Credentials, Kind};
use plan::Env;
use std::path::{Path, PathBuf};

/// `uvdeploy addons`: lists an app's add-on data, or removes one kind of it.
///
/// The data of the app's local add-ons (`deploy --addon`): where it is, how big, the user and
/// database (never the password). With --remove KIND, that add-on's data is deleted, credentials
/// included (refused while the app is deployed).
#[derive(Debug, clap::Parser)]
#[command(name = "uvaddons", bin_name = "uvdeploy addons", version)]
pub struct AddonsOptions {
    /// Delete this add-on's data and credentials (postgresql, mysql or redis).
    #[arg(long, value_name = "KIND")]
    pub remove: Option<Kind>,
    /// The application's directory (the current directory by default).
    #[arg(value_name = "APP_DIR")]
    pub app_dir: Option<PathBuf>,
}

/// The bytes under `path`.
fn size_of(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_dir() {
        std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| size_of(&e.path()))
                    .sum()
            })
            .unwrap_or(0)
    } else {
        meta.len()
    }
}

fn human(bytes: u64) -> String {
    let mut value = bytes as f64;
    for unit in ["B", "KiB", "MiB", "GiB"] {
        if value < 1024.0 || unit == "GiB" {
            return if unit == "B" {
                format!("{bytes} B")
            } else {
                format!("{value:.1} {unit}")
            };
        }
        value /= 1024.0;
    }
    unreachable!()
}

/// Runs `uvdeploy addons`.
pub fn addons(
    options: &AddonsOptions,
    env: &Env,
) -> Result<std::process::ExitCode, plan::report::Fault> {
    let app_dir = options.app_dir.clone().unwrap_or_else(|| ".".into());
    let app = std::fs::canonicalize(&app_dir).map_err(|e| {
        plan::report::Message::usage(format!("cannot use APP_DIR `{}`: {e}", app_dir.display()))
    })?;
    if let Some(kind) = options.remove {
        let dir = home(env, &app, kind);
        if !dir.exists() {
            return Err(AddonError::NoData { kind, app, dir }.into());
        }
        // Held while removing: no deployment of the app starts meanwhile.
        let _lock = match crate::lock::claim(&crate::lock::cache_root(env), &app) {
            Ok(lock) => lock,
            Err(crate::lock::LockError::Running(holder)) => {
                return Err(AddonError::Deployed {
                    app,
                    pid: holder.pid,
                }
                .into())
            }
            Err(e) => return Err(e.into()),
        };
        std::fs::remove_dir_all(&dir).map_err(io(kind, &dir))?;
        eprintln!(
            "addons: removed the {kind} add-on's data of `{}` ({})",
            app.display(),
            dir.display()
        );
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let mut out = String::new();
    for kind in Kind::ALL {
        let dir = home(env, &app, kind);
        if !dir.exists() {
            continue;
        }
        let credentials = std::fs::read_to_string(dir.join("credentials"))
            .ok()
            .and_then(|t| Credentials::parse(&t));
        let (user, db) = match (&credentials, kind) {
            (Some(_), Kind::Redis) => ("-".to_string(), "-".to_string()),
            (Some(c), _) => (c.user.clone(), c.db.clone()),
            (None, _) => ("-".into(), "-".into()),
        };
        out.push_str(&format!(
            "{kind}\t{}\tuser={user}\tdb={db}\t{}\n",
            human(size_of(&dir)),
            dir.display()
        ));
    }
    if out.is_empty() {
        eprintln!(
            "addons: `{}` has no add-on data (in {})",
            app.display(),
            data_root(env).display()
        );
    }
    print!("{out}");
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 * 1024 * 1024), "3.0 MiB");
    }
}
