//! The request at a server: which one it goes to, and what the answer gets on its way back
//! (identity headers, cache status, the event-stream and compression settings).

use super::content;
use super::ctx::RequestCtx;
use crate::balance::request_key;
use crate::metrics::handles::{FailureReason, GaugeGuard};
use crate::net::header_names::{X_ACCEL_BUFFERING, X_CACHE, X_INSTANCE_ID, X_SERVED_BY};
use crate::net::hop_by_hop;
use pingora::cache::CachePhase;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::ErrorType;
use std::time::Instant;

/// Picks the server of this attempt, skipping those already tried, and its connection
/// settings.
pub(super) fn pick(
    session: &Session,
    ctx: &mut RequestCtx,
    drop_header_case: bool,
) -> Result<Box<HttpPeer>> {
    let pool = ctx
        .pool()
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "upstream_peer without a route"))?;
    let key = request_key(
        pool.hash_key(),
        session.req_header(),
        ctx.client.map(|c| c.ip),
    );
    let Some(index) = pool.select(key.as_bytes(), &ctx.tried) else {
        // Nothing ready answers 503 at once; after failed attempts the last failure stands.
        let status = if ctx.tried.is_empty() {
            503
        } else {
            ctx.last_failure.unwrap_or(502)
        };
        return Error::e_explain(ErrorType::HTTPStatus(status), "no server left to try");
    };
    let mut peer = pool.servers()[index].peer();
    peer.options.drop_header_case = drop_header_case;
    if let Some(route) = ctx.route().filter(|r| r.sse) {
        // An event stream may be quiet for long; read_timeout is for ordinary answers.
        peer.options.read_timeout = Some(route.stream_idle_timeout);
    }
    if !ctx.tried.is_empty() {
        pool.count_retry();
    }
    // Replacing the guard releases the count of a server a retry moves away from.
    ctx._server_inflight = Some(pool.enter(index));
    ctx.tried.push(index);
    ctx.server = Some(index);
    ctx.upstream_started = Some(Instant::now());
    Ok(peer)
}

/// The server's answer as it arrives: timed, counted, stripped of hop-by-hop fields, and
/// marked with the server that gave it.
pub(super) fn received(response: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
    ctx.upstream_time = ctx.upstream_started.map(|t| t.elapsed());
    hop_by_hop::strip(response);
    if let (Some(pool), Some(index)) = (ctx.pool(), ctx.server) {
        let server = &pool.servers()[index];
        if let Some(elapsed) = ctx.upstream_time {
            server
                .metrics
                .upstream_seconds
                .observe(elapsed.as_secs_f64());
            pool.observe_response_time(index, elapsed);
            let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
            server
                .state
                .traffic
                .answered(response.status.is_server_error(), micros);
        }
        if response.status.is_server_error() {
            server.metrics.failure(FailureReason::Http5xx);
        }
        response.insert_header(X_SERVED_BY, server.served_by.clone())?;
        response.insert_header(X_INSTANCE_ID, server.instance_id.clone())?;
    }
    Ok(())
}

/// The answer as it leaves for the client, from the server or the cache: its cache status,
/// and for an event stream no buffering or compression anywhere.
pub(super) fn to_client(
    session: &mut Session,
    response: &mut ResponseHeader,
    ctx: &mut RequestCtx,
) -> Result<()> {
    let Some(route) = ctx.route() else {
        return Ok(());
    };
    let (sse, compress) = (route.sse, route.compress);
    let event_stream = content::is_event_stream(response);
    if let Some(lookups) = &ctx.route_metrics().cache {
        let (status, lookup) = match session.cache.phase() {
            CachePhase::Hit => ("HIT", &lookups.hit),
            CachePhase::Stale | CachePhase::StaleUpdating => ("STALE", &lookups.stale),
            _ => ("MISS", &lookups.miss),
        };
        lookup.inc();
        response.insert_header(X_CACHE, status)?;
    }
    if event_stream {
        ctx._sse_stream = Some(GaugeGuard::new(&ctx.route_metrics().sse_streams));
    }
    if sse || event_stream {
        // Tells any buffering proxy in front of this one to pass events through, too.
        response.insert_header(X_ACCEL_BUFFERING, "no")?;
        content::set_compression(session, 0);
    } else if compress && !content::is_compressible(response) {
        content::set_compression(session, 0);
    }
    Ok(())
}
