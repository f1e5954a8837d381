//! Checks that need the whole file (cross-references, uniqueness, name resolution) and the
//! conversion of [`FileConfig`] into [`Config`].

use super::file::{
    FileConfig, FileHealthCheck, FileRateLimit, FileRoute, FileServer, FileTls, FileUpstream,
};
use super::values::ByteSize;
use super::{
    AccessLogTarget, Balance, CacheSettings, CheckKind, ClientLimits, Config, ConfigError,
    HealthCheck, HttpsListeners, MetricsSettings, NameLookup, Probe, ProcessSettings, RateLimit,
    Route, ServerSettings, Timeouts, Tls, Upstream, UpstreamServer,
};
use super::{CertFile, Certificate};
use crate::net::path;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
const DEFAULT_HEALTH_PATH: &str = "/edge-health";
/// Loopback: binding the metrics where others can read them must be asked for.
const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9091";
const DEFAULT_UPGRADE_SOCK: &str = "/tmp/edgeproxy_upgrade.sock";
const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);
const MAX_THREADS: usize = 1024;
/// nginx's defaults for passive failure detection.
const DEFAULT_MAX_FAILS: u32 = 1;
const DEFAULT_FAIL_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_RETRIES: u32 = 2;
const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
const DEFAULT_CACHE_SIZE: u64 = 64 << 20;
/// nginx allows four 8 KiB header buffers; HAProxy a 16 KiB buffer.
const DEFAULT_MAX_HEADER_SIZE: usize = 32 << 10;
/// Pingora reads at most 1 MiB of header and refuses more itself.
const MAX_HEADER_SIZE: usize = 1 << 20;
/// A route's `max_body` when none is given: nginx allows 1 MiB, which too many APIs outgrow.
const DEFAULT_MAX_BODY: u64 = 10 << 20;
/// HAProxy's `timeout http-request` as commonly set; nginx's 60 s lets slow clients hold
/// connections six times longer.
const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Pingora's own; nginx's `keepalive_timeout` is 75 s.
const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// nginx's `client_body_timeout`.
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Enough for the busiest single host of the seeds many times over; an open connection costs
/// tens of KiB (tests/slowloris.rs bounds it at 64), so this stays under 1 GiB.
const DEFAULT_MAX_CONNECTIONS: usize = 16384;
/// HAProxy's default is 101 fields.
const DEFAULT_MAX_HEADER_COUNT: usize = 100;
/// Pingora parses at most 256 fields and refuses more itself.
const MAX_HEADER_COUNT: usize = 256;

/// Turns the parsed file into a [`Config`], or says what is wrong and where.
pub fn validate(file: FileConfig, names: NameLookup) -> Result<Config, ConfigError> {
    let (mut process, server) = server_settings(file.server)?;
    let metrics = file.metrics.map(|m| {
        process.metrics_listen = Some(m.listen.map_or_else(
            || DEFAULT_METRICS_LISTEN.parse().expect("constant address"),
            |l| l.0,
        ));
        MetricsSettings {
            allow: m.allow.unwrap_or_default(),
        }
    });

    if file.upstreams.is_empty() {
        return Err(ConfigError::at_key(
            "upstreams",
            "no upstream is defined; add one with at least one server",
        ));
    }
    let upstreams = file
        .upstreams
        .into_iter()
        .map(|(name, upstream)| upstream_settings(name, upstream, names))
        .collect::<Result<Vec<_>, _>>()?;

    let routes = routes(file.routes, &upstreams)?;
    process.cache = CacheSettings {
        max_size: file
            .cache
            .and_then(|c| c.max_size)
            .map_or(DEFAULT_CACHE_SIZE, |s| s.0),
    };
    if process.cache.max_size < 1 << 20 {
        return Err(ConfigError::at_key(
            "cache.max_size",
            "must be at least 1MiB",
        ));
    }
    listeners_apart(&process)?;
    Ok(Config {
        process,
        server,
        metrics,
        upstreams,
        routes,
    })
}

