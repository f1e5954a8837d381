//! The `server:` section: listeners and process settings, client limits, TLS.

use super::{absolute_path, acme, check_path, positive};
use crate::config::defaults::{
    DEFAULT_BODY_TIMEOUT, DEFAULT_GRACE_PERIOD, DEFAULT_HEADER_TIMEOUT, DEFAULT_HEALTH_PATH,
    DEFAULT_KEEPALIVE_TIMEOUT, DEFAULT_LISTEN, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HEADER_COUNT,
    DEFAULT_MAX_HEADER_SIZE, DEFAULT_UPGRADE_SOCK, MAX_HEADER_COUNT, MAX_HEADER_SIZE, MAX_THREADS,
};
use crate::config::file::{FileServer, FileTls};
use crate::config::values::ByteSize;
use crate::config::{
    AccessLogTarget, CacheSettings, CertFile, Certificate, CertificateSource, ClientLimits,
    ConfigError, HttpsListeners, ProcessSettings, ServerSettings, Tls,
};
use std::net::SocketAddr;
use std::time::Duration;

/// The `server:` section: its restart-only settings, with the metrics listener and the cache
/// of their own sections, and those a reload changes.
pub(super) fn server_settings(
    file: FileServer,
    metrics_listen: Option<SocketAddr>,
    cache: CacheSettings,
) -> Result<(ProcessSettings, ServerSettings), ConfigError> {
    let limits = client_limits(&file)?;
    let listen: Vec<SocketAddr> = match file.listen {
        Some(list) => list.into_iter().map(|a| a.0).collect(),
        None => vec![DEFAULT_LISTEN],
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
        metrics_listen,
        cache,
        when_full: file.when_full,
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
                format!(
                    "{n} bytes is out of range: use 1KiB to {}MiB (default {}KiB)",
                    MAX_HEADER_SIZE >> 20,
                    DEFAULT_MAX_HEADER_SIZE >> 10
                ),
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
                &format!("give a positive number (default {DEFAULT_MAX_CONNECTIONS})"),
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
    let source = match (file.cert, file.key, file.acme) {
        (Some(cert), Some(key), None) => CertificateSource::Files(certificate_files(&cert, &key)?),
        (None, None, Some(acme)) => {
            if http_listen.is_empty() {
                return Err(ConfigError::at_key(
                    "server.tls.acme",
                    "the CA checks the domains over plain HTTP (HTTP-01 on port 80): add a                      server.listen such as 0.0.0.0:80",
                ));
            }
            CertificateSource::Acme(acme::settings(acme)?)
        }
        (_, _, Some(_)) => {
            return Err(ConfigError::at_key(
                "server.tls.acme",
                "acme obtains the certificate itself: remove cert and key, or remove acme",
            ))
        }
        (None, _, None) => {
            return Err(ConfigError::at_key(
                "server.tls",
                "missing field `cert`: give cert and key (PEM files), or acme to have edgeproxy obtain the certificate",
            ))
        }
        (Some(_), None, None) => {
            return Err(ConfigError::at_key(
                "server.tls",
                "missing field `key`: give the private key of the certificate in cert",
            ))
        }
    };
    let https = HttpsListeners {
        listen,
        http2: file.http2.unwrap_or(true),
    };
    let tls = Tls {
        source,
        redirect_http_to_https: file.redirect_http_to_https,
    };
    Ok((https, tls))
}

/// `server.tls.cert` and `server.tls.key`, loaded.
fn certificate_files(cert: &str, key: &str) -> Result<Certificate, ConfigError> {
    let cert_path = absolute_path("server.tls.cert", cert, "/etc/edgeproxy/tls/fullchain.pem")?;
    let key_path = absolute_path("server.tls.key", key, "/etc/edgeproxy/tls/privkey.pem")?;
    Certificate::load(&cert_path, &key_path).map_err(|e| {
        let key = match e.file {
            CertFile::Cert => "server.tls.cert",
            CertFile::Key => "server.tls.key",
        };
        ConfigError::at_key(key, e.message)
    })
}
