//! The processes of this machine, for every tool that starts or watches one: how a run
//! command becomes an argv and finds its program, how a child is started, and what `/proc`
//! says of processes and their sockets. Nothing here knows the plan.
//!
//! - [`command`]: how a run command is split into words, or left to the shell; where its
//!   program is.
//! - [`sockets`]: who listens where, and which process holds a socket.
//! - [`tree`]: process trees and groups, command lines, and how a child is started with the
//!   default signals and given time to stop.

pub mod command;
pub mod sockets;
pub mod tree;

pub use sockets::{
    connections_to, holder_of, holder_of_sockets, listeners, listeners_by_netlink,
    listeners_by_proc, listening_sockets_of, parse_proc_net_tcp, Listener,
};
pub use tree::{
    command_line, descendants, processes_in_group, trees_of, with_default_signals, STOP_GRACE,
};