/// Each address is listened on for one purpose only.
fn listeners_apart(process: &ProcessSettings) -> Result<(), ConfigError> {
    let mut seen: HashMap<SocketAddr, &str> = HashMap::new();
    for (key, addr) in process.listeners() {
        if let Some(earlier) = seen.insert(*addr, key) {
            let message = if earlier == key {
                format!("{addr} is listed twice")
            } else {
                format!("{addr} is also in {earlier}; give each listener its own port")
            };
            return Err(ConfigError::at_key(key, message));
        }
    }
    Ok(())
}

/// The `server:` section: its restart-only settings (the cache and the metrics listener are
/// filled in from their own sections), and those a reload changes.
fn server_settings(file: FileServer) -> Result<(ProcessSettings, ServerSettings), ConfigError> {
    let limits = client_limits(&file)?;
    let listen: Vec<SocketAddr> = match file.listen {
        Some(list) => list.into_iter().map(|a| a.0).collect(),
        None => vec![DEFAULT_LISTEN.parse().expect("constant address")],
    };
    if listen.is_empty() && file.tls.is_none() {
        return Err(ConfigError::at_key(
            "server.listen",
            "the list is empty; give at least one address such as 0.0.0.0:8080 (an empty \
             list is for HTTPS only, with server.tls)",
        ));
    }

    let threads = match file.threads {
        Some(n) if (1..=MAX_THREADS).contains(&n) => n,
        Some(n) => {
            return Err(ConfigError::at_key(
                "server.threads",
                format!(
                "{n} is out of range: use 1 to {MAX_THREADS}, or omit it to use one thread per CPU"
            ),
            ))
        }
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };

    let health_path = file
        .health_path
        .unwrap_or_else(|| DEFAULT_HEALTH_PATH.to_string());
    check_path("server.health_path", &health_path)?;

    let access_log = match file.access_log.as_deref().map(str::trim) {
        None | Some("stdout") => AccessLogTarget::Stdout,
        Some("off") => AccessLogTarget::Off,
        Some(path) if path.starts_with('/') => AccessLogTarget::File(path.into()),
        Some(other) => {
            return Err(ConfigError::at_key(
                "server.access_log",
                format!("`{other}` is not a target: use stdout, off, or an absolute file path"),
            ))
        }
    };
    let absolute = |key: &str, value: Option<&str>| {
        value
            .map(|path| absolute_path(key, path, "/run/edgeproxy/edgeproxy.pid"))
            .transpose()
    };
    let pid_file = absolute("server.pid_file", file.pid_file.as_deref())?;
    let upgrade_sock = absolute("server.upgrade_sock", file.upgrade_sock.as_deref())?
        .unwrap_or_else(|| DEFAULT_UPGRADE_SOCK.into());
    let (https, tls) = match file.tls {
        Some(t) => tls_settings(t, &listen).map(|(https, tls)| (Some(https), Some(tls)))?,
        None => (None, None),
    };
    let process = ProcessSettings {
        listen,
        threads,
        grace_period: file.grace_period.map_or(DEFAULT_GRACE_PERIOD, |d| d.0),
        access_log,
        access_log_format: file.access_log_format,
        pid_file,
        upgrade_sock,
        watch: file.watch,
        preserve_header_case: file.preserve_header_case,
        https,
        metrics_listen: None,
        cache: CacheSettings {
            max_size: DEFAULT_CACHE_SIZE,
        },
    };
    let server = ServerSettings {
        health_path,
        tls,
        trusted_proxies: file.trusted_proxies.unwrap_or_default(),
        limits,
    };
    Ok((process, server))
}

