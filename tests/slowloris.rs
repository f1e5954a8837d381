//! Slowloris: 2,000 clients each sending one header byte a second must not slow the others,
//! must not make the proxy's memory grow without bound, and are cut at `header_timeout`.

mod common;

use common::{client, free_port, metric, raise_fd_limit, upstream, Backend, Proxy};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const SLOW_CLIENTS: usize = 2000;
/// Long enough for the three loaded batches to end before the slow clients are cut, on a
/// shared machine at half speed (3,000 sequential requests in a debug build).
const HEADER_TIMEOUT_S: u64 = 25;

/// The 99th percentile of `n` sequential requests' latencies.
async fn p99(http: &reqwest::Client, url: &str, n: usize) -> Duration {
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let resp = http.get(url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
        latencies.push(started.elapsed());
    }
    latencies.sort();
    latencies[n * 99 / 100]
}

/// The lowest p99 of three batches of 1,000 requests. A p99 of 1,000 is its 10 slowest
/// requests, so one scheduling stall of the shared machine (seen once in CI: 2.3 ms against
/// 0.9 ms idle) can decide it; a cost the slow clients impose shows in every batch.
async fn steady_p99(http: &reqwest::Client, url: &str) -> Duration {
    steady_p99_until(http, url, None).await
}

/// [`steady_p99`], but with no round started after `deadline` once one is done: on a slow
/// machine three rounds may not fit in the time the slow clients are held open.
async fn steady_p99_until(
    http: &reqwest::Client,
    url: &str,
    deadline: Option<Instant>,
) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..3 {
        best = best.min(p99(http, url, 1000).await);
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    best
}

/// Opens the slow clients, each with the first byte of a request, and drips one more byte a
/// second to each, spread over the second, from a thread of its own so that the clients
/// measured share nothing with it but the machine. Returns when they were all open, and the
/// thread, which stops shortly before the header deadline and hands the connections back.
fn start_slow_clients(port: u16) -> (Instant, std::thread::JoinHandle<Vec<std::net::TcpStream>>) {
    let mut slow = Vec::with_capacity(SLOW_CLIENTS);
    for _ in 0..SLOW_CLIENTS {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(b"G").unwrap();
        slow.push(stream);
    }
    let opened = Instant::now();
    let header = b"ET / HTTP/1.1\r\nHost: a\r\nX-Slow: ".to_vec();
    let dripping = std::thread::spawn(move || {
        let mut sent = 0;
        loop {
            for chunk in slow.chunks_mut(SLOW_CLIENTS / 100) {
                for stream in chunk {
                    let byte = header.get(sent).copied().unwrap_or(b'a');
                    let _ = stream.write_all(&[byte]);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            sent += 1;
            if opened.elapsed() > Duration::from_secs(HEADER_TIMEOUT_S - 2) {
                return slow;
            }
        }
    });
    (opened, dripping)
}

/// How many of the slow clients got a 408.
fn answered_408(slow: Vec<std::net::TcpStream>) -> usize {
    let mut cut = 0;
    for mut stream in slow {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        if answer.starts_with(b"HTTP/1.1 408 ") {
            cut += 1;
        }
    }
    cut
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_senders_do_not_hurt_normal_clients() {
    raise_fd_limit(SLOW_CLIENTS as u64 + 500);
    let backend = Backend::start("1");
    let metrics = free_port();
    let proxy = Proxy::start_with(
        &format!("  header_timeout: {HEADER_TIMEOUT_S}s"),
        &format!(
            "metrics: {{ listen: \"127.0.0.1:{metrics}\" }}\n{}routes:\n  - {{ path: /, upstream: app }}\n",
            upstream(&[&backend], &[1])
        ),
    );
    let http = client();
    let url = proxy.url("/");
    p99(&http, &url, 100).await;
    let idle = steady_p99(&http, &url).await;
    let rss_before = proxy.peak_rss();

    let (opened, dripping) = start_slow_clients(proxy.port);
    // Every slow client accepted before the measurement starts.
    loop {
        let open = metric(metrics, "edgeproxy_downstream_connections").await;
        if open >= Some(SLOW_CLIENTS as f64) {
            break;
        }
        assert!(
            opened.elapsed() < Duration::from_secs(HEADER_TIMEOUT_S / 2),
            "open connections: {open:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A round takes a few seconds in a test build on a slow machine; none starts so late that
    // it could outlast the slow clients.
    let last_start = opened + Duration::from_secs(HEADER_TIMEOUT_S - 10);
    let loaded = steady_p99_until(&http, &url, Some(last_start)).await;
    assert!(
        opened.elapsed() < Duration::from_secs(HEADER_TIMEOUT_S - 2),
        "the measurement must end before the slow clients are cut"
    );

    // A connection costs the header being read and its futures: KiB, not MiB, so
    // max_connections bounds the total.
    let per_client = proxy.peak_rss().saturating_sub(rss_before) / SLOW_CLIENTS as u64;
    assert!(
        per_client < 64 << 10,
        "each slow client took {} KiB",
        per_client >> 10
    );

    // Every slow client is cut with 408 at the header deadline.
    let slow = tokio::task::spawn_blocking(move || dripping.join().unwrap())
        .await
        .unwrap();
    let cut = answered_408(slow);
    assert_eq!(cut, SLOW_CLIENTS);
    assert!(opened.elapsed() < Duration::from_secs(HEADER_TIMEOUT_S + 5));
    assert_eq!(
        metric(metrics, "edgeproxy_limited_total{limit=\"header_timeout\"}").await,
        Some(SLOW_CLIENTS as f64)
    );
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    // The idle p99 again, now that the slow clients are gone: a shared machine that slowed
    // down for the whole test (seen: idle p99s of 3 to 10 ms within minutes) is not a cost of
    // the slow clients, and the one before or the one after is the fair comparison. Within 3×
    // of it: on such a day the ratio ranged from 0.5 to 2.5 with nothing else changed, while a
    // slow client holding a worker up would cost the others hundreds of milliseconds.
    let idle_after = steady_p99(&http, &url).await;
    println!(
        "p99 idle {idle:?}, with {SLOW_CLIENTS} slow clients {loaded:?}, idle after {idle_after:?}"
    );
    assert!(
        loaded <= idle.max(idle_after) * 3,
        "p99 with {SLOW_CLIENTS} slow clients {loaded:?}, idle {idle:?} before and {idle_after:?} after"
    );
}
