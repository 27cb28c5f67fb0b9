//! The Otoroshi challenge middleware: a reverse proxy that lets through only requests that
//! prove they come from Otoroshi (exchange protocol V2), and proves back that the app answered.
//!
//! - [`token`]: verifying `Otoroshi-State` and signing `Otoroshi-State-Resp`.
//! - [`proxy`]: the streaming HTTP/1.1 proxy in front of the app.

pub mod proxy;
pub mod token;
