//! The `/status` document: upstreams and their servers, routes, listeners, certificates, the
//! config and the process. Fields are only ever added, so that scripts reading it keep
//! working.

use super::certificates::served;
use crate::acme::AcmeState;
use crate::balance::{Pool, Server, TrafficView};
use crate::calendar::rfc3339;
use crate::connections::listeners::ListenerCounts;
use crate::runtime::reloads::ReloadLog;
use crate::runtime::snapshot::{LiveSnapshot, RouteState, Snapshot};
use prometheus::IntGauge;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What the status document reads beyond the snapshot in force.
pub(crate) struct StatusSources {
    /// The certificate obtained from the ACME CA.
    pub acme: Arc<AcmeState>,
    /// The outcome of the last reload.
    pub reloads: Arc<ReloadLog>,
    /// The config file.
    pub config_path: PathBuf,
    /// When this process started.
    pub started: SystemTime,
    /// Client connections open now.
    pub open_connections: IntGauge,
    /// Client connections served at once.
    pub connection_limit: usize,
    /// Connections open on each of the proxy's listeners.
    pub listener_counts: Arc<ListenerCounts>,
}

/// The whole document.
pub(super) fn document(live: &LiveSnapshot, sources: &StatusSources) -> Value {
    let snapshot = live.load();
    let upstreams: Vec<Value> = snapshot.pools.iter().map(|p| upstream(p)).collect();
    let certificates: Vec<Value> = served(live, &sources.acme)
        .into_iter()
        .map(|c| {
            json!({
                "source": c.source,
                "names": c.info.names,
                "issuer": c.info.issuer,
                "not_before": rfc3339(c.info.not_before),
                "not_after": rfc3339(c.info.not_after),
                "next_renewal": c.next_renewal.map(rfc3339),
                "last_error": c.last_error,
            })
        })
        .collect();
    let now = SystemTime::now();
    let last_reload = sources.reloads.last().map(|r| {
        json!({
            "at": rfc3339(seconds(r.at)),
            "ok": r.error.is_none(),
            "error": r.error,
        })
    });
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "upstreams": upstreams,
        "certificates": certificates,
        "routes": routes(&snapshot),
        "listeners": listeners(&snapshot, sources),
        "config": {
            "path": sources.config_path,
            "last_reload": last_reload,
        },
        "started_at": rfc3339(seconds(sources.started)),
        "uptime_seconds": now.duration_since(sources.started).map_or(0, |d| d.as_secs()),
        "now": rfc3339(seconds(now)),
    })
}

fn upstream(pool: &Pool) -> Value {
    let servers: Vec<Value> = pool
        .servers()
        .iter()
        .enumerate()
        .map(|(i, s)| server(pool, i, s))
        .collect();
    json!({
        "name": pool.name(),
        "balance": pool.balance().as_str(),
        "health_check": pool.health_check().is_some(),
        "servers": servers,
    })
}

fn server(pool: &Pool, index: usize, server: &Server) -> Value {
    let state = &server.state;
    let TrafficView {
        requests_per_second,
        errors_per_second,
        seconds,
    } = state.traffic.view();
    json!({
        "addr": server.config.addr,
        "address": server.address.to_string(),
        "name": server.name,
        "instance_id": server.instance_id.to_str().unwrap_or_default(),
        "id": server.config.id,
        "weight": server.config.weight,
        "backup": server.config.backup,
        "ready": state.ready(),
        "health": if state.health.is_up() { "up" } else { "down" },
        "health_changed_at": state.health.changed_at().map(|t| rfc3339(t as i64)),
        "last_probe": state.health.last_probe(),
        "passive_failed": state.passive.is_failed(),
        "inflight": state.inflight.count(),
        "response_time_ewma_seconds": pool.response_time_estimate(index),
        "requests_per_second": requests_per_second,
        "errors_5xx_per_second": errors_per_second,
        "history": {
            "requests": seconds.iter().map(|s| s.answered).collect::<Vec<_>>(),
            "response_seconds": seconds.iter().map(|s| s.response_seconds).collect::<Vec<_>>(),
        },
    })
}

fn routes(snapshot: &Snapshot) -> Vec<Value> {
    snapshot.routes.iter().map(route).collect()
}

fn route(state: &RouteState) -> Value {
    let cache = state.metrics.cache.as_ref().map(|c| {
        let (hit, miss, stale) = (c.hit.get(), c.miss.get(), c.stale.get());
        let all = hit + miss + stale;
        json!({
            "hit": hit,
            "miss": miss,
            "stale": stale,
            "hit_ratio": (all > 0).then(|| (hit + stale) as f64 / all as f64),
        })
    });
    json!({
        "path": state.route.path,
        "host": state.route.host,
        "upstream": state.pool.name(),
        "sse": state.route.sse,
        "cache": cache,
        "rate_limited": state.rate_limiter.as_ref().map(|l| l.refused()),
    })
}

fn listeners(snapshot: &Snapshot, sources: &StatusSources) -> Value {
    let list: Vec<Value> = snapshot
        .config
        .process
        .listeners()
        .map(|(key, addr)| {
            json!({
                "key": key,
                "address": addr.to_string(),
                "connections": sources.listener_counts.open(*addr),
            })
        })
        .collect();
    json!({
        "addresses": list,
        "connections": sources.open_connections.get(),
        "connection_limit": sources.connection_limit,
    })
}

fn seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
