//! The HTTP proxy: Pingora's request phases, each doing one job.

mod content;
mod forwarded;
mod redirect;
mod respond;

use crate::access_log::{AccessLog, AccessRecord};
use crate::balance::{request_key, Pool, Server};
use crate::cache::{self, ResponseCache};
use crate::config::Route;
use crate::connections::deadline::RequestClock;
use crate::metrics::handles::{FailureReason, GaugeGuard, RouteMetrics};
use crate::net::client::Client;
use crate::net::header_names::{X_ACCEL_BUFFERING, X_CACHE, X_INSTANCE_ID, X_SERVED_BY};
use crate::net::{framing, target};
use crate::runtime::snapshot::{LiveSnapshot, RouteState, Snapshot};
use crate::sync::inflight::{Inflight, InflightGuard};
use async_trait::async_trait;
use http::header::HOST;
use http::Method;
use pingora::cache::{CacheKey, CachePhase, NoCacheReason, RespCacheable};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora::{ErrorSource, ErrorType};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The proxy service's logic.
pub struct EdgeProxy {
    live: Arc<LiveSnapshot>,
    inflight: Inflight,
    cache: ResponseCache,
    access_log: AccessLog,
    /// `!server.preserve_header_case`, for the upstream side of each request (the client
    /// side is set once, in the server options).
    drop_header_case: bool,
}

impl EdgeProxy {
    /// A proxy serving the snapshot in force, counting its requests in `inflight`, logging
    /// them to `access_log`.
    pub fn new(live: Arc<LiveSnapshot>, inflight: Inflight, access_log: AccessLog) -> Self {
        let snapshot = live.load();
        let config = &snapshot.config;
        let cache = ResponseCache::new(config.process.cache.max_size);
        let drop_header_case = !config.process.preserve_header_case;
        Self {
            live,
            inflight,
            cache,
            access_log,
            drop_header_case,
        }
    }
}

/// Per-request state.
pub struct RequestCtx {
    started: Instant,
    started_at: SystemTime,
    /// A request to `server.health_path`, answered and not logged.
    health_check: bool,
    /// Came over TLS.
    https: bool,
    /// Who sent the request, once its header has been checked.
    client: Option<Client>,
    /// Request body bytes read so far.
    body_bytes: u64,
    _inflight: InflightGuard,
    snapshot: Arc<Snapshot>,
    route: Option<usize>,
    server: Option<usize>,
    /// Servers already picked for this request, so a retry goes elsewhere.
    tried: Vec<usize>,
    /// Counts this request against `server` while it is being served there.
    _server_inflight: Option<InflightGuard>,
    upstream_started: Option<Instant>,
    upstream_time: Option<Duration>,
    /// A connection to a backend was up and the request was sent on it, in some attempt: a
    /// failure may then have reached the application.
    reached_backend: bool,
    /// The status the last failed attempt would have answered (504 for a timeout), which
    /// stands when no server is left for another.
    last_failure: Option<u16>,
    /// Counts this request in `edgeproxy_sse_streams` while it streams events.
    _sse_stream: Option<GaugeGuard>,
}

impl RequestCtx {
    fn route_state(&self) -> Option<&RouteState> {
        Some(&self.snapshot.routes[self.route?])
    }

    fn route(&self) -> Option<&Route> {
        Some(&self.route_state()?.route)
    }

    fn pool(&self) -> Option<&Pool> {
        Some(&self.route_state()?.pool)
    }

    fn route_metrics(&self) -> &RouteMetrics {
        self.route_state()
            .map_or(&self.snapshot.unrouted_metrics, |r| &r.metrics)
    }

    fn server(&self) -> Option<&Server> {
        Some(&self.pool()?.servers()[self.server?])
    }

    /// Whether `pool` allows another attempt after those already made.
    fn retries_left(&self, pool: &Pool) -> bool {
        self.tried.len() <= pool.retries() as usize
    }
}

fn peer_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// An error answered with `status` and `reason` by [`EdgeProxy::fail_to_proxy`].
fn refuse(status: u16, reason: impl Into<String>) -> Box<Error> {
    Error::explain(ErrorType::HTTPStatus(status), reason.into())
}

