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

/// A proxy with every path routed to `backend`.
fn proxy_to(backend: &RecordingBackend) -> Proxy {
    Proxy::start(&format!(
        "upstreams:\n  rec:\n    servers:\n      - {{ addr: \"127.0.0.1:{}\" }}\n\
         routes:\n  - {{ path: /, upstream: rec }}\n",
        backend.port
    ))
}
