//! Every default and bound of the config file, in one place: validation fills them in and
//! error messages quote them from here, so that neither can drift from the other.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// `server.listen`.
pub(super) const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080);
/// `server.health_path`.
pub(super) const DEFAULT_HEALTH_PATH: &str = "/edge-health";
/// Loopback: binding the metrics where others can read them must be asked for.
pub(super) const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9091);
/// `server.upgrade_sock`.
pub(super) const DEFAULT_UPGRADE_SOCK: &str = "/tmp/edgeproxy_upgrade.sock";
/// `server.grace_period`.
pub(super) const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);
/// The most `server.threads` may be.
pub(super) const MAX_THREADS: usize = 1024;
/// `max_fails` of a server: nginx's default for passive failure detection, as is
/// [`DEFAULT_FAIL_TIMEOUT`].
pub(super) const DEFAULT_MAX_FAILS: u32 = 1;
/// `fail_timeout` of a server.
pub(super) const DEFAULT_FAIL_TIMEOUT: Duration = Duration::from_secs(10);
/// `retries` of an upstream.
pub(super) const DEFAULT_RETRIES: u32 = 2;
/// `resolve_interval` of an upstream.
pub(super) const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);
/// `least_time_decay` of an upstream: short enough that a server passed over for being 40
/// times slower than another is tried again within about two seconds, long enough to
/// smooth the answers of a busy server.
pub(super) const DEFAULT_LEAST_TIME_DECAY: Duration = Duration::from_millis(500);
/// `stream_idle_timeout` of an SSE route.
pub(super) const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// `cache.max_size`.
pub(super) const DEFAULT_CACHE_SIZE: u64 = 64 << 20;
/// nginx allows four 8 KiB header buffers; HAProxy a 16 KiB buffer.
pub(super) const DEFAULT_MAX_HEADER_SIZE: usize = 32 << 10;
/// Pingora reads at most 1 MiB of header and refuses more itself.
pub(super) const MAX_HEADER_SIZE: usize = 1 << 20;
/// A route's `max_body` when none is given: nginx allows 1 MiB, which too many APIs outgrow.
pub(super) const DEFAULT_MAX_BODY: u64 = 10 << 20;
/// HAProxy's `timeout http-request` as commonly set; nginx's 60 s lets slow clients hold
/// connections six times longer.
pub(super) const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Pingora's own; nginx's `keepalive_timeout` is 75 s.
pub(super) const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// nginx's `client_body_timeout`.
pub(super) const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Enough for the busiest single host of the seeds many times over; an open connection costs
/// tens of KiB (tests/slowloris.rs bounds it at 64), so this stays under 1 GiB.
pub(super) const DEFAULT_MAX_CONNECTIONS: usize = 16384;
/// HAProxy's default is 101 fields.
pub(super) const DEFAULT_MAX_HEADER_COUNT: usize = 100;
/// Pingora parses at most 256 fields and refuses more itself.
pub(super) const MAX_HEADER_COUNT: usize = 256;
/// `connect_timeout` of an upstream: shorter than nginx's 60 s, so that a dead server is found
/// sooner.
pub(super) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `read_timeout` of an upstream: nginx's `proxy_read_timeout`.
pub(super) const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// `write_timeout` of an upstream: nginx's `proxy_send_timeout`.
pub(super) const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// `idle_timeout` of an upstream: below the idle timeouts of the servers put behind a proxy
/// (uvicorn and Node.js 5 s, gunicorn 2 s with its sync workers, which close after each
/// request anyway), so that the proxy closes an idle connection before the server does and
/// never sends a request as the server closes it.
pub(super) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
