//! Connections open on each listener of the proxy, for the status page: each connection holds
//! a count on the listener it came in on, found from its local address.

use crate::sync::inflight::{Inflight, InflightGuard};
use std::net::SocketAddr;

/// The proxy's listeners with their open connections.
#[derive(Debug, Default)]
pub(crate) struct ListenerCounts(Vec<(SocketAddr, Inflight)>);

impl ListenerCounts {
    /// Counts for these listening addresses.
    pub(crate) fn new(listeners: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self(
            listeners
                .into_iter()
                .map(|a| (a, Inflight::default()))
                .collect(),
        )
    }

    /// Counts a connection accepted at `local` until the guard is dropped; `None` if no
    /// listener has that address.
    pub(crate) fn enter(&self, local: SocketAddr) -> Option<InflightGuard> {
        self.0
            .iter()
            .find(|(listen, _)| accepts(*listen, local))
            .map(|(_, count)| count.enter())
    }

    /// Connections open on the listener at `listen`, if it is one of the proxy's.
    pub(crate) fn open(&self, listen: SocketAddr) -> Option<usize> {
        self.0
            .iter()
            .find(|(a, _)| *a == listen)
            .map(|(_, count)| count.count())
    }
}

/// Whether a listener on `listen` accepts connections whose local address is `local`: the
/// same port, and the same IP unless it listens on all of them.
fn accepts(listen: SocketAddr, local: SocketAddr) -> bool {
    listen.port() == local.port()
        && (listen.ip().is_unspecified() || listen.ip() == local.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_count_on_the_listener_they_came_in_on() {
        let all: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let one: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let counts = ListenerCounts::new([all, one]);
        let a = counts.enter("10.0.0.5:8080".parse().unwrap()).unwrap();
        let _b = counts.enter("127.0.0.1:8443".parse().unwrap()).unwrap();
        assert!(counts.enter("127.0.0.2:8443".parse().unwrap()).is_none());
        assert!(counts
            .enter("[::ffff:10.0.0.5]:9999".parse().unwrap())
            .is_none());
        assert_eq!((counts.open(all), counts.open(one)), (Some(1), Some(1)));
        drop(a);
        assert_eq!(counts.open(all), Some(0));
        assert_eq!(counts.open("127.0.0.1:9091".parse().unwrap()), None);
    }
}
