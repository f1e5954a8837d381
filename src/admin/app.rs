//! The metrics listener: `/metrics` for Prometheus, `/status` for people.

use super::status::{self, StatusSources};
use crate::net::client::peer_ip;
use crate::net::Cidr;
use crate::runtime::snapshot::LiveSnapshot;
use async_trait::async_trait;
use http::{header, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::{Encoder, Registry, TextEncoder};
use std::sync::Arc;

/// The status page: self-contained (inline CSS and script, no external asset), it reads
/// `status.json` every 2 s.
const STATUS_PAGE: &str = include_str!("status.html");

/// Serves the registry and the status page.
pub(crate) struct AdminApp {
    registry: Registry,
    live: Arc<LiveSnapshot>,
    sources: Arc<StatusSources>,
}

impl AdminApp {
    /// Serves `registry`, and the state of the snapshot in force with `sources`.
    pub(crate) fn new(
        registry: Registry,
        live: Arc<LiveSnapshot>,
        sources: Arc<StatusSources>,
    ) -> Self {
        Self {
            registry,
            live,
            sources,
        }
    }

    fn metrics(&self) -> Response<Vec<u8>> {
        let encoder = TextEncoder::new();
        let mut body = Vec::new();
        match encoder.encode(&self.registry.gather(), &mut body) {
            Ok(()) => reply(StatusCode::OK, body, encoder.format_type()),
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode metrics: {e}\n").into_bytes(),
                "text/plain",
            ),
        }
    }

    /// Each upstream with its servers, routes, listeners, certificates: what `docker compose
    /// ps` and `nginx -T` told together.
    fn status_json(&self) -> Response<Vec<u8>> {
        let body = status::document(&self.live, &self.sources);
        reply(
            StatusCode::OK,
            format!("{body:#}\n").into_bytes(),
            "application/json",
        )
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let client = peer_ip(session.client_addr());
        let allowed = self.live.load().config.metrics.as_ref().is_none_or(|m| {
            m.allow.is_empty() || client.is_some_and(|ip| Cidr::any_contains(&m.allow, ip))
        });
        if !allowed {
            return reply(
                StatusCode::FORBIDDEN,
                b"forbidden: this address is not in metrics.allow\n".to_vec(),
                "text/plain",
            );
        }
        match session.req_header().uri.path() {
            "/metrics" => self.metrics(),
            "/status" if wants_html(session) => reply(
                StatusCode::OK,
                STATUS_PAGE.as_bytes().to_vec(),
                "text/html; charset=utf-8",
            ),
            "/status" | "/status.json" => self.status_json(),
            _ => reply(
                StatusCode::NOT_FOUND,
                b"not found; try /metrics, /status or /status.json\n".to_vec(),
                "text/plain",
            ),
        }
    }
}

/// Whether the client asks for HTML first, as browsers do (`Accept: text/html,…`); scripts
/// and `curl` get JSON.
fn wants_html(session: &ServerSession) -> bool {
    session
        .req_header()
        .headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|accept| {
            accept
                .split(',')
                .next()
                .is_some_and(|first| first.trim().starts_with("text/html"))
        })
}

fn reply(status: StatusCode, body: Vec<u8>, content_type: &str) -> Response<Vec<u8>> {
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
