//! Counting open client connections around Pingora's HTTP app: the proxy itself only sees
//! requests, a connection may carry many or none.

use crate::metrics::handles::GaugeGuard;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use prometheus::IntGauge;
use std::sync::Arc;

/// Wraps a server app, holding `open` up by one per connection it serves.
pub struct CountConnections<A> {
    inner: Arc<A>,
    open: IntGauge,
}

impl<A> CountConnections<A> {
    /// Counts the connections `inner` serves in `open`.
    pub fn new(inner: A, open: IntGauge) -> Self {
        Self {
            inner: Arc::new(inner),
            open,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for CountConnections<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _open = GaugeGuard::new(&self.open);
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
