//! The top of the stack below the command line: assembling the Pingora server from a config
//! (listeners, TLS, services), then what a running process does with signals: reload,
//! graceful shutdown, and handing its sockets to a successor.

pub(crate) mod daemon;
pub(crate) mod error;
pub(crate) mod listeners;
pub(crate) mod logging;
pub(crate) mod reload;
pub(crate) mod server;
pub(crate) mod shutdown;
pub(crate) mod tls_listener;