/// The 413 of a body over the route's `max_body`, counted.
fn body_too_large(ctx: &RequestCtx, max: u64) -> Box<Error> {
    ctx.snapshot.limited.max_body.inc();
    refuse(413, format!("the body is larger than {max} bytes"))
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            started_at: SystemTime::now(),
            health_check: false,
            https: false,
            client: None,
            body_bytes: 0,
            _inflight: self.inflight.enter(),
            snapshot: self.live.load(),
            route: None,
            server: None,
            tried: Vec::new(),
            _server_inflight: None,
            upstream_started: None,
            reached_backend: false,
            last_failure: None,
            upstream_time: None,
            _sse_stream: None,
        }
    }

    /// Requests are checked and their target normalised first, so that nothing after sees a
    /// request two servers could read differently. Routing happens before Pingora's modules
    /// run, so that a route's settings (compression) apply from the module's first look.
    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
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
        ctx.client = peer_ip(session).map(|peer| {
            let forwarded_for = session.req_header().headers.get_all("x-forwarded-for");
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
        // Refused by request_filter; its authority-form target names no route.
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

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if session.req_header().method == Method::CONNECT {
            ctx.route = None;
            respond::connect_refused(session).await?;
            return Ok(true);
        }
        if session.req_header().uri.path() == ctx.snapshot.config.server.health_path {
            ctx.route = None;
            ctx.health_check = true;
            respond::text(session, 200, "ok\n".into()).await?;
            return Ok(true);
        }
        let config = &ctx.snapshot.config;
        let redirect_port = config
            .server
            .tls
            .as_ref()
            .filter(|t| t.redirect_http_to_https && !ctx.https)
            .map(|_| config.https_redirect_port());
        if let Some(port) = redirect_port {
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

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        if ctx.route().is_some_and(|r| r.cache.is_some()) {
            self.cache.enable(session);
        }
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, _ctx: &mut RequestCtx) -> Result<CacheKey> {
        Ok(cache::key(session.req_header()))
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<RespCacheable> {
        Ok(match ctx.route().and_then(|r| r.cache) {
            Some(ttl) => cache::cacheability(session.req_header(), resp, ttl),
            None => RespCacheable::Uncacheable(NoCacheReason::NeverEnabled),
        })
    }

    fn should_serve_stale(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
        error: Option<&Error>,
    ) -> bool {
        cache::serves_stale(error)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let pool = ctx.pool().ok_or_else(|| {
            Error::explain(ErrorType::InternalError, "upstream_peer without a route")
        })?;
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
        let mut peer = pool.servers()[index].peer(pool.address(index));
        peer.options.drop_header_case = self.drop_header_case;
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

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Pingora reports a socket this host could not create or bind (file descriptors or
        // local ports used up) as InternalError. That is no fault of the server: counting it
        // would take healthy servers out for fail_timeout just when the host is busiest, and
        // another server would meet the same shortage. nginx answers it without marking the
        // server either.
        if e.etype() == &ErrorType::InternalError {
            e.set_retry(false);
            return e;
        }
        ctx.last_failure = Some(error_status(&e));
        if let (Some(pool), Some(server)) = (ctx.pool(), ctx.server) {
            let reason = match e.etype() {
                ErrorType::ConnectTimedout => FailureReason::Timeout,
                _ => FailureReason::Connect,
            };
            pool.record_failure(server, reason, e.etype().as_str());
            // Nothing reached the server, so any method may go to another one.
            e.set_retry(ctx.retries_left(pool));
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("peer: {peer}"));
        if e.esource() == &ErrorSource::Upstream {
            ctx.last_failure = Some(error_status(&e));
        }
        let (Some(pool), Some(server)) = (ctx.pool(), ctx.server) else {
            return e;
        };
        if e.esource() != &ErrorSource::Upstream {
            e.set_retry(false);
            return e;
        }
        let nothing_received = ctx.upstream_time.is_none() && session.response_written().is_none();
        let timed_out = matches!(
            e.etype(),
            ErrorType::ReadTimedout | ErrorType::WriteTimedout
        );
        // A pooled connection the server had already closed is not the server failing.
        let stale_connection = client_reused && nothing_received && !timed_out;
        if !stale_connection {
            let reason = if timed_out {
                FailureReason::Timeout
            } else {
                FailureReason::Reset
            };
            pool.record_failure(server, reason, e.etype().as_str());
        }
        // The server may have acted on the request: only idempotent ones are sent again, only
        // if nothing came back yet, and never after a timeout, which could double the load.
        let retry = nothing_received
            && !timed_out
            && session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated()
            && ctx.retries_left(pool);
        e.set_retry(retry);
        e
    }

    /// Counts a body sent without a length against the route's `max_body`.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(max) = ctx.route().and_then(|r| r.max_body) else {
            return Ok(());
        };
        ctx.body_bytes += body.as_ref().map_or(0, |b| b.len() as u64);
        if ctx.body_bytes > max {
            return Err(body_too_large(ctx, max));
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.reached_backend = true;
        forwarded::apply(upstream_request, ctx.client, ctx.https)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_time = ctx.upstream_started.map(|t| t.elapsed());
        crate::net::hop_by_hop::strip(upstream_response);
        if let Some(server) = ctx.server() {
            if let Some(elapsed) = ctx.upstream_time {
                server
                    .metrics
                    .upstream_seconds
                    .observe(elapsed.as_secs_f64());
            }
            if upstream_response.status.is_server_error() {
                server.metrics.failure(FailureReason::Http5xx);
            }
            upstream_response.insert_header(X_SERVED_BY, server.served_by.clone())?;
            upstream_response.insert_header(X_INSTANCE_ID, server.instance_id.clone())?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(route) = ctx.route() else {
            return Ok(());
        };
        let (sse, compress) = (route.sse, route.compress);
        let event_stream = content::is_event_stream(upstream_response);
        if let Some(lookups) = &ctx.route_metrics().cache {
            let (status, lookup) = match session.cache.phase() {
                CachePhase::Hit => ("HIT", &lookups.hit),
                CachePhase::Stale | CachePhase::StaleUpdating => ("STALE", &lookups.stale),
                _ => ("MISS", &lookups.miss),
            };
            lookup.inc();
            upstream_response.insert_header(X_CACHE, status)?;
        }
        if event_stream {
            ctx._sse_stream = Some(GaugeGuard::new(&ctx.route_metrics().sse_streams));
        }
        if sse || event_stream {
            // Tells any buffering proxy in front of this one to pass events through, too.
            upstream_response.insert_header(X_ACCEL_BUFFERING, "no")?;
            content::set_compression(session, 0);
        } else if compress && !content::is_compressible(upstream_response) {
            content::set_compression(session, 0);
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let status = error_status(e);
        // Once a response has begun, an error page would be read as the rest of its body:
        // the connection is closed instead, so the client sees the response cut.
        let started = session.response_written().is_some();
        if status > 0 && !started {
            let upstream = ctx.pool().map_or("-", Pool::name);
            let body = error_body(status, upstream, ctx.reached_backend, e);
            session.set_keepalive(None);
            if let Err(write_error) = respond::text(session, status, body).await {
                log::debug!("could not send the {status} response: {write_error}");
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    /// Clients sending bad requests or going away are not the proxy's errors: they are in
    /// the access log and the metrics, and under attack would flood the error log.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, e: &Error) -> bool {
        let status = error_status(e);
        let client_caused = status == 0 || (400..500).contains(&status);
        if client_caused {
            log::debug!("request refused or abandoned: {e}");
        }
        client_caused
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
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
        if ctx.health_check || !self.access_log.enabled() {
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
        self.access_log.write(&AccessRecord {
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
            backend: server.map_or("", |s| s.config.addr.as_str()),
            instance: server.map_or("", |s| s.config.id.as_str()),
            upstream_time: ctx.upstream_time,
            request_time: ctx.started.elapsed(),
            retries: ctx.tried.len().saturating_sub(1),
        });
    }
}

fn content_length(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
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

/// The status the client gets for a failed request; 0 when the client is gone.
fn error_status(e: &Error) -> u16 {
    use ErrorType::*;
    match (e.etype(), e.esource()) {
        (HTTPStatus(code), _) => *code,
        (ConnectTimedout | ReadTimedout | WriteTimedout, ErrorSource::Upstream) => 504,
        (ReadTimedout, ErrorSource::Downstream) => 408,
        (_, ErrorSource::Upstream) => 502,
        (WriteError | ReadError | ConnectionClosed, ErrorSource::Downstream) => 0,
        (_, ErrorSource::Downstream) => 400,
        (_, ErrorSource::Internal | ErrorSource::Unset) => 500,
    }
}

/// The one-line text of an error answer; `reached`: whether a backend got the request.
fn error_body(status: u16, upstream: &str, reached: bool, e: &Error) -> String {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    match (status, e.etype(), &e.context) {
        (502, ..) if !reached => {
            format!("502 {reason}: upstream `{upstream}` could not be reached\n")
        }
        (502, ..) => format!(
            "502 {reason}: upstream `{upstream}` was reached but closed, reset or garbled its \
             answer\n"
        ),
        (503, ..) => format!("503 {reason}: upstream `{upstream}` has no server ready\n"),
        (504, ..) => format!("504 {reason}: upstream `{upstream}` did not answer in time\n"),
        // The proxy's own refusals say why; Pingora's parse errors may quote internals.
        (400..=499, ErrorType::HTTPStatus(_), Some(why)) => format!("{status} {reason}: {why}\n"),
        _ => format!("{status} {reason}\n"),
    }
}
