//! The configuration: read from YAML once, validated once, then immutable.
//!
//! [`load`] is the only entry point. The file format lives in [`file`], scalar value parsing in
//! [`values`], and the checks that turn a file into a [`Config`] in [`validate`].

pub(crate) mod certificate;
mod error;
mod file;
mod validate;
pub mod values;

pub use certificate::{CertFile, Certificate, CertificateError};
pub use error::ConfigError;

use crate::net::framing::HeaderLimits;
use crate::net::Cidr;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// A validated configuration: what is fixed when the process starts, and what a reload puts
/// in force.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Restart-only settings: sockets, threads, and what is made once at start.
    pub process: ProcessSettings,
    /// The `server:` settings a reload changes.
    pub server: ServerSettings,
    /// Who may read the metrics listener, if there is one.
    pub metrics: Option<MetricsSettings>,
    /// Upstreams, ordered by name.
    pub upstreams: Vec<Upstream>,
    /// Routes in file order; [`crate::runtime::router::Router`] decides precedence.
    pub routes: Vec<Route>,
}

/// What a running process keeps until it restarts: the sockets it listens on, its threads,
/// and what it makes once at start (log writer, cache, pid file). A reload keeps these
/// values ([`Config::keep_process`]) and warns about each one the file changed
/// ([`ProcessSettings::changed_keys`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSettings {
    /// `server.listen`: plain-HTTP listening addresses.
    pub listen: Vec<SocketAddr>,
    /// `server.threads`: worker threads of the proxy service.
    pub threads: usize,
    /// `server.grace_period`: how long SIGTERM waits for in-flight requests.
    pub grace_period: Duration,
    /// `server.access_log`: where access-log lines go.
    pub access_log: AccessLogTarget,
    /// `server.access_log_format`: how access-log lines look.
    pub access_log_format: AccessLogFormat,
    /// `server.pid_file`: where the process id is written, for `edgeproxy reload`.
    pub pid_file: Option<std::path::PathBuf>,
    /// `server.upgrade_sock`: the Unix socket listening sockets are handed over on during a
    /// binary upgrade.
    pub upgrade_sock: std::path::PathBuf,
    /// `server.watch`: reload when the config file (or a certificate file) changes.
    pub watch: bool,
    /// `server.preserve_header_case`: write HTTP/1 header names in the case they were
    /// received in, as nginx does, instead of lowercase (HAProxy's and Envoy's default).
    pub preserve_header_case: bool,
    /// `server.tls.listen` and `server.tls.http2`: the HTTPS listeners, if any.
    pub https: Option<HttpsListeners>,
    /// `metrics.listen`: where `/metrics` and `/status` are served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// `cache:`: the response cache.
    pub cache: CacheSettings,
}

impl ProcessSettings {
    /// The keys whose values differ in `other`, for a reload to warn about.
    pub fn changed_keys(&self, other: &Self) -> Vec<&'static str> {
        // Destructured without `..`, so that a new field does not compile until it is compared.
        let Self {
            listen,
            threads,
            grace_period,
            access_log,
            access_log_format,
            pid_file,
            upgrade_sock,
            watch,
            preserve_header_case,
            https,
            metrics_listen,
            cache,
        } = self;
        let mut keys = Vec::new();
        let mut compare = |key, differs: bool| {
            if differs {
                keys.push(key);
            }
        };
        compare("server.listen", *listen != other.listen);
        compare("server.threads", *threads != other.threads);
        compare("server.pid_file", *pid_file != other.pid_file);
        compare("server.watch", *watch != other.watch);
        compare(
            "server.preserve_header_case",
            *preserve_header_case != other.preserve_header_case,
        );
        compare("server.upgrade_sock", *upgrade_sock != other.upgrade_sock);
        compare("server.grace_period", *grace_period != other.grace_period);
        compare("server.access_log", *access_log != other.access_log);
        compare(
            "server.access_log_format",
            *access_log_format != other.access_log_format,
        );
        match (https, &other.https) {
            (Some(was), Some(now)) => {
                compare("server.tls.listen", was.listen != now.listen);
                compare("server.tls.http2", was.http2 != now.http2);
            }
            (None, None) => {}
            _ => compare("server.tls (adding or removing HTTPS)", true),
        }
        match (metrics_listen, other.metrics_listen) {
            (Some(was), Some(now)) => compare("metrics.listen", *was != now),
            (None, None) => {}
            _ => compare("metrics (adding or removing the metrics listener)", true),
        }
        compare("cache.max_size", *cache != other.cache);
        keys
    }

    /// Every address edgeproxy listens on, with the key that configures it.
    pub fn listeners(&self) -> impl Iterator<Item = (&'static str, &SocketAddr)> {
        let proxy = self.listen.iter().map(|a| ("server.listen", a));
        let https = self.https.iter().flat_map(|t| &t.listen);
        proxy
            .chain(https.map(|a| ("server.tls.listen", a)))
            .chain(self.metrics_listen.iter().map(|a| ("metrics.listen", a)))
    }
}

/// `server.tls`: the HTTPS listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsListeners {
    /// HTTPS listening addresses.
    pub listen: Vec<SocketAddr>,
    /// Offer HTTP/2 by ALPN.
    pub http2: bool,
}

/// `server:` settings a reload changes.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// The path the proxy answers itself with 200.
    pub health_path: String,
    /// The certificate of the HTTPS listeners, when there are some.
    pub tls: Option<Tls>,
    /// Proxies in front whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<Cidr>,
    /// What one client may send and hold.
    pub limits: ClientLimits,
}

