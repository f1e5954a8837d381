//! Server selection for each upstream, on top of `pingora-load-balancing`'s `LoadBalancer`.

mod key;
mod least_conn;
mod selector;
mod smooth;
mod state;

pub use key::request_key;
pub use state::ServerState;

use crate::config::{
    preferred_address, Balance, HashKey, HealthCheck, Upstream, UpstreamServer, WhenAllDown,
};
use crate::metrics::handles::{FailureReason, ServerMetrics};
use crate::metrics::Metrics;
use crate::sync::inflight::InflightGuard;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::HeaderValue;
use pingora::lb::discovery::ServiceDiscovery;
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::protocols::ALPN;
use pingora::upstreams::peer::{HttpPeer, PeerOptions};
use prometheus::IntCounter;
use selector::{Selector, SelectorConfig};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// One upstream's servers and the balancers that pick among them.
pub struct Pool {
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

/// Where each server is now; host names are resolved again while running.
#[derive(Debug, Clone)]
pub struct Addresses {
    of: Vec<SocketAddr>,
    by_addr: HashMap<SocketAddr, usize>,
}

impl Addresses {
    fn new(of: Vec<SocketAddr>) -> Self {
        let by_addr = of.iter().enumerate().map(|(i, a)| (*a, i)).collect();
        Self { of, by_addr }
    }

    /// The server index of a backend.
    pub fn index_of(&self, backend: &Backend) -> Option<usize> {
        backend
            .addr
            .as_inet()
            .and_then(|addr| self.by_addr.get(addr).copied())
    }

    fn backends(&self, members: &[usize], servers: &[Server]) -> BTreeSet<Backend> {
        members
            .iter()
            .map(|&i| Backend {
                addr: PeerAddr::Inet(self.of[i]),
                weight: usize::from(servers[i].config.weight),
                ext: Default::default(),
            })
            .collect()
    }
}

/// Hands Pingora the backend set of a group as it is now.
struct CurrentBackends(Arc<ArcSwap<BTreeSet<Backend>>>);

#[async_trait]
impl ServiceDiscovery for CurrentBackends {
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        Ok((BTreeSet::clone(&self.0.load()), HashMap::new()))
    }
}

/// The primary or the backup servers of an upstream.
struct Group {
    balancer: LoadBalancer<Selector>,
    members: Vec<usize>,
    current: Arc<ArcSwap<BTreeSet<Backend>>>,
    /// Bound on the candidates looked at per selection.
    max_iterations: usize,
}

impl Group {
    /// `None` when `members` is empty.
    fn new(
        balance: Balance,
        members: Vec<usize>,
        servers: &[Server],
        addresses: &Arc<ArcSwap<Addresses>>,
    ) -> Option<Self> {
        if members.is_empty() {
            return None;
        }
        let current = Arc::new(ArcSwap::from_pointee(
            addresses.load().backends(&members, servers),
        ));
        let config = SelectorConfig {
            balance,
            addresses: Arc::clone(addresses),
            inflight: servers.iter().map(|s| s.state.inflight.clone()).collect(),
        };
        let discovery = Box::new(CurrentBackends(Arc::clone(&current)));
        let balancer =
            LoadBalancer::from_backends_with_config(Backends::new(discovery), Some(config));
        run_to_completion(balancer.update());
        // Round robin and least_conn offer each server once; a hash ring and random draws
        // revisit servers before they have offered them all.
        let max_iterations = match balance {
            Balance::RoundRobin | Balance::LeastConn => members.len(),
            Balance::IpHash | Balance::Random => members.len() * 256,
        };
        Some(Self {
            balancer,
            members,
            current,
            max_iterations,
        })
    }
}

/// A server with everything a request needs from it prepared at load time.
pub struct Server {
    /// The server as configured.
    pub config: UpstreamServer,
    /// `X-Served-By` value.
    pub served_by: HeaderValue,
    /// `X-Instance-ID` value.
    pub instance_id: HeaderValue,
    /// Live state: in flight, health, failures.
    pub state: Arc<ServerState>,
    /// Metric children.
    pub metrics: ServerMetrics,
    /// The connection settings, built once; each request clones them and sets the address.
    peer: HttpPeer,
}

