//! Client limits: header and body timeouts, connection limits overall and per address.

mod common;

use common::{client, free_port, header, metric, raw_status, upstream, Backend, Proxy};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const ROUTE_ALL: &str = "  - { path: /, upstream: app }\n";

/// A proxy with these `server:` keys and `routes:` entries in front of `backend`, and its
/// metrics port.
fn proxy_with(server_keys: &str, backend: &Backend, routes: &str) -> (Proxy, u16) {
    let metrics = free_port();
    let proxy = Proxy::start_with(
        server_keys,
        &format!(
            "metrics: {{ listen: \"127.0.0.1:{metrics}\" }}\n{}routes:\n{routes}",
            upstream(&[backend], &[1])
        ),
    );
    (proxy, metrics)
}

fn proxy(server_keys: &str, backend: &Backend) -> (Proxy, u16) {
    proxy_with(server_keys, backend, ROUTE_ALL)
}

async fn connect_from(source: [u8; 4], port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(IpAddr::from(source), 0))
        .unwrap();
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}

/// Everything the proxy sends until it closes the connection (at most 10 s).
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// One request on an open connection; its status.
async fn request_on(stream: &mut TcpStream) -> Option<u16> {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .ok()?;
    let mut buf = vec![0u8; 4096];
    let read = stream.read(&mut buf);
    let n = tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .ok()?
        .ok()?;
    raw_status(&String::from_utf8_lossy(&buf[..n]))
}

#[tokio::test]
async fn a_header_sent_too_slowly_gets_408_and_the_connection_closes() {
    let backend = Backend::start("1");
    let (proxy, metrics) = proxy("  header_timeout: 1s", &backend);
    let mut slow = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    let started = Instant::now();
    // One byte every 200 ms: each read is quick, the header never completes in time.
    for byte in b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: 1234567890" {
        if slow.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let answer = read_to_close(&mut slow).await;
    assert_eq!(raw_status(&answer), Some(408), "{answer:?}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "cut after {elapsed:?}"
    );
    assert_eq!(
        metric(metrics, "edgeproxy_limited_total{limit=\"header_timeout\"}").await,
        Some(1.0)
    );

    // A connection that never sends anything is answered and closed after the same time.
    let mut silent = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    let started = Instant::now();
    let answer = read_to_close(&mut silent).await;
    let elapsed = started.elapsed();
    assert_eq!(raw_status(&answer), Some(408), "{answer:?}");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "cut after {elapsed:?}"
    );
    assert_eq!(
        metric(metrics, "edgeproxy_limited_total{limit=\"header_timeout\"}").await,
        Some(2.0)
    );

    // A client's slowness is not the proxy's error: no error-log line a client can repeat.
    assert!(
        !proxy.log().contains("while reading request headers"),
        "{}",
        proxy.log()
    );

    // Keep-alive idleness is not a slow header: the deadline starts at the next byte.
    let mut kept = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    assert_eq!(request_on(&mut kept).await, Some(200));
    // Idle for longer than header_timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(request_on(&mut kept).await, Some(200));
}

