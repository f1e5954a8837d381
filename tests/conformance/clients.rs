//! Widely used clients, run as their users run them, against the proxy: ApacheBench (HTTP/1.0
//! with keep-alive), curl with `--http1.0`, and nghttp2's `h2load` and `nghttp` over HTTPS.

use crate::common::Backend;
use crate::https::HttpsProxy;
use crate::{proxy_for, ROUTE_ALL, ROUTE_EVENTS};
use std::process::Command;

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (scripts/setup.sh --test installs it): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?} failed:\n{text}");
    text
}

/// The number after `label` on its line of `report`.
fn figure(report: &str, label: &str) -> u64 {
    let line = report
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} in:\n{report}"));
    line[line.find(label).unwrap() + label.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no figure after {label:?} in {line:?}"))
}

/// ab speaks HTTP/1.0 and, with `-k`, asks for keep-alive on every request.
#[test]
fn apachebench_keeps_every_http10_connection_alive_and_fails_nothing() {
    let app = Backend::start("1");
    let proxy = proxy_for(&app.addr(), ROUTE_ALL);
    let report = run("ab", &["-k", "-n", "2000", "-c", "20", &proxy.url("/")]);
    assert_eq!(figure(&report, "Complete requests:"), 2000, "{report}");
    assert_eq!(figure(&report, "Failed requests:"), 0, "{report}");
    assert_eq!(figure(&report, "Keep-Alive requests:"), 2000, "{report}");
    assert!(!report.contains("Non-2xx responses"), "{report}");
}

#[test]
fn curl_http10_reads_a_chunked_event_stream_as_events() {
    let app = Backend::start("1");
    let proxy = proxy_for(&app.addr(), ROUTE_EVENTS);
    let out = run(
        "curl",
        &[
            "-si",
            "--http1.0",
            &proxy.url("/events?count=2&interval_ms=20"),
        ],
    );
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        !out.to_ascii_lowercase().contains("transfer-encoding"),
        "{out}"
    );
    let body = &out[out.find("\r\n\r\n").expect("a header") + 4..];
    assert!(body.starts_with("id: 1\nevent: tick\n"), "{body:?}");
    assert_eq!(body.matches("event: tick\n").count(), 2, "{body:?}");
}

#[test]
fn h2load_completes_every_request_over_http2() {
    let app = Backend::start("1");
    let https = HttpsProxy::start(&app.addr());
    let report = run(
        "h2load",
        &["-n", "5000", "-c", "10", "-m", "10", &https.url("/")],
    );
    assert!(report.contains("Application protocol: h2"), "{report}");
    assert!(
        report.contains("requests: 5000 total, 5000 started, 5000 done, 5000 succeeded, 0 failed, 0 errored, 0 timeout"),
        "{report}"
    );
    assert!(report.contains("status codes: 5000 2xx"), "{report}");
}

#[test]
fn nghttp_gets_an_answer_over_http2() {
    let app = Backend::start("1");
    let https = HttpsProxy::start(&app.addr());
    let out = run("nghttp", &["-v", &https.url("/")]);
    assert!(out.contains("The negotiated protocol: h2"), "{out}");
    assert!(out.contains(":status: 200"), "{out}");
}
