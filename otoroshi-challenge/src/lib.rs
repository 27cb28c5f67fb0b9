//! The Otoroshi challenge middleware: a reverse proxy that lets through only requests that
//! prove they come from Otoroshi (exchange protocol V2), and proves back that the app answered.
//!
//! - [`token`]: verifying `Otoroshi-State` and signing `Otoroshi-State-Resp`, and Otoroshi's
//!   side of it (signing a request's token, checking an answer's), which `healthcheck` uses.
//! - [`proxy`]: the streaming HTTP/1.1 proxy in front of the app (feature `proxy`).

#[cfg(feature = "proxy")]
pub mod proxy;
pub mod token;
