//! The four `balance:` modes through the real proxy, proven by the distribution of requests.

mod common;

use common::{
    client, free_port, instance, metric, up_gauge, wait_metric, Backend, Proxy, APP_RETRIES,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

fn config(balance: &str, backends: &[(&Backend, u16)], metrics_port: u16) -> String {
    common::metrics_and_app(metrics_port, balance, backends)
}

/// Sends `clients × per_client` requests to `path`, `clients` at a time, and counts the
/// answers per instance.
async fn spread(
    proxy: &Proxy,
    path: &str,
    clients: usize,
    per_client: usize,
) -> BTreeMap<String, usize> {
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let url = proxy.url(path);
            tokio::spawn(async move {
                let http = client();
                let mut counts = BTreeMap::<String, usize>::new();
                for _ in 0..per_client {
                    let resp = http.get(&url).send().await.unwrap();
                    assert_eq!(resp.status(), 200);
                    *counts.entry(instance(&resp)).or_default() += 1;
                }
                counts
            })
        })
        .collect();
    let mut totals = BTreeMap::new();
    for task in tasks {
        for (id, n) in task.await.unwrap() {
            *totals.entry(id).or_default() += n;
        }
    }
    totals
}

fn assert_shares(totals: &BTreeMap<String, usize>, expected: &[(&str, f64)], tolerance: f64) {
    let total: usize = totals.values().sum();
    for (id, share) in expected {
        let got = totals.get(*id).copied().unwrap_or(0) as f64 / total as f64;
        assert!(
            (got - share).abs() <= tolerance,
            "instance {id}: {:.1}% instead of {:.1}% ± {:.0} ({totals:?})",
            got * 100.0,
            share * 100.0,
            tolerance * 100.0
        );
    }
}

const ONE_TWO_THREE: [(&str, f64); 3] = [("1", 1.0 / 6.0), ("2", 2.0 / 6.0), ("3", 3.0 / 6.0)];

