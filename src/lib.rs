//! edgeproxy: an edge proxy and HTTP load balancer on Cloudflare's Pingora.
//!
//! A request flows config → [`snapshot`] (router + pools) → [`proxy`] phases, which pick a
//! server with [`balance`], count in [`metrics`] and log with [`access_log`]; [`server`] wires
//! it into Pingora and [`shutdown`] handles signals.

pub mod access_log;
pub mod admin;
pub mod balance;
pub mod cache;
pub mod cli;
pub mod config;
pub mod connections;
pub mod daemon;
pub mod health;
pub mod inflight;
pub mod ip_shards;
pub mod listeners;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod proxy;
pub mod rate_limit;
pub mod reload;
pub mod resolver;
pub mod route;
pub mod server;
pub mod shutdown;
pub mod snapshot;
pub mod tls_listener;
