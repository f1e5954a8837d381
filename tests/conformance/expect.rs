//! `Expect: 100-continue` (RFC 9110 §10.1.1) with `max_body`: a body announced over the limit
//! is refused before anything is sent on; one found over it after the `100` still gets its
//! 413, which the access log and the metrics record.

use crate::common::{free_port, get_text, line_with, metric, Backend, Proxy};
use crate::wire::{Client, RecordingBackend};
use crate::{proxy_for, ROUTE_ALL};

const TOO_LARGE: &str = "413 Payload Too Large: the body is larger than 1024 bytes\n";

/// The demo backend, which answers `Expect`, behind `/upload` with `max_body: 1KiB`.
fn limited_proxy(app: &Backend) -> (Proxy, u16) {
    let metrics = free_port();
    let proxy = Proxy::start(&format!(
        "metrics: {{ listen: \"127.0.0.1:{metrics}\" }}\n\
         upstreams:\n  app:\n    servers:\n      - {{ addr: \"{}\" }}\n\
         routes:\n  - {{ path: /upload, upstream: app, max_body: 1KiB }}\n  - {{ path: /, upstream: app }}\n",
        app.addr()
    ));
    (proxy, metrics)
}

/// 2 KiB in four chunks, and the last chunk.
fn chunks() -> String {
    let chunk = format!("200\r\n{}\r\n", "x".repeat(512));
    chunk.repeat(4) + "0\r\n\r\n"
}

#[tokio::test]
async fn a_chunked_body_found_too_large_after_100_continue_gets_413() {
    let app = Backend::start("1");
    let (proxy, metrics) = limited_proxy(&app);
    let mut client = Client::connect(proxy.port);
    client.send(
        b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
    );
    let go_on = client.response(false).expect("an interim answer");
    assert_eq!(
        go_on.status, 100,
        "the backend asked for the body: {go_on:?}"
    );
    client.send(chunks().as_bytes());
    let refused = client
        .response(false)
        .expect("a final answer after the 100");
    assert_eq!(refused.status, 413, "{refused:?}");
    assert_eq!(refused.text(), TOO_LARGE);
    assert_eq!(refused.header("connection"), Some("close"), "{refused:?}");
    assert!(client.closed(), "the connection ends, without a reset");

    line_with(|| proxy.stdout(), "\"POST /upload HTTP/1.1\" 413 ").await;
    assert_eq!(
        metric(metrics, "edgeproxy_limited_total{limit=\"max_body\"}").await,
        Some(1.0)
    );
    let scrape = get_text(&format!("http://127.0.0.1:{metrics}/metrics")).await;
    let requests: Vec<&str> = scrape
        .lines()
        .filter(|l| l.starts_with("edgeproxy_requests_total{"))
        .collect();
    assert!(
        requests.iter().any(|l| l.contains("code=\"413\""))
            && !requests.iter().any(|l| l.contains("code=\"100\"")),
        "the request is counted as a 413: {requests:?}"
    );
}

#[test]
fn a_chunked_body_too_large_without_expect_gets_the_same_413() {
    let app = Backend::start("1");
    let (proxy, _) = limited_proxy(&app);
    let mut client = Client::connect(proxy.port);
    client.send(
        format!(
            "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{}",
            chunks()
        )
        .as_bytes(),
    );
    let refused = client.response(false).expect("an answer");
    assert_eq!((refused.status, refused.text().as_str()), (413, TOO_LARGE));
}

#[test]
fn a_body_announced_too_large_is_refused_before_any_100_or_backend() {
    let backend = RecordingBackend::start();
    let proxy = proxy_for(
        &format!("127.0.0.1:{}", backend.port),
        "  - { path: /, upstream: app, max_body: 1KiB }\n",
    );
    let mut client = Client::connect(proxy.port);
    client.send(
        b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
    );
    let refused = client.response(false).expect("an answer without the body");
    assert_eq!((refused.status, refused.text().as_str()), (413, TOO_LARGE));
    assert!(client.closed());
    assert!(backend.take().is_empty(), "nothing reached the backend");
}

/// curl adds `Expect` to uploads over 1 MiB and waits a second for the `100` before it sends
/// the body: through the proxy the demo backend's `100` arrives, and the body after it.
#[test]
fn curl_gets_100_continue_through_the_proxy() {
    let app = Backend::start("1");
    let proxy = proxy_for(&app.addr(), ROUTE_ALL);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("upload");
    std::fs::write(&file, vec![b'x'; 3000]).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-sv", "-H", "Expect: 100-continue", "--data-binary"])
        .arg(format!("@{}", file.display()))
        .arg(proxy.url("/upload"))
        .output()
        .expect("curl runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("< HTTP/1.1 100 Continue"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"bytes\":3000"), "{stdout}");
}
