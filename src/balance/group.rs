//! A group of servers (the primaries, or the backups) behind one pingora `LoadBalancer`, and
//! the addresses their names resolve to.

use super::selector::{Selector, SelectorConfig};
use super::Server;
use crate::config::Balance;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::lb::discovery::ServiceDiscovery;
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// Where each server is now; host names are resolved again while running.
#[derive(Debug, Clone)]
pub(crate) struct Addresses {
    pub(super) of: Vec<SocketAddr>,
    by_addr: HashMap<SocketAddr, usize>,
}

impl Addresses {
    pub(super) fn new(of: Vec<SocketAddr>) -> Self {
        let by_addr = of.iter().enumerate().map(|(i, a)| (*a, i)).collect();
        Self { of, by_addr }
    }

    /// The server index of a backend.
    pub(crate) fn index_of(&self, backend: &Backend) -> Option<usize> {
        backend
            .addr
            .as_inet()
            .and_then(|addr| self.by_addr.get(addr).copied())
    }

    pub(super) fn backends(&self, members: &[usize], servers: &[Server]) -> BTreeSet<Backend> {
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
pub(super) struct Group {
    pub(super) balancer: LoadBalancer<Selector>,
    pub(super) members: Vec<usize>,
    pub(super) current: Arc<ArcSwap<BTreeSet<Backend>>>,
    /// Bound on the candidates looked at per selection.
    pub(super) max_iterations: usize,
}

impl Group {
    /// `None` when `members` is empty.
    pub(super) fn new(
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