fn client_limits(file: &FileServer) -> Result<ClientLimits, ConfigError> {
    let max_header_size = match file.max_header_size {
        None => DEFAULT_MAX_HEADER_SIZE,
        Some(ByteSize(n)) if (1 << 10..=MAX_HEADER_SIZE as u64).contains(&n) => n as usize,
        Some(ByteSize(n)) => {
            return Err(ConfigError::at_key(
                "server.max_header_size",
                format!("{n} bytes is out of range: use 1KiB to 1MiB (default 32KiB)"),
            ))
        }
    };
    let max_header_count = match file.max_header_count {
        None => DEFAULT_MAX_HEADER_COUNT,
        Some(n) if (1..=MAX_HEADER_COUNT).contains(&n) => n,
        Some(n) => {
            return Err(ConfigError::at_key(
                "server.max_header_count",
                format!("{n} is out of range: use 1 to {MAX_HEADER_COUNT} (default {DEFAULT_MAX_HEADER_COUNT})"),
            ))
        }
    };
    let refuse_all = |key: &str, fix: &str| {
        ConfigError::at_key(key, format!("0 would refuse every client; {fix}"))
    };
    let max_connections = match file.max_connections {
        None => DEFAULT_MAX_CONNECTIONS,
        Some(0) => {
            return Err(refuse_all(
                "server.max_connections",
                "give a positive number (default 16384)",
            ))
        }
        Some(n) => n,
    };
    if file.max_connections_per_ip == Some(0) {
        return Err(refuse_all(
            "server.max_connections_per_ip",
            "give a positive number, or leave it out for no limit",
        ));
    }
    Ok(ClientLimits {
        max_header_size,
        max_header_count,
        header_timeout: positive(
            "server.header_timeout",
            file.header_timeout,
            DEFAULT_HEADER_TIMEOUT,
        )?,
        body_timeout: positive(
            "server.body_timeout",
            file.body_timeout,
            DEFAULT_BODY_TIMEOUT,
        )?,
        keepalive_timeout: match file.keepalive_timeout {
            Some(d) if d.0 < Duration::from_secs(1) => {
                return Err(ConfigError::at_key(
                    "server.keepalive_timeout",
                    "must be at least 1s: idle connections are timed in whole seconds",
                ))
            }
            Some(d) => d.0,
            None => DEFAULT_KEEPALIVE_TIMEOUT,
        },
        max_connections,
        max_connections_per_ip: file.max_connections_per_ip,
    })
}

fn tls_settings(
    file: FileTls,
    http_listen: &[SocketAddr],
) -> Result<(HttpsListeners, Tls), ConfigError> {
    let listen: Vec<SocketAddr> = file.listen.into_iter().map(|a| a.0).collect();
    if listen.is_empty() {
        return Err(ConfigError::at_key(
            "server.tls.listen",
            "the list is empty; give at least one address such as 0.0.0.0:443",
        ));
    }
    if file.redirect_http_to_https && http_listen.is_empty() {
        return Err(ConfigError::at_key(
            "server.tls.redirect_http_to_https",
            "there is no plain-HTTP listener (server.listen) to redirect from; add one or remove this key",
        ));
    }
    let cert_path = absolute_path(
        "server.tls.cert",
        &file.cert,
        "/etc/edgeproxy/tls/fullchain.pem",
    )?;
    let key_path = absolute_path(
        "server.tls.key",
        &file.key,
        "/etc/edgeproxy/tls/privkey.pem",
    )?;
    let certificate = Certificate::load(&cert_path, &key_path).map_err(|e| {
        let key = match e.file {
            CertFile::Cert => "server.tls.cert",
            CertFile::Key => "server.tls.key",
        };
        ConfigError::at_key(key, e.message)
    })?;
    let https = HttpsListeners {
        listen,
        http2: file.http2.unwrap_or(true),
    };
    let tls = Tls {
        certificate,
        redirect_http_to_https: file.redirect_http_to_https,
    };
    Ok((https, tls))
}

/// A file path that must be absolute: a relative one would depend on where the service
/// manager starts edgeproxy.
fn absolute_path(key: &str, path: &str, example: &str) -> Result<PathBuf, ConfigError> {
    let path = path.trim();
    if !path.starts_with('/') {
        return Err(ConfigError::at_key(
            key,
            format!("`{path}` is not an absolute path, such as {example}"),
        ));
    }
    Ok(PathBuf::from(path))
}

