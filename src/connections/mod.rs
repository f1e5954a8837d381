//! Client connections around Pingora's HTTP app: counting and limiting them (the proxy
//! itself only sees requests, a connection may carry many or none), timing their request
//! headers ([`deadline`]), and closing them gently at shutdown.
//!
//! Beyond `server.max_connections` open connections (lowered to what the open-file limit
//! allows, [`slots`]), a new connection waits in the listen backlog (`when_full: queue`) or
//! is answered `503` and closed at once (`reject`); beyond `server.max_connections_per_ip`
//! from one address, it is answered `503`: it costs a socket for a moment, never a task
//! waiting on a client.
//!
//! When the listeners close, Pingora drops at once every connection waiting for a request.
//! That includes a connection accepted a moment earlier whose client has not sent its request
//! yet, which would then see its connection closed with no answer. So the drop is held back
//! until every open connection has a request in flight, or for [`SETTLE`] at most, the
//! time a loaded machine may take to read a first request; idle keep-alive connections are
//! closed after it, as nginx does.

pub(crate) mod deadline;
pub(crate) mod listeners;
pub(crate) mod slots;

use crate::limits::per_ip::PerIp;
use crate::metrics::handles::GaugeGuard;
use crate::net::client::peer_ip;
use crate::runtime::snapshot::LiveSnapshot;
use crate::sync::inflight::Inflight;
use async_trait::async_trait;
use deadline::HeaderDeadline;
use listeners::ListenerCounts;
use pingora::apps::ServerApp;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use prometheus::{IntCounter, IntCounterVec, IntGauge};
use slots::Slots;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

/// The longest a shutting-down service waits for open connections to send a request.
pub(crate) const SETTLE: Duration = Duration::from_secs(1);

/// How often the wait looks at the counts.
const POLL: Duration = Duration::from_millis(10);

const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Content-Length: 46\r\nRetry-After: 1\r\nConnection: close\r\n\r\n503 Service Unavailable: too many connections\n";

/// Counters of connections stopped by a limit, by the limit's name.
#[derive(Clone)]
pub(crate) struct LimitCounters {
    max_connections: IntCounter,
    max_connections_per_ip: IntCounter,
    header_timeout: IntCounter,
}

impl LimitCounters {
    /// The children of `edgeproxy_limited_total{limit}` that connections count in.
    pub(crate) fn new(family: &IntCounterVec) -> Self {
        Self {
            max_connections: family.with_label_values(&["max_connections"]),
            max_connections_per_ip: family.with_label_values(&["max_connections_per_ip"]),
            header_timeout: family.with_label_values(&["header_timeout"]),
        }
    }
}

/// The client connections of the proxy service, shared by the app that counts them and the
/// shutdown that waits for them.
#[derive(Clone)]
pub(crate) struct Connections {
    open: IntGauge,
    /// The same count as `open`, which admission compares with the limit.
    count: Inflight,
    per_ip: Arc<PerIp>,
    inflight: Inflight,
    idle_closed: Arc<AtomicBool>,
    live: Arc<LiveSnapshot>,
    limited: LimitCounters,
    slots: Arc<Slots>,
    listeners: Arc<ListenerCounts>,
}

impl Connections {
    /// Connections counted in `open` (and by listener in `listeners`), whose requests are
    /// counted in `inflight`, limited by the config in force in `live` within `slots`; those
    /// stopped by a limit are counted in `limited`.
    pub(crate) fn new(
        open: IntGauge,
        inflight: Inflight,
        live: Arc<LiveSnapshot>,
        limited: LimitCounters,
        slots: Arc<Slots>,
        listeners: Arc<ListenerCounts>,
    ) -> Self {
        Self {
            open,
            count: Inflight::default(),
            per_ip: Arc::default(),
            inflight,
            idle_closed: Arc::new(AtomicBool::new(false)),
            live,
            limited,
            slots,
            listeners,
        }
    }

