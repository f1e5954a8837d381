//! Per-server gauges read from the pools at scrape time.

use crate::snapshot::LiveSnapshot;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGaugeVec, Opts};
use std::sync::Arc;

/// Exports `edgeproxy_backend_inflight` and `edgeproxy_backend_up`, by upstream and backend.
pub struct BackendCollector {
    live: Arc<LiveSnapshot>,
    inflight: IntGaugeVec,
    up: IntGaugeVec,
}

impl BackendCollector {
    /// A collector over the pools of the snapshot in force.
    pub fn new(live: Arc<LiveSnapshot>) -> prometheus::Result<Self> {
        let inflight = IntGaugeVec::new(
            Opts::new(
                "edgeproxy_backend_inflight",
                "Requests being served by each backend",
            ),
            &["upstream", "backend"],
        )?;
        let up = IntGaugeVec::new(
            Opts::new(
                "edgeproxy_backend_up",
                "1 if the backend is ready (health checks and passive failures), else 0",
            ),
            &["upstream", "backend"],
        )?;
        Ok(Self { live, inflight, up })
    }
}

impl Collector for BackendCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.inflight
            .desc()
            .into_iter()
            .chain(self.up.desc())
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.inflight.reset();
        self.up.reset();
        for pool in &self.live.load().pools {
            for server in pool.servers() {
                let labels = [pool.name(), server.config.addr.as_str()];
                let state = &server.state;
                self.inflight
                    .with_label_values(&labels)
                    .set(state.inflight.count() as i64);
                self.up
                    .with_label_values(&labels)
                    .set(i64::from(state.ready()));
            }
        }
        let mut families = self.inflight.collect();
        families.extend(self.up.collect());
        families
    }
}
