//! Closes each server's second of answers, once a second, for the status page's rates and
//! sparklines: a Pingora background service, so that the request path only adds to counters.

use crate::runtime::snapshot::LiveSnapshot;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

/// Samples the servers of the snapshot in force every second.
pub(crate) struct Sampler {
    live: Arc<LiveSnapshot>,
}

impl Sampler {
    /// Samples the servers of `live`.
    pub(crate) fn new(live: Arc<LiveSnapshot>) -> Self {
        Self { live }
    }
}

#[async_trait]
impl BackgroundService for Sampler {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = ticker.tick() => {
                    for pool in &self.live.load().pools {
                        for server in pool.servers() {
                            server.state.traffic.sample();
                        }
                    }
                }
            }
        }
    }
}