fn upstream_settings(
    name: String,
    file: FileUpstream,
    names: NameLookup,
) -> Result<Upstream, ConfigError> {
    let key = format!("upstreams.{name}");
    if name.trim().is_empty() {
        return Err(ConfigError::at_key(key, "an upstream name cannot be empty"));
    }
    if file.hash_key.is_some() && file.balance != Balance::IpHash {
        return Err(ConfigError::at_key(
            format!("{key}.hash_key"),
            "hash_key only applies to `balance: ip_hash`; remove it or set the balance",
        ));
    }
    if file.servers.is_empty() {
        return Err(ConfigError::at_key(
            format!("{key}.servers"),
            "the list is empty; add at least one server with an addr",
        ));
    }

    let defaults = Timeouts::DEFAULT;
    let timeouts = Timeouts {
        connect: positive(
            &format!("{key}.connect_timeout"),
            file.connect_timeout,
            defaults.connect,
        )?,
        read: positive(
            &format!("{key}.read_timeout"),
            file.read_timeout,
            defaults.read,
        )?,
        write: positive(
            &format!("{key}.write_timeout"),
            file.write_timeout,
            defaults.write,
        )?,
    };

    let mut servers = Vec::with_capacity(file.servers.len());
    let mut seen_ids = HashSet::new();
    let mut seen_sockets: HashMap<SocketAddr, String> = HashMap::new();
    for (i, entry) in file.servers.into_iter().enumerate() {
        let server_key = format!("{key}.servers[{i}]");
        let literal = entry.addr.host.parse::<IpAddr>().ok();
        let socket_addr = match (literal, names) {
            (Some(ip), _) => SocketAddr::new(ip, entry.addr.port),
            (None, NameLookup::Skip) => {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), entry.addr.port)
            }
            (None, NameLookup::Resolve) => {
                resolve(&entry.addr.host, entry.addr.port).map_err(|why| {
                    ConfigError::at_key(
                        format!("{server_key}.addr"),
                        format!(
                            "cannot resolve `{}`: {why}; check the name and this host's DNS, \
                             or check a file meant for another host (a container network, \
                             say) with `edgeproxy check --offline`",
                            entry.addr.text
                        ),
                    )
                })?
            }
        };
        let known = !socket_addr.ip().is_unspecified();
        let earlier = known
            .then(|| seen_sockets.insert(socket_addr, entry.addr.text.clone()))
            .flatten();
        if let Some(other) = earlier {
            return Err(ConfigError::at_key(
                format!("{server_key}.addr"),
                format!(
                    "`{}` is the same server as `{other}` ({socket_addr}); list each server once and use weight to give it more traffic",
                    entry.addr.text
                ),
            ));
        }
        let id = entry.id.map_or_else(|| (i + 1).to_string(), |l| l.0);
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::at_key(
                format!("{server_key}.id"),
                format!("`{id}` cannot be sent as a header value: use visible ASCII characters without spaces"),
            ));
        }
        if !seen_ids.insert(id.clone()) {
            return Err(ConfigError::at_key(
                format!("{server_key}.id"),
                format!("id `{id}` is already used by another server of this upstream"),
            ));
        }
        let fail_timeout = entry.fail_timeout.map_or(DEFAULT_FAIL_TIMEOUT, |d| d.0);
        let max_fails = entry.max_fails.unwrap_or(DEFAULT_MAX_FAILS);
        if max_fails > 0 && fail_timeout.is_zero() {
            return Err(ConfigError::at_key(
                format!("{server_key}.fail_timeout"),
                "must be positive when max_fails is set; use max_fails: 0 to turn passive checks off",
            ));
        }
        servers.push(UpstreamServer {
            host: entry.addr.host,
            port: entry.addr.port,
            addr: entry.addr.text,
            socket_addr,
            id,
            weight: entry.weight.map_or(1, |w| w.0),
            max_fails,
            fail_timeout,
            backup: entry.backup,
        });
    }
    if servers.iter().all(|s| s.backup) {
        return Err(ConfigError::at_key(
            format!("{key}.servers"),
            "every server is a backup; at least one must not be",
        ));
    }
    let health_check = file
        .health_check
        .map(|hc| health_check(&format!("{key}.health_check"), hc))
        .transpose()?;

    Ok(Upstream {
        name,
        balance: file.balance,
        hash_key: file.hash_key.map(|k| k.0).unwrap_or_default(),
        health_check,
        retries: file.retries.unwrap_or(DEFAULT_RETRIES),
        when_all_down: file.when_all_down,
        http2: file.http2,
        resolve_interval: positive(
            &format!("{key}.resolve_interval"),
            file.resolve_interval,
            DEFAULT_RESOLVE_INTERVAL,
        )?,
        servers,
        timeouts,
    })
}

