//! Per-server gauges read from the pools at scrape time.

use crate::runtime::snapshot::LiveSnapshot;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntGaugeVec, Opts};
use std::sync::Arc;

const LABELS: &[&str] = &["upstream", "backend"];

/// Exports `edgeproxy_backend_inflight`, `edgeproxy_backend_up` and, for `least_time`
/// upstreams, `edgeproxy_backend_response_time_ewma_seconds`, by upstream and backend.
///
/// Each scrape builds its families afresh from the snapshot in force: nothing is shared
/// between scrapes, so two at once cannot reset or fill each other's gauges, and a server a
/// reload removed leaves no series behind.
pub(super) struct BackendCollector {
    live: Arc<LiveSnapshot>,
    /// The families' descriptions, for the registry; never filled.
    described: Families,
}

/// The gauge families, empty: in-flight requests, readiness, response-time estimates.
struct Families {
    inflight: IntGaugeVec,
    up: IntGaugeVec,
    response_time: GaugeVec,
}

impl BackendCollector {
    /// A collector over the pools of the snapshot in force.
    pub(super) fn new(live: Arc<LiveSnapshot>) -> prometheus::Result<Self> {
        Ok(Self {
            live,
            described: families()?,
        })
    }
}

fn families() -> prometheus::Result<Families> {
    let inflight = IntGaugeVec::new(
        Opts::new(
            "edgeproxy_backend_inflight",
            "Requests being served by each backend",
        ),
        LABELS,
    )?;
    let up = IntGaugeVec::new(
        Opts::new(
            "edgeproxy_backend_up",
            "1 if the backend is ready (health checks and passive failures), else 0",
        ),
        LABELS,
    )?;
    let response_time = GaugeVec::new(
        Opts::new(
            "edgeproxy_backend_response_time_ewma_seconds",
            "least_time's decaying peak EWMA of each backend's time to its response header",
        ),
        LABELS,
    )?;
    Ok(Families {
        inflight,
        up,
        response_time,
    })
}

impl Collector for BackendCollector {
    fn desc(&self) -> Vec<&Desc> {
        let Families {
            inflight,
            up,
            response_time,
        } = &self.described;
        let mut descs = inflight.desc();
        descs.extend(up.desc());
        descs.extend(response_time.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // The options are fixed and were accepted by `new`, so building them again succeeds.
        let Ok(Families {
            inflight,
            up,
            response_time,
        }) = families()
        else {
            return Vec::new();
        };
        for pool in &self.live.load().pools {
            for (i, server) in pool.servers().iter().enumerate() {
                let labels = [pool.name(), server.name.as_str()];
                let state = &server.state;
                inflight
                    .with_label_values(&labels)
                    .set(state.inflight.count() as i64);
                up.with_label_values(&labels).set(i64::from(state.ready()));
                if let Some(seconds) = pool.response_time_estimate(i) {
                    response_time.with_label_values(&labels).set(seconds);
                }
            }
        }
        let mut families = inflight.collect();
        families.extend(up.collect());
        families.extend(response_time.collect());
        families
    }
}
