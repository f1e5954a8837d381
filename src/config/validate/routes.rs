//! `routes:`: what each path (and host) sends where, and how.

use super::{check_path, positive};
use crate::config::defaults::{DEFAULT_MAX_BODY, DEFAULT_STREAM_IDLE_TIMEOUT};
use crate::config::file::{FileRateLimit, FileRoute};
use crate::config::{ConfigError, RateLimit, Route, Upstream};
use std::collections::HashSet;

pub(super) fn routes(
    file: Vec<FileRoute>,
    upstreams: &[Upstream],
) -> Result<Vec<Route>, ConfigError> {
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