impl Server {
    fn new(
        config: &UpstreamServer,
        upstream: &Upstream,
        metrics: ServerMetrics,
        state: Option<Arc<ServerState>>,
    ) -> Self {
        let timeouts = &upstream.timeouts;
        let mut peer_options = PeerOptions::new();
        if upstream.http2 {
            // Over plain TCP there is no ALPN: HTTP/2 as the minimum means prior knowledge.
            peer_options.alpn = ALPN::H2;
        }
        peer_options.connection_timeout = Some(timeouts.connect);
        peer_options.read_timeout = Some(timeouts.read);
        peer_options.write_timeout = Some(timeouts.write);
        let unresolved = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut peer = HttpPeer::new(unresolved, false, String::new());
        peer.options = peer_options;
        Self {
            served_by: header_value(&config.addr),
            instance_id: header_value(&config.id),
            state: state.unwrap_or_default(),
            metrics,
            config: config.clone(),
            peer,
        }
    }

    /// The connection settings for a request to this server at `addr`.
    pub fn peer(&self, addr: SocketAddr) -> Box<HttpPeer> {
        let mut peer = Box::new(self.peer.clone());
        peer._address = PeerAddr::Inet(addr);
        peer
    }

    /// Whether `addr` names a host to resolve rather than an IP.
    fn has_host_name(&self) -> bool {
        self.config.host.parse::<IpAddr>().is_err()
    }
}

/// Config validation only lets visible ASCII through for ids, and addresses are host:port.
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

impl Pool {
    /// Builds the balancers for an upstream, with metric children from `metrics`. Servers
    /// that `previous` has under the same `addr` keep their live state.
    pub fn new(upstream: &Upstream, metrics: &Metrics, previous: Option<&Pool>) -> Self {
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
    pub fn count_retry(&self) {
        self.retries_total.inc();
    }

    /// The upstream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The selection algorithm.
    pub fn balance(&self) -> Balance {
        self.balance
    }

    /// The servers in file order.
    pub fn servers(&self) -> &[Server] {
        &self.servers
    }

    /// What `ip_hash` hashes; see [`request_key`].
    pub fn hash_key(&self) -> &HashKey {
        &self.hash_key
    }

    /// The active health check, if any.
    pub fn health_check(&self) -> Option<&HealthCheck> {
        self.health_check.as_ref()
    }

    /// Further attempts allowed after a first failed one.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Picks a server not in `tried`: a ready primary, else a ready backup, else (with
    /// `when_all_down: try_all`) any. Returns its index into [`Pool::servers`]. `key`
    /// matters only to `ip_hash`.
    pub fn select(&self, key: &[u8], tried: &[usize]) -> Option<usize> {
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
    pub fn address(&self, index: usize) -> SocketAddr {
        self.addresses.load().of[index]
    }

    /// How often host names are resolved again; `None` if every server is an IP.
    pub fn resolve_interval(&self) -> Option<std::time::Duration> {
        self.servers
            .iter()
            .any(Server::has_host_name)
            .then_some(self.resolve_interval)
    }

    /// Resolves the servers' host names again and, if any moved, rebuilds the balancers.
    pub async fn refresh_addresses(&self) {
        self.refresh_addresses_with(|host, port| async move {
            tokio::net::lookup_host((host.as_str(), port))
                .await
                .map(|addrs| addrs.collect())
        })
        .await
    }

    /// [`Pool::refresh_addresses`] with a given name lookup.
    pub async fn refresh_addresses_with<F, Fut>(&self, lookup: F)
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
    pub fn enter(&self, server: usize) -> InflightGuard {
        self.servers[server].state.inflight.enter()
    }

    /// Records a failed attempt on `server`: counted in `edgeproxy_upstream_failures_total`
    /// as `reason`, and toward its passive `max_fails`; `detail` goes to the log.
    pub fn record_failure(&self, server: usize, reason: FailureReason, detail: &str) {
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

/// `LoadBalancer::update` is async because discovery may be; with [`Static`] discovery it
/// finishes on its first poll, so no runtime is needed to build a pool.
fn run_to_completion<F: Future<Output = pingora::Result<()>>>(future: F) {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(e)) => unreachable!("static discovery cannot fail: {e}"),
        Poll::Pending => unreachable!("static discovery does not wait"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Timeouts;

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
