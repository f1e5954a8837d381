//! Server selection for each upstream, on top of `pingora-load-balancing`'s `LoadBalancer`.

mod group;
mod key;
mod latency;
mod least_conn;
mod selector;
mod server;
mod smooth;
mod state;
mod traffic;

pub(crate) use group::Addresses;
pub(crate) use key::request_key;
pub(crate) use server::Server;
pub(crate) use traffic::TrafficView;

use crate::config::{Balance, HashKey, HealthCheck, Upstream, UpstreamServer, WhenAllDown};
use crate::metrics::handles::FailureReason;
use crate::metrics::Metrics;
use crate::sync::inflight::InflightGuard;
use group::Group;
use pingora::lb::Backend;
use prometheus::IntCounter;
use server::Kept;
use state::ServerState;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One upstream's servers and the balancers that pick among them. A server is one address
/// of a `servers` entry: a host name that resolves to three addresses makes three.
pub(crate) struct Pool {
    name: String,
    balance: Balance,
    hash_key: HashKey,
    health_check: Option<HealthCheck>,
    retries: u32,
    when_all_down: WhenAllDown,
    /// `resolve_interval`, if some entry names a host (even one left without addresses).
    resolve_interval: Option<Duration>,
    least_time_decay: Duration,
    primary: Option<Group>,
    backup: Option<Group>,
    servers: Vec<Server>,
    addresses: Arc<Addresses>,
    retries_total: IntCounter,
}

impl Pool {
    /// Builds the balancers for an upstream, with metric children from `metrics`. Servers
    /// that `previous` has under the same entry and address keep their live state and
    /// `X-Instance-ID`; servers that join a running pool wait for their first health probe.
    pub(crate) fn new(upstream: &Upstream, metrics: &Metrics, previous: Option<&Pool>) -> Self {
        let mut servers: Vec<Server> = Vec::new();
        for entry in &upstream.servers {
            for &address in &entry.addresses {
                if servers.iter().any(|s| s.address == address) {
                    // Validation refuses this at load; a lookup while running may find it.
                    continue;
                }
                let before = previous.and_then(|p| {
                    p.servers.iter().find(|o| {
                        (o.config.addr.as_str(), o.address) == (entry.addr.as_str(), address)
                    })
                });
                let kept = match before {
                    Some(old) if old.config.id == entry.id => Kept {
                        state: Arc::clone(&old.state),
                        instance_id: old.instance_id.clone(),
                    },
                    _ => Kept {
                        state: Arc::new(match previous {
                            Some(_) => ServerState::joining(upstream.health_check.is_some()),
                            None => ServerState::default(),
                        }),
                        instance_id: server::instance_id(entry, address),
                    },
                };
                servers.push(Server::new(entry, address, upstream, metrics, kept));
            }
        }
        let addresses = Arc::new(Addresses::new(&servers));
        let (backups, primaries): (Vec<usize>, Vec<usize>) =
            (0..servers.len()).partition(|&i| servers[i].config.backup);
        let primary = Group::new(upstream.balance, primaries, &servers, &addresses);
        let backup = Group::new(upstream.balance, backups, &servers, &addresses);
        Self {
            name: upstream.name.clone(),
            balance: upstream.balance,
            hash_key: upstream.hash_key.clone(),
            health_check: upstream.health_check.clone(),
            retries: upstream.retries,
            when_all_down: upstream.when_all_down,
            resolve_interval: upstream
                .servers
                .iter()
                .any(UpstreamServer::has_host_name)
                .then_some(upstream.resolve_interval),
            least_time_decay: upstream.least_time_decay,
            primary,
            backup,
            servers,
            addresses,
            retries_total: metrics.retries.with_label_values(&[&upstream.name]),
        }
    }

    /// Counts a request sent again to another server.
    pub(crate) fn count_retry(&self) {
        self.retries_total.inc();
    }

    /// The upstream's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The selection algorithm.
    pub(crate) fn balance(&self) -> Balance {
        self.balance
    }

    /// The servers in file order.
    pub(crate) fn servers(&self) -> &[Server] {
        &self.servers
    }

    /// What `ip_hash` hashes; see [`request_key`].
    pub(crate) fn hash_key(&self) -> &HashKey {
        &self.hash_key
    }

    /// The active health check, if any.
    pub(crate) fn health_check(&self) -> Option<&HealthCheck> {
        self.health_check.as_ref()
    }

    /// Further attempts allowed after a first failed one.
    pub(crate) fn retries(&self) -> u32 {
        self.retries
    }

