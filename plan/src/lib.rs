//! The deployment plan: the JSON object that `detect` prints and every other uvdeploy tool
//! reads on stdin (or `--plan FILE`), adds to, and passes on.
//!
//! - [`model`]: the typed plan (`schema: 1`), field names as in `SPEC.md`.
//! - [`io`]: reading a plan (refusing an unknown schema) and writing it.
//! - [`legacy`]: legacy mode's settings (pip, the app server, Nginx).
//! - [`basic_auth`]: the one rule for a basic-auth `login:password` pair.
//! - [`hook`]: running the platform's hooks.
//! - [`cron`]: the crons of `clevercloud/cron.json`: their schedule, parsed and matched.
//! - [`worker`]: the workers beside the app, and how they are restarted.
//! - [`instance`]: the variables the platform sets in every process (`INSTANCE_ID`, `APP_ID`, ...).
//! - [`env`]: the environment a tool sees: the process's, plus `--env-file` and `--env`.
//! - [`secret`]: which variables are secrets, and redaction.
//! - [`cli`]: flags every tool shares, and durations as people write them.
//! - [`report`]: errors as data, and the one way every tool prints them (`env` and `secret`
//!   know nothing of it).
//!
//! How a command is split, found and started, and what `/proc` says of processes, is the
//! `process` crate's: nothing there knows the plan.

pub mod basic_auth;
pub mod cli;
pub mod cron;
pub mod env;
pub mod hook;
pub mod instance;
pub mod io;
pub mod legacy;
pub mod model;
pub mod report;
pub mod secret;
pub mod worker;

pub use env::Env;
pub use io::{print_plan, read_plan, write_plan, PlanSource};
pub use legacy::{Backend, Legacy, Need, Nginx, StaticFiles, WorkspaceMember};
pub use model::*;
pub use worker::{Restart, Worker};
