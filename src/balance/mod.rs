//! Server selection for each upstream, on top of `pingora-load-balancing`'s `LoadBalancer`.

mod group;
mod key;
mod least_conn;
mod selector;
mod server;
mod smooth;
mod state;

pub(crate) use group::Addresses;
pub(crate) use key::request_key;
pub(crate) use server::Server;

use crate::config::{preferred_address, Balance, HashKey, HealthCheck, Upstream, WhenAllDown};
use crate::metrics::handles::{FailureReason, ServerMetrics};
use crate::metrics::Metrics;
use crate::sync::inflight::InflightGuard;
use arc_swap::ArcSwap;
use group::Group;
use pingora::lb::Backend;
use prometheus::IntCounter;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

/// One upstream's servers and the balancers that pick among them.
pub(crate) struct Pool {
    name: String,
    balance: Balance,
    hash_key: HashKey,
    health_check: Option<HealthCheck>,
    retries: u32,
    when_all_down: WhenAllDown,
    resolve_interval: std::time::Duration,
    primary: Group,
    backup: Option<Group>,
    servers: Vec<Server>,
    addresses: Arc<ArcSwap<Addresses>>,
    retries_total: IntCounter,
}

impl Pool {
    /// Builds the balancers for an upstream, with metric children from `metrics`. Servers
    /// that `previous` has under the same `addr` keep their live state.
    pub(crate) fn new(upstream: &Upstream, metrics: &Metrics, previous: Option<&Pool>) -> Self {
        let servers: Vec<Server> = upstream
            .servers
            .iter()
            .map(|s| {
                let server_metrics = ServerMetrics::new(metrics, &upstream.name, &s.addr);
                let state = previous
                    .and_then(|p| p.servers.iter().find(|o| o.config.addr == s.addr))
                    .map(|o| Arc::clone(&o.state));
                Server::new(s, upstream, server_metrics, state)
            })
            .collect();
        let addresses = Arc::new(ArcSwap::from_pointee(Addresses::new(
            upstream.servers.iter().map(|s| s.socket_addr).collect(),
        )));
        let (backups, primaries): (Vec<usize>, Vec<usize>) =
            (0..servers.len()).partition(|&i| servers[i].config.backup);
        #[expect(
            clippy::expect_used,
            reason = "validation refuses an upstream whose servers are all backups"
        )]
        let primary = Group::new(upstream.balance, primaries, &servers, &addresses)
            .expect("config validation requires a server that is not a backup");
        let backup = Group::new(upstream.balance, backups, &servers, &addresses);
        Self {
            name: upstream.name.clone(),
            balance: upstream.balance,
            hash_key: upstream.hash_key.clone(),
            health_check: upstream.health_check.clone(),
            retries: upstream.retries,
            when_all_down: upstream.when_all_down,
            resolve_interval: upstream.resolve_interval,
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
        let addresses = self.addresses.load();
        let untried = |b: &Backend| addresses.index_of(b).filter(|i| !tried.contains(i));
        let ready =
            |b: &Backend, _: bool| untried(b).is_some_and(|i| self.servers[i].state.ready());
        let any = |b: &Backend, _: bool| untried(b).is_some();
        let groups = || std::iter::once(&self.primary).chain(&self.backup);
        let pick = |accept: &dyn Fn(&Backend, bool) -> bool| {
            groups().find_map(|g| g.balancer.select_with(key, g.max_iterations, accept))
        };
        let backend = pick(&ready).or_else(|| match self.when_all_down {
            WhenAllDown::TryAll => pick(&any),
            WhenAllDown::Fail => None,
        })?;
        addresses.index_of(&backend)
    }

    /// Where server `index` is now.
    pub(crate) fn address(&self, index: usize) -> SocketAddr {
        self.addresses.load().of[index]
    }

    /// How often host names are resolved again; `None` if every server is an IP.
    pub(crate) fn resolve_interval(&self) -> Option<std::time::Duration> {
        self.servers
            .iter()
            .any(Server::has_host_name)
            .then_some(self.resolve_interval)
    }

    /// Resolves the servers' host names again and, if any moved, rebuilds the balancers.
    pub(crate) async fn refresh_addresses(&self) {
        self.refresh_addresses_with(|host, port| async move {
            tokio::net::lookup_host((host.as_str(), port))
                .await
                .map(|addrs| addrs.collect())
        })
        .await
    }

    /// [`Pool::refresh_addresses`] with a given name lookup.
    pub(crate) async fn refresh_addresses_with<F, Fut>(&self, lookup: F)
    where
        F: Fn(String, u16) -> Fut,
        Fut: Future<Output = io::Result<Vec<SocketAddr>>>,
    {
        let old = self.addresses.load_full();
        let mut new = old.of.clone();
        for (i, server) in self.servers.iter().enumerate() {
            if !server.has_host_name() {
                continue;
            }
            let config = &server.config;
            let found = match lookup(config.host.clone(), config.port).await {
                Ok(addrs) => preferred_address(addrs),
                Err(e) => {
                    log::warn!(
                        "upstream {}: cannot resolve {}: {e}; keeping {}",
                        self.name,
                        config.addr,
                        old.of[i]
                    );
                    continue;
                }
            };
            match found {
                Some(addr) if addr != old.of[i] && new.contains(&addr) => log::warn!(
                    "upstream {}: {} now resolves to {addr}, which another server has; keeping {}",
                    self.name,
                    config.addr,
                    old.of[i]
                ),
                Some(addr) if addr != old.of[i] => {
                    log::info!(
                        "upstream {}: {} now resolves to {addr} (was {})",
                        self.name,
                        config.addr,
                        old.of[i]
                    );
                    new[i] = addr;
                }
                _ => {}
            }
        }
        if new == old.of {
            return;
        }
        let addresses = Addresses::new(new);
        for group in std::iter::once(&self.primary).chain(&self.backup) {
            group
                .current
                .store(Arc::new(addresses.backends(&group.members, &self.servers)));
        }
        self.addresses.store(Arc::new(addresses));
        for group in std::iter::once(&self.primary).chain(&self.backup) {
            if let Err(e) = group.balancer.update().await {
                log::warn!("upstream {}: cannot rebuild the balancer: {e}", self.name);
            }
        }
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
                config.addr,
                config.max_fails,
                config.fail_timeout,
                config.fail_timeout
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Timeouts, UpstreamServer};

    impl Pool {
        fn new_for_test(upstream: &Upstream) -> Pool {
            Pool::new(upstream, &Metrics::new().unwrap(), None)
        }
    }

    fn upstream(weights: &[u16]) -> Upstream {
        upstream_with(Balance::RoundRobin, weights)
    }

    fn upstream_with(balance: Balance, weights: &[u16]) -> Upstream {
        Upstream {
            name: "app".into(),
            balance,
            hash_key: HashKey::ClientIp,
            health_check: None,
            retries: 2,
            when_all_down: WhenAllDown::Fail,
            resolve_interval: std::time::Duration::from_secs(30),
            http2: false,
            servers: weights
                .iter()
                .enumerate()
                .map(|(i, w)| UpstreamServer {
                    host: "127.0.0.1".into(),
                    port: 9001 + i as u16,
                    addr: format!("127.0.0.1:{}", 9001 + i),
                    socket_addr: format!("127.0.0.1:{}", 9001 + i).parse().unwrap(),
                    id: (i + 1).to_string(),
                    weight: *w,
                    max_fails: 1,
                    fail_timeout: std::time::Duration::from_secs(10),
                    backup: false,
                })
                .collect(),
            timeouts: Timeouts::DEFAULT,
        }
    }

    #[test]
    fn selection_follows_weights_exactly_over_a_cycle() {
        let pool = Pool::new_for_test(&upstream(&[1, 2, 3]));
        let mut counts = [0; 3];
        for _ in 0..600 {
            counts[pool.select(b"", &[]).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 200, 300]);
    }

    #[test]
    fn tried_servers_are_skipped_in_every_mode() {
        for balance in [
            Balance::RoundRobin,
            Balance::LeastConn,
            Balance::IpHash,
            Balance::Random,
        ] {
            let pool = Pool::new_for_test(&upstream_with(balance, &[1, 2, 3]));
            for key in [&b"10.0.0.1"[..], b"10.0.0.2", b"x"] {
                let first = pool.select(key, &[]).unwrap();
                let second = pool.select(key, &[first]).unwrap();
                assert_ne!(first, second, "{balance:?}");
                let third = pool.select(key, &[first, second]).unwrap();
                assert!(third != first && third != second, "{balance:?}");
                assert_eq!(pool.select(key, &[0, 1, 2]), None, "{balance:?}");
            }
        }
    }

    #[test]
    fn least_conn_follows_the_guards() {
        let pool = Pool::new_for_test(&upstream_with(Balance::LeastConn, &[1, 1]));
        let busy = pool.enter(0);
        assert_eq!(pool.select(b"", &[]), Some(1));
        assert_eq!(pool.select(b"", &[]), Some(1));
        drop(busy);
        let both: std::collections::HashSet<_> =
            (0..4).map(|_| pool.select(b"", &[]).unwrap()).collect();
        assert_eq!(both.len(), 2);
    }

    #[test]
    fn ip_hash_is_sticky_and_random_is_weighted() {
        let pool = Pool::new_for_test(&upstream_with(Balance::IpHash, &[1, 1, 1]));
        let first = pool.select(b"192.0.2.7", &[]).unwrap();
        assert!((0..50).all(|_| pool.select(b"192.0.2.7", &[]) == Some(first)));

        let pool = Pool::new_for_test(&upstream_with(Balance::Random, &[1, 3]));
        let heavy = (0..4000)
            .filter(|_| pool.select(b"", &[]) == Some(1))
            .count();
        assert!((2800..=3200).contains(&heavy), "{heavy} of 4000");
    }

    #[tokio::test]
    async fn moved_host_names_are_followed() {
        let mut upstream = upstream_with(Balance::RoundRobin, &[1, 1]);
        upstream.servers[1].host = "app2.internal".into();
        upstream.servers[1].addr = "app2.internal:9002".into();
        let pool = Pool::new_for_test(&upstream);
        assert_eq!(
            pool.resolve_interval(),
            Some(std::time::Duration::from_secs(30))
        );
        let moved: SocketAddr = "127.0.0.1:9102".parse().unwrap();
        pool.refresh_addresses_with(|host, port| async move {
            assert_eq!(
                (host.as_str(), port),
                ("app2.internal", 9002),
                "IPs are not looked up"
            );
            Ok(vec!["[::1]:9102".parse().unwrap(), moved])
        })
        .await;
        assert_eq!(pool.address(1), moved, "IPv4 preferred");
        assert_eq!(pool.address(0).to_string(), "127.0.0.1:9001");
        // The balancer picks the server at its new address.
        let picks: std::collections::HashSet<usize> =
            (0..4).map(|_| pool.select(b"", &[]).unwrap()).collect();
        assert_eq!(picks.len(), 2);
        assert_eq!(pool.select(b"", &[0]), Some(1));

        // A failed lookup or one landing on another server's address keeps the old one.
        pool.refresh_addresses_with(|_, _| async { Err(std::io::Error::other("no such host")) })
            .await;
        assert_eq!(pool.address(1), moved);
        pool.refresh_addresses_with(|_, _| async { Ok(vec!["127.0.0.1:9001".parse().unwrap()]) })
            .await;
        assert_eq!(pool.address(1), moved);
    }

    #[test]
    fn ip_only_pools_need_no_resolution() {
        assert_eq!(Pool::new_for_test(&upstream(&[1])).resolve_interval(), None);
    }

    #[test]
    fn a_single_server_pool_works_in_every_mode() {
        for balance in [
            Balance::RoundRobin,
            Balance::LeastConn,
            Balance::IpHash,
            Balance::Random,
        ] {
            let pool = Pool::new_for_test(&upstream_with(balance, &[5]));
            assert_eq!(pool.select(b"k", &[]), Some(0), "{balance:?}");
            assert_eq!(pool.select(b"k", &[0]), None, "{balance:?}");
        }
    }

    #[test]
    fn servers_carry_their_identity_headers() {
        let pool = Pool::new_for_test(&upstream(&[1, 1]));
        let s = &pool.servers()[1];
        assert_eq!(s.served_by, "127.0.0.1:9002");
        assert_eq!(s.instance_id, "2");
        let peer = s.peer(pool.address(1));
        assert_eq!(
            peer.options.connection_timeout,
            Some(Timeouts::DEFAULT.connect)
        );
        assert_eq!(peer._address.to_string(), "127.0.0.1:9002");
    }
}
