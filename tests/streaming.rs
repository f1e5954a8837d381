//! Streaming through the proxy: Server-Sent Events, WebSocket, large bodies, compression.

mod common;

use common::{client, free_port, header, metric, wait_metric, Backend, Proxy};
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `app` over one backend with a 1 s read_timeout; `/events` is an SSE route, `/plain/` is
/// not, `/` compresses.
fn config(backend: &Backend, metrics_port: u16) -> String {
    format!(
        "metrics: {{ listen: \"127.0.0.1:{metrics_port}\" }}
upstreams:
  app:
    servers: [ {{ addr: \"{}\" }} ]
    read_timeout: 1s
routes:
  - {{ path: /events, upstream: app, sse: true }}
  - {{ path: /plain/, upstream: app }}
  - {{ path: /upload, upstream: app, max_body: none }}
  - {{ path: /, upstream: app, compress: true }}
",
        backend.addr()
    )
}

/// Reads an event stream; returns, per event, its `sent_ms` and the arrival time.
async fn read_events(resp: reqwest::Response) -> (Vec<(u64, u64)>, Option<reqwest::Error>) {
    let mut resp = resp;
    let mut events = Vec::new();
    let mut pending = String::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let arrived = now_ms();
                pending.push_str(std::str::from_utf8(&chunk).unwrap());
                while let Some(end) = pending.find("\n\n") {
                    let event: String = pending.drain(..end + 2).collect();
                    let data = event
                        .lines()
                        .find_map(|l| l.strip_prefix("data: "))
                        .unwrap();
                    let data: serde_json::Value = serde_json::from_str(data).unwrap();
                    events.push((data["sent_ms"].as_u64().unwrap(), arrived));
                }
            }
            Ok(None) => return (events, None),
            Err(e) => return (events, Some(e)),
        }
    }
}

/// GETs an event stream, which must be answered 200, and reads it to its end.
async fn stream_events(url: String) -> (Vec<(u64, u64)>, Option<reqwest::Error>) {
    let resp = client().get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    read_events(resp).await
}

