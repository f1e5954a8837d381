//! Each entry of `upstreams:`: its servers, their addresses, timeouts and health check.

use super::{check_path, positive};
use crate::config::defaults::{
    DEFAULT_FAIL_TIMEOUT, DEFAULT_LEAST_TIME_DECAY, DEFAULT_MAX_FAILS, DEFAULT_RESOLVE_INTERVAL,
    DEFAULT_RETRIES,
};
use crate::config::file::{FileHealthCheck, FileServerEntry, FileUpstream};
use crate::config::{
    Balance, CheckKind, ConfigError, HealthCheck, NameLookup, Probe, Resolve, Timeouts, Upstream,
    UpstreamServer,
};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

pub(super) fn upstream_settings(
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
    if file.least_time_decay.is_some() && file.balance != Balance::LeastTime {
        return Err(ConfigError::at_key(
            format!("{key}.least_time_decay"),
            "least_time_decay only applies to `balance: least_time`; remove it or set the balance",
        ));
    }
    if file.servers.is_empty() {
        return Err(ConfigError::at_key(
            format!("{key}.servers"),
            "the list is empty; add at least one server with an addr",
        ));
    }

    let timeouts = timeouts(&key, &file)?;
    let mut seen = SeenServers::default();
    let servers = file
        .servers
        .into_iter()
        .enumerate()
        .map(|(i, entry)| server(&format!("{key}.servers[{i}]"), i, entry, names, &mut seen))
        .collect::<Result<Vec<_>, _>>()?;
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
        least_time_decay: positive(
            &format!("{key}.least_time_decay"),
            file.least_time_decay,
            DEFAULT_LEAST_TIME_DECAY,
        )?,
        servers,
        timeouts,
    })
}

/// What the servers of one upstream may not share: an id, or the address they resolve to.
#[derive(Default)]
struct SeenServers {
    ids: HashSet<String>,
    sockets: HashMap<SocketAddr, String>,
}

/// `connect_timeout`, `read_timeout`, `write_timeout` and `idle_timeout` of an upstream.
fn timeouts(key: &str, file: &FileUpstream) -> Result<Timeouts, ConfigError> {
    let defaults = Timeouts::DEFAULT;
    Ok(Timeouts {
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
        idle: positive(
            &format!("{key}.idle_timeout"),
            file.idle_timeout,
            defaults.idle,
        )?,
    })
}

/// The server at `index` of an upstream's `servers`, checked against those before it.
fn server(
    server_key: &str,
    index: usize,
    entry: FileServerEntry,
    names: NameLookup,
    seen: &mut SeenServers,
) -> Result<UpstreamServer, ConfigError> {
    let addresses = addresses(server_key, &entry, names)?;
    for &address in addresses.iter().filter(|a| !a.ip().is_unspecified()) {
        if let Some(other) = seen.sockets.insert(address, entry.addr.text.clone()) {
            return Err(ConfigError::at_key(
                format!("{server_key}.addr"),
                format!(
                    "`{}` is the same server as `{other}` ({address}); list each server once and use weight to give it more traffic",
                    entry.addr.text
                ),
            ));
        }
    }
    let id = entry.id.map_or_else(|| (index + 1).to_string(), |l| l.0);
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::at_key(
            format!("{server_key}.id"),
            format!("`{id}` cannot be sent as a header value: use visible ASCII characters without spaces"),
        ));
    }
    if !seen.ids.insert(id.clone()) {
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
    Ok(UpstreamServer {
        host: entry.addr.host,
        port: entry.addr.port,
        addr: entry.addr.text,
        resolve: entry.resolve,
        addresses,
        id,
        weight: entry.weight.map_or(1, |w| w.0),
        max_fails,
        fail_timeout,
        backup: entry.backup,
    })
}

/// The addresses a server's `addr` stands for: the IP it names, or those its host name
/// resolves to under its `resolve` (unspecified when names are not looked up, as `check
/// --offline` does).
fn addresses(
    server_key: &str,
    entry: &FileServerEntry,
    names: NameLookup,
) -> Result<Vec<SocketAddr>, ConfigError> {
    let addr = &entry.addr;
    let literal = addr.host.parse::<IpAddr>().ok();
    match (literal, names) {
        (Some(ip), _) => Ok(vec![SocketAddr::new(ip, addr.port)]),
        (None, NameLookup::Skip) => Ok(vec![SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            addr.port,
        )]),
        (None, NameLookup::Resolve) => {
            resolve(&addr.host, addr.port, entry.resolve).map_err(|why| {
                ConfigError::at_key(
                    format!("{server_key}.addr"),
                    format!(
                        "cannot resolve `{}`: {why}; check the name and this host's DNS, \
                     or check a file meant for another host (a container network, \
                     say) with `edgeproxy check --offline`",
                        addr.text
                    ),
                )
            })
        }
    }
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

/// Resolves a host name.
fn resolve(host: &str, port: u16, resolve: Resolve) -> Result<Vec<SocketAddr>, String> {
    let addrs = (host, port).to_socket_addrs().map_err(|e| e.to_string())?;
    let chosen = crate::config::chosen_addresses(resolve, addrs);
    if chosen.is_empty() {
        return Err("the name has no addresses".to_string());
    }
    Ok(chosen)
}