fn health_check(key: &str, file: FileHealthCheck) -> Result<HealthCheck, ConfigError> {
    let probe = match file.kind {
        CheckKind::Tcp => {
            let http_only = [
                ("path", file.path.is_some()),
                ("host", file.host.is_some()),
                ("expect_status", file.expect_status.is_some()),
            ];
            if let Some((name, _)) = http_only.iter().find(|(_, set)| *set) {
                return Err(ConfigError::at_key(
                    format!("{key}.{name}"),
                    "only applies to `type: http`",
                ));
            }
            Probe::Tcp
        }
        CheckKind::Http => {
            let path = file.path.unwrap_or_else(|| "/".to_string());
            check_path(&format!("{key}.path"), &path)?;
            let host = file.host.map(|h| h.trim().to_string());
            if let Some(host) = &host {
                if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(ConfigError::at_key(
                        format!("{key}.host"),
                        format!("`{host}` is not a host name"),
                    ));
                }
            }
            let expect_status = file.expect_status.unwrap_or_default();
            if let Some(bad) = expect_status.iter().find(|c| !(100..=599).contains(*c)) {
                return Err(ConfigError::at_key(
                    format!("{key}.expect_status"),
                    format!("{bad} is not an HTTP status; use codes from 100 to 599"),
                ));
            }
            Probe::Http {
                path,
                host,
                expect_status,
            }
        }
    };
    let count = |name: &str, value: Option<u32>, default: u32| match value {
        Some(0) => Err(ConfigError::at_key(
            format!("{key}.{name}"),
            "must be at least 1",
        )),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    Ok(HealthCheck {
        probe,
        interval: positive(
            &format!("{key}.interval"),
            file.interval,
            Duration::from_secs(5),
        )?,
        timeout: positive(
            &format!("{key}.timeout"),
            file.timeout,
            Duration::from_secs(1),
        )?,
        fall: count("fall", file.fall, 3)?,
        rise: count("rise", file.rise, 2)?,
    })
}

