//! Host names that stand for several addresses become one server each and are followed while
//! running; `balance: least_time` sends to the server that answers first. Real demo backends
//! on loopback aliases (127.0.0.2, 127.0.0.3, …); the proxy runs in a mount namespace of its
//! own whose `/etc/hosts` the test writes, so the names resolve through the system resolver.

mod common;

use common::{
    client, free_port, get_json, instance, load_totals, metric, steady_load, Backend, ChildGuard,
    Proxy,
};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

const ROUTE_ALL: &str = "routes:\n  - { path: /, upstream: app }\n";
const INTERVAL: Duration = Duration::from_millis(500);

fn hosts(path: &Path, ips: &[&str]) {
    let lines: String = ips.iter().map(|ip| format!("{ip} app.test\n")).collect();
    // Written in place: the proxy's /etc/hosts is a bind mount of this very file.
    std::fs::write(path, format!("127.0.0.1 localhost\n{lines}")).expect("hosts file");
}

/// The instance ids of `n` answers in a row.
async fn answers(proxy: &Proxy, n: usize) -> Vec<String> {
    let http = client();
    let mut seen = Vec::new();
    for _ in 0..n {
        let resp = http.get(proxy.url("/")).send().await.expect("answer");
        assert_eq!(resp.status(), 200);
        seen.push(instance(&resp));
    }
    seen
}

/// Waits until 30 answers in a row come from exactly `want`, and returns how long it took.
async fn until_served_by(proxy: &Proxy, want: &[&str], limit: Duration) -> Duration {
    let started = Instant::now();
    let want: HashSet<String> = want.iter().map(|s| s.to_string()).collect();
    loop {
        let seen: HashSet<String> = answers(proxy, 30).await.into_iter().collect();
        if seen == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "still served by {seen:?} after {limit:?}, want {want:?}"
        );
    }
}

