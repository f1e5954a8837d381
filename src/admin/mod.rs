//! The admin listener (`metrics.listen`): `/metrics` for Prometheus, `/status` for people (a
//! live page in a browser, JSON otherwise) and `/status.json`, all read from the snapshot in
//! force at the time of the request.

mod app;
mod certificates;
mod collector;
mod sampler;
mod status;

use crate::acme::AcmeState;
use crate::metrics::Metrics;
use crate::runtime::snapshot::LiveSnapshot;
use app::AdminApp;
use certificates::CertificateCollector;
use collector::BackendCollector;
use pingora::apps::http_app::HttpServer;
use pingora::services::listening::Service;
pub(crate) use sampler::Sampler;
pub(crate) use status::StatusSources;
use std::net::SocketAddr;
use std::sync::Arc;

/// Adds the per-backend and certificate gauges, read from the snapshot in force (and the
/// certificate `acme` has obtained) at scrape time, to the registry of `metrics`.
pub(crate) fn watch(
    metrics: &Metrics,
    live: Arc<LiveSnapshot>,
    acme: Arc<AcmeState>,
) -> prometheus::Result<()> {
    let registry = metrics.registry();
    registry.register(Box::new(BackendCollector::new(Arc::clone(&live))?))?;
    registry.register(Box::new(CertificateCollector::new(live, acme)?))
}

/// The HTTP service answering `GET /metrics`, `GET /status` and `GET /status.json` on
/// `listen`.
pub(crate) fn service(
    metrics: &Metrics,
    listen: SocketAddr,
    live: Arc<LiveSnapshot>,
    sources: Arc<StatusSources>,
) -> Service<HttpServer<AdminApp>> {
    let app = AdminApp::new(metrics.registry().clone(), live, sources);
    let mut service = Service::new("metrics".to_string(), HttpServer::new_app(app));
    service.add_tcp(&listen.to_string());
    service
}
