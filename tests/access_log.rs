//! The access log: its targets, its two formats, and what it leaves out.

mod common;

use common::{client, line_with, upstream, Backend, Proxy};
use std::time::Duration;

const ROUTE_ALL: &str = "routes:\n  - { path: /, upstream: app }\n";

#[tokio::test]
async fn each_request_gets_a_combined_line_on_stdout_except_health_checks() {
    let b1 = Backend::start("blue");
    let proxy = Proxy::start(&format!("{}{ROUTE_ALL}", upstream(&[&b1], &[1])));
    let http = client();
    for _ in 0..3 {
        http.get(proxy.url("/edge-health")).send().await.unwrap();
    }
    let resp = http
        .get(proxy.url("/echo?x=1"))
        .header("user-agent", "tester/1.0")
        .header("referer", "http://shop.example/")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let line = line_with(|| proxy.stdout(), "GET /echo?x=1").await;
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    let expected = format!(
        "\"GET /echo?x=1 HTTP/1.1\" 200 {} \"http://shop.example/\" \"tester/1.0\" upstream=app backend={} instance=blue upstream_time=",
        resp.content_length().unwrap(),
        b1.addr()
    );
    assert!(line.contains(&expected), "{line}\nexpected {expected}");
    assert!(
        line.contains(" request_time=") && line.ends_with(" retries=0"),
        "{line}"
    );

    http.get(proxy.url("/after")).send().await.unwrap();
    line_with(|| proxy.stdout(), "GET /after").await;
    assert!(
        !proxy.stdout().contains("/edge-health"),
        "health checks are not logged"
    );
    // What `off_writes_nothing` relies on: the lines are written by a thread of that name.
    assert!(has_log_writer(&proxy), "no `access-log` writer thread");
}

#[tokio::test]
async fn json_lines_go_to_a_file() {
    let b1 = Backend::start("1");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("access.log");
    let proxy = Proxy::start_with(
        &format!(
            "  access_log: {}\n  access_log_format: json",
            file.display()
        ),
        &format!("{}{ROUTE_ALL}", upstream(&[&b1], &[1])),
    );
    client().get(proxy.url("/slow?ms=20")).send().await.unwrap();
    let line = line_with(
        || std::fs::read_to_string(&file).unwrap_or_default(),
        "/slow",
    )
    .await;
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["target"], "/slow?ms=20");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["backend"], b1.addr());
    assert_eq!(entry["instance"], "1");
    assert!(entry["upstream_time"].as_f64().unwrap() >= 0.02, "{entry}");
    assert!(entry["request_time"].as_f64().unwrap() >= entry["upstream_time"].as_f64().unwrap());
    // The keys as written, not as a parsed map orders them.
    let keys = [
        "time",
        "client",
        "method",
        "target",
        "version",
        "status",
        "bytes_sent",
        "referer",
        "user_agent",
        "upstream",
        "backend",
        "instance",
        "upstream_time",
        "request_time",
        "retries",
    ];
    let at: Vec<_> = keys
        .iter()
        .map(|k| {
            line.find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("{k} in {line}"))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{line}");
    assert_eq!(entry.as_object().unwrap().len(), keys.len(), "{line}");
    assert!(proxy.stdout().is_empty());
}

#[tokio::test]
async fn an_existing_log_file_is_appended_to() {
    let b1 = Backend::start("1");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("access.log");
    std::fs::write(&file, "an earlier line\n").unwrap();
    let proxy = Proxy::start_with(
        &format!("  access_log: {}", file.display()),
        &format!("{}{ROUTE_ALL}", upstream(&[&b1], &[1])),
    );
    client().get(proxy.url("/appended")).send().await.unwrap();
    line_with(|| common::read_log(&file), "/appended").await;
    let text = common::read_log(&file);
    assert!(text.starts_with("an earlier line\n"), "{text}");
}

