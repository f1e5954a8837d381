//! Following server host names while running, as a Pingora background service. Each name is
//! looked up again every `resolve_interval` of its upstream; when the addresses of a name
//! change, a new snapshot is put in force with one server per address, built like a reload's
//! so that the servers that stay keep their state (nginx resolves once, at start).

use crate::config::{chosen_addresses, Config, Upstream};
use crate::metrics::Metrics;
use crate::runtime::snapshot::{per_snapshot, LiveSnapshot, Snapshot};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Looks up the host names of every upstream that has some.
pub(crate) struct Resolver {
    live: Arc<LiveSnapshot>,
    metrics: Arc<Metrics>,
    notes: Arc<Notes>,
}

impl Resolver {
    /// Resolves for the upstreams of the snapshot in force, building new snapshots with
    /// children of `metrics`.
    pub(crate) fn new(live: Arc<LiveSnapshot>, metrics: Arc<Metrics>) -> Self {
        Self {
            live,
            metrics,
            notes: Arc::default(),
        }
    }
}

#[async_trait]
impl BackgroundService for Resolver {
    async fn start(&self, shutdown: ShutdownWatch) {
        per_snapshot(&self.live, shutdown, |snapshot, loops| {
            for (index, pool) in snapshot.pools.iter().enumerate() {
                let Some(interval) = pool.resolve_interval() else {
                    continue;
                };
                let follower = Follower {
                    live: Arc::clone(&self.live),
                    metrics: Arc::clone(&self.metrics),
                    notes: Arc::clone(&self.notes),
                    upstream: index,
                };
                loops.spawn(async move {
                    let mut ticker = tokio::time::interval(interval);
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    // The first tick is immediate: a new snapshot (a reload, another name
                    // that moved) is looked at again at once, then every interval.
                    loop {
                        ticker.tick().await;
                        follower.follow(system_lookup).await;
                    }
                });
            }
        })
        .await
    }
}

/// What the last lookup of each name found wrong, so that a lasting fault is logged once.
#[derive(Default)]
pub(crate) struct Notes(Mutex<HashMap<String, String>>);

impl Notes {
    /// Logs `note` about `what` unless it is what was last logged about it.
    fn warn(&self, what: &str, note: String) {
        let mut notes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if notes.get(what) != Some(&note) {
            log::warn!("{note}");
            notes.insert(what.to_string(), note);
        }
    }

    /// Forgets the fault of `what`, so that its next one is logged again; whether there was
    /// one.
    fn clear(&self, what: &str) -> bool {
        let mut notes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        notes.remove(what).is_some()
    }
}

/// Follows the names of one upstream of the snapshot in force.
pub(crate) struct Follower {
    live: Arc<LiveSnapshot>,
    metrics: Arc<Metrics>,
    notes: Arc<Notes>,
    upstream: usize,
}

impl Follower {
    /// Looks the upstream's names up with `lookup` and, if any stands for other addresses
    /// than before, puts a snapshot with those servers in force, unless a reload came first.
    pub(crate) async fn follow<F, Fut>(&self, lookup: F)
    where
        F: Fn(String, u16) -> Fut,
        Fut: Future<Output = io::Result<Vec<SocketAddr>>>,
    {
        let current = self.live.load();
        let Some(upstream) = current.config.upstreams.get(self.upstream) else {
            return;
        };
        let Some(addresses) = resolve_upstream(upstream, &self.notes, lookup).await else {
            return;
        };
        let mut config: Config = current.config.clone();
        let changed = &mut config.upstreams[self.upstream];
        for (entry, new) in changed.servers.iter_mut().zip(addresses) {
            if entry.addresses != new {
                log::info!(
                    "upstream {}: {} now stands for {} (was {})",
                    changed.name,
                    entry.addr,
                    list(&new),
                    list(&entry.addresses)
                );
                entry.addresses = new;
            }
        }
        let next = Snapshot::new(config, &self.metrics, Some(&current));
        if !self.live.replace(&current, next) {
            log::debug!("a reload came before the new addresses; they are looked up again");
        }
    }
}

/// The addresses each server entry of `upstream` stands for now, or `None` if none changed.
/// A name whose lookup fails or finds nothing keeps its addresses; an address that an earlier
/// entry has already is left out.
async fn resolve_upstream<F, Fut>(
    upstream: &Upstream,
    notes: &Notes,
    lookup: F,
) -> Option<Vec<Vec<SocketAddr>>>
where
    F: Fn(String, u16) -> Fut,
    Fut: Future<Output = io::Result<Vec<SocketAddr>>>,
{
    let mut all: Vec<Vec<SocketAddr>> = Vec::with_capacity(upstream.servers.len());
    for entry in &upstream.servers {
        let what = format!("upstream {}: {}", upstream.name, entry.addr);
        let mut found = entry.addresses.clone();
        if entry.has_host_name() {
            match lookup(entry.host.clone(), entry.port).await {
                Ok(addrs) if !addrs.is_empty() => {
                    if notes.clear(&what) {
                        log::info!("{what} resolves again");
                    }
                    found = chosen_addresses(entry.resolve, addrs);
                }
                Ok(_) => notes.warn(
                    &what,
                    format!(
                        "{what}: the name has no addresses; keeping {}",
                        list(&found)
                    ),
                ),
                Err(e) => notes.warn(
                    &what,
                    format!("{what}: cannot resolve: {e}; keeping {}", list(&found)),
                ),
            }
        }
        let duplicate = format!("{what} (duplicate)");
        let taken: Vec<SocketAddr> = found
            .iter()
            .filter(|a| all.iter().flatten().any(|b| b == *a))
            .copied()
            .collect();
        if taken.is_empty() {
            notes.clear(&duplicate);
        } else {
            notes.warn(
                &duplicate,
                format!(
                    "{what}: {} belongs to an earlier server of the upstream; skipping it",
                    list(&taken)
                ),
            );
            found.retain(|a| !taken.contains(a));
        }
        all.push(found);
    }
    let same = upstream
        .servers
        .iter()
        .zip(&all)
        .all(|(entry, new)| &entry.addresses == new);
    (!same).then_some(all)
}

/// The system's resolver (getaddrinfo, so `/etc/hosts` and the configured DNS servers).
async fn system_lookup(host: String, port: u16) -> io::Result<Vec<SocketAddr>> {
    tokio::net::lookup_host((host.as_str(), port))
        .await
        .map(Iterator::collect)
}

fn list(addresses: &[SocketAddr]) -> String {
    if addresses.is_empty() {
        return "no address".to_string();
    }
    let texts: Vec<String> = addresses.iter().map(SocketAddr::to_string).collect();
    texts.join(", ")
}

#[cfg(test)]
mod tests;
