//! The same deployment beyond one machine: the plan (after `flowctl`, so with its hops) as
//! Kubernetes manifests (`kubernetes`), and the Containerfile of the image they run
//! (`containerfile`). No orchestrator of our own: the engine is Kubernetes, and locally
//! `podman kube play` runs the same manifests.

pub mod containerfile;
pub mod kubernetes;
pub mod scaling;
pub mod yaml;

use plan::report::{exit, Failure};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the plan has no `hops`: it did not go through `flowctl`")]
    NoHops,
    #[error("the plan has no run command")]
    NoRunCommand,
    #[error("--name `{0}` cannot be made a DNS label (letters, digits and `-`, at most 63)")]
    BadName(String),
    #[error("--flavor `{0}` is not one of the platform's flavors ({names})", names = crate::scaling::Flavor::names())]
    BadFlavor(String),
    #[error("{0}")]
    BadInstances(String),
    #[error("--public-port/--app-port: {0}")]
    Layout(#[from] plan::LayoutError),
    /// The plan's hops cannot be rendered for the pod.
    #[error(transparent)]
    Flow(#[from] flowctl::FlowError),
}

impl Failure for ExportError {
    fn exit_code(&self) -> u8 {
        exit::USAGE
    }
    fn hint(&self) -> Option<String> {
        match self {
            ExportError::NoHops => Some(
                "pipe the plan through flowctl: `detect APP | uvbuild | flowctl | plan-export kubernetes --image IMAGE`"
                    .into(),
            ),
            _ => None,
        }
    }
}