    /// Picks a server not in `tried`: a ready primary, else a ready backup, else (with
    /// `when_all_down: try_all`) any. Returns its index into [`Pool::servers`]. `key`
    /// matters only to `ip_hash`.
    pub(crate) fn select(&self, key: &[u8], tried: &[usize]) -> Option<usize> {
        let untried = |b: &Backend| self.addresses.index_of(b).filter(|i| !tried.contains(i));
        let ready =
            |b: &Backend, _: bool| untried(b).is_some_and(|i| self.servers[i].state.ready());
        let any = |b: &Backend, _: bool| untried(b).is_some();
        let pick = |accept: &dyn Fn(&Backend, bool) -> bool| {
            self.primary
                .iter()
                .chain(&self.backup)
                .find_map(|g| self.select_in(g, key, accept))
        };
        pick(&ready).or_else(|| match self.when_all_down {
            WhenAllDown::TryAll => pick(&any),
            WhenAllDown::Fail => None,
        })
    }

    /// A server of `group` that `accept` takes; for `least_time`, the better of two.
    fn select_in(
        &self,
        group: &Group,
        key: &[u8],
        accept: &dyn Fn(&Backend, bool) -> bool,
    ) -> Option<usize> {
        let draw = |accept: &dyn Fn(&Backend, bool) -> bool| {
            let backend = group
                .balancer
                .select_with(key, group.max_iterations, accept)?;
            self.addresses.index_of(&backend)
        };
        let first = draw(accept)?;
        if self.balance != Balance::LeastTime {
            return Some(first);
        }
        let other = |b: &Backend, healthy: bool| {
            accept(b, healthy) && self.addresses.index_of(b) != Some(first)
        };
        let Some(second) = draw(&other) else {
            return Some(first);
        };
        let now = Instant::now();
        Some(if self.load(second, now) < self.load(first, now) {
            second
        } else {
            first
        })
    }

    /// `least_time`'s score of a server: its response-time estimate (the median of the
    /// others' while it has none), times its requests in flight plus one, over its weight.
    fn load(&self, index: usize, now: Instant) -> f64 {
        let server = &self.servers[index];
        let cost = server
            .state
            .latency
            .cost(now, self.least_time_decay)
            .or_else(|| self.median_cost(now))
            .unwrap_or(1.0);
        let inflight = server.state.inflight.count() as f64;
        cost * (inflight + 1.0) / f64::from(server.config.weight.max(1))
    }

    /// The median estimate over the servers that have one.
    fn median_cost(&self, now: Instant) -> Option<f64> {
        let mut costs: Vec<f64> = self
            .servers
            .iter()
            .filter_map(|s| s.state.latency.cost(now, self.least_time_decay))
            .collect();
        if costs.is_empty() {
            return None;
        }
        costs.sort_by(f64::total_cmp);
        Some(costs[costs.len() / 2])
    }

    /// Records the time `server` took to its response header, for `least_time`.
    pub(crate) fn observe_response_time(&self, server: usize, elapsed: Duration) {
        if self.balance == Balance::LeastTime {
            self.servers[server].state.latency.observe(
                elapsed,
                Instant::now(),
                self.least_time_decay,
            );
        }
    }

    /// `least_time`'s response-time estimate of `server` now, in seconds; `None` in the
    /// other modes and before its first answer.
    pub(crate) fn response_time_estimate(&self, server: usize) -> Option<f64> {
        (self.balance == Balance::LeastTime)
            .then(|| {
                self.servers[server]
                    .state
                    .latency
                    .cost(Instant::now(), self.least_time_decay)
            })
            .flatten()
    }

    /// How often host names are resolved again; `None` if every server is an IP.
    pub(crate) fn resolve_interval(&self) -> Option<Duration> {
        self.resolve_interval
    }

    /// Counts a request against a server until the guard is dropped.
    pub(crate) fn enter(&self, server: usize) -> InflightGuard {
        self.servers[server].state.inflight.enter()
    }

    /// Records a failed attempt on `server`: counted in `edgeproxy_upstream_failures_total`
    /// as `reason`, and toward its passive `max_fails`; `detail` goes to the log.
    pub(crate) fn record_failure(&self, server: usize, reason: FailureReason, detail: &str) {
        let server = &self.servers[server];
        server.metrics.failure(reason);
        let config = &server.config;
        if server
            .state
            .passive
            .record_failure(config.max_fails, config.fail_timeout)
        {
            log::info!(
                "upstream {}: server {} failed {} time(s) within {:?} (last: {detail}); skipping it for {:?}",
                self.name,
                server.name,
                config.max_fails,
                config.fail_timeout,
                config.fail_timeout
            );
        }
    }
}

#[cfg(test)]
mod tests;
