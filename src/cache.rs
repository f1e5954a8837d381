//! The in-memory response cache of `cache:` routes, on `pingora-cache`.
//!
//! Storage is Pingora's `MemCache`, bounded by its LRU eviction manager to `cache.max_size`;
//! concurrent misses on one key wait for the first one's response (Pingora's cache lock, like
//! nginx's `proxy_cache_lock`).

use http::Method;
use pingora::cache::cache_control::CacheControl;
use pingora::cache::eviction::simple_lru;
use pingora::cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora::cache::{CacheKey, CacheMeta, MemCache, NoCacheReason, RespCacheable};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::{Error, ErrorSource};
use std::time::{Duration, SystemTime};

/// How long concurrent misses wait for the first one before going upstream themselves.
const LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// One response may take at most this share of the cache, so a large download on a cached
/// route is streamed past the cache rather than filling it.
const MAX_OBJECT_SHARE: u64 = 8;

/// The cache parts that Pingora borrows for the life of the process.
pub(crate) struct ResponseCache {
    storage: &'static MemCache,
    eviction: &'static simple_lru::Manager,
    lock: &'static CacheKeyLockImpl,
    max_object: usize,
}

impl ResponseCache {
    /// A cache bounded to `max_size` bytes. Pingora's cache API takes `'static` references;
    /// the parts are made once per process and leaked instead of living in global statics.
    pub(crate) fn new(max_size: u64) -> Self {
        let max_size = usize::try_from(max_size).unwrap_or(usize::MAX);
        let lock: Box<CacheKeyLockImpl> = CacheLock::new_boxed(LOCK_TIMEOUT);
        Self {
            storage: Box::leak(Box::new(MemCache::new())),
            eviction: Box::leak(Box::new(simple_lru::Manager::new(max_size))),
            lock: Box::leak(lock),
            max_object: max_size / MAX_OBJECT_SHARE as usize,
        }
    }

    /// Turns caching on for a GET or HEAD request.
    pub(crate) fn enable(&self, session: &mut Session) {
        if !matches!(session.req_header().method, Method::GET | Method::HEAD) {
            return;
        }
        session.cache.enable(
            self.storage,
            Some(self.eviction),
            None,
            Some(self.lock),
            None,
        );
        session.cache.set_max_file_size_bytes(self.max_object);
    }
}

/// The cache key: host, path and query.
pub(crate) fn key(req: &RequestHeader) -> CacheKey {
    let host = req
        .headers
        .get(http::header::HOST)
        .map(|h| h.as_bytes())
        .or_else(|| req.uri.host().map(str::as_bytes))
        .unwrap_or_default();
    let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
    // A host never contains a newline, so the two parts cannot run into each other.
    let mut primary = Vec::with_capacity(host.len() + 1 + target.len());
    primary.extend_from_slice(host);
    primary.push(b'\n');
    primary.extend_from_slice(target.as_bytes());
    CacheKey::new(primary, "")
}

/// Whether a response may be stored, and until when: 200 only, never `no-store`, `private`,
/// a `Set-Cookie` response or an answer to an `Authorization` request. The response's own
/// `stale-if-error=N` (RFC 5861, which nginx honours too) lets the copy stand in for an
/// upstream that fails for up to N seconds after `ttl`; see [`serves_stale`].
pub(crate) fn cacheability(
    req: &RequestHeader,
    resp: &ResponseHeader,
    ttl: Duration,
) -> RespCacheable {
    let control = CacheControl::from_resp_headers(resp);
    let refused = resp.status != 200
        || control
            .as_ref()
            .is_some_and(|c| c.no_store() || c.private())
        || resp.headers.contains_key(http::header::SET_COOKIE)
        || req.headers.contains_key(http::header::AUTHORIZATION);
    if refused {
        return RespCacheable::Uncacheable(NoCacheReason::OriginNotCache);
    }
    let stale_if_error = control
        .as_ref()
        .and_then(|c| c.stale_if_error().ok().flatten())
        .unwrap_or(0);
    let now = SystemTime::now();
    RespCacheable::Cacheable(CacheMeta::new(
        now + ttl,
        now,
        0,
        stale_if_error,
        resp.clone(),
    ))
}

/// Whether an expired copy is served in place of what `error` stopped: only for a failure on
/// the way to or from the backends (not the client's), and only within the copy's own
/// `stale-if-error` window, which Pingora checks before asking. `None` asks about
/// stale-while-revalidate, which is not offered: its background fetch would bypass the
/// request filters.
pub(crate) fn serves_stale(error: Option<&Error>) -> bool {
    error.is_some_and(|e| e.esource() != &ErrorSource::Downstream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (n, v) in headers {
            r.insert_header(n.to_string(), *v).unwrap();
        }
        r
    }

    fn get(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/static/app.css?v=2", None).unwrap();
        for (n, v) in headers {
            r.insert_header(n.to_string(), *v).unwrap();
        }
        r
    }

    fn cacheable(req: &RequestHeader, resp: &ResponseHeader) -> bool {
        cacheability(req, resp, Duration::from_secs(60)).is_cacheable()
    }

    #[test]
    fn only_plain_200s_are_stored() {
        let req = get(&[]);
        assert!(cacheable(
            &req,
            &resp(200, &[("cache-control", "public, max-age=10")])
        ));
        assert!(cacheable(&req, &resp(200, &[])));
        assert!(!cacheable(&req, &resp(404, &[])));
        assert!(!cacheable(
            &req,
            &resp(200, &[("cache-control", "no-store")])
        ));
        assert!(!cacheable(
            &req,
            &resp(200, &[("cache-control", "private, max-age=60")])
        ));
        assert!(!cacheable(&req, &resp(200, &[("set-cookie", "id=1")])));
        assert!(!cacheable(
            &get(&[("authorization", "Bearer x")]),
            &resp(200, &[])
        ));
    }

    #[test]
    fn stale_if_error_comes_from_the_response() {
        let req = get(&[]);
        let meta = |headers: &[(&str, &str)]| match cacheability(
            &req,
            &resp(200, headers),
            Duration::from_secs(60),
        ) {
            RespCacheable::Cacheable(meta) => meta,
            RespCacheable::Uncacheable(reason) => panic!("{reason:?}"),
        };
        let after_ttl = SystemTime::now() + Duration::from_secs(90);
        let kept = meta(&[("cache-control", "max-age=5, stale-if-error=120")]);
        assert!(kept.serve_stale_if_error(after_ttl));
        assert!(!kept.serve_stale_if_error(after_ttl + Duration::from_secs(100)));
        assert!(!meta(&[]).serve_stale_if_error(after_ttl));
        assert!(!kept.serve_stale_while_revalidate(after_ttl));
    }

    #[test]
    fn stale_copies_stand_in_only_for_upstream_failures() {
        let failed = |source| Error::create(pingora::ErrorType::ConnectRefused, source, None, None);
        assert!(serves_stale(Some(&failed(ErrorSource::Upstream))));
        assert!(serves_stale(Some(&failed(ErrorSource::Unset))));
        assert!(!serves_stale(Some(&failed(ErrorSource::Downstream))));
        assert!(!serves_stale(None));
    }

    #[test]
    fn keys_separate_hosts_paths_and_queries() {
        let a = key(&get(&[("host", "a.example")]));
        let b = key(&get(&[("host", "b.example")]));
        assert_ne!(a.primary_key(), b.primary_key());
        assert_eq!(a.primary_key(), b"a.example\n/static/app.css?v=2");
    }
}
