//! The HTTP proxy: Pingora's request phases, each handing its job to the module that does
//! it. A request is checked and routed ([`admission`]), sent to a server ([`upstream`]),
//! retried or answered with an error page on failure ([`retry`], [`error_page`]), and
//! counted and logged at the end ([`end`]); its state is a [`RequestCtx`].

mod admission;
mod content;
mod ctx;
mod end;
mod error_page;
mod forwarded;
mod redirect;
mod respond;
mod retry;
mod upstream;

pub(crate) use ctx::RequestCtx;

use crate::access_log::AccessLog;
use crate::acme::AcmeState;
use crate::cache::{self, ResponseCache};
use crate::connections::slots::Slots;
use crate::runtime::snapshot::LiveSnapshot;
use crate::sync::inflight::Inflight;
use admission::body_too_large;
use error_page::error_status;
use pingora::cache::{CacheKey, NoCacheReason, RespCacheable};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use std::sync::Arc;

/// The proxy service's logic.
pub(crate) struct EdgeProxy {
    live: Arc<LiveSnapshot>,
    inflight: Inflight,
    cache: ResponseCache,
    access_log: AccessLog,
    /// `!server.preserve_header_case`, for the upstream side of each request (the client
    /// side is set once, in the server options).
    drop_header_case: bool,
    /// The client connections served at once.
    slots: Arc<Slots>,
    /// HTTP-01 answers for the ACME CA.
    acme: Arc<AcmeState>,
}

impl EdgeProxy {
    /// A proxy serving the snapshot in force, counting its requests in `inflight`, logging
    /// them to `access_log`, its connections limited by `slots`.
    pub(crate) fn new(
        live: Arc<LiveSnapshot>,
        inflight: Inflight,
        access_log: AccessLog,
        slots: Arc<Slots>,
        acme: Arc<AcmeState>,
    ) -> Self {
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
            slots,
            acme,
        }
    }
}

impl ProxyHttp for EdgeProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.live.load(), self.inflight.enter())
    }

    /// Requests are checked and their target normalised first, so that nothing after sees a
    /// request two servers could read differently. Routing happens before Pingora's modules
    /// run, so that a route's settings (compression) apply from the module's first look.
    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // Requests sent before the previous answer are answered in order (RFC 9112 §9.3.2),
        // as nginx and HAProxy do; Pingora otherwise answers the first and closes.
        session.set_pipelining_enabled(true);
        admission::check_and_route(session, ctx)?;
        // While clients wait in the listen backlog for a slot, an answer ends its connection
        // rather than keep it, so that the waiting get their turn (nginx, out of connections,
        // closes idle keep-alive ones).
        if self.slots.full() {
            session.set_keepalive(None);
        }
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        admission::answer_locally(session, ctx, &self.acme).await
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
        upstream::pick(session, ctx, self.drop_header_case)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        retry::after_connect_failure(ctx, e)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let e = e.more_context(format!("peer: {peer}"));
        retry::after_proxy_error(session, ctx, e, client_reused)
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
        upstream::received(upstream_response, ctx)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        upstream::to_client(session, upstream_response, ctx)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        error_page::answer(session, e, ctx).await
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
        end::finish(session, ctx, &self.access_log);
    }
}
