//! Client connections around Pingora's HTTP app: counting them (the proxy itself only sees
//! requests, a connection may carry many or none), and closing them gently at shutdown.
//!
//! When the listeners close, Pingora drops at once every connection waiting for a request.
//! That includes a connection accepted a moment earlier whose client has not sent its request
//! yet, which would then see its connection closed with no answer. So the drop is held back
//! until every open connection has a request in flight, or for [`SETTLE`] at most, the
//! time a loaded machine may take to read a first request; idle keep-alive connections are
//! closed after it, as nginx does.

use crate::inflight::Inflight;
use crate::metrics::handles::GaugeGuard;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use prometheus::IntGauge;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The longest a shutting-down service waits for open connections to send a request.
pub const SETTLE: Duration = Duration::from_secs(1);

/// How often the wait looks at the counts.
const POLL: Duration = Duration::from_millis(10);

/// The client connections of the proxy service, shared by the app that counts them and the
/// shutdown that waits for them.
#[derive(Clone)]
pub struct Connections {
    open: IntGauge,
    inflight: Inflight,
    idle_closed: Arc<AtomicBool>,
}

impl Connections {
    /// Connections counted in `open`, whose requests are counted in `inflight`.
    pub fn new(open: IntGauge, inflight: Inflight) -> Self {
        Self {
            open,
            inflight,
            idle_closed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Wraps the server app `inner` so that its connections are counted here.
    pub fn app<A>(&self, inner: A) -> CountConnections<A> {
        CountConnections {
            inner: Arc::new(inner),
            connections: self.clone(),
        }
    }

    /// Client connections open now.
    pub fn open(&self) -> usize {
        usize::try_from(self.open.get()).unwrap_or(0)
    }

    /// True once the service has stopped listening and dropped the connections that were
    /// left waiting for a request: from then on, no open connection is idle.
    pub fn idle_closed(&self) -> bool {
        self.idle_closed.load(Ordering::Acquire)
    }

    /// True while some open connection has no request in flight: a client about to send
    /// one, or an idle keep-alive connection. HTTP/2 streams make this an estimate, which
    /// only shortens the wait on a connection that HTTP/2's own GOAWAY drains anyway.
    fn some_waiting(&self) -> bool {
        self.open() > self.inflight.count()
    }
}

/// A server app whose connections are counted, and whose idle connections are dropped at
/// shutdown only once the fresh ones have had their chance to send a request.
pub struct CountConnections<A> {
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
        let _open = GaugeGuard::new(&self.connections.open);
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
