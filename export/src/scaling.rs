//! Sizes and counts as the platform sells them: a flavor (an instance's vCPUs and memory)
//! becomes the app's requests and limits; the number of instances, fixed or between a minimum
//! and a maximum (the platform's horizontal scaling), becomes the Deployment's replicas and,
//! when it may change, a HorizontalPodAutoscaler.

use crate::ExportError;
use serde_json::{json, Value};

/// An instance size of the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flavor {
    pub name: &'static str,
    /// The CPU the app is given (a Kubernetes quantity).
    cpu: &'static str,
    /// The CPU the app asks for: all of it, except on the shared flavors (pico, nano), which
    /// run with a reduced CPU priority on the platform.
    cpu_request: &'static str,
    memory: &'static str,
}

/// The platform's flavors for applications. Its documentation ("Application Scaling") names
/// the largest, 3XL, 16 vCPUs and 32 GiB, and says that nano and pico run with a reduced CPU
/// priority; its pricing table gives XS (1 vCPU), M (4 vCPUs, 4 GiB), L (6, 8 GiB), XL (8,
/// 16 GiB); S (2 vCPUs, 2 GiB), 2XL (12, 24 GiB), pico (256 MiB) and nano (512 MiB) are as
/// the platform's console sells them.
pub const FLAVORS: [Flavor; 9] = [
    Flavor::shared("pico", "100m", "256Mi"),
    Flavor::shared("nano", "250m", "512Mi"),
    Flavor::dedicated("XS", "1", "1Gi"),
    Flavor::dedicated("S", "2", "2Gi"),
    Flavor::dedicated("M", "4", "4Gi"),
    Flavor::dedicated("L", "6", "8Gi"),
    Flavor::dedicated("XL", "8", "16Gi"),
    Flavor::dedicated("2XL", "12", "24Gi"),
    Flavor::dedicated("3XL", "16", "32Gi"),
];

/// Without `--flavor`: XS, one vCPU and 1 GiB.
pub const DEFAULT_FLAVOR: &str = "XS";

impl Flavor {
    const fn shared(name: &'static str, cpu_request: &'static str, memory: &'static str) -> Self {
        Flavor {
            name,
            cpu: "1",
            cpu_request,
            memory,
        }
    }

    const fn dedicated(name: &'static str, cpu: &'static str, memory: &'static str) -> Self {
        Flavor {
            name,
            cpu,
            cpu_request: cpu,
            memory,
        }
    }

    /// The flavor named `name`, in any case (`xs`, `XS`, `Nano`).
    pub fn named(name: &str) -> Result<Flavor, ExportError> {
        FLAVORS
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .copied()
            .ok_or_else(|| ExportError::BadFlavor(name.to_string()))
    }

    /// The names, for a message.
    pub fn names() -> String {
        FLAVORS.map(|f| f.name).join(", ")
    }

    /// The app container's `resources`: memory requested as it is limited (the platform's
    /// instance has that memory, no more), the CPU of the flavor.
    pub fn resources(&self) -> Value {
        json!({
            "requests": {"cpu": self.cpu_request, "memory": self.memory},
            "limits": {"cpu": self.cpu, "memory": self.memory},
        })
    }
}

impl Default for Flavor {
    fn default() -> Self {
        Flavor::named(DEFAULT_FLAVOR).expect("the default flavor is one")
    }
}

/// The platform's largest number of instances of an application.
pub const MAX_INSTANCES: u32 = 40;

/// How many pods: `min == max` is a fixed number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instances {
    pub min: u32,
    pub max: u32,
}

impl Default for Instances {
    fn default() -> Self {
        Instances { min: 1, max: 1 }
    }
}

impl Instances {
    /// From `--instances N` or `--min-instances`/`--max-instances` (`--max-instances` alone:
    /// from 1; `--min-instances` alone: that many, fixed).
    pub fn new(
        fixed: Option<u32>,
        min: Option<u32>,
        max: Option<u32>,
    ) -> Result<Instances, ExportError> {
        let (min, max) = match (fixed, min, max) {
            (Some(n), _, _) => (n, n),
            (None, Some(min), Some(max)) => (min, max),
            (None, Some(n), None) => (n, n),
            (None, None, Some(max)) => (1, max),
            (None, None, None) => return Ok(Instances::default()),
        };
        let given = [
            ("--instances", fixed),
            ("--min-instances", Some(min)),
            ("--max-instances", Some(max)),
        ];
        for (flag, n) in given.iter().filter_map(|(f, n)| n.map(|n| (f, n))) {
            if n == 0 || n > MAX_INSTANCES {
                return Err(ExportError::BadInstances(format!(
                    "{flag} {n}: an application runs from 1 to {MAX_INSTANCES} instances"
                )));
            }
        }
        if min > max {
            return Err(ExportError::BadInstances(format!(
                "--min-instances {min} is more than --max-instances {max}"
            )));
        }
        Ok(Instances { min, max })
    }

    pub fn scales(&self) -> bool {
        self.min < self.max
    }
}

/// The CPU use (percent of what the pods request) over which the autoscaler adds a pod.
pub const CPU_TARGET: u32 = 75;

/// The HorizontalPodAutoscaler (`autoscaling/v2`) of the Deployment `name`, on CPU.
pub fn autoscaler(name: &str, labels: &Value, instances: Instances) -> Value {
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": instances.min,
            "maxReplicas": instances.max,
            "metrics": [{
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": CPU_TARGET}},
            }],
        },
    })
}

/// The PodDisruptionBudget that keeps at least one pod through a node's drain.
pub fn disruption_budget(name: &str, labels: &Value) -> Value {
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "labels": labels},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": labels}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavors_by_name_in_any_case() {
        assert_eq!(Flavor::named("xs").unwrap().name, "XS");
        assert_eq!(Flavor::named("2xl").unwrap().memory, "24Gi");
        assert_eq!(Flavor::default().name, "XS");
        let Err(ExportError::BadFlavor(name)) = Flavor::named("huge") else {
            panic!("huge is no flavor")
        };
        assert_eq!(name, "huge");
    }

    #[test]
    fn instances_fixed_or_between_bounds() {
        assert_eq!(
            Instances::new(Some(3), None, None).unwrap(),
            Instances { min: 3, max: 3 }
        );
        assert!(Instances::new(None, Some(2), Some(5)).unwrap().scales());
        assert_eq!(
            Instances::new(None, None, Some(4)).unwrap(),
            Instances { min: 1, max: 4 }
        );
        assert!(Instances::new(None, Some(5), Some(2)).is_err());
        assert!(Instances::new(Some(0), None, None).is_err());
        assert!(Instances::new(Some(41), None, None).is_err());
    }
}
