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

pub mod access_log;
pub mod admin;
pub mod balance;
pub mod cache;
pub mod cli;
pub mod config;
pub mod connections;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod net;
pub mod process;
pub mod proxy;
pub mod resolver;
pub mod runtime;
pub mod sync;