    /// Wraps the server app `inner` so that its connections are counted, limited and timed.
    pub(crate) fn app<A>(&self, inner: A) -> CountConnections<A> {
        CountConnections {
            inner: Arc::new(inner),
            connections: self.clone(),
        }
    }

    /// Client connections open now.
    pub(crate) fn open(&self) -> usize {
        self.count.count()
    }

    /// True once the service has stopped listening and dropped the connections that were
    /// left waiting for a request: from then on, no open connection is idle.
    pub(crate) fn idle_closed(&self) -> bool {
        self.idle_closed.load(Ordering::Acquire)
    }

    /// True while some open connection has no request in flight: a client about to send
    /// one, or an idle keep-alive connection. HTTP/2 streams make this an estimate, which
    /// only shortens the wait on a connection that HTTP/2's own GOAWAY drains anyway.
    fn some_waiting(&self) -> bool {
        self.open() > self.inflight.count()
    }
}

/// A server app whose connections are counted and limited, whose HTTP/1 request headers are
/// timed, and whose idle connections are dropped at shutdown only once the fresh ones have
/// had their chance to send a request.
pub(crate) struct CountConnections<A> {
    inner: Arc<A>,
    connections: Connections,
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for CountConnections<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let connections = &self.connections;
        let limits = connections.live.load().config.server.limits;
        let _counted = connections.count.enter();
        connections.slots.follow(limits.max_connections);
        if connections.count.count() > connections.slots.limit(limits.max_connections) {
            connections.limited.max_connections.inc();
            return refuse(stream).await;
        }
        let digest = stream.get_socket_digest();
        let peer = peer_ip(digest.as_ref().and_then(|d| d.peer_addr()));
        let _per_ip = match (peer, limits.max_connections_per_ip) {
            (Some(ip), Some(limit)) => match connections.per_ip.enter(ip.to_canonical(), limit) {
                Some(guard) => Some(guard),
                None => {
                    connections.limited.max_connections_per_ip.inc();
                    return refuse(stream).await;
                }
            },
            _ => None,
        };
        let _open = GaugeGuard::new(&connections.open);
        let local = digest
            .as_ref()
            .and_then(|d| d.local_addr()?.as_inet().copied());
        let _on_listener = local.and_then(|a| connections.listeners.enter(a));
        // HTTP/2 multiplexes requests on one stream: its frames are not one header at a time.
        let stream: Stream = if stream.selected_alpn_proto() == Some(ALPN::H2) {
            stream
        } else {
            let timed_out = connections.limited.header_timeout.clone();
            Box::new(HeaderDeadline::new(
                stream,
                limits.header_timeout,
                timed_out,
            ))
        };
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        let until = Instant::now() + SETTLE;
        while self.connections.some_waiting() && Instant::now() < until {
            tokio::time::sleep(POLL).await;
        }
        self.inner.cleanup().await;
        self.connections.idle_closed.store(true, Ordering::Release);
    }
}

/// Answers a connection over a limit with `503` and closes it; HTTP/2 clients, which would
/// not understand the HTTP/1 answer, just see the close.
async fn refuse(mut stream: Stream) -> Option<Stream> {
    if stream.selected_alpn_proto() != Some(ALPN::H2) {
        // A client that does not take the answer at once is not waited for.
        let write = stream.write_all(BUSY_RESPONSE);
        let _ = tokio::time::timeout(Duration::from_millis(100), write).await;
    }
    pingora::protocols::Shutdown::shutdown(&mut *stream).await;
    None
}

#[cfg(test)]
mod tests {
    /// A canned response's `Content-Length` matches its body.
    fn assert_framed(response: &[u8]) {
        let text = std::str::from_utf8(response).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap();
        assert_eq!(length.parse::<usize>().unwrap(), body.len(), "{text:?}");
    }

    #[test]
    fn canned_responses_are_framed() {
        assert_framed(super::BUSY_RESPONSE);
        assert_framed(super::deadline::TIMEOUT_RESPONSE);
    }
}
