//! One server of an upstream, that is one address of a `servers` entry: its config, its live
//! state, its metric children, and the connection settings of a request to it.

use super::state::ServerState;
use crate::config::{Upstream, UpstreamServer};
use crate::metrics::handles::ServerMetrics;
use crate::metrics::Metrics;
use http::HeaderValue;
use pingora::protocols::ALPN;
use pingora::upstreams::peer::{HttpPeer, PeerOptions};
use std::net::SocketAddr;
use std::sync::Arc;

/// A server with everything a request needs from it prepared when its pool is built.
pub(crate) struct Server {
    /// The `servers` entry it comes from.
    pub config: UpstreamServer,
    /// Where it is.
    pub address: SocketAddr,
    /// How it is named in metrics, `/status` and the access log: the entry's `addr` for an
    /// IP, the address for a host name (as nginx's `$upstream_addr`).
    pub name: String,
    /// `X-Served-By` value: [`Server::name`].
    pub served_by: HeaderValue,
    /// `X-Instance-ID` value.
    pub instance_id: HeaderValue,
    /// Live state: in flight, health, failures.
    pub state: Arc<ServerState>,
    /// Metric children.
    pub metrics: ServerMetrics,
    /// The connection settings, built once; each request clones them.
    peer: HttpPeer,
}

/// What a server keeps from the server it replaces in a new pool (same entry, same address).
pub(super) struct Kept {
    /// In flight, health, failures, response times.
    pub state: Arc<ServerState>,
    /// Its `X-Instance-ID`, stable while the address stays.
    pub instance_id: HeaderValue,
}

impl Server {
    /// The server at `address` of entry `config`, with the state and id it keeps.
    pub(super) fn new(
        config: &UpstreamServer,
        address: SocketAddr,
        upstream: &Upstream,
        metrics: &Metrics,
        kept: Kept,
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
        let mut peer = HttpPeer::new(address, false, String::new());
        peer.options = peer_options;
        let name = if config.has_host_name() {
            address.to_string()
        } else {
            config.addr.clone()
        };
        Self {
            served_by: header_value(&name),
            instance_id: kept.instance_id,
            state: kept.state,
            metrics: ServerMetrics::new(metrics, &upstream.name, &name),
            config: config.clone(),
            address,
            name,
            peer,
        }
    }

    /// The connection settings for a request to this server.
    pub(crate) fn peer(&self) -> Box<HttpPeer> {
        Box::new(self.peer.clone())
    }
}

/// The `X-Instance-ID` of a server joining at `address`: the entry's id while its name stands
/// for one address, else the id and the IP (`app-10.0.0.3`), distinct per address.
pub(super) fn instance_id(config: &UpstreamServer, address: SocketAddr) -> HeaderValue {
    if config.addresses.len() > 1 {
        header_value(&format!("{}-{}", config.id, address.ip()))
    } else {
        header_value(&config.id)
    }
}

/// Config validation only lets visible ASCII through for ids, and addresses are host:port.
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}