#[tokio::test]
async fn each_address_of_a_name_is_a_server_and_changes_are_followed() {
    let port = free_port();
    let backends: Vec<Backend> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .map(|ip| Backend::start_at(ip, port, ip, &[]))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let hosts_file = dir.path().join("hosts");
    hosts(&hosts_file, &["127.0.0.2", "127.0.0.3"]);
    let metrics_port = free_port();
    let proxy = Proxy::start_with_hosts(
        &format!(
            "metrics: {{ listen: \"127.0.0.1:{metrics_port}\" }}
upstreams:
  app:
    resolve_interval: {}ms
    health_check: {{ type: http, path: /health, interval: 200ms, timeout: 200ms }}
    servers: [ {{ addr: \"app.test:{port}\", id: app }} ]
{ROUTE_ALL}",
            INTERVAL.as_millis()
        ),
        &hosts_file,
    );
    let id = |ip: &str| format!("app-{ip}");
    let seen = answers(&proxy, 4).await;
    assert_eq!(
        seen,
        [
            id("127.0.0.2"),
            id("127.0.0.3"),
            id("127.0.0.2"),
            id("127.0.0.3")
        ],
        "one server per address, round robin"
    );
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(
        common::header(&resp, "x-served-by"),
        format!("127.0.0.2:{port}"),
        "X-Served-By is the address, as nginx's $upstream_addr"
    );

    // Steady traffic through both changes: not one request may fail.
    let load = steady_load(proxy.url("/"), 4, 150, Duration::from_millis(10));
    let limit = INTERVAL + Duration::from_millis(1500);
    hosts(&hosts_file, &["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    let joined = until_served_by(
        &proxy,
        &[&id("127.0.0.2"), &id("127.0.0.3"), &id("127.0.0.4")],
        limit,
    )
    .await;
    hosts(&hosts_file, &["127.0.0.3", "127.0.0.4"]);
    let left = until_served_by(&proxy, &[&id("127.0.0.3"), &id("127.0.0.4")], limit).await;
    let totals = load_totals(load).await;
    assert!(
        totals.keys().all(|k| k.starts_with("app-127.0.0.")),
        "failed requests during the changes: {totals:?}"
    );
    eprintln!("joined after {joined:?}, left after {left:?}: {totals:?}");

    left_and_stayed_are_shown(metrics_port, port).await;
    drop(backends);
}

/// After 127.0.0.2 left app.test and 127.0.0.3 and .4 stayed: metrics and /status name each
/// address, and the one that left is gone from both.
async fn left_and_stayed_are_shown(metrics_port: u16, port: u16) {
    let id = |ip: &str| format!("app-{ip}");
    let up = |ip: &str| format!("edgeproxy_backend_up{{backend=\"{ip}:{port}\",upstream=\"app\"}}");
    assert_eq!(metric(metrics_port, &up("127.0.0.4")).await, Some(1.0));
    assert_eq!(metric(metrics_port, &up("127.0.0.2")).await, None);
    let answered = |ip: &str| {
        format!("edgeproxy_requests_total{{backend=\"{ip}:{port}\",code=\"200\",route=\"/\",upstream=\"app\"}}")
    };
    assert!(metric(metrics_port, &answered("127.0.0.4")).await.is_some());
    assert_eq!(
        metric(metrics_port, &answered("127.0.0.2")).await,
        None,
        "the series of an address that left are dropped"
    );
    let status = get_json(&format!("http://127.0.0.1:{metrics_port}/status")).await;
    let servers = status["upstreams"][0]["servers"].as_array().unwrap();
    let names: Vec<&str> = servers
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [format!("127.0.0.3:{port}"), format!("127.0.0.4:{port}")]
    );
    assert!(servers
        .iter()
        .all(|s| s["addr"] == format!("app.test:{port}")));
    assert_eq!(servers[1]["instance_id"], id("127.0.0.4"));
}

#[tokio::test]
async fn a_name_that_stops_resolving_keeps_its_servers() {
    let port = free_port();
    let _a = Backend::start_at("127.0.0.2", port, "a", &[]);
    let dir = tempfile::tempdir().unwrap();
    let hosts_file = dir.path().join("hosts");
    hosts(&hosts_file, &["127.0.0.2"]);
    let proxy = Proxy::start_with_hosts(
        &format!(
            "upstreams:\n  app:\n    resolve_interval: 200ms\n    servers: [ {{ addr: \"app.test:{port}\", id: app }} ]\n{ROUTE_ALL}"
        ),
        &hosts_file,
    );
    assert_eq!(
        answers(&proxy, 2).await,
        ["app", "app"],
        "one address: the entry's id"
    );
    hosts(&hosts_file, &[]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(answers(&proxy, 3).await, ["app", "app", "app"]);
    let log = proxy.log();
    let warned = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("app.test") && l.contains("keeping"))
        .count();
    assert_eq!(
        warned, 1,
        "one WARN for a lasting fault, not one per lookup:\n{log}"
    );
}

/// Sends `n` requests one after another and counts them by instance.
async fn one_at_a_time(proxy: &Proxy, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for id in answers(proxy, n).await {
        *counts.entry(id).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn least_time_sends_one_client_to_the_fast_server_and_follows_a_change() {
    let fast = Backend::start("fast");
    let slow_port = free_port();
    let slow = Backend::start_on(slow_port, "slow", &["--delay", "40ms"]);
    let metrics_port = free_port();
    let proxy = Proxy::start(&format!(
        "metrics: {{ listen: \"127.0.0.1:{metrics_port}\" }}
upstreams:
  app:
    balance: least_time
    servers:
      - {{ addr: \"{}\", id: fast, max_fails: 0 }}
      - {{ addr: \"127.0.0.1:{slow_port}\", id: slow, max_fails: 0 }}
{ROUTE_ALL}",
        fast.addr()
    ));
    let counts = one_at_a_time(&proxy, 300).await;
    let to_fast = counts.get("fast").copied().unwrap_or(0);
    assert!(to_fast >= 255, "≥ 85% to the fast server: {counts:?}");
    let ewma = format!(
        "edgeproxy_backend_response_time_ewma_seconds{{backend=\"127.0.0.1:{slow_port}\",upstream=\"app\"}}"
    );
    let slow_estimate = metric(metrics_port, &ewma).await;
    assert!(slow_estimate.is_some_and(|s| s > 0.0), "{slow_estimate:?}");

    // The slow server turns fast: it wins its share back within 5 s.
    drop(slow);
    let _now_fast = Backend::start_on(slow_port, "slow", &[]);
    let turned = Instant::now();
    loop {
        let window = one_at_a_time(&proxy, 100).await;
        let back = window.get("slow").copied().unwrap_or(0);
        if back >= 25 {
            break;
        }
        assert!(
            turned.elapsed() < Duration::from_secs(5),
            "the server that got fast has {back} of 100 after {:?}",
            turned.elapsed()
        );
    }
    eprintln!("share back after {:?}", turned.elapsed());
}

/// A backend that serves one request at a time, each taking `ms`.
fn serial_backend(ms: u32, id: &str) -> (u16, ChildGuard) {
    let port = free_port();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/common/serial_backend.py"
    );
    let child = std::process::Command::new("python3")
        .args([script, &port.to_string(), &ms.to_string(), id])
        .spawn()
        .expect("python3 runs");
    let mut child = ChildGuard(child);
    common::wait_ready(&mut child, port, "/", Some(200), "serial backend");
    (port, child)
}

#[tokio::test]
async fn least_time_under_concurrency_splits_by_capacity() {
    // 500 and 166 requests a second: a 3:1 capacity.
    let (fast, _f) = serial_backend(2, "fast");
    let (slow, _s) = serial_backend(6, "slow");
    let proxy = Proxy::start(&format!(
        "upstreams:
  app:
    balance: least_time
    servers:
      - {{ addr: \"127.0.0.1:{fast}\", id: fast, max_fails: 0 }}
      - {{ addr: \"127.0.0.1:{slow}\", id: slow, max_fails: 0 }}
{ROUTE_ALL}"
    ));
    let totals = load_totals(steady_load(proxy.url("/"), 32, 40, Duration::ZERO)).await;
    let to_fast = totals.get("fast").copied().unwrap_or(0) as f64;
    let all: usize = totals.values().sum();
    assert_eq!(all, 32 * 40);
    let share = to_fast / all as f64;
    eprintln!("fast share {share:.2}: {totals:?}");
    assert!(
        (0.62..=0.88).contains(&share),
        "fast share {share:.2} (capacity 0.75, round robin 0.5): {totals:?}"
    );
}
