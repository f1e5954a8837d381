//! An upstream: its servers, how one is picked, its timeouts and its health check.

use super::defaults;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// How an upstream picks a server for each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Smooth weighted round robin, as nginx does it.
    #[default]
    RoundRobin,
    /// Fewest in-flight requests relative to weight.
    LeastConn,
    /// Consistent hash of the client IP.
    IpHash,
    /// Weighted random.
    Random,
    /// The faster of two servers drawn at random by weight: each server's decaying peak
    /// EWMA of its response-header time, times its requests in flight plus one, over its
    /// weight.
    LeastTime,
}

/// Which addresses of a server's host name become servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolve {
    /// Every address, IPv4 and IPv6: one server each, as nginx and HAProxy's
    /// `server-template` do.
    #[default]
    All,
    /// The first IPv4 address, else the first: one server.
    First,
}

/// What `ip_hash` hashes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HashKey {
    /// The client's socket address.
    #[default]
    ClientIp,
    /// The value of a request header, e.g. a user id set by an upstream load balancer.
    Header(http::HeaderName),
    /// The value of a cookie.
    Cookie(String),
}

impl Balance {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::LeastConn => "least_conn",
            Self::IpHash => "ip_hash",
            Self::Random => "random",
            Self::LeastTime => "least_time",
        }
    }
}

/// What to do when no server of an upstream is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenAllDown {
    /// Answer 503 at once.
    #[default]
    Fail,
    /// Try the servers anyway: health checks may be wrong, a 503 is certain.
    TryAll,
}

/// The protocol of an active health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CheckKind {
    /// `GET path`, judged by the status code.
    #[default]
    Http,
    /// A TCP connection.
    Tcp,
}

/// An upstream's active health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// What is probed.
    pub probe: Probe,
    /// Time between two probes of a server.
    pub interval: Duration,
    /// Longest a probe may take.
    pub timeout: Duration,
    /// Consecutive failures that mark a ready server down.
    pub fall: u32,
    /// Consecutive successes that mark a down server ready.
    pub rise: u32,
}

/// The probe of a health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Opening a TCP connection.
    Tcp,
    /// `GET path` with this Host (None: the server's address), passing on these statuses
    /// (empty: any 2xx).
    Http {
        /// Request path.
        path: String,
        /// Host header.
        host: Option<String>,
        /// Accepted statuses; empty means 200-299.
        expect_status: Vec<u16>,
    },
}

/// One `upstreams.NAME` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    /// The key under `upstreams:`.
    pub name: String,
    /// The selection algorithm.
    pub balance: Balance,
    /// The key `ip_hash` hashes.
    pub hash_key: HashKey,
    /// Active health checking, if configured.
    pub health_check: Option<HealthCheck>,
    /// Further attempts on other servers after a failure that is safe to retry.
    pub retries: u32,
    /// What happens when no server is ready.
    pub when_all_down: WhenAllDown,
    /// How often server host names are resolved again.
    pub resolve_interval: Duration,
    /// `least_time`: the time over which a server's response-time estimate decays.
    pub least_time_decay: Duration,
    /// Speak HTTP/2 to the servers over plain TCP (h2c, prior knowledge), e.g. for gRPC.
    pub http2: bool,
    /// Servers in file order.
    pub servers: Vec<UpstreamServer>,
    /// Connect, read and write timeouts toward the servers.
    pub timeouts: Timeouts,
}

/// Per-upstream I/O timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Time allowed to establish a TCP connection.
    pub connect: Duration,
    /// Longest wait for any single read from the server.
    pub read: Duration,
    /// Longest wait for any single write to the server.
    pub write: Duration,
    /// Longest an idle connection to the server waits in the pool for reuse.
    pub idle: Duration,
}

impl Timeouts {
    /// Defaults: connect 5s, read 60s, write 60s (nginx uses 60s for all three; a dead server
    /// should be detected faster than that), idle 4s (below the servers' own).
    pub const DEFAULT: Timeouts = Timeouts {
        connect: defaults::DEFAULT_CONNECT_TIMEOUT,
        read: defaults::DEFAULT_READ_TIMEOUT,
        write: defaults::DEFAULT_WRITE_TIMEOUT,
        idle: defaults::DEFAULT_IDLE_TIMEOUT,
    };
}

/// One server of an upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamServer {
    /// The address as configured (`app1:8000`): sent as `X-Served-By`.
    pub addr: String,
    /// The host part of `addr`: an IP or a name that is re-resolved while running.
    pub host: String,
    /// The port part of `addr`.
    pub port: u16,
    /// Which of the name's addresses become servers.
    pub resolve: Resolve,
    /// The addresses it stood for when the config was loaded: the IP it names, or what its
    /// host name resolved to (the unspecified address when names were not looked up).
    pub addresses: Vec<SocketAddr>,
    /// Sent as `X-Instance-ID`.
    pub id: String,
    /// Relative share of requests.
    pub weight: u16,
    /// Failures within `fail_timeout` that take the server out for `fail_timeout`; 0: never.
    pub max_fails: u32,
    /// See `max_fails`.
    pub fail_timeout: Duration,
    /// Used only when no other server is ready.
    pub backup: bool,
}

impl UpstreamServer {
    /// Whether `addr` names a host to resolve rather than an IP.
    pub fn has_host_name(&self) -> bool {
        self.host.parse::<std::net::IpAddr>().is_err()
    }
}
