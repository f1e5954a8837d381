//! The top of the stack below the command line: assembling the Pingora server from a config
//! (listeners, TLS, services), then what a running process does with signals: reload,
//! graceful shutdown, and handing its sockets to a successor.

pub mod daemon;
pub mod listeners;
pub mod logging;
pub mod reload;
pub mod server;
pub mod shutdown;
pub mod tls_listener;
