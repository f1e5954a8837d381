//! A group of servers (the primaries, or the backups) behind one pingora `LoadBalancer`.

use super::selector::{Selector, SelectorConfig};
use super::Server;
use crate::config::Balance;
use pingora::lb::discovery::Static;
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// Which server is at each address: Pingora's balancers hand back addresses. Sorted by
/// address, so that the look-up, made at least twice per request, is a few comparisons and
/// no hashing (SipHash, which a `HashMap` would use, costs hundreds of instructions).
#[derive(Debug)]
pub(crate) struct Addresses(Vec<(SocketAddr, usize)>);

impl Addresses {
    pub(super) fn new(servers: &[Server]) -> Self {
        let mut by_address: Vec<(SocketAddr, usize)> = servers
            .iter()
            .enumerate()
            .map(|(i, s)| (s.address, i))
            .collect();
        by_address.sort_unstable();
        Self(by_address)
    }

    /// The server index of a backend.
    pub(crate) fn index_of(&self, backend: &Backend) -> Option<usize> {
        let addr = backend.addr.as_inet()?;
        let at = self.0.binary_search_by(|(a, _)| a.cmp(addr)).ok()?;
        Some(self.0[at].1)
    }
}

/// The primary or the backup servers of an upstream.
pub(super) struct Group {
    pub(super) balancer: LoadBalancer<Selector>,
    /// Bound on the candidates looked at per selection.
    pub(super) max_iterations: usize,
}

impl Group {
    /// `None` when `members` is empty.
    pub(super) fn new(
        balance: Balance,
        members: Vec<usize>,
        servers: &[Server],
        addresses: &Arc<Addresses>,
    ) -> Option<Self> {
        if members.is_empty() {
            return None;
        }
        let backends: BTreeSet<Backend> = members
            .iter()
            .map(|&i| Backend {
                addr: PeerAddr::Inet(servers[i].address),
                weight: usize::from(servers[i].config.weight),
                ext: Default::default(),
            })
            .collect();
        let config = SelectorConfig {
            balance,
            addresses: Arc::clone(addresses),
            inflight: servers.iter().map(|s| s.state.inflight.clone()).collect(),
        };
        let discovery = Static::new(backends);
        let balancer =
            LoadBalancer::from_backends_with_config(Backends::new(discovery), Some(config));
        run_to_completion(balancer.update());
        // Round robin and least_conn offer each server once; a hash ring and random draws
        // revisit servers before they have offered them all.
        let max_iterations = match balance {
            Balance::RoundRobin | Balance::LeastConn => members.len(),
            Balance::IpHash | Balance::Random | Balance::LeastTime => members.len() * 256,
        };
        Some(Self {
            balancer,
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
