//! The immutable runtime state built from one [`Config`]: what every request reads.
//!
//! A request holds an `Arc` of the snapshot it started on, so it finishes on that state even
//! if a newer one is published meanwhile.

use crate::balance::Pool;
use crate::config::Config;
use crate::metrics::handles::RouteMetrics;
use crate::metrics::Metrics;
use crate::route::Router;

/// Everything the request path needs, prepared once per config.
pub struct Snapshot {
    /// The validated config.
    pub config: Config,
    /// Route lookup.
    pub router: Router,
    /// One pool per upstream, at the same index as in [`Config::upstreams`].
    pub pools: Vec<Pool>,
    /// Metric children per route, at the same index as in [`Config::routes`].
    pub route_metrics: Vec<RouteMetrics>,
    /// Metric children of requests no route took (health, 404).
    pub unrouted_metrics: RouteMetrics,
}

impl Snapshot {
    /// Prepares the router, the server pools and their metric children.
    pub fn new(config: Config, metrics: &Metrics) -> Self {
        let route_metrics = config
            .routes
            .iter()
            .map(|route| {
                let upstream = config.route_upstream(route);
                let backends: Vec<&str> =
                    upstream.servers.iter().map(|s| s.addr.as_str()).collect();
                RouteMetrics::new(
                    metrics,
                    &RouteMetrics::label(route),
                    &upstream.name,
                    &backends,
                )
            })
            .collect();
        Self {
            router: Router::new(&config.routes),
            pools: config
                .upstreams
                .iter()
                .map(|u| Pool::new(u, metrics))
                .collect(),
            route_metrics,
            unrouted_metrics: RouteMetrics::new(metrics, "", "", &[]),
            config,
        }
    }
}
