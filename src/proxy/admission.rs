//! What a request must pass before it is proxied: its framing and headers, its target's
//! normal form, then the proxy's own answers (CONNECT refused, the health path, the redirect
//! to HTTPS, 404) and the route's limits (`max_body`, `rate_limit`).

use super::ctx::RequestCtx;
use super::{content, redirect, respond};
use crate::acme::{AcmeState, CHALLENGE_PREFIX};
use crate::connections::deadline::RequestClock;
use crate::net::client::{peer_ip, Client};
use crate::net::header_names::X_FORWARDED_FOR;
use crate::net::{framing, target};
use http::header::HOST;
use http::Method;
use pingora::prelude::*;
use pingora::ErrorType;
use std::time::Instant;

/// An error answered with `status` and `reason` by the proxy's error page.
pub(super) fn refuse(status: u16, reason: impl Into<String>) -> Box<Error> {
    Error::explain(ErrorType::HTTPStatus(status), reason.into())
}

/// The 413 of a body over the route's `max_body`, counted.
pub(super) fn body_too_large(ctx: &RequestCtx, max: u64) -> Box<Error> {
    ctx.snapshot.limited.max_body.inc();
    refuse(413, format!("the body is larger than {max} bytes"))
}

/// Checks the request's header and normalises its target, then routes it: nothing after
/// sees a request two servers could read differently.
pub(super) fn check_and_route(session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
    ctx.https = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    if let Some(clock) = RequestClock::of(session.as_downstream().stream()) {
        clock.header_read();
    }
    let server = &ctx.snapshot.config.server;
    session.set_read_timeout(Some(server.limits.body_timeout));
    // Only where the client keeps the connection: its `Connection: close` stands.
    if session.get_keepalive().is_some() {
        session.set_keepalive(Some(server.limits.keepalive_timeout.as_secs()));
    }
    // Known before any check, so that the access log names whoever was refused.
    ctx.client = peer_ip(session.client_addr()).map(|peer| {
        let forwarded_for = session.req_header().headers.get_all(&X_FORWARDED_FOR);
        Client::identify(peer, forwarded_for.iter(), &server.trusted_proxies)
    });
    let raw = session
        .as_downstream()
        .as_http1()
        .map(|h1| h1.get_headers_raw_bytes());
    framing::check(
        session.req_header(),
        raw.as_deref(),
        server.limits.headers(),
    )
    .map_err(|r| refuse(r.status, r.reason))?;
    // Refused by `answer_locally`; its authority-form target names no route.
    if session.req_header().method == Method::CONNECT {
        return Ok(());
    }
    target::normalize(session.req_header_mut()).map_err(|e| refuse(400, e.to_string()))?;
    let req = session.req_header();
    let host = req
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.host());
    ctx.route = ctx.snapshot.router.find(host, req.uri.path());
    if ctx.route().is_some_and(|r| r.compress) {
        content::set_compression(session, content::COMPRESSION_LEVEL);
    }
    Ok(())
}

/// Answers what the proxy answers itself, and applies the route's limits; `true` when the
/// request was answered here.
pub(super) async fn answer_locally(
    session: &mut Session,
    ctx: &mut RequestCtx,
    acme: &AcmeState,
) -> Result<bool> {
    if session.req_header().method == Method::CONNECT {
        ctx.route = None;
        respond::connect_refused(session).await?;
        return Ok(true);
    }
    // The CA's HTTP-01 check, on plain HTTP, before the HTTPS redirect and the route's
    // limits could turn it away.
    let token = session
        .req_header()
        .uri
        .path()
        .strip_prefix(CHALLENGE_PREFIX)
        .filter(|_| !ctx.https && ctx.snapshot.config.server.acme().is_some());
    if let Some(token) = token {
        ctx.route = None;
        match acme.answer(token) {
            Some(answer) => respond::text(session, 200, answer).await?,
            None => {
                let body = "404 Not Found: no ACME challenge with this token is open\n";
                respond::text(session, 404, body.into()).await?;
            }
        }
        return Ok(true);
    }
    if session.req_header().uri.path() == ctx.snapshot.config.server.health_path {
        ctx.route = None;
        ctx.health_check = true;
        respond::text(session, 200, "ok\n".into()).await?;
        return Ok(true);
    }
    if let Some(port) = redirect_port(ctx) {
        ctx.route = None;
        let req = session.req_header();
        match redirect::https_location(req, port) {
            Some(location) => {
                let status = redirect::status(&req.method);
                respond::redirect(session, status, location).await?;
            }
            None => {
                let body = "400 Bad Request: a redirect to HTTPS needs a Host header\n";
                respond::text(session, 400, body.into()).await?;
            }
        }
        return Ok(true);
    }
    let Some(route) = ctx.route else {
        respond::text(
            session,
            404,
            "404 Not Found: no route matches this path\n".into(),
        )
        .await?;
        return Ok(true);
    };
    let state = &ctx.snapshot.routes[route];
    let max_body = state.route.max_body;
    if let (Some(max), Some(length)) = (max_body, content_length(session.req_header())) {
        if length > max {
            return Err(body_too_large(ctx, max));
        }
    }
    if let (Some(limiter), Some(client)) = (&state.rate_limiter, ctx.client) {
        if let Err(wait) = limiter.check(client.ip, Instant::now()) {
            ctx.snapshot.limited.rate_limit.inc();
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            respond::too_many_requests(session, seconds.max(1)).await?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// The HTTPS port a plain-HTTP request is to be redirected to, if it is.
fn redirect_port(ctx: &RequestCtx) -> Option<u16> {
    let config = &ctx.snapshot.config;
    config
        .server
        .tls
        .as_ref()
        .filter(|t| t.redirect_http_to_https && !ctx.https)
        .map(|_| config.https_redirect_port())
}

fn content_length(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}
