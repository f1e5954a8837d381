//! Active health checks, as a Pingora background service: each upstream with a
//! `health_check` probes all its servers every `interval` and marks them up or down. After a
//! reload the probes start over on the new snapshot.

mod probe;

use crate::balance::Pool;
use crate::runtime::snapshot::{per_snapshot, LiveSnapshot};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use probe::Failed;
use std::sync::Arc;
use tokio::task::JoinSet;

/// Probes the servers of every upstream that has a health check.
pub(crate) struct HealthChecker {
    live: Arc<LiveSnapshot>,
}

impl HealthChecker {
    /// Checks the upstreams of the snapshot in force.
    pub(crate) fn new(live: Arc<LiveSnapshot>) -> Self {
        Self { live }
    }
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, shutdown: ShutdownWatch) {
        per_snapshot(&self.live, shutdown, |snapshot, loops| {
            for pool in &snapshot.pools {
                if pool.health_check().is_some() {
                    loops.spawn(check_forever(Arc::clone(pool)));
                }
            }
        })
        .await
    }
}

async fn check_forever(pool: Arc<Pool>) {
    let Some(check) = pool.health_check() else {
        return;
    };
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let mut probes = JoinSet::new();
        for server in 0..pool.servers().len() {
            probes.spawn(check_server(Arc::clone(&pool), server));
        }
        while probes.join_next().await.is_some() {}
    }
}

async fn check_server(pool: Arc<Pool>, server: usize) {
    let Some(check) = pool.health_check() else {
        return;
    };
    let server = &pool.servers()[server];
    let result = match probe::run(&check.probe, server.address, &server.name, check.timeout).await {
        Ok(()) => Ok(()),
        Err(Failed::Server(why)) => Err(why),
        Err(Failed::Local(why)) => {
            // Nothing reached the server: counting this would take healthy servers down
            // whenever this host runs short, so their state stays as it was.
            log::warn!(
                "upstream {}: server {} not checked, this host could not open a socket: {why}",
                pool.name(),
                server.name
            );
            server
                .state
                .health
                .set_last_probe(&Err(format!("not sent: {why}")));
            return;
        }
    };
    if result.is_ok() {
        server.metrics.checks_ok.inc();
    } else {
        server.metrics.checks_fail.inc();
    }
    server.state.health.set_last_probe(&result);
    match server
        .state
        .health
        .observe(result.is_ok(), check.rise, check.fall)
    {
        Some(true) => {
            // Seen coming back: requests that failed while it was down no longer count.
            server.state.passive.clear();
            log::info!(
                "upstream {}: server {} is up ({} successful check(s))",
                pool.name(),
                server.name,
                check.rise
            )
        }
        // Only a failed probe takes a server down.
        Some(false) => {
            if let Err(why) = &result {
                log::info!(
                    "upstream {}: server {} is down: {why}",
                    pool.name(),
                    server.name,
                );
            }
        }
        None => {}
    }
}
