//! Prometheus metric families, which `crate::admin` serves on `metrics.listen` at `/metrics`.
//!
//! The metric families live in one [`Metrics`] with its own registry (no global statics). The
//! request path never looks a label set up: pools and routes take their children when the
//! config is loaded ([`handles`]), and values the request path keeps anyway (in-flight counts,
//! health) are read at scrape time, by the collector of `crate::admin`.

pub(crate) mod handles;

use prometheus::core::Collector;
use prometheus::process_collector::ProcessCollector;
use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Every metric family edgeproxy exports.
pub(crate) struct Metrics {
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
    /// `edgeproxy_acme_orders_total{result}`
    pub acme_orders: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every family.
    pub(crate) fn new() -> prometheus::Result<Self> {
        let r = Registry::new();
        // 1 ms to ~65 s: proxied requests span local answers to slow uploads.
        let seconds = exponential_buckets(0.001, 2.0, 17)?;
        let (config_reloads, acme_orders) = outcomes(&r)?;
        let metrics = Self {
            requests: counters(
                &r,
                "edgeproxy_requests_total",
                "Requests answered, by status code",
                &["route", "upstream", "backend", "code"],
            )?,
            request_duration: histograms(
                &r,
                "edgeproxy_request_duration_seconds",
                "Whole requests, first byte in to last byte out",
                seconds.clone(),
                &["route", "upstream"],
            )?,
            upstream_response: histograms(
                &r,
                "edgeproxy_upstream_response_seconds",
                "Time from picking a backend to its response header",
                seconds,
                &["upstream", "backend"],
            )?,
            upstream_failures: counters(
                &r,
                "edgeproxy_upstream_failures_total",
                "Failed attempts toward backends (connect, timeout, reset, http_5xx)",
                &["upstream", "backend", "reason"],
            )?,
            health_checks: counters(
                &r,
                "edgeproxy_health_checks_total",
                "Active health probes by result",
                &["upstream", "backend", "result"],
            )?,
            retries: counters(
                &r,
                "edgeproxy_retries_total",
                "Requests sent again to another server",
                &["upstream"],
            )?,
            downstream_connections: register(
                &r,
                IntGauge::new(
                    "edgeproxy_downstream_connections",
                    "Open client connections",
                )?,
            )?,
            sse_streams: register(
                &r,
                IntGaugeVec::new(
                    Opts::new("edgeproxy_sse_streams", "Open event streams"),
                    &["route"],
                )?,
            )?,
            cache_lookups: counters(
                &r,
                "edgeproxy_cache_lookups_total",
                "Cache lookups by result",
                &["route", "result"],
            )?,
            limited: counters(
                &r,
                "edgeproxy_limited_total",
                "Client connections and requests stopped by a limit, by the limit's key",
                &["limit"],
            )?,
            config_reloads,
            acme_orders,
            registry: r,
        };
        for result in ["ok", "error"] {
            metrics.config_reloads.with_label_values(&[result]);
            metrics.acme_orders.with_label_values(&[result]);
        }
        register_process(&metrics.registry)?;
        Ok(metrics)
    }

    /// The registry every family is in, for the `/metrics` listener to gather.
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// The counters of the proxy's own operations, by result: config reloads, ACME orders.
fn outcomes(r: &Registry) -> prometheus::Result<(IntCounterVec, IntCounterVec)> {
    let reloads = counters(
        r,
        "edgeproxy_config_reloads_total",
        "Config reloads by result",
        &["result"],
    )?;
    let orders = counters(
        r,
        "edgeproxy_acme_orders_total",
        "Certificate orders to the ACME CA, by result",
        &["result"],
    )?;
    Ok((reloads, orders))
}

/// Registers `family` in `registry`, and hands it back.
fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    family: C,
) -> prometheus::Result<C> {
    registry.register(Box::new(family.clone()))?;
    Ok(family)
}

/// A registered counter family.
fn counters(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    register(registry, IntCounterVec::new(Opts::new(name, help), labels)?)
}

/// A registered histogram family with these buckets.
fn histograms(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: Vec<f64>,
    labels: &[&str],
) -> prometheus::Result<HistogramVec> {
    let opts = HistogramOpts::new(name, help).buckets(buckets);
    register(registry, HistogramVec::new(opts, labels)?)
}

/// The families about the process rather than its traffic: CPU, memory and descriptors
/// (`process_*`), and `edgeproxy_build_info`.
fn register_process(registry: &Registry) -> prometheus::Result<()> {
    registry.register(Box::new(ProcessCollector::for_self()))?;
    let build_info = IntGauge::with_opts(
        Opts::new("edgeproxy_build_info", "edgeproxy version, always 1")
            .const_label("version", env!("CARGO_PKG_VERSION")),
    )?;
    build_info.set(1);
    registry.register(Box::new(build_info))
}