fn routes(file: Vec<FileRoute>, upstreams: &[Upstream]) -> Result<Vec<Route>, ConfigError> {
    if file.is_empty() {
        return Err(ConfigError::at_key(
            "routes",
            "no route is defined; add one such as `- { path: /, upstream: app }`",
        ));
    }
    let mut seen = HashSet::new();
    file.into_iter()
        .enumerate()
        .map(|(i, route)| {
            let key = format!("routes[{i}]");
            check_path(&format!("{key}.path"), &route.path)?;
            let host = route.host.map(|h| h.trim().to_ascii_lowercase());
            if let Some(host) = &host {
                if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
                    return Err(ConfigError::at_key(
                        format!("{key}.host"),
                        format!("`{host}` is not a host name; write it as in the Host header, e.g. api.example.com"),
                    ));
                }
            }
            let upstream = upstreams
                .iter()
                .position(|u| u.name == route.upstream)
                .ok_or_else(|| {
                    let known: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
                    ConfigError::at_key(
                        format!("{key}.upstream"),
                        format!(
                            "unknown upstream `{}`; defined upstreams: {}",
                            route.upstream,
                            known.join(", ")
                        ),
                    )
                })?;
            if !seen.insert((host.clone(), route.path.clone())) {
                return Err(ConfigError::at_key(
                    format!("{key}.path"),
                    format!(
                        "another route already has path `{}`{}; remove one of them",
                        route.path,
                        host.as_deref().map(|h| format!(" and host `{h}`")).unwrap_or_default()
                    ),
                ));
            }
            if route.sse && route.cache.is_some() {
                return Err(ConfigError::at_key(
                    format!("{key}.cache"),
                    "an event stream cannot be cached; remove cache or sse",
                ));
            }
            if route.stream_idle_timeout.is_some() && !route.sse {
                return Err(ConfigError::at_key(
                    format!("{key}.stream_idle_timeout"),
                    "only applies to `sse: true` routes",
                ));
            }
            Ok(Route {
                path: route.path,
                host,
                upstream,
                sse: route.sse,
                stream_idle_timeout: positive(
                    &format!("{key}.stream_idle_timeout"),
                    route.stream_idle_timeout,
                    DEFAULT_STREAM_IDLE_TIMEOUT,
                )?,
                compress: route.compress,
                cache: route
                    .cache
                    .map(|ttl| positive(&format!("{key}.cache"), Some(ttl), ttl.0))
                    .transpose()?,
                max_body: route.max_body.map_or(Some(DEFAULT_MAX_BODY), |m| m.0),
                rate_limit: route
                    .rate_limit
                    .map(|r| rate_limit(&format!("{key}.rate_limit"), r))
                    .transpose()?,
            })
        })
        .collect()
}

fn rate_limit(key: &str, file: FileRateLimit) -> Result<RateLimit, ConfigError> {
    let rate = file.requests_per_second;
    if !(rate > 0.0 && rate <= 1e6) {
        return Err(ConfigError::at_key(
            format!("{key}.requests_per_second"),
            format!(
                "{rate} is out of range: give a rate above 0 and at most 1000000, e.g. 10 or 0.5"
            ),
        ));
    }
    // One second's worth by default, at least one request.
    let burst = file.burst.unwrap_or(rate.ceil() as u32);
    if burst == 0 {
        return Err(ConfigError::at_key(
            format!("{key}.burst"),
            "0 would refuse every request; give at least 1",
        ));
    }
    Ok(RateLimit {
        requests_per_second: rate,
        burst,
    })
}

fn check_path(key: &str, path: &str) -> Result<(), ConfigError> {
    if !path.starts_with('/') || path.contains(|c: char| c.is_whitespace() || c == '?') {
        return Err(ConfigError::at_key(
            key,
            format!("`{path}` is not a path: it must start with `/` and contain no spaces or `?`"),
        ));
    }
    // Requests are matched in normal form, so a path in any other form would never match.
    match path::normalize(path) {
        Ok(normal) if normal == path => Ok(()),
        Ok(normal) => Err(ConfigError::at_key(
            key,
            format!("`{path}` would never match: requests are matched with their path in normal form; write `{normal}`"),
        )),
        Err(e) => Err(ConfigError::at_key(key, format!("`{path}` is not a valid path: {e}"))),
    }
}

/// A duration that must not be zero, `default` when absent.
fn positive(
    key: &str,
    value: Option<super::values::DurationValue>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value {
        Some(d) if d.0.is_zero() => Err(ConfigError::at_key(
            key,
            "must be a positive duration such as 2s; 0 would fail every time",
        )),
        Some(d) => Ok(d.0),
        None => Ok(default),
    }
}

/// Resolves a host name.
fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    let addrs = (host, port).to_socket_addrs().map_err(|e| e.to_string())?;
    super::preferred_address(addrs).ok_or_else(|| "the name has no addresses".to_string())
}