#[tokio::test]
async fn off_writes_nothing() {
    let b1 = Backend::start("1");
    let proxy = Proxy::start_with(
        "  access_log: off",
        &format!("{}{ROUTE_ALL}", upstream(&[&b1], &[1])),
    );
    // With `Connection: close` the proxy lets the connection go only after it has logged the
    // request (Pingora runs `logging` first), so a line written then is there by the end.
    let answer = common::raw_exchange(
        proxy.port,
        b"GET / HTTP/1.1\r\nHost: off\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(common::raw_status(&answer), Some(200), "{answer}");
    // A line left in a worker's buffer is written later, by the writer thread; with no such
    // thread none can come, so there is nothing to wait for.
    assert!(
        !has_log_writer(&proxy),
        "`off` runs the access log's writer"
    );
    assert_eq!(proxy.stdout(), "");
}

/// Whether the proxy runs the access log's writer thread (`access-log`), which writes the lines
/// requests leave in their threads' buffers.
fn has_log_writer(proxy: &Proxy) -> bool {
    std::fs::read_dir(format!("/proc/{}/task", proxy.child.pid()))
        .expect("the proxy's threads")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .any(|name| name.trim_end() == "access-log")
}

#[test]
fn an_unwritable_log_file_is_a_check_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edgeproxy.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  listen: [\"127.0.0.1:{}\"]\n  access_log: /nonexistent/dir/access.log\nupstreams:\n  app: {{ servers: [ {{ addr: 127.0.0.1:1 }} ] }}\n{ROUTE_ALL}",
            common::free_port()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edgeproxy"))
        .args(["check", "-c", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("server.access_log: cannot open /nonexistent/dir/access.log"),
        "{stderr}"
    );
    assert!(
        stderr.contains("create its directory, or choose another path"),
        "{stderr}"
    );
}

#[tokio::test]
async fn credentials_never_reach_a_log() {
    const SECRET: &str = "s3cr3t-t0ken";
    let backend = Backend::start("1");
    for format in ["combined", "json"] {
        let proxy = Proxy::start_with(
            &format!("  access_log_format: {format}"),
            &format!("{}{ROUTE_ALL}", upstream(&[&backend], &[1])),
        );
        let http = client();
        for path in ["/echo", "/missing/../../x", "/status/500"] {
            http.get(proxy.url(path))
                .header("Authorization", format!("Bearer {SECRET}"))
                .header("Cookie", format!("session={SECRET}"))
                .header("Proxy-Authorization", format!("Basic {SECRET}"))
                .send()
                .await
                .unwrap();
        }
        line_with(|| proxy.stdout(), "/status/500").await;
        assert!(
            !proxy.stdout().contains(SECRET),
            "{format}: {}",
            proxy.stdout()
        );
        assert!(!proxy.log().contains(SECRET), "{format}: {}", proxy.log());
    }
}

#[tokio::test]
async fn lines_are_dropped_with_a_warning_when_the_log_falls_behind() {
    use std::io::BufRead;
    let b1 = Backend::start("1");
    let dir = tempfile::tempdir().unwrap();
    // A pipe that its reader opens and then leaves unread: the writer blocks once the pipe's
    // 64 KiB are full, as on a disk that stopped.
    let fifo = dir.path().join("access.log");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a plain call with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::File::open(fifo).unwrap())
    };
    let proxy = Proxy::start_with(
        &format!("  access_log: {}", fifo.display()),
        &format!("{}{ROUTE_ALL}", upstream(&[&b1], &[1])),
    );
    let reader = reader.join().unwrap();

    // 3,000 lines of about 1.1 KiB: well past the pipe and the 2 MiB queue.
    const SENT: usize = 3000;
    let padding = "x".repeat(1000);
    let http = client();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (http, url) = (http.clone(), proxy.url(&format!("/?pad={padding}")));
            tokio::spawn(async move {
                for _ in 0..SENT / 4 {
                    let resp = http.get(&url).send().await.unwrap();
                    assert_eq!(resp.status(), 200);
                }
            })
        })
        .collect();
    for task in tasks {
        // Requests do not wait for the log: all of them are answered while it is stuck.
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("requests were held up by the stuck access log")
            .unwrap();
    }
    let warning = line_with(|| proxy.log(), "line(s) dropped so far").await;
    let warned: usize = warning
        .split("cannot keep up; ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count in {warning}"));

    // A last request, sent once lines were dropped, then the reader reads at last: what was
    // queued is written whole (lines of partly filled buffers, this one among them, may come
    // before older full batches).
    let resp = http.get(proxy.url("/?last=1")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(reader).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let (mut lines, mut last_seen) = (Vec::new(), false);
    // The backlog comes at the pipe's speed: done once nothing more comes for 2 s.
    let quiet = Duration::from_secs(2);
    while let Ok(line) = rx.recv_timeout(if last_seen { quiet } else { quiet * 15 }) {
        if line.contains("GET /?last=1 ") {
            last_seen = true;
        } else {
            lines.push(line);
        }
    }
    assert!(last_seen, "the last line was never written");
    assert!(
        lines
            .iter()
            .all(|l| l.contains(&padding) && l.contains(" 200 ")),
        "a line was cut"
    );
    assert!(
        lines.len() + warned <= SENT && lines.len() < SENT,
        "{} lines written, {warned} dropped",
        lines.len()
    );
    // At least the queue's 2 MiB (of 1.1 KiB lines) made it.
    assert!(lines.len() > 1800, "{} lines written", lines.len());
}