#[tokio::test]
async fn sse_events_arrive_as_they_are_emitted() {
    let backend = Backend::start("1");
    let proxy = Proxy::start(&config(&backend, free_port()));
    let resp = client()
        .get(proxy.url("/events?interval_ms=400&count=8"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-accel-buffering"), "no");
    assert_eq!(
        header(&resp, "content-encoding"),
        "",
        "event streams are never compressed"
    );
    let (events, error) = read_events(resp).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(events.len(), 8);
    for (sent, arrived) in events {
        assert!(
            arrived.saturating_sub(sent) <= 50,
            "an event took {} ms",
            arrived - sent
        );
    }
}

#[tokio::test]
async fn an_idle_event_stream_outlives_read_timeout_only_on_an_sse_route() {
    let backend = Backend::start("1");
    let proxy = Proxy::start(&config(&backend, free_port()));
    let (events, error) = stream_events(proxy.url("/events?interval_ms=1500&count=3")).await;
    assert!(
        error.is_none() && events.len() == 3,
        "{} events, {error:?}",
        events.len()
    );

    // Silent for 1.5 s with a 1 s read_timeout: an ordinary route cuts the stream after its
    // first event, which the backend sends at once.
    let backend_b = Backend::start("2");
    let proxy_b = Proxy::start(&config(&backend_b, free_port()).replace("sse: true", "sse: false"));
    let (events, error) = stream_events(proxy_b.url("/events?interval_ms=1500&count=3")).await;
    assert!(
        events.len() == 1 && error.is_some(),
        "the stream was not cut after its first event: {} events, {error:?}",
        events.len()
    );
}

#[tokio::test]
async fn an_event_stream_silent_for_stream_idle_timeout_is_cut() {
    let backend = Backend::start("1");
    let proxy = Proxy::start(
        &config(&backend, free_port()).replace("sse: true", "sse: true, stream_idle_timeout: 2s"),
    );
    // Events every 600 ms for 3 s: never silent for 2 s, so never cut.
    let (events, error) = stream_events(proxy.url("/events?interval_ms=600&count=5")).await;
    assert!(
        events.len() == 5 && error.is_none(),
        "{} events, {error:?}",
        events.len()
    );

    // Silent for 3 s after its first event: cut after 2 s of silence.
    let started = Instant::now();
    let (events, error) = stream_events(proxy.url("/events?interval_ms=3000&count=2")).await;
    let elapsed = started.elapsed();
    assert!(
        events.len() == 1 && error.is_some(),
        "not cut after its first event: {} events, {error:?}",
        events.len()
    );
    assert!(
        elapsed >= Duration::from_millis(1800) && elapsed < Duration::from_millis(2900),
        "cut after {elapsed:?}"
    );
}

#[tokio::test]
async fn a_client_leaving_closes_the_backend_stream_and_releases_the_server() {
    let backend = Backend::start("1");
    let metrics_port = free_port();
    let proxy = Proxy::start(&config(&backend, metrics_port));
    let gauge = format!(
        "edgeproxy_backend_inflight{{backend=\"{}\",upstream=\"app\"}}",
        backend.addr()
    );
    let mut resp = client()
        .get(proxy.url("/events?interval_ms=200"))
        .send()
        .await
        .unwrap();
    resp.chunk().await.unwrap().unwrap();
    assert_eq!(
        metric(metrics_port, &gauge).await,
        Some(1.0),
        "a stream is in flight for its life"
    );
    drop(resp);
    let left = Instant::now();
    loop {
        if backend.log().contains("event stream closed by the client") {
            break;
        }
        assert!(
            left.elapsed() < Duration::from_secs(2),
            "backend never saw the client go"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The count goes when the proxy drops the request, which may be a moment after the
    // backend has seen its stream closed.
    wait_metric(metrics_port, &gauge, 0.0, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn compress_routes_compress_text_only() {
    let backend = Backend::start("1");
    let proxy = Proxy::start(&config(&backend, free_port()));
    let get = |path: &str| {
        client()
            .get(proxy.url(path))
            .header("accept-encoding", "gzip")
            .send()
    };
    let resp = get("/echo").await.unwrap();
    assert_eq!(header(&resp, "content-encoding"), "gzip");
    let resp = get("/bytes?n=4096").await.unwrap();
    assert_eq!(
        header(&resp, "content-encoding"),
        "",
        "octet-stream is not compressed"
    );
    let resp = get("/plain/x").await.unwrap();
    assert_eq!(
        header(&resp, "content-encoding"),
        "",
        "compress is per route"
    );

    // An event stream is never compressed, even on a compressing route without `sse`.
    let proxy = Proxy::start(&format!(
        "upstreams:\n  app: {{ servers: [ {{ addr: \"{}\" }} ] }}\nroutes:\n  - {{ path: /, upstream: app, compress: true }}\n",
        backend.addr()
    ));
    let resp = client()
        .get(proxy.url("/events?count=2"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), "text/event-stream");
    assert_eq!(header(&resp, "content-encoding"), "");
    assert_eq!(
        header(&resp, "x-accel-buffering"),
        "no",
        "an event stream by its type"
    );
    let (events, error) = read_events(resp).await;
    assert!(
        events.len() == 2 && error.is_none(),
        "{} events, {error:?}",
        events.len()
    );
}

#[tokio::test]
async fn compressed_bodies_decode_to_the_original_in_each_encoding() {
    let backend = Backend::start("1");
    let proxy = Proxy::start(&config(&backend, free_port()));
    // A body of about 6 KB, so that the encoders emit more than one block.
    let pad = "x".repeat(6000);
    let dir = tempfile::tempdir().unwrap();
    for encoding in ["gzip", "br", "zstd"] {
        // curl decodes the body itself (it is built with brotli and zstd on Debian).
        let headers = dir.path().join(encoding);
        let out = std::process::Command::new("curl")
            .args(["-sS", "--compressed", "-m", "10", "-H"])
            .arg(format!("accept-encoding: {encoding}"))
            .arg("-D")
            .arg(&headers)
            .arg(proxy.url(&format!("/echo?pad={pad}")))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{encoding}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let head = std::fs::read_to_string(&headers)
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            head.contains(&format!("content-encoding: {encoding}\r\n")),
            "{encoding}: {head}"
        );
        let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(body["query"], format!("pad={pad}"), "{encoding}");
    }
}

#[tokio::test]
async fn websocket_passes_through_both_ways() {
    let ws_port = common::websocket_echo("");
    let proxy = Proxy::start(&format!(
        "upstreams:\n  ws: {{ servers: [ {{ addr: \"127.0.0.1:{ws_port}\" }} ] }}\nroutes:\n  - {{ path: /, upstream: ws }}\n"
    ));
    let (mut ws, resp) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/chat", proxy.port))
            .await
            .unwrap();
    assert_eq!(resp.status(), 101);
    let echo = Duration::from_secs(5);
    for text in ["hello", "through", "edgeproxy"] {
        ws.send(Message::text(text)).await.unwrap();
        let back = tokio::time::timeout(echo, ws.next())
            .await
            .expect("an echo");
        assert_eq!(back.unwrap().unwrap(), Message::text(text));
    }
    let blob: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    ws.send(Message::binary(blob.clone())).await.unwrap();
    let back = tokio::time::timeout(echo, ws.next())
        .await
        .expect("an echo");
    assert_eq!(back.unwrap().unwrap(), Message::binary(blob));
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_in_flat_memory() {
    const SIZE: u64 = 1 << 30;
    const RSS_LIMIT: u64 = 64 << 20;
    let backend = Backend::start("1");
    let proxy = Proxy::start(&config(&backend, free_port()));

    let mut resp = client()
        .get(proxy.url(&format!("/bytes?n={SIZE}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut received = 0u64;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        received += chunk.len() as u64;
    }
    assert_eq!(received, SIZE);

    let chunk = bytes::Bytes::from(vec![b'u'; 64 * 1024]);
    let chunks = (SIZE / chunk.len() as u64) as usize;
    let body = futures_util::stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    let resp = client()
        .post(proxy.url("/upload"))
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    let reply: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(reply["bytes"].as_u64(), Some(SIZE));

    let peak = proxy.peak_rss();
    assert!(
        peak < RSS_LIMIT,
        "proxy peak RSS {} MiB for {} MiB bodies",
        peak >> 20,
        SIZE >> 20
    );
}

/// A body of known length that the backend sends in two parts, the second only when the test
/// says: the client must get the first part while the backend holds the second back.
#[tokio::test]
async fn a_sized_body_reaches_the_client_as_it_arrives() {
    use std::io::{Read, Write};
    use tokio::io::AsyncReadExt;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (go_on, cue) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "the proxy left before sending its request");
            request.extend_from_slice(&buf[..n]);
        }
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nfirst ";
        stream.write_all(head.as_bytes()).unwrap();
        // Ten seconds at most, so that a failing test still ends.
        let _ = cue.recv_timeout(Duration::from_secs(10));
        let _ = stream.write_all(b"second");
    });
    let proxy = Proxy::start(&format!(
        "upstreams:\n  app:\n    servers: [ {{ addr: \"127.0.0.1:{port}\" }} ]\n    read_timeout: 30s\nroutes:\n  - {{ path: /, upstream: app }}\n"
    ));

    let mut client = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut client, b"GET / HTTP/1.1\r\nHost: sized\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(3);
    while !got.ends_with(b"first ") {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, client.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the first part did not arrive while the backend held the rest back; got {:?}",
                    String::from_utf8_lossy(&got)
                )
            })
            .unwrap();
        assert!(n > 0, "the proxy closed the connection");
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("content-length: 12\r\n"),
        "{text}"
    );

    go_on.send(()).unwrap();
    let mut rest = [0u8; 6];
    tokio::time::timeout(Duration::from_secs(3), client.read_exact(&mut rest))
        .await
        .expect("the second part arrives")
        .unwrap();
    assert_eq!(&rest, b"second");
}