#[tokio::test]
async fn a_body_that_stalls_gets_408() {
    let backend = Backend::start("1");
    let (proxy, _) = proxy("  body_timeout: 1s", &backend);
    let mut stream = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .unwrap();
    let started = Instant::now();
    let answer = read_to_close(&mut stream).await;
    assert_eq!(raw_status(&answer), Some(408), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn beyond_max_connections_new_clients_get_503_until_some_leave() {
    let backend = Backend::start("1");
    let (proxy, metrics) = proxy(
        "  max_connections: 20\n  when_full: reject\n  header_timeout: 30s",
        &backend,
    );
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
        assert_eq!(request_on(&mut stream).await, Some(200));
        held.push(stream);
    }
    let mut extra = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    let answer = read_to_close(&mut extra).await;
    assert_eq!(raw_status(&answer), Some(503), "{answer:?}");
    assert!(answer.contains("Retry-After: 1"), "{answer:?}");
    assert_eq!(
        metric(
            metrics,
            "edgeproxy_limited_total{limit=\"max_connections\"}"
        )
        .await,
        Some(1.0)
    );
    held.truncate(15);
    // The proxy sees the closes a moment later.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut stream = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
        if request_on(&mut stream).await == Some(200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "closed connections were not released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn one_address_cannot_take_more_than_its_share() {
    let backend = Backend::start("1");
    let (proxy, metrics) = proxy("  max_connections_per_ip: 3", &backend);
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = connect_from([127, 0, 0, 2], proxy.port).await;
        assert_eq!(request_on(&mut stream).await, Some(200));
        held.push(stream);
    }
    let mut fourth = connect_from([127, 0, 0, 2], proxy.port).await;
    let answer = read_to_close(&mut fourth).await;
    assert_eq!(raw_status(&answer), Some(503), "{answer:?}");
    let mut other = connect_from([127, 0, 0, 3], proxy.port).await;
    assert_eq!(request_on(&mut other).await, Some(200));
    assert_eq!(
        metric(
            metrics,
            "edgeproxy_limited_total{limit=\"max_connections_per_ip\"}"
        )
        .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn a_body_over_max_body_gets_413_whether_announced_or_chunked() {
    let backend = Backend::start("1");
    let (proxy, metrics) = proxy_with(
        "",
        &backend,
        "  - { path: /upload, upstream: app, max_body: 1KiB }\n  - { path: /, upstream: app }\n",
    );
    let http = client();
    let small = http
        .post(proxy.url("/upload"))
        .body(vec![b'x'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), 200);
    let announced = http
        .post(proxy.url("/upload"))
        .body(vec![b'x'; 1025])
        .send()
        .await
        .unwrap();
    assert_eq!(announced.status(), 413);
    assert!(announced
        .text()
        .await
        .unwrap()
        .contains("larger than 1024 bytes"));
    let chunks = futures_util::stream::iter(
        (0..4).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 512]))),
    );
    let chunked = http
        .post(proxy.url("/upload"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(chunked.status(), 413);
    assert_eq!(
        metric(metrics, "edgeproxy_limited_total{limit=\"max_body\"}").await,
        Some(2.0)
    );
    let resp = http.get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn the_open_file_limit_is_raised_to_the_hard_limit_and_a_short_one_is_warned_of() {
    let backend = Backend::start("1");
    let body = format!(
        "{}routes:\n  - {{ path: /, upstream: app }}\n",
        upstream(&[&backend], &[1])
    );
    let open_files = |proxy: &Proxy| {
        let limits =
            std::fs::read_to_string(format!("/proc/{}/limits", proxy.child.pid())).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .to_string();
        line.split_whitespace()
            .skip(3)
            .take(2)
            .map(String::from)
            .collect::<Vec<_>>()
    };
    // The default max_connections (16384) needs 2 * 16384 + 100 descriptors.
    let proxy = Proxy::start_with_fd_limits("", &body, 256, 2048);
    assert_eq!(open_files(&proxy), ["2048", "2048"]);
    assert!(
        proxy.log().contains(
            "the open-file limit is 2048, below the 49252 that server.max_connections (16384) needs"
        ),
        "{}",
        proxy.log()
    );
    drop(proxy);

    let proxy = Proxy::start_with_fd_limits("  max_connections: 500", &body, 256, 2048);
    assert_eq!(open_files(&proxy), ["2048", "2048"]);
    assert!(!proxy.log().contains("open-file limit"), "{}", proxy.log());
}

#[tokio::test]
async fn an_announced_body_over_max_body_reaches_no_backend() {
    let counting = common::RawBackend::start(true);
    let proxy = Proxy::start(&format!(
        "upstreams:\n  app: {{ servers: [ {{ addr: \"127.0.0.1:{}\" }} ] }}\nroutes:\n  - {{ path: /, upstream: app, max_body: 1KiB }}\n",
        counting.port
    ));
    let post = |size: usize| {
        client()
            .post(proxy.url("/upload"))
            .body(vec![b'x'; size])
            .send()
    };
    assert_eq!(post(4096).await.unwrap().status(), 413);
    assert_eq!(
        counting.requests(),
        0,
        "the refused request reached the backend"
    );
    assert_eq!(post(10).await.unwrap().status(), 200);
    assert_eq!(counting.requests(), 1);
}

#[tokio::test]
async fn a_rate_limited_route_answers_429_beyond_the_configured_rate() {
    let backend = Backend::start("1");
    let (proxy, metrics) = proxy_with(
        "",
        &backend,
        "  - { path: /, upstream: app, rate_limit: { requests_per_second: 5, burst: 5 } }\n",
    );
    let http = client();
    let started = Instant::now();
    // 50 requests a second for two seconds: the burst passes, then 5 a second. Each is sent at
    // its time, not after the answer before it, so that as many are sent on a slow machine.
    let requests: Vec<_> = (0..100u32)
        .map(|i| {
            let (http, url) = (http.clone(), proxy.url("/"));
            let at = tokio::time::Instant::from_std(started + Duration::from_millis(20) * i);
            tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                let resp = http.get(&url).send().await.unwrap();
                (resp.status().as_u16(), header(&resp, "retry-after"))
            })
        })
        .collect();
    let (mut passed, mut limited) = (0, 0);
    for request in requests {
        match request.await.unwrap() {
            (200, _) => passed += 1,
            (429, retry_after) => {
                assert_eq!(retry_after, "1");
                limited += 1;
            }
            (other, _) => panic!("status {other}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = 5.0 + 5.0 * elapsed;
    assert!(
        (passed as f64) <= allowed + 1.0 && (passed as f64) >= allowed - 2.0,
        "{passed} passed in {elapsed:.2} s, {allowed:.1} allowed"
    );
    assert!(limited > 40, "{limited} limited");
    assert_eq!(
        metric(metrics, "edgeproxy_limited_total{limit=\"rate_limit\"}").await,
        Some(limited as f64)
    );
    // A 429 leaves the connection open: the next request on it is answered.
    let mut kept = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    let mut statuses = Vec::new();
    while !statuses.contains(&Some(429)) && statuses.len() < 20 {
        statuses.push(request_on(&mut kept).await);
    }
    assert_eq!(statuses.last(), Some(&Some(429)), "{statuses:?}");
    let next = request_on(&mut kept).await;
    assert!(
        matches!(next, Some(200 | 429)),
        "the connection was closed after a 429: {next:?}"
    );

    // Another client has its own bucket.
    let other = reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, 2]))
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let resp = other.get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_keepalive_timeout() {
    let backend = Backend::start("1");
    let (proxy, _) = proxy("  keepalive_timeout: 1s", &backend);
    let mut stream = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    assert_eq!(request_on(&mut stream).await, Some(200));
    let started = Instant::now();
    let rest = read_to_close(&mut stream).await;
    assert!(rest.is_empty(), "{rest:?}");
    let idle = started.elapsed();
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(3),
        "{idle:?}"
    );
}

