//! Upstream keep-alive and the idle race: a backend closes the connections it finds idle, as
//! uvicorn does after 5 s, and edgeproxy must never send a request on one it is closing. It
//! closes pooled connections first, after the upstream's `idle_timeout` or the backend's own
//! `Keep-Alive: timeout=N`.

mod common;

use common::{client, Proxy};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A backend that answers every request `200 ok` with `headers`, counts the connections it
/// accepts, and closes each connection once it has been idle for its idle timeout: `idle`,
/// or a time drawn between `idle` and `idle + jitter` for each connection.
struct IdleClosingBackend {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl IdleClosingBackend {
    fn start(headers: &'static str, idle: Duration, jitter: Duration) -> IdleClosingBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let n = counter.fetch_add(1, Ordering::SeqCst) as u64;
                // A spread of timeouts without a random-number crate: the connection's number,
                // scrambled.
                let spread = jitter.as_micros() as u64;
                let extra = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) % spread.max(1);
                let timeout = idle + Duration::from_micros(extra);
                std::thread::spawn(move || serve(stream, headers, timeout));
            }
        });
        IdleClosingBackend { port, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn serve(mut stream: TcpStream, headers: &str, idle: Duration) {
    stream.set_read_timeout(Some(idle)).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        // A read that waits past the idle timeout ends the connection, as the server's own
        // timer does; so does one inside a request that stalls that long.
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        seen.extend_from_slice(&buf[..n]);
        while let Some(end) = request_end(&seen) {
            seen.drain(..end);
            let reply = format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n{headers}\r\nok");
            if stream.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    }
}

/// Where the first whole request of `seen` ends, its `Content-Length` body included.
fn request_end(seen: &[u8]) -> Option<usize> {
    let head = seen.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = String::from_utf8_lossy(&seen[..head]).to_ascii_lowercase();
    let length = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
    (seen.len() >= head + length).then_some(head + length)
}

fn proxy_to(backend: &IdleClosingBackend, upstream_keys: &str) -> Proxy {
    Proxy::start(&format!(
        "upstreams:\n  app:\n    servers:\n      - {{ addr: \"127.0.0.1:{}\" }}\n{upstream_keys}\
         routes:\n  - {{ path: /, upstream: app }}\n",
        backend.port
    ))
}

async fn get_ok(http: &reqwest::Client, proxy: &Proxy) {
    let resp = http.get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_pooled_connection_is_closed_after_the_upstreams_idle_timeout() {
    let backend = IdleClosingBackend::start("", Duration::from_secs(30), Duration::ZERO);
    let proxy = proxy_to(&backend, "    idle_timeout: 400ms\n");
    let http = client();
    get_ok(&http, &proxy).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    get_ok(&http, &proxy).await;
    assert_eq!(backend.connections(), 1, "reused within the idle timeout");
    tokio::time::sleep(Duration::from_millis(800)).await;
    get_ok(&http, &proxy).await;
    assert_eq!(
        backend.connections(),
        2,
        "a new connection after the idle timeout"
    );
}

#[tokio::test]
async fn a_backends_keepalive_timeout_shortens_the_pool() {
    let backend = IdleClosingBackend::start(
        "connection: keep-alive\r\nkeep-alive: timeout=2\r\n",
        Duration::from_secs(2),
        Duration::ZERO,
    );
    let proxy = proxy_to(&backend, "    idle_timeout: 60s\n");
    let http = client();
    get_ok(&http, &proxy).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    get_ok(&http, &proxy).await;
    assert_eq!(
        backend.connections(),
        1,
        "reused well within the backend's timeout"
    );
    // Past the backend's 2 s less the second left to it: not sent on a connection the
    // backend may be closing.
    tokio::time::sleep(Duration::from_millis(1400)).await;
    get_ok(&http, &proxy).await;
    assert_eq!(
        backend.connections(),
        2,
        "a new connection past timeout − 1 s"
    );
}

/// The seeds' POST load against a backend whose idle timeouts fall on the pauses between
/// bursts: with the default margin between the two timeouts, no request fails.
#[tokio::test]
async fn posts_never_meet_a_backend_closing_its_idle_connections() {
    let backend =
        IdleClosingBackend::start("", Duration::from_millis(500), Duration::from_millis(300));
    let proxy = proxy_to(&backend, "    idle_timeout: 400ms\n");
    let http = client();
    let mut failed = Vec::new();
    for burst in 0..20u64 {
        // 1,000 POSTs from 100 clients at once, ten each.
        let clients: Vec<_> = (0..100)
            .map(|_| {
                let (http, url) = (http.clone(), proxy.url("/models"));
                tokio::spawn(async move {
                    let mut failed = Vec::new();
                    for i in 0..10 {
                        let sent = http.post(&url).body(format!("{{\"n\": {i}}}")).send().await;
                        match sent {
                            Ok(resp) if resp.status() == 200 => {}
                            Ok(resp) => failed.push(format!("status {}", resp.status())),
                            Err(e) => failed.push(e.to_string()),
                        }
                    }
                    failed
                })
            })
            .collect();
        for client in clients {
            failed.extend(client.await.unwrap());
        }
        // Pauses from 350 to 850 ms: across both timeouts, the backend's spread included.
        let pause = 350 + ((burst * 0x9E37_79B9) >> 7) % 500;
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    assert!(
        failed.is_empty(),
        "{} of 20,000 POSTs failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        backend.connections() > 20,
        "the pauses closed pooled connections ({} opened)",
        backend.connections()
    );
    // Nothing failed, so nothing an operator must act on was logged.
    let log = proxy.log();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(errors.is_empty(), "{errors:?}");
}
