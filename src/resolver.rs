//! Re-resolving server host names while running, as a Pingora background service, so that a
//! container restarted with a new IP is found again (nginx resolves once, at start).

use crate::runtime::snapshot::{per_snapshot, LiveSnapshot, Snapshot};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use tokio::task::JoinSet;

/// Resolves the host names of every upstream that has some, every `resolve_interval`.
pub(crate) struct Resolver {
    live: Arc<LiveSnapshot>,
}

impl Resolver {
    /// Resolves for the upstreams of the snapshot in force.
    pub(crate) fn new(live: Arc<LiveSnapshot>) -> Self {
        Self { live }
    }
}

#[async_trait]
impl BackgroundService for Resolver {
    async fn start(&self, shutdown: ShutdownWatch) {
        per_snapshot(&self.live, shutdown, spawn_loops).await
    }
}

/// One lookup loop per upstream that has host names.
fn spawn_loops(snapshot: &Arc<Snapshot>, loops: &mut JoinSet<()>) {
    for pool in &snapshot.pools {
        let Some(interval) = pool.resolve_interval() else {
            continue;
        };
        let pool = Arc::clone(pool);
        loops.spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate, and the names were resolved at load.
            ticker.tick().await;
            loop {
                ticker.tick().await;
                pool.refresh_addresses().await;
            }
        });
    }
}
