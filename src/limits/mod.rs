//! Per-client limits: tables keyed by client address, split over locks, and the rate limits
//! and per-address connection counts kept in them.

pub(crate) mod ip_shards;
pub(crate) mod per_ip;
pub(crate) mod rate_limit;
