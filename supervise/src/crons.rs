//! The crons' scheduler: each cron of the plan runs at its UTC minute, as cron runs it
//! (`/bin/sh -c COMMAND` in HOME, with cron's bare environment: HOME, LOGNAME, SHELL and
//! `PATH=/usr/bin:/bin`). The app's variables (the platform's among them) reach only a login
//! shell, as on the platform: they are in a `.bash_profile` this deployment writes in a home of
//! its own, in the state directory (private: it holds the app's secrets), and HOME points
//! there, so `#!/bin/bash -l` reads it and nothing else does.
//!
//! The clock is the system's, or for tests the file `UVDEPLOY_CLOCK` names: its content is the
//! current UTC time (`2026-11-30T21:05Z`), read at each tick. A minute is run once, when the
//! clock reaches it; the minute the deployment starts in is not run, as cron does not.

use plan::cron::{Cron, Minute, Schedule};
use plan::Env;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a test clock is read.
const TEST_TICK: Duration = Duration::from_millis(100);

/// Where the time comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clock {
    System,
    /// `UVDEPLOY_CLOCK`: a file holding the current UTC time (for tests).
    File(PathBuf),
}

impl Clock {
    pub fn from_env(env: &Env) -> Clock {
        match env.non_empty("UVDEPLOY_CLOCK") {
            Some(path) => Clock::File(path.into()),
            None => Clock::System,
        }
    }

    /// The current UTC minute; `None` when a test clock's file holds no time.
    pub fn now(&self) -> Option<Minute> {
        match self {
            Clock::System => {
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()?
                    .as_secs();
                Some(Minute::from_epoch_minutes(i64::try_from(secs / 60).ok()?))
            }
            Clock::File(path) => Minute::parse(&std::fs::read_to_string(path).ok()?),
        }
    }

    /// When to look at the clock again: just past the next minute, or a test clock's tick.
    pub fn next_tick(&self) -> Instant {
        match self {
            Clock::System => {
                let into_minute = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() % 60_000)
                    .unwrap_or_default();
                let left = 60_000 - into_minute as u64;
                Instant::now() + Duration::from_millis(left + 20)
            }
            Clock::File(_) => Instant::now() + TEST_TICK,
        }
    }
}

/// The crons and the last minute looked at.
pub struct Scheduler {
    crons: Vec<(Cron, Schedule)>,
    pub clock: Clock,
    last: Option<Minute>,
    tick: Instant,
    /// Whether a test clock without a time was said (once).
    said_no_time: bool,
}

impl Scheduler {
    /// The plan's crons (their schedules were checked by `detect`: one that does not parse
    /// now is left out, and named in the error).
    pub fn new(crons: &[Cron], clock: Clock) -> (Scheduler, Vec<String>) {
        let mut errors = Vec::new();
        let crons = crons
            .iter()
            .filter_map(|cron| match Schedule::parse(&cron.schedule) {
                Ok(schedule) => Some((cron.clone(), schedule)),
                Err(e) => {
                    errors.push(format!("{}: {e}: not scheduled", cron.name));
                    None
                }
            })
            .collect();
        let last = clock.now();
        let tick = clock.next_tick();
        (
            Scheduler {
                crons,
                clock,
                last,
                tick,
                said_no_time: false,
            },
            errors,
        )
    }

    pub fn next_tick(&self) -> Instant {
        self.tick
    }

    /// At a tick: the crons due (the clock reached a new minute they match), and a message
    /// when a test clock holds no time (said once).
    pub fn due(&mut self) -> (Vec<Cron>, Option<String>) {
        self.tick = self.clock.next_tick();
        let Some(now) = self.clock.now() else {
            let said = (!self.said_no_time).then(|| {
                "UVDEPLOY_CLOCK: its file holds no UTC time (e.g. `2026-11-30T21:05Z`): no cron runs until it does".to_string()
            });
            self.said_no_time = true;
            return (Vec::new(), said);
        };
        if self.last.is_some_and(|last| now <= last) {
            return (Vec::new(), None);
        }
        self.last = Some(now);
        let due = self
            .crons
            .iter()
            .filter(|(_, schedule)| schedule.matches(&now))
            .map(|(cron, _)| cron.clone())
            .collect();
        (due, None)
    }
}

