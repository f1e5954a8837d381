//! Prometheus metrics, served as text on `metrics.listen` at `/metrics`.
//!
//! Values that the request path already keeps (per-server in-flight counts) are read when
//! Prometheus scrapes, so counting costs the hot path nothing extra.

mod backends;
mod http;

use crate::snapshot::Snapshot;
use pingora::apps::http_app::HttpServer;
use pingora::services::listening::Service;
use prometheus::process_collector::ProcessCollector;
use prometheus::{IntGauge, Opts, Registry};
use std::net::SocketAddr;
use std::sync::Arc;

/// The registry of everything edgeproxy exports.
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// Registers the collectors for a running proxy.
    pub fn new(snapshot: Arc<Snapshot>) -> prometheus::Result<Self> {
        let registry = Registry::new();
        registry.register(Box::new(backends::BackendCollector::new(snapshot)?))?;
        registry.register(Box::new(ProcessCollector::for_self()))?;
        let build_info = IntGauge::with_opts(
            Opts::new("edgeproxy_build_info", "edgeproxy version, always 1")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )?;
        build_info.set(1);
        registry.register(Box::new(build_info))?;
        Ok(Self { registry })
    }

    /// The HTTP service answering `GET /metrics` on `listen`.
    pub fn service(self, listen: SocketAddr) -> Service<HttpServer<http::MetricsApp>> {
        let mut service = Service::new(
            "metrics".to_string(),
            HttpServer::new_app(http::MetricsApp::new(self.registry)),
        );
        service.add_tcp(&listen.to_string());
        service
    }
}
