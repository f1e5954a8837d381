//! Re-resolving server host names while running, as a Pingora background service, so that a
//! container restarted with a new IP is found again (nginx resolves once, at start).

use crate::snapshot::Snapshot;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use tokio::task::JoinSet;

/// Resolves the host names of every upstream that has some, every `resolve_interval`.
pub struct Resolver {
    snapshot: Arc<Snapshot>,
}

impl Resolver {
    /// Resolves for the upstreams of `snapshot`.
    pub fn new(snapshot: Arc<Snapshot>) -> Self {
        Self { snapshot }
    }

    /// Whether any upstream has a host name to resolve.
    pub fn needed(snapshot: &Snapshot) -> bool {
        snapshot
            .pools
            .iter()
            .any(|p| p.resolve_interval().is_some())
    }
}

#[async_trait]
impl BackgroundService for Resolver {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut loops = JoinSet::new();
        for index in 0..self.snapshot.pools.len() {
            let Some(interval) = self.snapshot.pools[index].resolve_interval() else {
                continue;
            };
            let snapshot = Arc::clone(&self.snapshot);
            loops.spawn(async move {
                let mut ticker = tokio::time::interval(interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                // The first tick is immediate, and the names were resolved at load.
                ticker.tick().await;
                loop {
                    ticker.tick().await;
                    snapshot.pools[index].refresh_addresses().await;
                }
            });
        }
        let _ = shutdown.changed().await;
        loops.abort_all();
    }
}
