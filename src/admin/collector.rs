//! Per-server gauges read from the pools at scrape time.

use crate::runtime::snapshot::LiveSnapshot;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGaugeVec, Opts};
use std::sync::Arc;

const LABELS: &[&str] = &["upstream", "backend"];

/// Exports `edgeproxy_backend_inflight` and `edgeproxy_backend_up`, by upstream and backend.
///
/// Each scrape builds its families afresh from the snapshot in force: nothing is shared
/// between scrapes, so two at once cannot reset or fill each other's gauges, and a server a
/// reload removed leaves no series behind.
pub(super) struct BackendCollector {
    live: Arc<LiveSnapshot>,
    /// The families' descriptions, for the registry; never filled.
    described: [IntGaugeVec; 2],
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

/// The two gauge families, empty: in-flight requests and readiness.
fn families() -> prometheus::Result<[IntGaugeVec; 2]> {
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
    Ok([inflight, up])
}

impl Collector for BackendCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.described.iter().flat_map(|f| f.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // The options are fixed and were accepted by `new`, so building them again succeeds.
        let Ok([inflight, up]) = families() else {
            return Vec::new();
        };
        for pool in &self.live.load().pools {
            for server in pool.servers() {
                let labels = [pool.name(), server.config.addr.as_str()];
                let state = &server.state;
                inflight
                    .with_label_values(&labels)
                    .set(state.inflight.count() as i64);
                up.with_label_values(&labels).set(i64::from(state.ready()));
            }
        }
        let mut families = inflight.collect();
        families.extend(up.collect());
        families
    }
}