/// 6,000 requests from 8 concurrent clients over weights 1:2:3 land within `tolerance` of
/// 1/6, 2/6 and 3/6.
async fn assert_splits_one_two_three(balance: &str, tolerance: f64) {
    let (b1, b2, b3) = (
        Backend::start("1"),
        Backend::start("2"),
        Backend::start("3"),
    );
    let proxy = Proxy::start(&config(
        balance,
        &[(&b1, 1), (&b2, 2), (&b3, 3)],
        free_port(),
    ));
    let totals = spread(&proxy, "/", 8, 750).await;
    assert_eq!(totals.values().sum::<usize>(), 6000);
    assert_shares(&totals, &ONE_TWO_THREE, tolerance);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_splits_6000_requests_1_2_3_within_2_points() {
    assert_splits_one_two_three("round_robin", 0.02).await;
}

#[tokio::test]
async fn round_robin_interleaves_weights_like_nginx() {
    let (b1, b2, b3) = (
        Backend::start("1"),
        Backend::start("2"),
        Backend::start("3"),
    );
    let proxy = Proxy::start(&config(
        "round_robin",
        &[(&b1, 5), (&b2, 1), (&b3, 1)],
        free_port(),
    ));
    let http = client();
    let mut seen = String::new();
    for _ in 0..14 {
        seen.push_str(&instance(&http.get(proxy.url("/")).send().await.unwrap()));
    }
    assert_eq!(
        seen, "11213111121311",
        "5:1:1 must interleave, not run five in a row"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_splits_6000_requests_1_2_3_within_3_points() {
    assert_splits_one_two_three("random", 0.03).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_sends_most_traffic_to_the_fast_server() {
    let slow = Backend::start_with("slow", &["--delay", "600ms"]);
    let fast = Backend::start_with("fast", &["--delay", "5ms", "--threads", "2"]);
    let proxy = Proxy::start(&config(
        "least_conn",
        &[(&slow, 1), (&fast, 1)],
        free_port(),
    ));
    let totals = spread(&proxy, "/", 20, 40).await;
    let total: usize = totals.values().sum();
    let fast_share = totals.get("fast").copied().unwrap_or(0) as f64 / total as f64;
    assert!(
        fast_share >= 0.85,
        "fast server got {:.1}% ({totals:?})",
        fast_share * 100.0
    );
    assert!(
        totals.contains_key("slow"),
        "the slow server still gets its turn: {totals:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_splits_evenly_between_equal_servers() {
    let a = Backend::start_with("a", &["--delay", "5ms"]);
    let b = Backend::start_with("b", &["--delay", "5ms"]);
    let proxy = Proxy::start(&config("least_conn", &[(&a, 1), (&b, 1)], free_port()));
    let totals = spread(&proxy, "/", 20, 40).await;
    assert_shares(&totals, &[("a", 0.5), ("b", 0.5)], 0.10);
}

/// A client whose connections come from `127.0.0.N`.
fn client_from(n: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, n]))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Which instance answers each of the clients 127.0.0.2 ..= 127.0.0.31.
async fn owners(proxy: &Proxy) -> HashMap<u8, String> {
    let mut owners = HashMap::new();
    for n in 2..32 {
        let resp = client_from(n).get(proxy.url("/")).send().await.unwrap();
        owners.insert(n, instance(&resp));
    }
    owners
}

#[tokio::test]
async fn ip_hash_keeps_clients_on_their_server_and_moves_only_a_removed_servers_clients() {
    let (b1, b2, b3) = (
        Backend::start("1"),
        Backend::start("2"),
        Backend::start("3"),
    );
    let proxy = Proxy::start(&config(
        "ip_hash",
        &[(&b1, 1), (&b2, 1), (&b3, 1)],
        free_port(),
    ));

    let one = client_from(7);
    let first = instance(&one.get(proxy.url("/")).send().await.unwrap());
    for _ in 0..100 {
        assert_eq!(
            instance(&one.get(proxy.url("/")).send().await.unwrap()),
            first
        );
    }

    let before = owners(&proxy).await;
    let used: HashSet<&String> = before.values().collect();
    assert_eq!(
        used.len(),
        3,
        "30 clients should reach all 3 servers: {before:?}"
    );
    drop(proxy);

    // The same upstream without server 2.
    let proxy = Proxy::start(&config("ip_hash", &[(&b1, 1), (&b3, 1)], free_port()));
    let after = owners(&proxy).await;
    for (client, owner) in &before {
        if owner != "2" {
            assert_eq!(
                &after[client], owner,
                "client 127.0.0.{client} moved off server {owner}"
            );
        } else {
            assert_ne!(&after[client], "2");
        }
    }
}

#[tokio::test]
async fn ip_hash_can_hash_a_header_instead() {
    let (b1, b2, b3) = (
        Backend::start("1"),
        Backend::start("2"),
        Backend::start("3"),
    );
    let proxy = Proxy::start(
        &config("ip_hash", &[(&b1, 1), (&b2, 1), (&b3, 1)], free_port()).replace(
            "balance: ip_hash",
            "balance: ip_hash\n    hash_key: header:X-User-Id",
        ),
    );
    let http = client();
    let mut owners = HashMap::new();
    for user in 0..30 {
        let ask = || {
            http.get(proxy.url("/"))
                .header("X-User-Id", format!("user-{user}"))
                .send()
        };
        let owner = instance(&ask().await.unwrap());
        for _ in 0..3 {
            assert_eq!(instance(&ask().await.unwrap()), owner, "user-{user} moved");
        }
        owners.insert(user, owner);
    }
    let used: HashSet<&String> = owners.values().collect();
    assert_eq!(
        used.len(),
        3,
        "users all from one IP still spread: {owners:?}"
    );
}

#[tokio::test]
async fn every_mode_skips_a_server_its_checks_took_out() {
    let (b1, b2) = (Backend::start("1"), Backend::start("2"));
    let (dead, _dead_held) = common::dead_port();
    for balance in [
        "least_conn",
        "ip_hash",
        "random",
        "round_robin",
        "least_time",
    ] {
        let metrics_port = free_port();
        let hash_key = if balance == "ip_hash" {
            "    hash_key: header:X-User-Id\n"
        } else {
            ""
        };
        let proxy = Proxy::start(&format!(
            "metrics: {{ listen: \"127.0.0.1:{metrics_port}\" }}
upstreams:
  app:
    balance: {balance}
{hash_key}    health_check: {{ type: tcp, interval: 200ms, fall: 1 }}
    servers:
      - {{ addr: \"{}\", id: \"1\" }}
      - {{ addr: \"{}\", id: \"2\" }}
      - {{ addr: \"127.0.0.1:{dead}\", id: dead, max_fails: 0 }}
routes:
  - {{ path: /, upstream: app }}
",
            b1.addr(),
            b2.addr()
        ));
        let down = up_gauge(&format!("127.0.0.1:{dead}"));
        wait_metric(metrics_port, &down, 0.0, Duration::from_secs(5)).await;
        // Passive checks are off for it: only the health checks keep requests away. For
        // ip_hash, 30 users, some of whom hash to the dead server.
        for user in 0..30 {
            let resp = client()
                .get(proxy.url("/"))
                .header("X-User-Id", format!("user-{user}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{balance}: request {user}");
        }
        assert_eq!(
            metric(metrics_port, APP_RETRIES).await,
            Some(0.0),
            "{balance} picked the dead server and retried"
        );
    }
}

#[tokio::test]
async fn ip_hash_on_a_cookie_keeps_each_session_and_honours_weights() {
    let (b1, b2) = (Backend::start("1"), Backend::start("2"));
    let proxy = Proxy::start(
        &config("ip_hash", &[(&b1, 1), (&b2, 2)], free_port()).replace(
            "balance: ip_hash",
            "balance: ip_hash\n    hash_key: cookie:session",
        ),
    );
    let http = client();
    let mut on_two = 0;
    let sessions = 300;
    for user in 0..sessions {
        let ask = || {
            http.get(proxy.url("/"))
                .header("cookie", format!("theme=dark; session=s{user}"))
                .send()
        };
        let owner = instance(&ask().await.unwrap());
        assert_eq!(
            instance(&ask().await.unwrap()),
            owner,
            "session s{user} moved"
        );
        if owner == "2" {
            on_two += 1;
        }
    }
    // Weight 2 of 3 in all: two thirds of the sessions, give or take the hash's spread.
    let share = f64::from(on_two) / f64::from(sessions);
    assert!(
        (0.56..=0.78).contains(&share),
        "server 2 got {share:.2} of the sessions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inflight_counts_return_to_zero_after_aborted_and_failed_requests() {
    let slow = Backend::start("slow");
    let (dead_port, _dead_port_held) = common::dead_port();
    let metrics_port = free_port();
    let proxy = Proxy::start(&format!(
        "metrics: {{ listen: \"127.0.0.1:{metrics_port}\" }}
upstreams:
  app: {{ balance: least_conn, servers: [ {{ addr: \"{}\" }} ] }}
  dead: {{ balance: least_conn, servers: [ {{ addr: \"127.0.0.1:{dead_port}\" }} ] }}
routes:
  - {{ path: /, upstream: app }}
  - {{ path: /dead/, upstream: dead }}
",
        slow.addr()
    ));
    let gauge = format!(
        "edgeproxy_backend_inflight{{backend=\"{}\",upstream=\"app\"}}",
        slow.addr()
    );
    let dead_gauge = format!(
        "edgeproxy_backend_inflight{{backend=\"127.0.0.1:{dead_port}\",upstream=\"dead\"}}"
    );

    // 20 requests that the client abandons, 20 slow ones that complete, 20 that fail at once,
    // 5 that the backend answers with 500.
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..65 {
        let (url, abort) = match i {
            0..20 => (proxy.url("/slow?ms=6000"), true),
            20..40 => (proxy.url("/slow?ms=1500"), false),
            40..60 => (proxy.url("/dead/x"), false),
            _ => (proxy.url("/status/500"), false),
        };
        tasks.push(tokio::spawn(async move {
            let request = client().get(url).send();
            if abort {
                let _ = tokio::time::timeout(Duration::from_millis(300), request).await;
            } else {
                let _ = request.await;
            }
        }));
    }
    // The 20 requests that complete stay in flight for 1.5 s: the gauge must see them.
    let mut busy = 0.0;
    let deadline = std::time::Instant::now() + Duration::from_millis(1200);
    while busy < 20.0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        busy = metric(metrics_port, &gauge).await.unwrap();
    }
    assert!(
        busy >= 20.0,
        "the gauge should see the requests in flight, saw {busy}"
    );
    for task in tasks {
        task.await.unwrap();
    }

    // The abandoned requests' counts go when their clients leave: well before the backend
    // would have answered them, 6 s after they were sent.
    let deadline = started + Duration::from_secs(5);
    loop {
        let app = metric(metrics_port, &gauge).await.unwrap();
        let dead = metric(metrics_port, &dead_gauge).await.unwrap();
        if app == 0.0 && dead == 0.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still in flight {:?} after the requests were sent: app {app}, dead {dead}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn ip_hash_behind_a_trusted_proxy_hashes_the_forwarded_client() {
    let (b1, b2, b3) = (
        Backend::start("1"),
        Backend::start("2"),
        Backend::start("3"),
    );
    let proxy = Proxy::start_with(
        "  trusted_proxies: [127.0.0.1/32]",
        &config("ip_hash", &[(&b1, 1), (&b2, 1), (&b3, 1)], free_port()),
    );
    let http = client();
    let answer = |client: String| {
        let request = http
            .get(proxy.url("/"))
            .header("X-Forwarded-For", client)
            .send();
        async move { instance(&request.await.unwrap()) }
    };
    // Every request comes from the same peer, 127.0.0.1, which is trusted: were the peer
    // hashed, all 30 clients would share one server.
    let mut owner = BTreeMap::new();
    for n in 1..=30 {
        owner.insert(n, answer(format!("10.0.0.{n}")).await);
    }
    let servers: HashSet<_> = owner.values().collect();
    assert_eq!(servers.len(), 3, "{owner:?}");
    for (n, server) in &owner {
        assert_eq!(&answer(format!("10.0.0.{n}")).await, server, "client {n}");
    }
}
