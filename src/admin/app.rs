//! The metrics listener: `/metrics` for Prometheus, `/status` for people.

use super::certificates::served;
use crate::acme::AcmeState;
use crate::calendar::rfc3339;
use crate::net::client::peer_ip;
use crate::net::Cidr;
use crate::runtime::snapshot::LiveSnapshot;
use async_trait::async_trait;
use http::{header, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::{Encoder, Registry, TextEncoder};
use serde_json::json;
use std::sync::Arc;

/// Serves the registry and the status page.
pub(crate) struct AdminApp {
    registry: Registry,
    live: Arc<LiveSnapshot>,
    acme: Arc<AcmeState>,
}

impl AdminApp {
    /// Serves `registry`, and the state of the upstreams in force and of the certificate.
    pub(crate) fn new(registry: Registry, live: Arc<LiveSnapshot>, acme: Arc<AcmeState>) -> Self {
        Self {
            registry,
            live,
            acme,
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

    /// Each upstream with its servers: what `docker compose ps` and `nginx -T` told together.
    fn status(&self) -> Response<Vec<u8>> {
        let upstreams: Vec<_> = self
            .live
            .load()
            .pools
            .iter()
            .map(|pool| {
                let servers: Vec<_> = pool
                    .servers()
                    .iter()
                    .enumerate()
                    .map(|(i, server)| {
                        let state = &server.state;
                        json!({
                            "addr": server.config.addr,
                            "address": server.address.to_string(),
                            "name": server.name,
                            "instance_id": server.instance_id.to_str().unwrap_or_default(),
                            "id": server.config.id,
                            "weight": server.config.weight,
                            "backup": server.config.backup,
                            "ready": state.ready(),
                            "health": if state.health.is_up() { "up" } else { "down" },
                            "last_probe": state.health.last_probe(),
                            "passive_failed": state.passive.is_failed(),
                            "inflight": state.inflight.count(),
                            "response_time_ewma_seconds": pool.response_time_estimate(i),
                        })
                    })
                    .collect();
                json!({
                    "name": pool.name(),
                    "balance": pool.balance().as_str(),
                    "health_check": pool.health_check().is_some(),
                    "servers": servers,
                })
            })
            .collect();
        let certificates: Vec<_> = served(&self.live, &self.acme)
            .into_iter()
            .map(|c| {
                json!({
                    "source": c.source,
                    "names": c.info.names,
                    "issuer": c.info.issuer,
                    "not_before": rfc3339(c.info.not_before),
                    "not_after": rfc3339(c.info.not_after),
                    "next_renewal": c.next_renewal.map(rfc3339),
                    "last_error": c.last_error,
                })
            })
            .collect();
        let body = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "upstreams": upstreams,
            "certificates": certificates,
        });
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
            "/status" => self.status(),
            _ => reply(
                StatusCode::NOT_FOUND,
                b"not found; try /metrics or /status\n".to_vec(),
                "text/plain",
            ),
        }
    }
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
