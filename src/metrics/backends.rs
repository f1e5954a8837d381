//! Per-server gauges read from the pools at scrape time.

use crate::snapshot::Snapshot;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGaugeVec, Opts};
use std::sync::Arc;

/// Exports `edgeproxy_backend_inflight{upstream, backend}`.
pub struct BackendCollector {
    snapshot: Arc<Snapshot>,
    inflight: IntGaugeVec,
}

impl BackendCollector {
    /// A collector over the pools of `snapshot`.
    pub fn new(snapshot: Arc<Snapshot>) -> prometheus::Result<Self> {
        let inflight = IntGaugeVec::new(
            Opts::new(
                "edgeproxy_backend_inflight",
                "Requests being served by each backend",
            ),
            &["upstream", "backend"],
        )?;
        Ok(Self { snapshot, inflight })
    }
}

impl Collector for BackendCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.inflight.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.inflight.reset();
        for pool in &self.snapshot.pools {
            for server in pool.servers() {
                self.inflight
                    .with_label_values(&[pool.name(), server.config.addr.as_str()])
                    .set(server.inflight.count() as i64);
            }
        }
        self.inflight.collect()
    }
}