#[tokio::test]
async fn a_reload_keeps_the_buckets_of_an_unchanged_rate_limited_route() {
    let backend = Backend::start("1");
    let metrics = free_port();
    // One request per 10 s after a burst of 3: a kept bucket stays empty across the test.
    let config = |rate: &str, extra_route: &str| {
        format!(
            "metrics: {{ listen: \"127.0.0.1:{metrics}\" }}\n{}routes:\n{extra_route}  - {{ path: /, upstream: app, rate_limit: {{ requests_per_second: {rate}, burst: 3 }} }}\n",
            upstream(&[&backend], &[1])
        )
    };
    let proxy = Proxy::start(&config("0.1", ""));
    let http = client();
    let status = || async { http.get(proxy.url("/")).send().await.unwrap().status() };
    for _ in 0..3 {
        assert_eq!(status().await, 200);
    }
    assert_eq!(status().await, 429);

    // Another route added, this one unchanged: its bucket is still empty.
    assert!(proxy.reload(&config("0.1", "  - { path: /other, upstream: app }\n")));
    assert_eq!(status().await, 429);

    // A changed rate is a new limit, with a full bucket.
    assert!(proxy.reload(&config("0.2", "")));
    for _ in 0..3 {
        assert_eq!(status().await, 200);
    }
    assert_eq!(status().await, 429);
}

/// 150 clients at once to a proxy whose open-file limit allows 50 connections: with `when_full:
/// queue` (the default) the others wait in the listen backlog and every request succeeds;
/// with `reject` they get 503. No client ever gets a 502 for want of a descriptor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_open_file_limit_clients_wait_or_get_503_never_502() {
    common::raise_fd_limit(2000);
    let backend = Backend::start("1");
    let body = format!(
        "{}routes:\n  - {{ path: /, upstream: app }}\n",
        upstream(&[&backend], &[1])
    );
    for when_full in ["queue", "reject"] {
        // (250 − 100 reserved) / 3: a client, a backend and a pooled descriptor for each.
        let proxy =
            Proxy::start_with_fd_limits(&format!("  when_full: {when_full}"), &body, 250, 250);
        assert!(
            proxy
                .log()
                .contains("serving at most 50 connections at once"),
            "{}",
            proxy.log()
        );
        let http = client();
        let requests: Vec<_> = (0..150)
            .map(|_| {
                let (http, url) = (http.clone(), proxy.url("/slow?ms=300"));
                tokio::spawn(async move { http.get(url).send().await.map(|r| r.status().as_u16()) })
            })
            .collect();
        // A refused connection's 503 is written before the request: the client may read it as
        // the answer, or fail the request on a message it did not ask for (0 here).
        let mut statuses = Vec::new();
        for request in requests {
            statuses.push(request.await.unwrap().unwrap_or(0));
        }
        let count = |code| statuses.iter().filter(|s| **s == code).count();
        assert_eq!(count(502), 0, "{when_full}: {statuses:?}");
        match when_full {
            "queue" => assert_eq!(count(200), 150, "{when_full}: {statuses:?}"),
            _ => assert!(
                count(200) < 150 && count(200) + count(503) + count(0) == 150,
                "{when_full}: {statuses:?}"
            ),
        }
    }
}