/// Writes the cron's home: a private directory with a `.bash_profile` exporting `vars` (the
/// app's environment), for login shells only. Returns the home.
pub fn write_home<'a>(
    state: &Path,
    vars: impl Iterator<Item = (&'a str, &'a str)>,
) -> std::io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let home = state.join("cron-home");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(&home)?;
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700))?;
    let mut profile = String::from(
        "# The app's environment, for login shells (`#!/bin/bash -l`), as the platform gives it.\n",
    );
    for (key, value) in vars {
        if CRON_OWN.contains(&key) || !is_name(key) {
            continue;
        }
        profile.push_str(&format!(
            "export {key}='{}'\n",
            value.replace('\'', "'\\''")
        ));
    }
    let path = home.join(".bash_profile");
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all(profile.as_bytes())?;
    Ok(home)
}

/// What cron sets itself, never taken from the app.
const CRON_OWN: [&str; 8] = [
    "HOME", "LOGNAME", "USER", "SHELL", "PWD", "OLDPWD", "SHLVL", "_",
];

fn is_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The command as cron runs it: `/bin/sh -c COMMAND` in HOME, with cron's environment only
/// (and a test's mark, so that a test finds what it leaves behind).
pub fn command(cron: &Cron, home: &Path, env: &Env) -> std::process::Command {
    let logname = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| env.non_empty("LOGNAME").map(str::to_string))
        .unwrap_or_else(|| "root".into());
    let mut command = std::process::Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(&cron.command)
        .current_dir(home)
        .env_clear()
        .env("HOME", home)
        .env("LOGNAME", logname)
        .env("SHELL", "/bin/sh")
        .env("PATH", "/usr/bin:/bin");
    if let Some(mark) = env.get("UVDEPLOY_TEST_MARK") {
        command.env("UVDEPLOY_TEST_MARK", mark);
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron(name: &str, schedule: &str) -> Cron {
        Cron {
            name: name.into(),
            entry: format!("{schedule} /bin/true"),
            schedule: schedule.into(),
            command: "/bin/true".into(),
        }
    }

    #[test]
    fn each_new_minute_runs_what_matches_it_once_and_not_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let clock = dir.path().join("clock");
        std::fs::write(&clock, "2026-01-01T00:00:30Z").unwrap();
        let (mut s, errors) = Scheduler::new(
            &[cron("cron-0", "* * * * *"), cron("cron-1", "5 * * * *")],
            Clock::File(clock.clone()),
        );
        assert!(errors.is_empty());
        let names = |s: &mut Scheduler| s.due().0.into_iter().map(|c| c.name).collect::<Vec<_>>();
        assert!(names(&mut s).is_empty(), "the start's minute is not run");
        std::fs::write(&clock, "2026-01-01T00:01Z").unwrap();
        assert_eq!(names(&mut s), ["cron-0"]);
        assert!(names(&mut s).is_empty(), "once per minute");
        std::fs::write(&clock, "2026-01-01T00:05Z").unwrap();
        assert_eq!(names(&mut s), ["cron-0", "cron-1"]);
        std::fs::write(&clock, "2026-01-01T00:04Z").unwrap();
        assert!(names(&mut s).is_empty(), "a clock going back runs nothing");
        std::fs::write(&clock, "soon").unwrap();
        let (due, said) = s.due();
        assert!(due.is_empty() && said.is_some());
        assert_eq!(s.due().1, None, "said once");
    }

    #[test]
    fn the_home_holds_a_private_profile_of_the_apps_variables() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let vars = [
            ("GREETING", "it's \"here\" $HOME"),
            ("HOME", "/x"),
            ("BAD-NAME", "1"),
        ];
        let home = write_home(dir.path(), vars.into_iter()).unwrap();
        let profile = home.join(".bash_profile");
        let mode = std::fs::metadata(&profile).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let out = std::process::Command::new("bash")
            .args(["-l", "-c", "echo \"$GREETING|${BAD_NAME:-}|$HOME\""])
            .env_clear()
            .env("HOME", &home)
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("it's \"here\" $HOME||{}\n", home.display())
        );
        // A shell that is not a login shell does not read it.
        let out = std::process::Command::new("bash")
            .args(["-c", "echo \"${GREETING:-unset}\""])
            .env_clear()
            .env("HOME", &home)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "unset\n");
    }
}
