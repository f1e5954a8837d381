//! Conformance through the proxy: what RFC 9112 asks of an HTTP/1 intermediary, checked byte
//! by byte at both ends on raw sockets; widely used clients as their users run them; and
//! HTTP/2 attacks sent as raw frames.

mod clients;
#[path = "../common/mod.rs"]
mod common;
mod expect;
mod http10;
mod http2;
mod https;
mod pipelining;
mod wire;

use common::Proxy;
use wire::RecordingBackend;

/// Every path to upstream `app`.
const ROUTE_ALL: &str = "  - { path: /, upstream: app }\n";
/// `/events` to upstream `app`, as an event stream.
const ROUTE_EVENTS: &str = "  - { path: /events, upstream: app, sse: true }\n";

/// A proxy whose upstream `app` is the one server at `addr` (`HOST:PORT`), with these
/// `routes:` entries.
fn proxy_for(addr: &str, routes: &str) -> Proxy {
    Proxy::start(&format!(
        "upstreams:\n  app:\n    servers:\n      - {{ addr: \"{addr}\" }}\nroutes:\n{routes}"
    ))
}

/// A proxy with every path routed to `backend`.
fn proxy_to(backend: &RecordingBackend) -> Proxy {
    proxy_for(&format!("127.0.0.1:{}", backend.port), ROUTE_ALL)
}
