//! Pipelining (RFC 9112 §9.3.2): requests sent before the previous answer are answered in
//! order, each reaches the backend once, and none rides inside another's body.

use crate::proxy_to;
use crate::wire::{Client, RecordingBackend, Seen};

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n")
}

fn seen(request_line: &str, body: &[u8]) -> Seen {
    Seen {
        request_line: request_line.to_string(),
        body: body.to_vec(),
    }
}

/// Reads `expected.len()` responses and checks each body, in order.
fn expect_answers(client: &mut Client, expected: &[&str], what: &str) {
    for (i, want) in expected.iter().enumerate() {
        let Some(response) = client.response(false) else {
            panic!(
                "{what}: the connection closed after {i} of {} answers",
                expected.len()
            );
        };
        assert_eq!(response.status, 200, "{what}: answer {i}: {response:?}");
        assert_eq!(response.text(), *want, "{what}: answer {i} out of order");
    }
}

#[test]
fn pipelined_gets_are_all_answered_in_order() {
    let backend = RecordingBackend::start();
    let proxy = proxy_to(&backend);
    for n in [2, 10, 100] {
        let mut client = Client::connect(proxy.port);
        let paths: Vec<String> = (0..n).map(|i| format!("/p{n}/{i}")).collect();
        let burst: String = paths.iter().map(|p| get(p)).collect();
        client.send(burst.as_bytes());
        let want: Vec<String> = paths.iter().map(|p| format!("GET {p} 0")).collect();
        let want: Vec<&str> = want.iter().map(String::as_str).collect();
        expect_answers(&mut client, &want, &format!("{n} GETs in one write"));
        // The connection is still good for the next request.
        client.send(get("/after").as_bytes());
        expect_answers(&mut client, &["GET /after 0"], &format!("after {n} GETs"));
        let mut expected: Vec<Seen> = paths
            .iter()
            .map(|p| seen(&format!("GET {p}"), b""))
            .collect();
        expected.push(seen("GET /after", b""));
        assert_eq!(
            backend.take(),
            expected,
            "{n} GETs: each reached the backend once"
        );
    }
}

/// Bodies by length and by chunks, one holding the bytes of a request, and a request the
/// proxy answers itself, all in one write.
#[test]
fn pipelined_bodies_end_where_their_framing_says() {
    let backend = RecordingBackend::start();
    let proxy = proxy_to(&backend);
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let burst = format!(
        "{}POST /m/2 HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{smuggled}\
         POST /m/3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
         {}{}",
        get("/m/1"),
        smuggled.len(),
        get("/edge-health"),
        get("/m/4"),
    );
    let mut client = Client::connect(proxy.port);
    client.send(burst.as_bytes());
    let body_2 = format!("POST /m/2 {}", smuggled.len());
    let answers = client.response(false).unwrap();
    assert_eq!(answers.text(), "GET /m/1 0");
    expect_answers(&mut client, &[&body_2, "POST /m/3 5"], "bodies");
    let health = client.response(false).expect("the health check answered");
    assert_eq!(health.status, 200, "{health:?}");
    expect_answers(&mut client, &["GET /m/4 0"], "after the health check");
    assert_eq!(
        backend.take(),
        vec![
            seen("GET /m/1", b""),
            seen("POST /m/2", smuggled.as_bytes()),
            seen("POST /m/3", b"hello"),
            seen("GET /m/4", b""),
        ],
        "each request reached the backend once, the body's request as body"
    );
}

/// Two requests, the first with a body, split in two writes at every byte: the second
/// request's start may come with the first's head, inside its body's read, or alone.
#[test]
fn a_pipeline_split_at_any_byte_is_answered_whole() {
    let backend = RecordingBackend::start();
    let proxy = proxy_to(&backend);
    let sample = format!(
        "POST /s/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc{}",
        get("/s/2")
    );
    for cut in 1..sample.len() {
        let mut client = Client::connect(proxy.port);
        client.send(&sample.as_bytes()[..cut]);
        std::thread::sleep(std::time::Duration::from_millis(2));
        client.send(&sample.as_bytes()[cut..]);
        expect_answers(
            &mut client,
            &["POST /s/1 3", "GET /s/2 0"],
            &format!("cut at {cut}"),
        );
        assert_eq!(
            backend.take(),
            vec![seen("POST /s/1", b"abc"), seen("GET /s/2", b"")],
            "cut at {cut}"
        );
    }
}

/// After an answer that ends the connection, what was pipelined behind its request is
/// neither answered nor sent on.
#[test]
fn nothing_behind_a_closing_answer_is_answered_or_forwarded() {
    let backend = RecordingBackend::start();
    let proxy = proxy_to(&backend);
    let cases = [
        (
            "Connection: close",
            "GET /c/1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            Some("GET /c/1"),
        ),
        (
            "HTTP/1.0",
            "GET /c/2 HTTP/1.0\r\nHost: a\r\n\r\n",
            Some("GET /c/2"),
        ),
        (
            "refused by the proxy",
            "GET /c/3 HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
            None,
        ),
    ];
    for (what, first, reaches) in cases {
        let mut client = Client::connect(proxy.port);
        client.send(format!("{first}{}", get("/behind")).as_bytes());
        let answer = client
            .response(false)
            .expect("the first request is answered");
        assert_eq!(
            answer.status == 200,
            reaches.is_some(),
            "{what}: {answer:?}"
        );
        assert!(
            client.closed(),
            "{what}: the connection ends after the first answer"
        );
        let expected: Vec<Seen> = reaches.into_iter().map(|line| seen(line, b"")).collect();
        assert_eq!(
            backend.take(),
            expected,
            "{what}: nothing behind it was forwarded"
        );
    }
}
