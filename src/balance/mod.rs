//! Server selection for each upstream, on top of `pingora-load-balancing`'s `LoadBalancer`.

mod key;
mod least_conn;
mod selector;
mod smooth;
mod state;

pub use key::request_key;
pub use state::ServerState;

use crate::config::{
    Balance, HashKey, HealthCheck, Timeouts, Upstream, UpstreamServer, WhenAllDown,
};
use crate::inflight::InflightGuard;
use http::HeaderValue;
use pingora::lb::discovery::Static;
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::upstreams::peer::HttpPeer;
use selector::{Selector, SelectorConfig};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// One upstream's servers and the balancers that pick among them.
pub struct Pool {
    name: String,
    hash_key: HashKey,
    health_check: Option<HealthCheck>,
    retries: u32,
    when_all_down: WhenAllDown,
    primary: Group,
    backup: Option<Group>,
    servers: Vec<Server>,
    by_addr: HashMap<SocketAddr, usize>,
}

/// The primary or the backup servers of an upstream.
struct Group {
    balancer: LoadBalancer<Selector>,
    /// Bound on the candidates looked at per selection.
    max_iterations: usize,
}

impl Group {
    /// `None` when `servers` is empty.
    fn new(balance: Balance, servers: &[&Server]) -> Option<Self> {
        if servers.is_empty() {
            return None;
        }
        let backends: BTreeSet<Backend> = servers
            .iter()
            .map(|s| Backend {
                addr: PeerAddr::Inet(s.config.socket_addr),
                weight: usize::from(s.config.weight),
                ext: Default::default(),
            })
            .collect();
        let config = SelectorConfig {
            balance,
            servers: servers
                .iter()
                .map(|s| (s.config.socket_addr, s.state.inflight.clone()))
                .collect(),
        };
        let balancer = LoadBalancer::from_backends_with_config(
            Backends::new(Static::new(backends)),
            Some(config),
        );
        run_to_completion(balancer.update());
        // Round robin and least_conn offer each server once; a hash ring and random draws
        // revisit servers before they have offered them all.
        let max_iterations = match balance {
            Balance::RoundRobin | Balance::LeastConn => servers.len(),
            Balance::IpHash | Balance::Random => servers.len() * 256,
        };
        Some(Self {
            balancer,
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
    peer: HttpPeer,
}

impl Server {
    fn new(config: &UpstreamServer, timeouts: &Timeouts) -> Self {
        let mut peer = HttpPeer::new(config.socket_addr, false, String::new());
        peer.options.connection_timeout = Some(timeouts.connect);
        peer.options.read_timeout = Some(timeouts.read);
        peer.options.write_timeout = Some(timeouts.write);
        Self {
            served_by: header_value(&config.addr),
            instance_id: header_value(&config.id),
            state: Arc::new(ServerState::new(config.max_fails, config.fail_timeout)),
            config: config.clone(),
            peer,
        }
    }

    /// The connection settings for a request to this server.
    pub fn peer(&self) -> Box<HttpPeer> {
        Box::new(self.peer.clone())
    }
}

/// Config validation only lets visible ASCII through for ids, and addresses are host:port.
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

impl Pool {
    /// Builds the balancers for an upstream.
    pub fn new(upstream: &Upstream) -> Self {
        let servers: Vec<Server> = upstream
            .servers
            .iter()
            .map(|s| Server::new(s, &upstream.timeouts))
            .collect();
        let by_addr = servers
            .iter()
            .enumerate()
            .map(|(i, s)| (s.config.socket_addr, i))
            .collect();
        let (backups, primaries): (Vec<&Server>, Vec<&Server>) =
            servers.iter().partition(|s| s.config.backup);
        let primary = Group::new(upstream.balance, &primaries)
            .expect("config validation requires a server that is not a backup");
        let backup = Group::new(upstream.balance, &backups);
        Self {
            name: upstream.name.clone(),
            hash_key: upstream.hash_key.clone(),
            health_check: upstream.health_check.clone(),
            retries: upstream.retries,
            when_all_down: upstream.when_all_down,
            primary,
            backup,
            servers,
            by_addr,
        }
    }

    /// The upstream's name.
    pub fn name(&self) -> &str {
        &self.name
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
        let untried = |b: &Backend| self.index_of(b).filter(|i| !tried.contains(i));
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
        self.index_of(&backend)
    }

    /// Counts a request against a server until the guard is dropped.
    pub fn enter(&self, server: usize) -> InflightGuard {
        self.servers[server].state.inflight.enter()
    }

    /// Records that a request to `server` failed for `reason`.
    pub fn record_failure(&self, server: usize, reason: &str) {
        let server = &self.servers[server];
        if server.state.passive.record_failure() {
            log::info!(
                "upstream {}: server {} failed {} time(s) within {:?} (last: {reason}); skipping it for {:?}",
                self.name,
                server.config.addr,
                server.config.max_fails,
                server.config.fail_timeout,
                server.state.passive.fail_timeout()
            );
        }
    }

    fn index_of(&self, backend: &Backend) -> Option<usize> {
        backend
            .addr
            .as_inet()
            .and_then(|addr| self.by_addr.get(addr).copied())
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
            servers: weights
                .iter()
                .enumerate()
                .map(|(i, w)| UpstreamServer {
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
        let pool = Pool::new(&upstream(&[1, 2, 3]));
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
            let pool = Pool::new(&upstream_with(balance, &[1, 2, 3]));
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
        let pool = Pool::new(&upstream_with(Balance::LeastConn, &[1, 1]));
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
        let pool = Pool::new(&upstream_with(Balance::IpHash, &[1, 1, 1]));
        let first = pool.select(b"192.0.2.7", &[]).unwrap();
        assert!((0..50).all(|_| pool.select(b"192.0.2.7", &[]) == Some(first)));

        let pool = Pool::new(&upstream_with(Balance::Random, &[1, 3]));
        let heavy = (0..4000)
            .filter(|_| pool.select(b"", &[]) == Some(1))
            .count();
        assert!((2800..=3200).contains(&heavy), "{heavy} of 4000");
    }

    #[test]
    fn a_single_server_pool_works_in_every_mode() {
        for balance in [
            Balance::RoundRobin,
            Balance::LeastConn,
            Balance::IpHash,
            Balance::Random,
        ] {
            let pool = Pool::new(&upstream_with(balance, &[5]));
            assert_eq!(pool.select(b"k", &[]), Some(0), "{balance:?}");
            assert_eq!(pool.select(b"k", &[0]), None, "{balance:?}");
        }
    }

    #[test]
    fn servers_carry_their_identity_headers() {
        let pool = Pool::new(&upstream(&[1, 1]));
        let s = &pool.servers()[1];
        assert_eq!(s.served_by, "127.0.0.1:9002");
        assert_eq!(s.instance_id, "2");
        assert_eq!(
            s.peer().options.connection_timeout,
            Some(Timeouts::DEFAULT.connect)
        );
    }
}
