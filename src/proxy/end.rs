//! The end of a request: its metrics, and its access-log line.

use super::ctx::RequestCtx;
use crate::access_log::{AccessLog, AccessRecord};
use crate::balance::Pool;
use crate::connections::deadline::RequestClock;
use http::Method;
use pingora::prelude::*;

/// Counts the request and writes its access-log line (health checks left out).
pub(super) fn finish(session: &mut Session, ctx: &RequestCtx, access_log: &AccessLog) {
    // A body left unread would be drained before the next request, outside any
    // deadline; closing is simpler and only happens after refusals and local answers.
    if !session.as_downstream_mut().is_body_done() {
        session.set_keepalive(None);
    }
    if let Some(clock) = RequestClock::of(session.as_downstream().stream()) {
        clock.request_done();
    }
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    let metrics = ctx.route_metrics();
    metrics
        .duration
        .observe(ctx.started.elapsed().as_secs_f64());
    // A backend answered only if its response header came; errors, cache hits, 404s and
    // health checks are the proxy's own answers.
    match ctx.server.filter(|_| ctx.upstream_time.is_some()) {
        Some(server) => metrics.by_server[server].inc(status),
        None => metrics.local.inc(status),
    }
    if ctx.health_check || !access_log.enabled() {
        return;
    }
    let req = session.req_header();
    let header = |name| {
        req.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let server = ctx.server();
    access_log.write(&AccessRecord {
        time: ctx.started_at,
        client: ctx.client.map(|c| c.ip),
        method: req.method.as_str(),
        // A CONNECT's target is an authority (host:port), which has no path.
        target: if req.method == Method::CONNECT {
            std::str::from_utf8(req.raw_path()).unwrap_or("-")
        } else {
            req.uri.path_and_query().map_or("/", |p| p.as_str())
        },
        version: version_name(req.version),
        status,
        bytes_sent: session.body_bytes_sent(),
        referer: header(http::header::REFERER),
        user_agent: header(http::header::USER_AGENT),
        upstream: ctx.pool().map_or("", Pool::name),
        backend: server.map_or("", |s| s.name.as_str()),
        instance: server.map_or("", |s| s.config.id.as_str()),
        upstream_time: ctx.upstream_time,
        request_time: ctx.started.elapsed(),
        retries: ctx.tried.len().saturating_sub(1),
    });
}

fn version_name(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}
