//! 10,000 client connections held open at once, and normal traffic still served.

mod common;

use common::{client, free_port, metric, raise_fd_limit, upstream, Backend, Proxy};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

const HELD: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_open_connections_leave_room_for_traffic() {
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
