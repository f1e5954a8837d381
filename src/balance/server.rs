//! One server of an upstream: its config, its live state, its metric children, and the
//! connection settings of a request to it.

use super::state::ServerState;
use crate::config::{Upstream, UpstreamServer};
use crate::metrics::handles::ServerMetrics;
use http::HeaderValue;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::protocols::ALPN;
use pingora::upstreams::peer::{HttpPeer, PeerOptions};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// A server with everything a request needs from it prepared at load time.
pub(crate) struct Server {
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
    pub(super) fn new(
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
        peer_options.idle_timeout = Some(timeouts.idle);
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
    pub(crate) fn peer(&self, addr: SocketAddr) -> Box<HttpPeer> {
        let mut peer = Box::new(self.peer.clone());
        peer._address = PeerAddr::Inet(addr);
        peer
    }

    /// Whether `addr` names a host to resolve rather than an IP.
    pub(super) fn has_host_name(&self) -> bool {
        self.config.host.parse::<IpAddr>().is_err()
    }
}

/// Config validation only lets visible ASCII through for ids, and addresses are host:port.
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}
