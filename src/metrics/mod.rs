//! Prometheus metric families, which `crate::admin` serves on `metrics.listen` at `/metrics`.
//!
//! The metric families live in one [`Metrics`] with its own registry (no global statics). The
//! request path never looks a label set up: pools and routes take their children when the
//! config is loaded ([`handles`]), and values the request path keeps anyway (in-flight counts,
//! health) are read at scrape time, by the collector of `crate::admin`.

pub mod handles;

use prometheus::process_collector::ProcessCollector;
use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Every metric family edgeproxy exports.
pub struct Metrics {
    registry: Registry,
    /// `edgeproxy_requests_total{route, upstream, backend, code}`
    pub requests: IntCounterVec,
    /// `edgeproxy_request_duration_seconds{route, upstream}`
    pub request_duration: HistogramVec,
    /// `edgeproxy_upstream_response_seconds{upstream, backend}`
    pub upstream_response: HistogramVec,
    /// `edgeproxy_upstream_failures_total{upstream, backend, reason}`
    pub upstream_failures: IntCounterVec,
    /// `edgeproxy_health_checks_total{upstream, backend, result}`
    pub health_checks: IntCounterVec,
    /// `edgeproxy_retries_total{upstream}`
    pub retries: IntCounterVec,
    /// `edgeproxy_downstream_connections`
    pub downstream_connections: IntGauge,
    /// `edgeproxy_sse_streams{route}`
    pub sse_streams: IntGaugeVec,
    /// `edgeproxy_cache_lookups_total{route, result}`
    pub cache_lookups: IntCounterVec,
    /// `edgeproxy_config_reloads_total{result}`
    pub config_reloads: IntCounterVec,
    /// `edgeproxy_limited_total{limit}`
    pub limited: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        // 1 ms to ~65 s: proxied requests span local answers to slow uploads.
        let seconds = exponential_buckets(0.001, 2.0, 17)?;
        let metrics = Self {
            requests: IntCounterVec::new(
                Opts::new(
                    "edgeproxy_requests_total",
                    "Requests answered, by status code",
                ),
                &["route", "upstream", "backend", "code"],
            )?,
            request_duration: HistogramVec::new(
                HistogramOpts::new(
                    "edgeproxy_request_duration_seconds",
                    "Whole requests, first byte in to last byte out",
                )
                .buckets(seconds.clone()),
                &["route", "upstream"],
            )?,
            upstream_response: HistogramVec::new(
                HistogramOpts::new(
                    "edgeproxy_upstream_response_seconds",
                    "Time from picking a backend to its response header",
                )
                .buckets(seconds),
                &["upstream", "backend"],
            )?,
            upstream_failures: IntCounterVec::new(
                Opts::new(
                    "edgeproxy_upstream_failures_total",
                    "Failed attempts toward backends (connect, timeout, reset, http_5xx)",
                ),
                &["upstream", "backend", "reason"],
            )?,
            health_checks: IntCounterVec::new(
                Opts::new(
                    "edgeproxy_health_checks_total",
                    "Active health probes by result",
                ),
                &["upstream", "backend", "result"],
            )?,
            retries: IntCounterVec::new(
                Opts::new(
                    "edgeproxy_retries_total",
                    "Requests sent again to another server",
                ),
                &["upstream"],
            )?,
            downstream_connections: IntGauge::new(
                "edgeproxy_downstream_connections",
                "Open client connections",
            )?,
            sse_streams: IntGaugeVec::new(
                Opts::new("edgeproxy_sse_streams", "Open event streams"),
                &["route"],
            )?,
            cache_lookups: IntCounterVec::new(
                Opts::new("edgeproxy_cache_lookups_total", "Cache lookups by result"),
                &["route", "result"],
            )?,
            config_reloads: IntCounterVec::new(
                Opts::new("edgeproxy_config_reloads_total", "Config reloads by result"),
                &["result"],
            )?,
            limited: IntCounterVec::new(
                Opts::new(
                    "edgeproxy_limited_total",
                    "Client connections and requests stopped by a limit, by the limit's key",
                ),
                &["limit"],
            )?,
            registry,
        };
        let r = &metrics.registry;
        r.register(Box::new(metrics.requests.clone()))?;
        r.register(Box::new(metrics.request_duration.clone()))?;
        r.register(Box::new(metrics.upstream_response.clone()))?;
        r.register(Box::new(metrics.upstream_failures.clone()))?;
        r.register(Box::new(metrics.health_checks.clone()))?;
        r.register(Box::new(metrics.retries.clone()))?;
        r.register(Box::new(metrics.downstream_connections.clone()))?;
        r.register(Box::new(metrics.sse_streams.clone()))?;
        r.register(Box::new(metrics.cache_lookups.clone()))?;
        r.register(Box::new(metrics.config_reloads.clone()))?;
        r.register(Box::new(metrics.limited.clone()))?;
        for result in ["ok", "error"] {
            metrics.config_reloads.with_label_values(&[result]);
        }
        r.register(Box::new(ProcessCollector::for_self()))?;
        let build_info = IntGauge::with_opts(
            Opts::new("edgeproxy_build_info", "edgeproxy version, always 1")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )?;
        build_info.set(1);
        r.register(Box::new(build_info))?;
        Ok(metrics)
    }

    /// The registry every family is in, for the `/metrics` listener to gather.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}
