//! HTTP/1.0 clients (RFC 9112 §6.1, §9.3): no chunked framing, a body ended by closing when
//! no length is known, and keep-alive only when asked for and possible.

use crate::common::Backend;
use crate::wire::{Client, RecordingBackend};
use crate::{proxy_for, proxy_to, ROUTE_EVENTS};
use std::io::Read;

fn get10(path: &str, keep_alive: bool) -> String {
    let connection = if keep_alive {
        "Connection: keep-alive\r\n"
    } else {
        ""
    };
    format!("GET {path} HTTP/1.0\r\nHost: a\r\n{connection}\r\n")
}

#[test]
fn a_chunked_answer_reaches_an_http10_client_unchunked_and_closed() {
    let backend = RecordingBackend::start();
    let proxy = proxy_to(&backend);
    for keep_alive in [false, true] {
        let mut client = Client::connect(proxy.port);
        client.send(get10("/chunked/a", keep_alive).as_bytes());
        let answer = client.response(false).expect("an answer");
        let what = format!("keep-alive asked: {keep_alive}");
        assert_eq!(
            answer.header("transfer-encoding"),
            None,
            "{what}: {answer:?}"
        );
        assert_eq!(answer.header("content-length"), None, "{what}: {answer:?}");
        assert_eq!(
            answer.header("connection"),
            Some("close"),
            "{what}: {answer:?}"
        );
        // Read to the close: chunk-size lines would show in the body.
        assert_eq!(answer.text(), "GET /chunked/a 0", "{what}");
        assert!(client.closed(), "{what}");
    }
}

#[test]
fn an_http10_client_keeps_alive_only_when_it_asks_and_a_length_is_known() {
    let backend = RecordingBackend::start();
    let proxy = proxy_to(&backend);

    let mut client = Client::connect(proxy.port);
    client.send(get10("/len", false).as_bytes());
    let answer = client.response(false).unwrap();
    assert_eq!(answer.text(), "GET /len 0");
    assert_eq!(answer.header("connection"), Some("close"), "{answer:?}");
    assert!(client.closed(), "no keep-alive unless asked for");

    let mut client = Client::connect(proxy.port);
    for (request, head, body) in [
        (get10("/len", true), false, "GET /len 0"),
        (
            "HEAD /chunked/h HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n".into(),
            true,
            "",
        ),
        (get10("/status/204", true), false, ""),
        (get10("/status/304", true), false, ""),
        (get10("/len", true), false, "GET /len 0"),
    ] {
        client.send(request.as_bytes());
        let answer = client
            .response(head)
            .expect("an answer on the kept connection");
        assert_eq!(
            answer.header("connection"),
            Some("keep-alive"),
            "{request}: {answer:?}"
        );
        assert_eq!(
            answer.header("transfer-encoding"),
            None,
            "{request}: {answer:?}"
        );
        assert_eq!(answer.text(), body, "{request}");
    }
    let seen: Vec<String> = backend.take().into_iter().map(|s| s.request_line).collect();
    assert_eq!(
        seen,
        [
            "GET /len",
            "GET /len",
            "HEAD /chunked/h",
            "GET /status/204",
            "GET /status/304",
            "GET /len"
        ]
    );
}

/// An event stream to an HTTP/1.0 client is close-delimited, events as they come.
#[test]
fn an_http10_client_reads_an_event_stream_to_its_close() {
    let app = Backend::start("1");
    let proxy = proxy_for(&app.addr(), ROUTE_EVENTS);
    let mut client = Client::connect(proxy.port);
    client.send(get10("/events?count=3&interval_ms=50", true).as_bytes());
    let answer = client.response(false).expect("an answer");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("transfer-encoding"), None, "{answer:?}");
    assert_eq!(answer.header("connection"), Some("close"), "{answer:?}");
    let text = answer.text();
    assert!(text.starts_with("id: 1\nevent: tick\ndata: "), "{text:?}");
    assert_eq!(text.matches("event: tick\n").count(), 3, "{text:?}");
    let mut rest = Vec::new();
    let _ = client.stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing after the close-delimited body");
}
