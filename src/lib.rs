//! edgeproxy: an edge proxy and HTTP load balancer on Cloudflare's Pingora.
//!
//! The modules are layers, each importing only from those below it (`scripts/check-layers.py`
//! fails the tests on an import cycle), from the bottom up:
//!
//! - [`net`] and [`sync`]: what HTTP and the network are, and shared counters; no config.
//! - [`config`]: the YAML file, validated once into one typed `Config`.
//! - [`metrics`], [`access_log`], [`limits`], [`cache`]: metric families, the access log,
//!   per-client limits and the response cache, each built from its part of the config.
//! - [`balance`]: the servers of an upstream, their state and how one is picked.
//! - [`runtime`]: the snapshot requests read (router, pools, metric children), swapped live.
//! - [`health`], [`resolver`], [`admin`], [`connections`]: the background services that
//!   keep the snapshot's servers current, the metrics listener, and client connections.
//! - [`proxy`]: the Pingora phases of a request.
//! - [`process`]: the server assembled, and signals (reload, shutdown, upgrade).
//! - [`cli`]: the command line, which `main.rs` runs.

#![warn(unreachable_pub, missing_docs)]
// A panic on user or network input takes every connection of the process down with it: what
// can fail returns an error, and each `expect` that is left says why it cannot fail.
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod access_log;
mod acme;
mod admin;
mod balance;
mod cache;
mod calendar;
pub mod cli;
mod config;
mod connections;
mod health;
mod limits;
mod metrics;
mod net;
mod process;
mod proxy;
mod resolver;
mod runtime;
mod sync;

pub use process::logging::init as init_logging;

/// The config file's duration syntax (`150ms`, `2s`, `5m`, `1h`), which the demo backend's
/// flags take too.
pub use config::values::DurationValue;

/// What the fuzz targets (fuzz/) drive: the config parser and path normalisation.
pub mod fuzzing {
    pub use crate::config::{parse_with, NameLookup};
    pub use crate::net::path::normalize;
}
