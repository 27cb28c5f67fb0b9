//! `deploy.json`: the deployment summed up for scripts and CI, written by a JSON serializer
//! whatever the paths and names hold: the status, each process and its PID, the health check's
//! verdict (as `healthcheck --json` gives it), the plan, which step failed and with what
//! status, the smoke command's result, and where the time went.

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A step that failed, and its exit status.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Step {
    pub step: String,
    pub status: i32,
}

/// `--check --smoke COMMAND`'s result.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Smoke {
    pub command: String,
    pub status: i32,
}

/// The order the timings are said in.
const PHASES: [&str; 10] = [
    "addons",
    "checkout",
    "detect",
    "build",
    "plan",
    "start",
    "health_wait",
    "smoke",
    "switch",
    "total",
];

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `healthy`, `unhealthy` or `failed` (a build step, or a process that died first).
    pub status: String,
    /// Which build of the app this is: 1 for the first deployment, one more at each redeploy.
    pub generation: u32,
    /// How many instances run it.
    pub instances: u32,
    /// When it began to serve (the front moved to it), in seconds since the Unix epoch.
    pub serving_since: Option<u64>,
    pub state_dir: PathBuf,
    pub processes: BTreeMap<String, i32>,
    pub health: Option<serde_json::Value>,
    pub failed: Option<Step>,
    pub smoke: Option<Smoke>,
    /// Milliseconds per phase: addons, checkout, detect, build, plan, start, health_wait, smoke, total.
    pub timings_ms: BTreeMap<String, u64>,
    pub plan: Option<serde_json::Value>,
}

impl Summary {
    pub fn new(state_dir: &Path) -> Self {
        Summary {
            status: "failed".into(),
            generation: 1,
            instances: 1,
            serving_since: None,
            state_dir: state_dir.to_path_buf(),
            processes: BTreeMap::new(),
            health: None,
            failed: None,
            smoke: None,
            timings_ms: BTreeMap::new(),
            plan: None,
        }
    }

    /// It serves from now on.
    pub fn serving(&mut self) {
        self.status = "healthy".into();
        self.serving_since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs());
    }

    pub fn fail(&mut self, step: &str, status: i32) {
        self.failed = Some(Step {
            step: step.to_string(),
            status,
        });
    }

    pub fn time(&mut self, phase: &str, took: Duration) {
        self.timings_ms.insert(
            phase.to_string(),
            took.as_millis().try_into().unwrap_or(u64::MAX),
        );
    }

    /// `timings: checkout 12 ms, detect 4 ms, ...`, in the order of the phases.
    pub fn timings_line(&self) -> String {
        let parts: Vec<String> = PHASES
            .iter()
            .filter_map(|phase| {
                let ms = self.timings_ms.get(*phase)?;
                Some(format!("{} {ms} ms", phase.replace('_', " ")))
            })
            .collect();
        format!("timings: {}", parts.join(", "))
    }

    /// Written whole to a temporary file, then renamed: a reader never sees half of it.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let mut text = serde_json::to_string(self)?;
        text.push('\n');
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_path_makes_valid_json() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("tab\there \"quoted\" \\ $x\u{1}");
        std::fs::create_dir(&odd).unwrap();
        let mut summary = Summary::new(&odd);
        summary.fail("uvbuild", 2);
        summary.time("checkout", Duration::from_millis(12));
        summary.write(&odd.join("deploy.json")).unwrap();
        let text = std::fs::read_to_string(odd.join("deploy.json")).unwrap();
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["state_dir"], odd.display().to_string());
        assert_eq!(back["failed"]["step"], "uvbuild");
        assert_eq!(back["failed"]["status"], 2);
        assert_eq!(back["timings_ms"]["checkout"], 12);
        assert_eq!(summary.timings_line(), "timings: checkout 12 ms");
    }
}
