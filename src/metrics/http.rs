//! The `/metrics` endpoint.

use async_trait::async_trait;
use http::{header, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::{Encoder, Registry, TextEncoder};

/// Serves the registry in Prometheus' text format.
pub struct MetricsApp {
    registry: Registry,
}

impl MetricsApp {
    /// Serves `registry`.
    pub fn new(registry: Registry) -> Self {
        Self { registry }
    }
}

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if session.req_header().uri.path() != "/metrics" {
            return text(
                StatusCode::NOT_FOUND,
                b"not found; try /metrics\n".to_vec(),
                "text/plain",
            );
        }
        let encoder = TextEncoder::new();
        let mut body = Vec::new();
        match encoder.encode(&self.registry.gather(), &mut body) {
            Ok(()) => text(StatusCode::OK, body, encoder.format_type()),
            Err(e) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode metrics: {e}\n").into_bytes(),
                "text/plain",
            ),
        }
    }
}

fn text(status: StatusCode, body: Vec<u8>, content_type: &str) -> Response<Vec<u8>> {
    let length = body.len();
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    if let Ok(value) = content_type.parse() {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(header::CONTENT_LENGTH, length.into());
    resp
}
