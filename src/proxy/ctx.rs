//! The state of one request, from its first phase to its log line.

use crate::balance::{Pool, Server};
use crate::config::Route;
use crate::metrics::handles::{GaugeGuard, RouteMetrics};
use crate::net::client::Client;
use crate::runtime::snapshot::{RouteState, Snapshot};
use crate::sync::inflight::InflightGuard;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Per-request state.
pub(crate) struct RequestCtx {
    pub(super) started: Instant,
    pub(super) started_at: SystemTime,
    /// A request to `server.health_path`, answered and not logged.
    pub(super) health_check: bool,
    /// Came over TLS.
    pub(super) https: bool,
    /// Who sent the request, once its header has been checked.
    pub(super) client: Option<Client>,
    /// Request body bytes read so far.
    pub(super) body_bytes: u64,
    _inflight: InflightGuard,
    /// The snapshot the request started on, which it finishes on whatever a reload does.
    pub(super) snapshot: Arc<Snapshot>,
    /// The index of its route in the snapshot's routes.
    pub(super) route: Option<usize>,
    /// The index of the server it is at, in its route's pool.
    pub(super) server: Option<usize>,
    /// Servers already picked for this request, so a retry goes elsewhere.
    pub(super) tried: Vec<usize>,
    /// Counts this request against `server` while it is being served there.
    pub(super) _server_inflight: Option<InflightGuard>,
    pub(super) upstream_started: Option<Instant>,
    pub(super) upstream_time: Option<Duration>,
    /// A connection to a backend was up and the request was sent on it, in some attempt: a
    /// failure may then have reached the application.
    pub(super) reached_backend: bool,
    /// The status the last failed attempt would have answered (504 for a timeout), which
    /// stands when no server is left for another.
    pub(super) last_failure: Option<u16>,
    /// Counts this request in `edgeproxy_sse_streams` while it streams events.
    pub(super) _sse_stream: Option<GaugeGuard>,
    /// The request was sent again once because it never reached the application.
    pub(super) resent_unsent: bool,
}

impl RequestCtx {
    /// A request starting now on `snapshot`, counted in flight by `inflight`.
    pub(super) fn new(snapshot: Arc<Snapshot>, inflight: InflightGuard) -> Self {
        Self {
            started: Instant::now(),
            started_at: SystemTime::now(),
            health_check: false,
            https: false,
            client: None,
            body_bytes: 0,
            _inflight: inflight,
            snapshot,
            route: None,
            server: None,
            tried: Vec::new(),
            _server_inflight: None,
            upstream_started: None,
            reached_backend: false,
            last_failure: None,
            upstream_time: None,
            _sse_stream: None,
            resent_unsent: false,
        }
    }

    pub(super) fn route_state(&self) -> Option<&RouteState> {
        Some(&self.snapshot.routes[self.route?])
    }

    pub(super) fn route(&self) -> Option<&Route> {
        Some(&self.route_state()?.route)
    }

    pub(super) fn pool(&self) -> Option<&Pool> {
        Some(&self.route_state()?.pool)
    }

    pub(super) fn route_metrics(&self) -> &RouteMetrics {
        self.route_state()
            .map_or(&self.snapshot.unrouted_metrics, |r| &r.metrics)
    }

    pub(super) fn server(&self) -> Option<&Server> {
        Some(&self.pool()?.servers()[self.server?])
    }

    /// Whether `pool` allows another attempt after those already made.
    pub(super) fn retries_left(&self, pool: &Pool) -> bool {
        self.tried.len() <= pool.retries() as usize
    }
}
