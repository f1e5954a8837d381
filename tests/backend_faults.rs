//! Backends that misbehave: each gives the client a clean error or a visibly cut response,
//! is counted as a failure, and leaves no broken connection in the pool for the next request.

mod common;

use common::{client, free_port, metric, Proxy};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

/// What a scripted backend does after writing its reply.
#[derive(Clone, Copy)]
enum Then {
    /// Keeps the connection open for more requests.
    KeepOpen,
    /// Resets the connection (RST, not FIN) on the test's cue, [`Scripted::cut`].
    Reset,
    /// Goes silent for longer than the proxy's read timeout.
    Stall,
}

const GOOD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood";

/// A backend on raw sockets: the first request of its first connection gets `first`, then
/// `then` happens; every other request gets [`GOOD`].
struct Scripted {
    port: u16,
    connections: Arc<AtomicUsize>,
    cut: Sender<()>,
}

impl Scripted {
    fn start(first: &'static [u8], then: Then) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        let (cut, cue) = mpsc::channel();
        std::thread::spawn(move || {
            let mut cue = Some(cue);
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                counter.fetch_add(1, Ordering::SeqCst);
                match cue.take() {
                    Some(cue) => std::thread::spawn(move || serve(stream, first, then, &cue)),
                    None => std::thread::spawn(move || keep_answering(stream)),
                };
            }
        });
        Scripted {
            port,
            connections,
            cut,
        }
    }

    /// Lets a [`Then::Reset`] happen: at once if the first connection waits for it, else as
    /// soon as it has written `first`.
    fn cut(&self) {
        // The connection may be gone already, and its end of the cue with it.
        let _ = self.cut.send(());
    }
}

fn read_request(stream: &mut TcpStream) -> bool {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    true
}

