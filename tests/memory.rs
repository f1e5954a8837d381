//! Memory budgets: what an open connection costs the proxy while it waits, measured as the
//! growth of the proxy's resident memory (VmRSS) over thousands of them. The budgets are
//! about twice what the proxy reaches, so that a change that makes a connection hold a
//! buffer or a large future again fails here.

mod common;

use common::{raise_fd_limit, Backend, Proxy};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connections or streams held at once.
const HELD: usize = 2_000;

// Measured at the budgets' last change (debug build, as the tests run it, patches 0001-0017):
// 4.9 KiB, 6.2 KiB and 18.8 KiB; the budgets are about twice that. Before Pingora's patches
// (patches/pingora/) an idle connection took 41 KiB and an open event stream 65 KiB.

/// Idle keep-alive connection after a request the proxy answered itself (nginx: under 1 KiB).
const IDLE_LOCAL_BUDGET: u64 = 10 << 10;
/// Idle keep-alive connection after a proxied request, with its pooled upstream connection
/// (nginx: about 5 KiB).
const IDLE_PROXIED_BUDGET: u64 = 13 << 10;
/// Open event stream: client connection, upstream connection and the request in flight
/// (nginx: 18 KiB).
const STREAM_BUDGET: u64 = 38 << 10;

fn config(backend: &Backend) -> String {
    format!(
        "upstreams:
  app:
    servers: [ {{ addr: \"{}\" }} ]
    read_timeout: 60s
routes:
  - {{ path: /events, upstream: app, sse: true }}
  - {{ path: /, upstream: app }}
",
        backend.addr()
    )
}

/// Waits until the proxy's memory stops moving (three equal readings 100 ms apart, 10 s at
/// most: a pooled connection is released a moment after its response) and returns it.
fn settled_rss(proxy: &Proxy) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = proxy.rss();
    let mut same = 0;
    while same < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = proxy.rss();
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    last
}

/// Opens a connection, sends `request` and reads until `done` says the answer so far is
/// complete; returns the open connection. Fails the test after 20 s.
async fn exchange(port: u16, request: &'static [u8], done: fn(&[u8]) -> bool) -> TcpStream {
    let work = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        stream.write_all(request).await.expect("send the request");
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while !done(&answer) {
            let n = stream.read(&mut buf).await.expect("read the answer");
            assert!(
                n > 0,
                "closed early: {:?}",
                String::from_utf8_lossy(&answer)
            );
            answer.extend_from_slice(&buf[..n]);
        }
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
        stream
    };
    tokio::time::timeout(Duration::from_secs(20), work)
        .await
        .expect("an answer within 20 s")
}

/// A whole response with a `Content-Length` (the proxy's own and the demo backend's).
fn whole_response(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .expect("a Content-Length");
    body.len() >= length
}

/// The response head and the first event of a stream.
fn first_event(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    text.split_once("\r\n\r\n")
        .is_some_and(|(_, body)| body.contains("\n\n"))
}

/// Holds [`HELD`] connections, each opened with `request`, and returns the growth of the
/// proxy's memory per connection.
async fn per_connection(proxy: &Proxy, request: &'static [u8], done: fn(&[u8]) -> bool) -> u64 {
    // Warm up, so that the allocator's first arenas and the pools are not counted.
    for _ in 0..50 {
        drop(exchange(proxy.port, request, done).await);
    }
    let before = settled_rss(proxy);
    let mut held = Vec::with_capacity(HELD);
    while held.len() < HELD {
        let batch = (HELD - held.len()).min(250);
        let opened = (0..batch).map(|_| exchange(proxy.port, request, done));
        held.extend(futures_util::future::join_all(opened).await);
    }
    let after = settled_rss(proxy);
    let each = after.saturating_sub(before) / HELD as u64;
    eprintln!(
        "{} held: {} KiB -> {} KiB, {each} bytes each",
        HELD,
        before >> 10,
        after >> 10
    );
    drop(held);
    each
}

fn check(what: &str, each: u64, budget: u64) {
    assert!(
        each <= budget,
        "{what} took {each} bytes each, over the budget of {budget}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_after_a_local_answer_holds_little() {
    raise_fd_limit(HELD as u64 * 3 + 1000);
    let backend = Backend::start("1");
    let proxy = Proxy::start(&config(&backend));
    let request = b"GET /edge-health HTTP/1.1\r\nHost: memory\r\n\r\n";
    let each = per_connection(&proxy, request, whole_response).await;
    check(
        "an idle connection after /edge-health",
        each,
        IDLE_LOCAL_BUDGET,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_after_a_proxied_request_holds_little() {
    raise_fd_limit(HELD as u64 * 3 + 1000);
    let backend = Backend::start("1");
    let proxy = Proxy::start(&config(&backend));
    let request = b"GET / HTTP/1.1\r\nHost: memory\r\n\r\n";
    let each = per_connection(&proxy, request, whole_response).await;
    check(
        "an idle connection after a proxied request",
        each,
        IDLE_PROXIED_BUDGET,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_event_stream_holds_little() {
    raise_fd_limit(HELD as u64 * 3 + 1000);
    let backend = Backend::start("1");
    let proxy = Proxy::start(&config(&backend));
    let request = b"GET /events?interval_ms=1000 HTTP/1.1\r\nHost: memory\r\n\r\n";
    let each = per_connection(&proxy, request, first_event).await;
    check("an open event stream", each, STREAM_BUDGET);
}
