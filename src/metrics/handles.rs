//! Metric children resolved when the config loads, so that counting a request is an atomic
//! add: no label lookup, no string formatting on the request path.

use super::Metrics;
use crate::config::Route;
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge};
use std::sync::OnceLock;

/// Status codes that get a counter slot each; anything else (0: the client left before a
/// response) shares one more slot, labelled `0`.
const CODES: std::ops::RangeInclusive<u16> = 100..=599;
const OTHER_SLOT: usize = 500;

/// Why an attempt toward a backend failed, as `edgeproxy_upstream_failures_total` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureReason {
    /// The connection could not be opened.
    Connect,
    /// Connecting, reading or writing took too long.
    Timeout,
    /// The connection broke.
    Reset,
    /// The backend answered with a 5xx.
    Http5xx,
}

impl FailureReason {
    const ALL: [FailureReason; 4] = [Self::Connect, Self::Timeout, Self::Reset, Self::Http5xx];

    fn label(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Reset => "reset",
            Self::Http5xx => "http_5xx",
        }
    }
}

/// One backend's children.
pub(crate) struct ServerMetrics {
    /// `edgeproxy_upstream_response_seconds`
    pub upstream_seconds: Histogram,
    failures: [IntCounter; 4],
    /// `edgeproxy_health_checks_total{result="ok"}`
    pub checks_ok: IntCounter,
    /// `edgeproxy_health_checks_total{result="fail"}`
    pub checks_fail: IntCounter,
}

impl ServerMetrics {
    /// Children for `backend` (its `addr` as configured) of `upstream`.
    pub(crate) fn new(metrics: &Metrics, upstream: &str, backend: &str) -> Self {
        Self {
            upstream_seconds: metrics
                .upstream_response
                .with_label_values(&[upstream, backend]),
            failures: FailureReason::ALL.map(|r| {
                metrics
                    .upstream_failures
                    .with_label_values(&[upstream, backend, r.label()])
            }),
            checks_ok: metrics
                .health_checks
                .with_label_values(&[upstream, backend, "ok"]),
            checks_fail: metrics
                .health_checks
                .with_label_values(&[upstream, backend, "fail"]),
        }
    }

    /// Counts a failed attempt.
    pub(crate) fn failure(&self, reason: FailureReason) {
        self.failures[reason as usize].inc();
    }

    /// Drops the series of `backend` of `upstream`, a server that is gone (an address its
    /// name no longer has), so that churning addresses do not pile up series.
    pub(crate) fn forget(metrics: &Metrics, upstream: &str, backend: &str) {
        // A series never created is not there to remove: the errors say nothing.
        let _ = metrics
            .upstream_response
            .remove_label_values(&[upstream, backend]);
        for reason in FailureReason::ALL {
            let _ =
                metrics
                    .upstream_failures
                    .remove_label_values(&[upstream, backend, reason.label()]);
        }
        for result in ["ok", "fail"] {
            let _ = metrics
                .health_checks
                .remove_label_values(&[upstream, backend, result]);
        }
    }
}

/// `edgeproxy_requests_total` for one route, upstream and backend: a slot per status code,
/// filled the first time that code is seen.
pub(crate) struct CodeCounters {
    family: IntCounterVec,
    labels: [String; 3],
    slots: Box<[OnceLock<IntCounter>]>,
}

impl CodeCounters {
    fn new(metrics: &Metrics, route: &str, upstream: &str, backend: &str) -> Self {
        Self {
            family: metrics.requests.clone(),
            labels: [route.to_string(), upstream.to_string(), backend.to_string()],
            slots: (0..=OTHER_SLOT).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Counts a response with `code` (0 when none was sent).
    pub(crate) fn inc(&self, code: u16) {
        let (slot, code) = if CODES.contains(&code) {
            (usize::from(code - CODES.start()), code)
        } else {
            (OTHER_SLOT, 0)
        };
        self.slots[slot].get_or_init(|| self.child(code)).inc();
    }

    /// Drops the series counted so far, for a server that is gone.
    pub(crate) fn forget(&self) {
        let [route, upstream, backend] = &self.labels;
        for (slot, counter) in self.slots.iter().enumerate() {
            if counter.get().is_some() {
                let code = if slot == OTHER_SLOT {
                    0
                } else {
                    slot as u16 + CODES.start()
                };
                let _ =
                    self.family
                        .remove_label_values(&[route, upstream, backend, &code.to_string()]);
            }
        }
    }

    fn child(&self, code: u16) -> IntCounter {
        let [route, upstream, backend] = &self.labels;
        self.family
            .with_label_values(&[route, upstream, backend, &code.to_string()])
    }
}

/// One route's children (or, with empty labels, those of requests no route took).
pub(crate) struct RouteMetrics {
    /// `edgeproxy_request_duration_seconds`
    pub duration: Histogram,
    /// `edgeproxy_sse_streams`
    pub sse_streams: IntGauge,
    /// `edgeproxy_cache_lookups_total`, for a route with a cache only.
    pub cache: Option<CacheLookups>,
    /// Requests answered by each server of the upstream, by server index.
    pub by_server: Vec<CodeCounters>,
    /// Requests answered without a backend (404, 503, health).
    pub local: CodeCounters,
}

/// One cached route's `edgeproxy_cache_lookups_total` children, one per outcome.
pub(crate) struct CacheLookups {
    /// Served from the cache.
    pub hit: IntCounter,
    /// Fetched from the backend (and stored if cacheable).
    pub miss: IntCounter,
    /// Served from the cache past its freshness (while revalidating, or the backend failing).
    pub stale: IntCounter,
}

impl CacheLookups {
    fn new(metrics: &Metrics, route: &str) -> Self {
        let child = |result| metrics.cache_lookups.with_label_values(&[route, result]);
        Self {
            hit: child("hit"),
            miss: child("miss"),
            stale: child("stale"),
        }
    }
}

impl RouteMetrics {
    /// Children for a route to `upstream`, whose servers are `backends` (addr as configured);
    /// cache lookups are counted only if `cached`, so that routes without a cache export no
    /// cache series.
    pub(crate) fn new(
        metrics: &Metrics,
        route: &str,
        upstream: &str,
        backends: &[&str],
        cached: bool,
    ) -> Self {
        Self {
            duration: metrics
                .request_duration
                .with_label_values(&[route, upstream]),
            sse_streams: metrics.sse_streams.with_label_values(&[route]),
            cache: cached.then(|| CacheLookups::new(metrics, route)),
            by_server: backends
                .iter()
                .map(|b| CodeCounters::new(metrics, route, upstream, b))
                .collect(),
            local: CodeCounters::new(metrics, route, upstream, ""),
        }
    }

    /// The `route` label: the path, prefixed by the host for a host route.
    pub(crate) fn label(route: &Route) -> String {
        match &route.host {
            Some(host) => format!("{host}{}", route.path),
            None => route.path.clone(),
        }
    }
}

/// Holds a gauge up by one while alive.
pub(crate) struct GaugeGuard(IntGauge);

impl GaugeGuard {
    /// Raises `gauge` until the guard is dropped.
    pub(crate) fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