fn serve(mut stream: TcpStream, first: &[u8], then: Then, cut: &Receiver<()>) {
    if !read_request(&mut stream) || stream.write_all(first).is_err() {
        return;
    }
    match then {
        Then::Reset => {
            // An RST makes the proxy's kernel drop what the proxy has not read yet, `first`
            // with it; so the test says when `first` has had its effect (10 s at most, after
            // which the reset comes anyway and the test sees what it did).
            let _ = cut.recv_timeout(Duration::from_secs(10));
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: setsockopt reads the struct passed to it; the fd is open.
            unsafe {
                libc::setsockopt(
                    stream.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
        }
        // Silent past the proxy's 1 s read_timeout.
        Then::Stall => std::thread::sleep(Duration::from_secs(3)),
        Then::KeepOpen => keep_answering(stream),
    }
}

/// Answers every request on `stream` with [`GOOD`] until the proxy closes it.
fn keep_answering(mut stream: TcpStream) {
    while read_request(&mut stream) {
        if stream.write_all(GOOD).is_err() {
            return;
        }
    }
}

/// A proxy in front of the backend on `port`.
fn proxy_to(port: u16, metrics: u16) -> Proxy {
    proxy_retrying(port, metrics, 0)
}

fn proxy_retrying(port: u16, metrics: u16, retries: u8) -> Proxy {
    Proxy::start(&format!(
        "metrics: {{ listen: \"127.0.0.1:{metrics}\" }}\nupstreams:\n  app:\n    retries: {retries}\n    servers:\n      - {{ addr: \"127.0.0.1:{port}\", max_fails: 0 }}\n    read_timeout: 1s\nroutes:\n  - {{ path: /, upstream: app }}\n"
    ))
}

async fn failures(metrics: u16, port: u16, reason: &str) -> f64 {
    let labels = format!(
        "edgeproxy_upstream_failures_total{{backend=\"127.0.0.1:{port}\",reason=\"{reason}\",upstream=\"app\"}}"
    );
    metric(metrics, &labels).await.unwrap_or(0.0)
}

/// The next request is answered properly, on a connection that is not the broken one.
async fn next_request_is_good(proxy: &Proxy) {
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "good");
}

#[tokio::test]
async fn a_malformed_response_header_or_a_reset_before_it_gives_502() {
    for (case, first, then) in [
        (
            "malformed",
            &b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n"[..],
            Then::KeepOpen,
        ),
        ("reset", &b""[..], Then::Reset),
    ] {
        let backend = Scripted::start(first, then);
        // Nothing is written before the reset: it has nothing to wait for.
        backend.cut();
        let metrics = free_port();
        let proxy = proxy_to(backend.port, metrics);
        let resp = client().get(proxy.url("/")).send().await.unwrap();
        assert_eq!(resp.status(), 502, "{case}");
        // The backend was reached: the answer must not say it could not be.
        let body = resp.text().await.unwrap();
        assert!(body.contains("was reached but"), "{case}: {body}");
        assert!(
            failures(metrics, backend.port, "reset").await >= 1.0,
            "{case}"
        );
        next_request_is_good(&proxy).await;
    }
}

#[tokio::test]
async fn a_response_longer_than_announced_does_not_poison_the_pool() {
    // Five bytes announced, twelve sent: the extra seven must not become the next response.
    let backend = Scripted::start(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirstHTTP/1.",
        Then::KeepOpen,
    );
    let metrics = free_port();
    let proxy = proxy_to(backend.port, metrics);
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "first");
    for _ in 0..3 {
        next_request_is_good(&proxy).await;
    }
    assert!(backend.connections.load(Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn a_reset_or_stall_mid_body_is_a_cut_response_not_a_complete_one() {
    let sized = &b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"[..];
    let chunked = &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\npartial\r\n"[..];
    for (case, first, then, reason) in [
        ("reset, content-length", sized, Then::Reset, "reset"),
        ("reset, chunked", chunked, Then::Reset, "reset"),
        ("stall, content-length", sized, Then::Stall, "timeout"),
        ("stall, chunked", chunked, Then::Stall, "timeout"),
    ] {
        let backend = Scripted::start(first, then);
        let metrics = free_port();
        let proxy = proxy_to(backend.port, metrics);
        let resp = client().get(proxy.url("/")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{case}");
        // The header has reached the client: only now may the connection break.
        backend.cut();
        let body = resp.bytes().await;
        assert!(
            body.is_err(),
            "{case}: a cut body read as complete: {body:?}"
        );
        assert!(
            failures(metrics, backend.port, reason).await >= 1.0,
            "{case}"
        );
        next_request_is_good(&proxy).await;
    }
}

#[tokio::test]
async fn nothing_is_retried_once_a_response_byte_has_gone_to_the_client() {
    let sized = &b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"[..];
    for (case, then) in [("reset", Then::Reset), ("stall", Then::Stall)] {
        let backend = Scripted::start(sized, then);
        let metrics = free_port();
        let proxy = proxy_retrying(backend.port, metrics, 2);
        let resp = client().get(proxy.url("/")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{case}");
        // The header has reached the client: only now may the connection break.
        backend.cut();
        assert!(
            resp.bytes().await.is_err(),
            "{case}: the cut body read whole"
        );
        // Retries are allowed, but the header had gone out: no second connection was tried.
        assert_eq!(backend.connections.load(Ordering::SeqCst), 1, "{case}");
        assert_eq!(
            metric(metrics, common::APP_RETRIES).await,
            Some(0.0),
            "{case}"
        );
    }
}

#[tokio::test]
async fn a_backend_that_never_answers_gives_504() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let metrics = free_port();
    let proxy = proxy_to(port, metrics);
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 504);
    assert!(failures(metrics, port, "timeout").await >= 1.0);
    drop(listener);
}

#[tokio::test]
async fn a_backend_that_stops_reading_a_request_body_gives_504_after_write_timeout() {
    // Accepts and holds connections but reads nothing, so once the socket buffers are full
    // each write of the body waits.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let held: Vec<TcpStream> = listener.incoming().map_while(Result::ok).collect();
        drop(held);
    });
    let metrics = free_port();
    let proxy = Proxy::start(&format!(
        "metrics: {{ listen: \"127.0.0.1:{metrics}\" }}
upstreams:
  app:
    retries: 0
    servers: [ {{ addr: \"127.0.0.1:{port}\", max_fails: 0 }} ]
    write_timeout: 1s
    read_timeout: 30s
routes:
  - {{ path: /, upstream: app, max_body: none }}
"
    ));
    let mut stream = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let started = std::time::Instant::now();
    std::thread::spawn(move || {
        let _ =
            writer.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n");
        let chunk = vec![b'x'; 64 * 1024];
        while writer.write_all(&chunk).is_ok() && started.elapsed() < Duration::from_secs(20) {}
    });
    let mut head = [0; 12];
    stream
        .read_exact(&mut head)
        .expect("an answer before the read timeout");
    let waited = started.elapsed();
    assert_eq!(&head, b"HTTP/1.1 504");
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(10),
        "answered after {waited:?}; write_timeout is 1 s, read_timeout 30 s"
    );
    assert!(failures(metrics, port, "timeout").await >= 1.0);
}
