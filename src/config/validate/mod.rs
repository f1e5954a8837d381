//! Checks that need the whole file (cross-references, uniqueness, name resolution) and the
//! conversion of [`FileConfig`] into [`Config`].

mod acme;
mod routes;
mod server;
mod upstream;

use super::defaults::{DEFAULT_CACHE_SIZE, DEFAULT_METRICS_LISTEN};
use super::file::FileConfig;
use super::{CacheSettings, Config, ConfigError, MetricsSettings, NameLookup, ProcessSettings};
use crate::net::path;
use routes::routes;
use server::server_settings;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use upstream::upstream_settings;

/// Turns the parsed file into a [`Config`], or says what is wrong and where.
pub(super) fn validate(file: FileConfig, names: NameLookup) -> Result<Config, ConfigError> {
    let cache = cache_settings(&file)?;
    let metrics_listen = file
        .metrics
        .as_ref()
        .map(|m| m.listen.map_or(DEFAULT_METRICS_LISTEN, |l| l.0));
    let (process, server) = server_settings(file.server, metrics_listen, cache)?;
    let metrics = file.metrics.map(|m| MetricsSettings {
        allow: m.allow.unwrap_or_default(),
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
    listeners_apart(&process)?;
    Ok(Config {
        process,
        server,
        metrics,
        upstreams,
        routes,
    })
}

/// The `cache:` section.
fn cache_settings(file: &FileConfig) -> Result<CacheSettings, ConfigError> {
    let max_size = file
        .cache
        .as_ref()
        .and_then(|c| c.max_size)
        .map_or(DEFAULT_CACHE_SIZE, |s| s.0);
    if max_size < 1 << 20 {
        return Err(ConfigError::at_key(
            "cache.max_size",
            "must be at least 1MiB",
        ));
    }
    Ok(CacheSettings { max_size })
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
