//! The `server:`, `metrics:` and `cache:` settings: those fixed at start
//! ([`ProcessSettings`]) and those a reload changes.

use super::{AcmeSettings, Certificate};
use crate::net::framing::HeaderLimits;
use crate::net::Cidr;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

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
    /// `server.when_full`: whether connections past the limit wait or are refused.
    pub when_full: WhenFull,
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
            when_full,
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
        compare("server.when_full", *when_full != other.when_full);
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

impl ServerSettings {
    /// The certificate read from `server.tls.cert` and `key`, if that is the source.
    pub fn file_certificate(&self) -> Option<&Certificate> {
        match &self.tls.as_ref()?.source {
            CertificateSource::Files(certificate) => Some(certificate),
            CertificateSource::Acme(_) => None,
        }
    }

    /// `server.tls.acme`, if that is the source.
    pub fn acme(&self) -> Option<&AcmeSettings> {
        match &self.tls.as_ref()?.source {
            CertificateSource::Acme(acme) => Some(acme),
            CertificateSource::Files(_) => None,
        }
    }
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
    /// Where the certificate comes from.
    pub source: CertificateSource,
    /// Answer plain-HTTP requests (but the health path) with a redirect to HTTPS.
    pub redirect_http_to_https: bool,
}

/// The certificate of the HTTPS listeners.
#[derive(Debug, Clone, PartialEq)]
pub enum CertificateSource {
    /// `cert` and `key`: files, read again by each reload.
    Files(Certificate),
    /// `acme`: obtained and renewed by edgeproxy.
    Acme(AcmeSettings),
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

/// `server.when_full`: what a new connection meets once `server.max_connections` are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Not accepted until a connection ends: the kernel's listen backlog holds it, and the
    /// client waits (HAProxy's `maxconn`).
    #[default]
    Queue,
    /// Accepted, answered `503` and closed at once.
    Reject,
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
