//! HTTP/2 attacks in raw frames (tests/conformance/h2_frames.py, on the h2 package's frame
//! and HPACK parts): each connection is stopped, and the proxy serves the next one.

use crate::common::Backend;
use crate::https::HttpsProxy;
use crate::wire::RecordingBackend;
use std::path::Path;
use std::process::Command;

/// What the probe saw the server do.
fn probe(port: u16, mode: &str, arg: u64) -> serde_json::Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/tools/venv/bin/python3");
    let out = Command::new(&python)
        .arg(root.join("tests/conformance/h2_frames.py"))
        .args([port.to_string(), mode.to_string(), arg.to_string()])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} runs (scripts/setup.sh --test makes it): {e}",
                python.display()
            )
        });
    assert!(
        out.status.success(),
        "h2_frames.py {mode} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

/// The GOAWAY of a connection closed for abuse says `ENHANCE_YOUR_CALM`. The server closes
/// with the flood's bytes unread, which resets the connection, and a reset may discard the
/// GOAWAY before the probe reads it: then there is none to check.
fn assert_calm(seen: &serde_json::Value) {
    assert!(
        seen["goaway"].is_null() || seen["goaway"] == 11,
        "GOAWAY with ENHANCE_YOUR_CALM: {seen}"
    );
}

/// A plain GET over a new HTTP/2 connection, through nghttp.
fn served(https: &HttpsProxy) -> bool {
    let out = Command::new("nghttp")
        .arg(https.url("/"))
        .output()
        .expect("nghttp runs");
    out.status.success()
}

/// CVE-2023-44487: streams opened and reset at once, 2,000 times on one connection.
#[test]
fn rapid_reset_gets_goaway_and_hardly_reaches_the_backend() {
    let backend = RecordingBackend::start();
    let https = HttpsProxy::start(&format!("127.0.0.1:{}", backend.port));
    let seen = probe(https.port, "rapid-reset", 2000);
    assert_eq!(seen["closed"], true, "{seen}");
    assert_calm(&seen);
    let reached = backend.take().len();
    assert!(
        reached < 200,
        "{reached} of 2,000 reset requests reached the backend"
    );
    assert!(served(&https), "the next connection is served");
}

/// CVE-2024-27316 and kin: a header block that never ends.
#[test]
fn a_continuation_flood_is_cut_with_goaway() {
    let app = Backend::start("1");
    let https = HttpsProxy::start(&app.addr());
    let flood = 16 << 20;
    let seen = probe(https.port, "continuation", flood);
    assert_eq!(seen["closed"], true, "{seen}");
    assert_calm(&seen);
    // What the kernel's buffers took before the close reached the probe; the server stopped
    // reading at its 64 KiB header limit.
    let sent = seen["sent"].as_u64().unwrap();
    assert!(
        sent < flood,
        "the whole {flood}-byte header block was taken"
    );
    assert!(served(&https), "the next connection is served");
}

/// Streams beyond SETTINGS_MAX_CONCURRENT_STREAMS are refused, the others answered.
#[test]
fn streams_beyond_the_advertised_limit_are_refused() {
    let app = Backend::start("1");
    let https = HttpsProxy::start(&app.addr());
    let seen = probe(https.port, "streams", 20);
    let limit = seen["limit"].as_u64().expect("a limit");
    assert_eq!(seen["ok"].as_u64(), Some(limit), "{seen}");
    assert_eq!(
        seen["refused"], 20,
        "REFUSED_STREAM for each extra one: {seen}"
    );
    assert_eq!(seen["closed"], false, "the connection stays: {seen}");
}
