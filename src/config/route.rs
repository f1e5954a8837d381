//! A route: which requests it takes, where it sends them, and how.

use std::time::Duration;

/// One `routes[i]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Path prefix, always starting with `/`.
    pub path: String,
    /// Lower-case host name the route is narrowed to, without port.
    pub host: Option<String>,
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
    /// Long-lived event streams: the upstream read timeout becomes `stream_idle_timeout`.
    pub sse: bool,
    /// With `sse`, how long a stream may stay silent.
    pub stream_idle_timeout: Duration,
    /// Compress text responses for clients that accept it.
    pub compress: bool,
    /// Cache GET/HEAD 200 responses this long.
    pub cache: Option<Duration>,
    /// Largest request body accepted, in bytes (413 beyond); `None`: no limit.
    pub max_body: Option<u64>,
    /// Requests per client address, if limited (429 beyond).
    pub rate_limit: Option<RateLimit>,
}

/// `routes[i].rate_limit`: a token bucket per client address.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub requests_per_second: f64,
    /// Requests that may come at once after a quiet spell.
    pub burst: u32,
}
