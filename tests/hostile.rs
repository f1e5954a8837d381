//! Hostile clients over raw sockets: each malformed or ambiguous request gets its status,
//! nothing of it reaches a backend, and the proxy goes on serving everyone else.

mod common;

use common::{client, line_with, raw_exchange, raw_status, Backend, Proxy, RawBackend};

/// `/` goes to a demo backend; `/trap/` to a raw backend that must never see a request.
fn proxy(app: &Backend, trap: &RawBackend) -> Proxy {
    Proxy::start(&format!(
        "upstreams:\n  app:\n    servers:\n      - {{ addr: \"{}\" }}\n  trap:\n    servers:\n      - {{ addr: \"127.0.0.1:{}\" }}\n\
         routes:\n  - {{ path: /, upstream: app }}\n  - {{ path: /trap/, upstream: trap }}\n",
        app.addr(),
        trap.port
    ))
}

fn many_headers(n: usize) -> String {
    (0..n).map(|i| format!("X-H{i}: v\r\n")).collect()
}

#[tokio::test]
async fn malformed_and_ambiguous_requests_are_refused_and_reach_no_backend() {
    let app = Backend::start("1");
    let trap = RawBackend::start(true);
    let proxy = proxy(&app, &trap);
    let big = format!("X-Big: {}\r\n", "a".repeat(40 << 10));
    let cases: Vec<(&str, String, u16)> = vec![
        ("CL with TE", "POST /trap/ HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG".into(), 400),
        ("TE with CL", "POST /trap/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nG".into(), 400),
        ("repeated CL", "POST /trap/ HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx".into(), 400),
        ("CL list", "POST /trap/ HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\nx".into(), 400),
        ("differing CL", "POST /trap/ HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy".into(), 400),
        ("negative CL", "POST /trap/ HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n".into(), 400),
        ("signed CL", "POST /trap/ HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx".into(), 400),
        ("hex CL", "POST /trap/ HTTP/1.1\r\nHost: a\r\nContent-Length: 0x1\r\n\r\nx".into(), 400),
        ("repeated TE", "POST /trap/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), 400),
        ("TE not chunked", "POST /trap/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n".into(), 400),
        ("TE on HTTP/1.0", "POST /trap/ HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), 400),
        ("CL with space before colon", "POST /trap/ HTTP/1.1\r\nHost: a\r\nContent-Length : 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG".into(), 400),
        ("TE with space before colon", "POST /trap/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n".into(), 400),
        ("obs-fold", "GET /trap/ HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  folded\r\n\r\n".into(), 400),
        ("space in name", "GET /trap/ HTTP/1.1\r\nHost: a\r\nBad Name: 1\r\n\r\n".into(), 400),
        ("bare CR", "GET /trap/ HTTP/1.1\r\nHost: a\r\nX-A: 1\r2\r\n\r\n".into(), 400),
        ("bare LF", "GET /trap/ HTTP/1.1\nHost: a\nX-A: 1\n\n".into(), 400),
        ("bare LF at the end", "GET /trap/ HTTP/1.1\r\nHost: a\r\n\n".into(), 400),
        ("NUL in value", "GET /trap/ HTTP/1.1\r\nHost: a\r\nX-A: 1\x002\r\n\r\n".into(), 400),
        ("no Host", "GET /trap/ HTTP/1.1\r\nX-A: 1\r\n\r\n".into(), 400),
        ("two Hosts", "GET /trap/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into(), 400),
        ("absolute form for another host", "GET http://b/trap/ HTTP/1.1\r\nHost: a\r\n\r\n".into(), 400),
        ("above the root", "GET /trap/../../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n".into(), 400),
        ("encoded above the root", "GET /%2e%2e/trap/ HTTP/1.1\r\nHost: a\r\n\r\n".into(), 400),
        ("bad escape", "GET /trap/%zz HTTP/1.1\r\nHost: a\r\n\r\n".into(), 400),
        ("encoded NUL", "GET /trap/%00 HTTP/1.1\r\nHost: a\r\n\r\n".into(), 400),
        ("bad version", "GET /trap/ HTTP/7.1\r\nHost: a\r\n\r\n".into(), 400),
        ("CONNECT", "CONNECT trap:443 HTTP/1.1\r\nHost: trap:443\r\n\r\n".into(), 405),
        ("101 headers", format!("GET /trap/ HTTP/1.1\r\nHost: a\r\n{}\r\n", many_headers(100)), 431),
        ("300 headers", format!("GET /trap/ HTTP/1.1\r\nHost: a\r\n{}\r\n", many_headers(300)), 400),
        ("40 KiB header", format!("GET /trap/ HTTP/1.1\r\nHost: a\r\n{big}\r\n"), 431),
    ];
    let http = client();
    for (name, request, expected) in cases {
        let answer = raw_exchange(proxy.port, request.as_bytes());
        assert_eq!(raw_status(&answer), Some(expected), "{name}: {answer:?}");
        let resp = http.get(proxy.url("/")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{name}: the next client is served");
    }
    let not_utf8 = raw_exchange(proxy.port, b"GET /trap/caf\xe9 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(raw_status(&not_utf8), Some(400), "{not_utf8}");
    assert_eq!(trap.requests(), 0, "no refused request reached a backend");
    // Refusals are in the access log.
    line_with(|| proxy.stdout(), "\" 431 ").await;
}

#[tokio::test]
async fn paths_are_normalised_before_routing_and_forwarded_normalised() {
    let app = Backend::start("1");
    let trap = RawBackend::start(true);
    let proxy = proxy(&app, &trap);
    for (sent, seen) in [
        ("/trap/../echo", "/echo"),
        ("/trap/%2e%2e/echo?q=/../x", "/echo?q=/../x"),
        ("/trap/.%2E/echo", "/echo"),
        ("//echo", "/echo"),
        ("/./echo", "/echo"),
        ("/%65cho", "/echo"),
    ] {
        let request = format!("GET {sent} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let answer = raw_exchange(proxy.port, request.as_bytes());
        assert_eq!(raw_status(&answer), Some(200), "{sent}: {answer}");
        let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
        let echo: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let (path, query) = (echo["path"].as_str(), echo["query"].as_str());
        let target = match (path, query) {
            (Some(path), Some("")) => path.to_string(),
            (Some(path), Some(query)) => format!("{path}?{query}"),
            _ => panic!("{sent}: not an echo: {body}"),
        };
        assert_eq!(target, seen, "{sent}");
    }
    assert_eq!(
        trap.requests(),
        0,
        "no path reached the route it climbed out of"
    );
    let answer = raw_exchange(
        proxy.port,
        b"GET http://a/trap/x/../y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(raw_status(&answer), Some(200), "{answer}");
    assert_eq!(trap.requests(), 1, "absolute form is routed on its path");
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    let app = Backend::start("1");
    let hop = RawBackend::answering(
        "Connection: X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nTrailer: X-T\r\nX-Kept: yes\r\n",
        std::time::Duration::ZERO,
    );
    let proxy = Proxy::start(&format!(
        "upstreams:\n  app:\n    servers:\n      - {{ addr: \"{}\" }}\n  hop:\n    servers:\n      - {{ addr: \"127.0.0.1:{}\" }}\n\
         routes:\n  - {{ path: /, upstream: app }}\n  - {{ path: /hop, upstream: hop }}\n",
        app.addr(),
        hop.port
    ));
    let answer = raw_exchange(
        proxy.port,
        b"GET /hop HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(raw_status(&answer), Some(200), "{answer}");
    let head = answer
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .to_ascii_lowercase();
    for name in ["x-hop:", "keep-alive:", "proxy-connection:", "upgrade:"] {
        assert!(!head.contains(name), "{name} reached the client:\n{head}");
    }
    assert!(head.contains("x-kept: yes"), "{head}");

    let answer = raw_exchange(
        proxy.port,
        b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: X-Hop, close\r\nX-Hop: secret\r\nKeep-Alive: 5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nProxy-Authorization: Basic c2VjcmV0\r\nX-Kept: yes\r\n\r\n",
    );
    assert_eq!(raw_status(&answer), Some(200), "{answer}");
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let echo: serde_json::Value = serde_json::from_str(body).unwrap();
    let headers = echo["headers"].as_object().unwrap();
    for name in [
        "x-hop",
        "keep-alive",
        "proxy-connection",
        "te",
        "proxy-authorization",
    ] {
        assert!(
            !headers.contains_key(name),
            "{name} reached the backend: {headers:?}"
        );
    }
    assert_eq!(headers["x-kept"], "yes");
}
