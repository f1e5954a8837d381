//! Per-client limits: tables keyed by client address, split over locks, and the rate limits
//! and per-address connection counts kept in them.

pub mod ip_shards;
pub mod per_ip;
pub mod rate_limit;
