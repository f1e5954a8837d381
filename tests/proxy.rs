//! The proxy end to end: real backends, the real binary, a real HTTP client.

mod common;

use common::{client, header, instance, upstream, Backend, Proxy};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

const ROUTE_ALL: &str = "routes:\n  - { path: /, upstream: app }\n";

fn three_backends() -> (Backend, Backend, Backend) {
    (
        Backend::start("1"),
        Backend::start("2"),
        Backend::start("3"),
    )
}

#[tokio::test]
async fn round_robin_alternates_in_file_order() {
    let (b1, b2, b3) = three_backends();
    let proxy = Proxy::start(&format!(
        "{}{ROUTE_ALL}",
        upstream(&[&b1, &b2, &b3], &[1, 1, 1])
    ));
    let http = client();
    let mut seen = Vec::new();
    for _ in 0..9 {
        let resp = http.get(proxy.url("/")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        seen.push(instance(&resp));
    }
    assert_eq!(seen, ["1", "2", "3", "1", "2", "3", "1", "2", "3"]);
}

#[tokio::test]
async fn identity_headers_name_the_server_that_answered() {
    let b1 = Backend::start("blue");
    let proxy = Proxy::start(&format!(
        "upstreams:\n  app:\n    servers:\n      - {{ addr: \"localhost:{}\", id: \"blue-1\", resolve: first }}\n{ROUTE_ALL}",
        b1.port
    ));
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // The backend itself sends `X-Instance-ID: blue`; the configured id wins.
    assert_eq!(instance(&resp), "blue-1");
    assert_eq!(resp.headers().get_all("x-instance-id").iter().count(), 1);
    // The address the name resolved to, as nginx's `$upstream_addr`.
    assert_eq!(
        header(&resp, "x-served-by"),
        format!("127.0.0.1:{}", b1.port)
    );
}

#[tokio::test]
async fn forwarded_headers_reach_the_backend_and_host_is_unchanged() {
    let b1 = Backend::start("1");
    let proxy = Proxy::start(&format!("{}{ROUTE_ALL}", upstream(&[&b1], &[1])));
    // A client that is not a trusted proxy cannot make itself someone else.
    let resp = client()
        .get(proxy.url("/echo"))
        .header("Host", "shop.example.com")
        .header("X-Forwarded-For", "203.0.113.9")
        .header("X-Real-IP", "203.0.113.9")
        .header("X-Served-By", "app9:80")
        .header("X-Instance-ID", "9")
        .send()
        .await
        .unwrap();
    let echo: serde_json::Value = resp.json().await.unwrap();
    let headers = &echo["headers"];
    assert_eq!(headers["host"], "shop.example.com");
    assert_eq!(headers["x-real-ip"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert!(headers.get("x-served-by").is_none(), "{headers}");
    assert!(headers.get("x-instance-id").is_none(), "{headers}");
}

#[tokio::test]
async fn a_trusted_proxy_extends_the_forwarded_chain_and_names_the_client() {
    let b1 = Backend::start("1");
    let proxy = Proxy::start_with(
        "  trusted_proxies: [\"127.0.0.0/8\"]",
        &format!("{}{ROUTE_ALL}", upstream(&[&b1], &[1])),
    );
    let resp = client()
        .get(proxy.url("/echo"))
        .header("X-Forwarded-For", "198.51.100.7, 203.0.113.9")
        .send()
        .await
        .unwrap();
    let echo: serde_json::Value = resp.json().await.unwrap();
    let headers = &echo["headers"];
    assert_eq!(
        headers["x-forwarded-for"],
        "198.51.100.7, 203.0.113.9, 127.0.0.1"
    );
    assert_eq!(headers["x-real-ip"], "203.0.113.9");
    // The access log names the client too, as nginx's realip module makes it.
    common::line_with(|| proxy.stdout(), "203.0.113.9 - - [").await;
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    let b1 = Backend::start("1");
    let proxy = Proxy::start(&format!("{}{ROUTE_ALL}", upstream(&[&b1], &[1])));
    let http = client();
    let mut backend_side_ports = HashSet::new();
    for _ in 0..30 {
        let resp = http.get(proxy.url("/echo")).send().await.unwrap();
        let echo: serde_json::Value = resp.json().await.unwrap();
        backend_side_ports.insert(echo["client"].as_str().unwrap().to_string());
        // Pingora returns the upstream connection to its pool only after the
        // client has the whole response, so a request sent at once can race the
        // release and open a second connection; this test is about reuse, not
        // about that race, so it leaves the release time to finish. Nothing shows
        // when the release is done, so there is nothing to poll; a release later
        // than this only opens more connections, failing the test, never passing it.
        // (50 ms was once too little while the suite's other tests loaded both cores.)
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        backend_side_ports.len() <= 2,
        "30 sequential requests used {} upstream connections",
        backend_side_ports.len()
    );
}

#[tokio::test]
async fn routes_pick_the_longest_prefix_and_honour_host() {
    let (b1, b2, b3) = three_backends();
    let proxy = Proxy::start(&format!(
        "upstreams:
  main: {{ servers: [ {{ addr: \"{}\", id: main }} ] }}
  static: {{ servers: [ {{ addr: \"{}\", id: static }} ] }}
  api: {{ servers: [ {{ addr: \"{}\", id: api }} ] }}
routes:
  - {{ path: /, upstream: main }}
  - {{ path: /static/, upstream: static }}
  - {{ path: /, upstream: api, host: api.example.com }}
",
        b1.addr(),
        b2.addr(),
        b3.addr()
    ));
    let http = client();
    for (host, path, expected) in [
        ("www.example.com", "/", "main"),
        ("www.example.com", "/static/app.js", "static"),
        ("www.example.com", "/staticfile", "main"),
        ("api.example.com", "/", "api"),
        ("API.example.com:8080", "/v1", "api"),
    ] {
        let resp = http
            .get(proxy.url(path))
            .header("Host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(instance(&resp), expected, "{host}{path}");
    }
}

#[tokio::test]
async fn no_matching_route_is_a_404_from_the_proxy() {
    let b1 = Backend::start("1");
    let proxy = Proxy::start(&format!(
        "{}routes:\n  - {{ path: /api/, upstream: app }}\n",
        upstream(&[&b1], &[1])
    ));
    let resp = client().get(proxy.url("/elsewhere")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(header(&resp, "x-served-by"), "");
    assert!(resp.text().await.unwrap().contains("no route"));
}

#[tokio::test]
async fn health_path_is_answered_without_any_backend() {
    let (dead_port, _dead_port_held) = common::dead_port();
    let proxy = Proxy::start_with(
        "  health_path: /nginx-health",
        &format!("upstreams:\n  app: {{ servers: [ {{ addr: \"127.0.0.1:{dead_port}\" }} ] }}\n{ROUTE_ALL}"),
    );
    // Start-up waited on /edge-health, which here is proxied to a dead server: check the
    // configured path instead.
    let resp = client()
        .get(proxy.url("/nginx-health"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok\n");
}

#[tokio::test]
async fn a_dead_backend_gives_a_quick_502() {
    let (dead_port, _dead_port_held) = common::dead_port();
    let proxy = Proxy::start(&format!(
        "upstreams:\n  app:\n    servers: [ {{ addr: \"127.0.0.1:{dead_port}\" }} ]\n    connect_timeout: 1s\n{ROUTE_ALL}"
    ));
    let started = Instant::now();
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(header(&resp, "content-type"), "text/plain; charset=utf-8");
    let body = resp.text().await.unwrap();
    assert_eq!(
        body,
        "502 Bad Gateway: upstream `app` could not be reached\n"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_backend_that_never_answers_gives_a_504_at_read_timeout() {
    // The kernel completes the handshake for a listener nobody accepts on; no reply ever comes.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let proxy = Proxy::start(&format!(
        "upstreams:\n  app:\n    servers: [ {{ addr: \"127.0.0.1:{port}\" }} ]\n    read_timeout: 300ms\n{ROUTE_ALL}"
    ));
    let started = Instant::now();
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(resp.status(), 504);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("did not answer in time"));
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3),
        "took {elapsed:?}"
    );
}

#[tokio::test]
async fn a_backend_that_does_not_connect_gives_504_at_connect_timeout_or_the_next_server() {
    let hung = common::FullListener::start();
    let proxy = Proxy::start(&format!(
        "upstreams:\n  app:\n    servers: [ {{ addr: \"127.0.0.1:{}\" }} ]\n    connect_timeout: 500ms\n{ROUTE_ALL}",
        hung.port
    ));
    let started = Instant::now();
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(resp.status(), 504);
    assert_eq!(
        resp.text().await.unwrap(),
        "504 Gateway Timeout: upstream `app` did not answer in time\n"
    );
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_secs(3),
        "took {elapsed:?}"
    );

    // Beside a server that connects, the request moves to it once the connect times out.
    let b2 = Backend::start("2");
    let proxy = Proxy::start(&format!(
        "upstreams:\n  app:\n    servers: [ {{ addr: \"127.0.0.1:{}\" }}, {{ addr: \"{}\" }} ]\n    connect_timeout: 500ms\n{ROUTE_ALL}",
        hung.port,
        b2.addr()
    ));
    let mut moved = 0;
    for _ in 0..4 {
        let started = Instant::now();
        let resp = client().get(proxy.url("/")).send().await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!((resp.status().as_u16(), instance(&resp)), (200, "2".into()));
        assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
        if elapsed >= Duration::from_millis(450) {
            moved += 1;
        }
    }
    assert!(
        moved >= 1,
        "no request tried the server that does not connect"
    );
}

#[tokio::test]
async fn post_models_is_validated_by_the_demo_through_the_proxy() {
    let b1 = Backend::start("1");
    let proxy = Proxy::start(&format!("{}{ROUTE_ALL}", upstream(&[&b1], &[1])));
    let post = |body: &'static str| {
        client()
            .post(proxy.url("/models"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let resp = post(
        r#"{"name":"X","pieces":10,"theme":"City","difficulty":"easy","price_us":9.5,"year":2020}"#,
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let reply: serde_json::Value = resp.json().await.unwrap();
    let model = &reply["data"];
    assert_eq!(
        (model["name"].as_str(), model["pieces"].as_u64()),
        (Some("X"), Some(10)),
        "{reply}"
    );

    let resp = post(r#"{"name":"","pieces":-1}"#).await.unwrap();
    assert_eq!(resp.status(), 422);
    let error: serde_json::Value = resp.json().await.unwrap();
    let detail = error["detail"]
        .as_array()
        .expect("a FastAPI-style detail list");
    assert!(detail.len() >= 2, "{error}");
}

#[tokio::test]
async fn http2_upstreams_get_h2c_and_others_http_1_1() {
    let b1 = Backend::start_with("1", &["--h2c"]);
    let version = |http2: bool| {
        let proxy = Proxy::start(&format!(
            "upstreams:\n  app:\n    http2: {http2}\n    servers: [ {{ addr: \"{}\" }} ]\n{ROUTE_ALL}",
            b1.addr()
        ));
        async move {
            let resp = client().get(proxy.url("/echo")).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(header(&resp, "x-instance-id"), "1");
            let echo: serde_json::Value = resp.json().await.unwrap();
            echo["version"].as_str().unwrap().to_string()
        }
    };
    assert_eq!(version(true).await, "HTTP/2.0");
    assert_eq!(version(false).await, "HTTP/1.1");
}

#[tokio::test]
async fn connect_is_refused_by_edgeproxy_and_logged_and_counted() {
    let b1 = Backend::start("1");
    let metrics_port = common::free_port();
    let proxy = Proxy::start(&common::metrics_and_app(
        metrics_port,
        "round_robin",
        &[(&b1, 1)],
    ));
    let answer = common::raw_exchange(
        proxy.port,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    );
    assert_eq!(common::raw_status(&answer), Some(405), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("\r\nallow: get, head"), "{answer}");
    assert!(lower.contains("\r\nconnection: close\r\n"), "{answer}");
    assert!(!lower.contains("server: pingora"), "{answer}");
    assert!(answer.contains("does not tunnel CONNECT"), "{answer}");

    let line = common::line_with(|| proxy.stdout(), "CONNECT example.com:443").await;
    assert!(line.contains(" 405 "), "{line}");
    assert_eq!(
        common::metric(
            metrics_port,
            "edgeproxy_requests_total{backend=\"\",code=\"405\",route=\"\",upstream=\"\"}"
        )
        .await,
        Some(1.0)
    );
}

/// The thread ids that made system calls on each client connection, by the client's port,
/// read from an `strace -f -yy` log (each line starts with the thread id).
fn threads_by_client_port(trace: &str, proxy_port: u16) -> BTreeMap<u16, BTreeSet<u32>> {
    let mut threads = BTreeMap::<u16, BTreeSet<u32>>::new();
    let needle = format!("127.0.0.1:{proxy_port}->127.0.0.1:");
    for line in trace.lines() {
        let (Some((tid, _)), Some((_, rest))) = (line.split_once(' '), line.split_once(&needle))
        else {
            continue;
        };
        let port = rest.split(']').next().and_then(|p| p.parse().ok());
        if let (Ok(tid), Some(port)) = (tid.parse(), port) {
            threads.entry(port).or_default().insert(tid);
        }
    }
    threads
}

/// Reads one response with a `Content-Length` body off a keep-alive connection.
fn read_response(stream: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut answer = Vec::new();
    let mut buf = [0; 4096];
    loop {
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .expect("a Content-Length")
                .parse()
                .unwrap();
            if body.len() >= length {
                return text;
            }
        }
        let n = stream
            .read(&mut buf)
            .expect("the rest of the response within the read timeout");
        assert!(n > 0, "the proxy closed a keep-alive connection");
        answer.extend_from_slice(&buf[..n]);
    }
}

/// Attaches strace to the proxy's threads, tracing its reads and writes to `trace_file`, and
/// waits until a request's reads show in the trace.
fn attach_strace(proxy: &Proxy, trace_file: &std::path::Path) -> common::ChildGuard {
    use std::io::{Read, Write};
    let strace = common::ChildGuard(
        std::process::Command::new("strace")
            .args([
                "-f",
                "-qq",
                "-yy",
                "-e",
                "trace=read,write,recvfrom,sendto,readv,writev",
            ])
            .arg("-o")
            .arg(trace_file)
            .args(["-p", &proxy.child.pid().to_string()])
            .spawn()
            .expect("strace (apt-get install strace) runs"),
    );
    // Attached once a request's reads show in the trace.
    let attached = Instant::now();
    loop {
        let mut probe = std::net::TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        probe
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let port = probe.local_addr().unwrap().port();
        probe
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let _ = probe.read_to_end(&mut Vec::new());
        let trace = std::fs::read_to_string(trace_file).unwrap_or_default();
        if threads_by_client_port(&trace, proxy.port).contains_key(&port) {
            break;
        }
        assert!(
            attached.elapsed() < Duration::from_secs(10),
            "strace never attached"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    strace
}

#[test]
fn a_client_connection_stays_on_the_thread_it_was_given() {
    use std::io::Write;
    let backend = Backend::start("1");
    // Two worker threads, as every test proxy has.
    let proxy = Proxy::start(&format!(
        "{}routes:\n  - {{ path: /, upstream: app }}\n",
        upstream(&[&backend], &[1])
    ));
    let trace_file = proxy.dir.path().join("strace.log");
    let mut strace = attach_strace(&proxy, &trace_file);

    // Sixteen keep-alive connections, their requests interleaved, so that a runtime moving
    // tasks between threads would move some of them.
    let mut clients: Vec<std::net::TcpStream> = (0..16)
        .map(|_| {
            let client = std::net::TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            client
        })
        .collect();
    for _ in 0..10 {
        for client in &mut clients {
            client
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            assert!(read_response(client).starts_with("HTTP/1.1 200 "));
        }
    }
    let ports: BTreeSet<u16> = clients
        .iter()
        .map(|c| c.local_addr().unwrap().port())
        .collect();
    drop(clients);
    strace.signal("INT");
    strace.wait_exit(Duration::from_secs(10));

    let trace = std::fs::read_to_string(&trace_file).unwrap();
    let threads = threads_by_client_port(&trace, proxy.port);
    let mut used = BTreeSet::new();
    for port in ports {
        let on = threads.get(&port).cloned().unwrap_or_default();
        assert_eq!(
            on.len(),
            1,
            "connection from port {port} was served by threads {on:?}"
        );
        used.extend(on);
    }
    assert_eq!(
        used.len(),
        2,
        "sixteen connections on one of two threads: {used:?}"
    );
}

/// One exchange through the proxy with raw sockets on both sides: what the backend received,
/// and what the client received.
fn raw_exchange(server_keys: &str) -> (String, String) {
    use std::io::{Read, Write};
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = backend.local_addr().unwrap().port();
    let seen = std::thread::spawn(move || {
        let (mut conn, _) = backend.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Backend-Name: b\r\n\r\nok")
            .unwrap();
        String::from_utf8(head).unwrap()
    });
    let proxy = Proxy::start_with(
        server_keys,
        &format!(
            "upstreams:\n  app:\n    servers: [ {{ addr: \"127.0.0.1:{port}\" }} ]\n{ROUTE_ALL}"
        ),
    );
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Client-Name: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    (seen.join().unwrap(), answer)
}

#[test]
fn header_names_are_lowercased_unless_their_case_is_to_be_kept() {
    let (request, response) = raw_exchange("");
    assert!(request.contains("\r\nx-client-name: a\r\n"), "{request}");
    assert!(request.contains("\r\nHost: x\r\n"), "{request}");
    assert!(response.contains("\r\nx-backend-name: b\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nok"), "{response}");

    let (request, response) = raw_exchange("  preserve_header_case: true");
    assert!(request.contains("\r\nX-Client-Name: a\r\n"), "{request}");
    assert!(response.contains("\r\nX-Backend-Name: b\r\n"), "{response}");
}
