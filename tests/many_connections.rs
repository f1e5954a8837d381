//! Many client connections at once: 6,000 held open with normal traffic still served, and
//! bursts of concurrent requests that keep their upstream connections for the next burst.

mod common;

use common::{client, free_port, metric, raise_fd_limit, upstream, Backend, Proxy};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Within what a proxy whose open-file limit is 20,000 (this machine's hard limit, which the
/// tests cannot raise) serves at once, a connection for every three descriptors: 6,633.
const HELD: usize = 6_000;

/// More concurrent requests than the idle upstream connections edgeproxy used to keep: 1,024
/// per thread, and the test proxies run two (Pingora's own default is 128 per thread).
const BURST: usize = 2_400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_thousand_open_connections_leave_room_for_traffic() {
    raise_fd_limit(HELD as u64 + 1000);
    let backend = Backend::start("1");
    let metrics = free_port();
    let proxy = Proxy::start_with(
        "  header_timeout: 60s",
        &format!(
            "metrics: {{ listen: \"127.0.0.1:{metrics}\" }}\n{}routes:\n  - {{ path: /, upstream: app }}\n",
            upstream(&[&backend], &[1])
        ),
    );
    let rss_before = proxy.peak_rss();
    let mut held = Vec::with_capacity(HELD);
    // In batches, so the listen backlog (somaxconn) is never the limit being tested.
    while held.len() < HELD {
        let batch = (HELD - held.len()).min(500);
        let connects = (0..batch).map(|_| TcpStream::connect(("127.0.0.1", proxy.port)));
        for stream in futures_util::future::join_all(connects).await {
            held.push(stream.expect("connect"));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let open = metric(metrics, "edgeproxy_downstream_connections").await;
        if open >= Some(HELD as f64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the proxy holds {open:?} connections"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let http = client();
    for _ in 0..200 {
        let resp = http.get(proxy.url("/")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    let per_connection = proxy.peak_rss().saturating_sub(rss_before) / HELD as u64;
    assert!(
        per_connection < 64 << 10,
        "each held connection took {} KiB",
        per_connection >> 10
    );
    drop(held);
    let resp = http.get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_requests_leaves_its_upstream_connections_pooled() {
    // Each request holds a client connection and an upstream one in the proxy.
    raise_fd_limit(BURST as u64 * 4 + 1000);
    // Slow answers, so that every request of a burst needs an upstream connection of its own:
    // 4 s, because a shared machine at half speed took longer than 2 s to send a burst, whose
    // first requests were then answered, and their connections reused, before its last left.
    let backend = Backend::start_with("1", &["--delay", "4s"]);
    let proxy = Proxy::start(&format!(
        "{}routes:\n  - {{ path: /, upstream: app }}\n",
        upstream(&[&backend], &[1])
    ));
    let http = client();
    // The upstream connections a burst used, as the backend saw them (address:port).
    let burst = || async {
        let requests = (0..BURST).map(|_| async {
            let resp = http.get(proxy.url("/echo")).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let echo: serde_json::Value = resp.json().await.unwrap();
            echo["client"].as_str().unwrap().to_string()
        });
        futures_util::future::join_all(requests)
            .await
            .into_iter()
            .collect::<HashSet<String>>()
    };
    let first = burst().await;
    assert!(
        first.len() > 2_048,
        "the first burst overlapped less than meant: {} upstream connections",
        first.len()
    );
    // Pingora pools an upstream connection once its client has the whole response, a moment
    // after the client has it, and nothing shows when it has: there is nothing to poll. A
    // connection pooled later than this only makes the second burst open more of them, which
    // fails the test; it cannot make it pass.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = burst().await;
    let opened = second.difference(&first).count();
    assert!(
        opened <= BURST / 20,
        "{opened} of {BURST} requests in the second burst opened a new upstream connection"
    );
    // Every request was answered: nothing an operator must act on happened.
    let log = proxy.log();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(
        errors.is_empty(),
        "a burst that failed nothing logged errors: {errors:?}"
    );
}
