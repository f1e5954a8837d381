//! Server selection for each upstream, on top of `pingora-load-balancing`'s `LoadBalancer`.

mod smooth;

pub use smooth::SmoothWeighted;

use crate::config::{Timeouts, Upstream, UpstreamServer};
use http::HeaderValue;
use pingora::lb::discovery::Static;
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::upstreams::peer::HttpPeer;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// One upstream's servers and the balancer that picks among them.
pub struct Pool {
    name: String,
    balancer: LoadBalancer<SmoothWeighted>,
    servers: Vec<Server>,
    by_addr: HashMap<SocketAddr, usize>,
}

/// A server with everything a request needs from it prepared at load time.
pub struct Server {
    /// The server as configured.
    pub config: UpstreamServer,
    /// `X-Served-By` value.
    pub served_by: HeaderValue,
    /// `X-Instance-ID` value.
    pub instance_id: HeaderValue,
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
    /// Builds the balancer for an upstream.
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
        let backends: BTreeSet<Backend> = upstream
            .servers
            .iter()
            .map(|s| Backend {
                addr: PeerAddr::Inet(s.socket_addr),
                weight: usize::from(s.weight),
                ext: Default::default(),
            })
            .collect();
        let order = upstream.servers.iter().map(|s| s.socket_addr).collect();
        let balancer = LoadBalancer::from_backends_with_config(
            Backends::new(Static::new(backends)),
            Some(order),
        );
        run_to_completion(balancer.update());
        Self {
            name: upstream.name.clone(),
            balancer,
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

    /// Picks a ready server for the next request; its index into [`Pool::servers`].
    pub fn select(&self) -> Option<usize> {
        let backend = self.balancer.select(b"", self.servers.len())?;
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
    use crate::config::Balance;

    fn upstream(weights: &[u16]) -> Upstream {
        Upstream {
            name: "app".into(),
            balance: Balance::RoundRobin,
            servers: weights
                .iter()
                .enumerate()
                .map(|(i, w)| UpstreamServer {
                    addr: format!("127.0.0.1:{}", 9001 + i),
                    socket_addr: format!("127.0.0.1:{}", 9001 + i).parse().unwrap(),
                    id: (i + 1).to_string(),
                    weight: *w,
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
            counts[pool.select().unwrap()] += 1;
        }
        assert_eq!(counts, [100, 200, 300]);
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
