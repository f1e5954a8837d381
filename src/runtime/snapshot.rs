//! The immutable runtime state built from one [`Config`]: what every request reads.
//!
//! A request holds an `Arc` of the snapshot it started on, so it finishes on that state even
//! if a reload publishes a newer one meanwhile ([`LiveSnapshot`]).

use crate::balance::Pool;
use crate::config::{Config, Route};
use crate::limits::rate_limit::RateLimiter;
use crate::metrics::handles::{RouteMetrics, ServerMetrics};
use crate::metrics::Metrics;
use crate::runtime::router::Router;
use arc_swap::ArcSwap;
use pingora::server::ShutdownWatch;
use prometheus::IntCounter;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Everything the request path needs, prepared once per config.
pub(crate) struct Snapshot {
    /// The validated config.
    pub config: Config,
    /// Route lookup: [`Router::find`] gives the index of a route in `routes`.
    pub router: Router,
    /// The pool of each upstream.
    pub pools: Vec<Arc<Pool>>,
    /// Each route with what requests need of it, in the order of the file.
    pub routes: Vec<RouteState>,
    /// Metric children of requests no route took (health, 404).
    pub unrouted_metrics: RouteMetrics,
    /// `edgeproxy_limited_total` children of the limits requests meet.
    pub limited: RequestLimitCounters,
}

/// One route and what the request path needs of it.
pub(crate) struct RouteState {
    /// The route as configured.
    pub route: Route,
    /// The pool of its upstream.
    pub pool: Arc<Pool>,
    /// Its metric children.
    pub metrics: RouteMetrics,
    /// Per-client request buckets, for a rate-limited route.
    pub rate_limiter: Option<Arc<RateLimiter>>,
}

/// Counters of requests stopped by a route's limit.
pub(crate) struct RequestLimitCounters {
    /// `limit="rate_limit"`
    pub rate_limit: IntCounter,
    /// `limit="max_body"`
    pub max_body: IntCounter,
}

impl Snapshot {
    /// Prepares the router, the server pools and their metric children. Servers that were in
    /// `previous` under the same upstream, entry and address keep their live state (health,
    /// failures, requests in flight, response times).
    pub(crate) fn new(config: Config, metrics: &Metrics, previous: Option<&Snapshot>) -> Self {
        let pools: Vec<Arc<Pool>> = config
            .upstreams
            .iter()
            .map(|u| {
                let before = previous.and_then(|p| p.pools.iter().find(|o| o.name() == u.name));
                Arc::new(Pool::new(u, metrics, before.map(Arc::as_ref)))
            })
            .collect();
        let routes = config
            .routes
            .iter()
            .map(|route| {
                let upstream = config.route_upstream(route);
                let pool = &pools[route.upstream];
                let backends: Vec<&str> = pool.servers().iter().map(|s| s.name.as_str()).collect();
                RouteState {
                    route: route.clone(),
                    pool: Arc::clone(pool),
                    metrics: RouteMetrics::new(
                        metrics,
                        &RouteMetrics::label(route),
                        &upstream.name,
                        &backends,
                        route.cache.is_some(),
                    ),
                    rate_limiter: rate_limiter(route, previous),
                }
            })
            .collect();
        if let Some(previous) = previous {
            forget_gone_servers(previous, &pools, metrics);
        }
        Self {
            // Built from the same list, in the same order, as `routes`.
            router: Router::new(&config.routes),
            pools,
            routes,
            unrouted_metrics: RouteMetrics::new(metrics, "", "", &[], false),
            limited: RequestLimitCounters {
                rate_limit: metrics.limited.with_label_values(&["rate_limit"]),
                max_body: metrics.limited.with_label_values(&["max_body"]),
            },
            config,
        }
    }
}

/// Drops the metric series of the servers of `previous` that `pools` no longer has (by
/// upstream and server name): addresses a name lost, servers a reload removed.
fn forget_gone_servers(previous: &Snapshot, pools: &[Arc<Pool>], metrics: &Metrics) {
    let stays = |upstream: &str, server: &str| {
        pools
            .iter()
            .filter(|p| p.name() == upstream)
            .any(|p| p.servers().iter().any(|s| s.name == server))
    };
    for pool in &previous.pools {
        for server in pool.servers() {
            if !stays(pool.name(), &server.name) {
                ServerMetrics::forget(metrics, pool.name(), &server.name);
            }
        }
    }
    for route in &previous.routes {
        let servers = route.pool.servers();
        for (server, counters) in servers.iter().zip(&route.metrics.by_server) {
            if !stays(route.pool.name(), &server.name) {
                counters.forget();
            }
        }
    }
}

/// The limiter of a rate-limited route. A route that was in `previous` with the same path,
/// host and rate keeps its buckets, so a reload does not hand every client a fresh burst.
fn rate_limiter(route: &Route, previous: Option<&Snapshot>) -> Option<Arc<RateLimiter>> {
    let settings = route.rate_limit?;
    let kept = previous.and_then(|p| {
        let old = p
            .routes
            .iter()
            .find(|old| (&old.route.path, &old.route.host) == (&route.path, &route.host))?;
        old.rate_limiter
            .as_ref()
            .filter(|l| l.settings() == settings)
            .cloned()
    });
    Some(kept.unwrap_or_else(|| Arc::new(RateLimiter::new(settings))))
}

/// The snapshot new requests get, replaced whole by a reload; background work watches for
/// replacements to follow them.
pub(crate) struct LiveSnapshot {
    current: ArcSwap<Snapshot>,
    generation: watch::Sender<u64>,
}

impl LiveSnapshot {
    /// Starts with `snapshot`.
    pub(crate) fn new(snapshot: Snapshot) -> Self {
        Self {
            current: ArcSwap::from_pointee(snapshot),
            generation: watch::Sender::new(0),
        }
    }

    /// The snapshot now in force.
    pub(crate) fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Publishes `snapshot` for new requests and tells the watchers.
    pub(crate) fn store(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
        self.generation.send_modify(|g| *g += 1);
    }

    /// Publishes `snapshot` in place of `expected`, unless another replaced it first (a
    /// reload, say, whose config must not be undone); whether it did.
    pub(crate) fn replace(&self, expected: &Arc<Snapshot>, snapshot: Snapshot) -> bool {
        let previous = self.current.compare_and_swap(expected, Arc::new(snapshot));
        if !Arc::ptr_eq(&previous, expected) {
            return false;
        }
        self.generation.send_modify(|g| *g += 1);
        true
    }

    /// A receiver that changes on each [`LiveSnapshot::store`].
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

/// Runs `spawn`'s tasks for the snapshot in force, again for each new one, until shutdown:
/// background work (probes, name lookups) always follows the config that requests use.
pub(crate) async fn per_snapshot<F>(live: &LiveSnapshot, mut shutdown: ShutdownWatch, spawn: F)
where
    F: Fn(&Arc<Snapshot>, &mut JoinSet<()>),
{
    let mut changes = live.watch();
    loop {
        // Dropping the set at the end of each turn aborts the old snapshot's tasks.
        let mut tasks = JoinSet::new();
        spawn(&live.load(), &mut tasks);
        tokio::select! {
            _ = shutdown.changed() => return,
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}