/// Limits on what a client may send; beyond them it gets a 4xx, not the proxy's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Bytes of a request's line and header fields together (431 beyond).
    pub max_header_size: usize,
    /// Header fields of one request (431 beyond).
    pub max_header_count: usize,
    /// Longest a request header may take to arrive, from its first byte (408 beyond).
    pub header_timeout: Duration,
    /// Longest wait for the next piece of a request body (408 beyond).
    pub body_timeout: Duration,
    /// Longest a client connection may stay idle between requests (HTTP/1) or with no
    /// stream open (HTTP/2).
    pub keepalive_timeout: Duration,
    /// Open client connections, all addresses together (503 beyond).
    pub max_connections: usize,
    /// Open client connections from one address (503 beyond); `None`: no limit.
    pub max_connections_per_ip: Option<u32>,
}

impl ClientLimits {
    /// The limits of a request header, as the framing checks take them.
    pub fn headers(&self) -> HeaderLimits {
        HeaderLimits {
            max_size: self.max_header_size,
            max_count: self.max_header_count,
        }
    }
}

/// `server.tls` settings a reload changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Tls {
    /// The certificate chain and key, loaded.
    pub certificate: Certificate,
    /// Answer plain-HTTP requests (but the health path) with a redirect to HTTPS.
    pub redirect_http_to_https: bool,
}

/// `server.access_log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// Standard output, as containers expect.
    Stdout,
    /// Not written.
    Off,
    /// Appended to a file.
    File(std::path::PathBuf),
}

/// `server.access_log_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogFormat {
    /// nginx's `combined` plus upstream, backend, instance, timings and retries.
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

/// `cache:` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Memory bound of the whole cache, in bytes.
    pub max_size: u64,
}

/// `metrics:` settings a reload changes (`metrics.listen` is a [`ProcessSettings`] one).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSettings {
    /// Client addresses allowed to read it; empty: whoever can reach `metrics.listen`.
    pub allow: Vec<Cidr>,
}

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
pub enum CheckKind {
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
}

impl Timeouts {
    /// Defaults: connect 5s, read 60s, write 60s (nginx uses 60s for all three; a dead server
    /// should be detected faster than that).
    pub const DEFAULT: Timeouts = Timeouts {
        connect: Duration::from_secs(5),
        read: Duration::from_secs(60),
        write: Duration::from_secs(60),
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
    /// The address it resolved to when the config was loaded.
    pub socket_addr: SocketAddr,
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

impl Config {
    /// Puts back the process settings of the `running` config, which a reload cannot change.
    /// The live settings that only mean something with one of them (the certificate with the
    /// HTTPS listeners, `metrics.allow` with the metrics listener) are kept too when the file
    /// adds or removes it.
    pub fn keep_process(&mut self, running: &Config) {
        self.process.clone_from(&running.process);
        if self.server.tls.is_some() != self.process.https.is_some() {
            self.server.tls.clone_from(&running.server.tls);
        }
        if self.metrics.is_some() != self.process.metrics_listen.is_some() {
            self.metrics.clone_from(&running.metrics);
        }
    }

    /// The port plain-HTTP requests are redirected to: the first HTTPS listener's.
    pub fn https_redirect_port(&self) -> u16 {
        let first = self.process.https.as_ref().and_then(|h| h.listen.first());
        first.map_or(443, SocketAddr::port)
    }

    /// A warning when `metrics.listen` takes connections from other hosts while
    /// `metrics.allow` lets anyone in: the status page and metrics name every backend, which
    /// the internet need not know.
    pub fn metrics_exposure_warning(&self) -> Option<String> {
        let listen = self.process.metrics_listen?;
        let open = self.metrics.as_ref().is_none_or(|m| m.allow.is_empty());
        (!listen.ip().is_loopback() && open).then(|| {
            format!(
                "metrics.listen {listen} takes connections from other hosts and metrics.allow \
                 is empty: anyone who reaches it can read /metrics and /status; list the \
                 scrapers' networks in metrics.allow"
            )
        })
    }

    /// The upstream a route sends to.
    pub fn route_upstream(&self, route: &Route) -> &Upstream {
        &self.upstreams[route.upstream]
    }
}

/// The address used for a name with several: the first IPv4 one, as most container and EC2
/// networks are IPv4, else the first.
pub fn preferred_address(addrs: impl IntoIterator<Item = SocketAddr>) -> Option<SocketAddr> {
    let addrs: Vec<SocketAddr> = addrs.into_iter().collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
}

/// Whether loading a config looks server host names up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameLookup {
    /// Resolve every name now; a name that does not resolve is an error.
    Resolve,
    /// Leave names alone, for checking a file meant for another host (a container network,
    /// an EC2 VPC): such servers get the unspecified address until re-resolution.
    Skip,
}

/// Reads, parses and validates a config file; resolves server host names.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with(path, NameLookup::Resolve)
}

/// [`load`], choosing whether host names are looked up.
pub fn load_with(path: &Path, names: NameLookup) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            path,
            format!("cannot read the file: {e}; check the path given with -c"),
        )
    })?;
    parse_with(path, &text, names)
}

/// Parses and validates config text; `path` is only used in error messages.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    parse_with(path, text, NameLookup::Resolve)
}

/// [`parse`], choosing whether host names are looked up.
pub fn parse_with(path: &Path, text: &str, names: NameLookup) -> Result<Config, ConfigError> {
    let file: file::FileConfig = serde_yaml::from_str(text)
        .map_err(|e| ConfigError::from_yaml(path, &e).with_syntax_hint(text))?;
    validate::validate(file, names).map_err(|e| e.in_file(path))
}

#[cfg(test)]
mod tests;
