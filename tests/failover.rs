//! Health checks, passive failures, retries and backup servers, with backends that die.

mod common;

use common::{
    answered_by, client, free_port, instance, line_with, metric, raw_status, up_gauge, wait_metric,
    wait_metric_at_least, Backend, Proxy, RawBackend, APP_RETRIES,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Polls the `up` gauge of `backend` until it is `want`; returns how long that took.
async fn wait_up(metrics_port: u16, backend: &str, want: bool, limit: Duration) -> Duration {
    let want = if want { 1.0 } else { 0.0 };
    wait_metric(metrics_port, &up_gauge(backend), want, limit).await
}

/// The series counting `backend`'s health checks of `result` (`ok` or `fail`) in `app`.
fn checks(backend: &str, result: &str) -> String {
    format!(
        "edgeproxy_health_checks_total{{backend=\"{backend}\",result=\"{result}\",upstream=\"app\"}}"
    )
}

/// Waits until a health check of `backend` has passed, failing the test after 2 s: the `up`
/// gauge reads 1 from the start, before any check has run.
async fn wait_passed_check(metrics_port: u16, backend: &str) {
    let passed = checks(backend, "ok");
    wait_metric_at_least(metrics_port, &passed, 1.0, Duration::from_secs(2)).await;
}

const CHECK: &str = "health_check: { type: http, path: /health, interval: 300ms, timeout: 200ms, fall: 2, rise: 2 }";

fn upstream(metrics_port: u16, extra: &str, servers: &[String]) -> String {
    let mut yaml =
        format!("metrics: {{ listen: \"127.0.0.1:{metrics_port}\" }}\nupstreams:\n  app:\n");
    for line in extra.lines() {
        yaml.push_str(&format!("    {line}\n"));
    }
    yaml.push_str("    servers:\n");
    for server in servers {
        yaml.push_str(&format!("      - {server}\n"));
    }
    yaml + "routes:\n  - { path: /, upstream: app }\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_backend_under_load_fails_no_request_and_it_rejoins_after_rise() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let (b_port, b_addr) = (b.port, b.addr());
    let metrics_port = free_port();
    let proxy = Proxy::start(&upstream(
        metrics_port,
        CHECK,
        &[
            format!("{{ addr: \"{}\", id: a }}", a.addr()),
            format!("{{ addr: \"{b_addr}\", id: b }}"),
        ],
    ));

    // 8 clients × 188 ≥ 1,500 GETs; b is killed a third of the way in, told by the requests
    // answered (b answers half of them) rather than by time, so at any speed.
    let tasks = common::steady_load(proxy.url("/"), 8, 188, Duration::from_millis(2));
    let b_third = (8 * 188 / 3 / 2) as f64;
    wait_metric_at_least(
        metrics_port,
        &answered_by(&b_addr),
        b_third,
        Duration::from_secs(10),
    )
    .await;
    let killed = Instant::now();
    drop(b);
    // fall × interval + timeout = 2 × 300ms + 200ms, plus scheduling slack.
    let detected = wait_up(metrics_port, &b_addr, false, Duration::from_secs(3)).await;
    assert!(
        killed.elapsed() <= Duration::from_millis(800) + Duration::from_millis(400),
        "down after {detected:?}"
    );

    let totals = common::load_totals(tasks).await;
    let failed: usize = totals
        .iter()
        .filter(|(k, _)| *k != "a" && *k != "b")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(failed, 0, "failed requests: {totals:?}");
    assert_eq!(totals.values().sum::<usize>(), 8 * 188);

    // Back on the same port: up after `rise` (2) good probes, then it gets traffic again.
    let _b = Backend::start_on(b_port, "b", &[]);
    let rejoined = wait_up(metrics_port, &b_addr, true, Duration::from_secs(3)).await;
    assert!(
        rejoined >= Duration::from_millis(250),
        "rejoined after only {rejoined:?}"
    );
    let http = client();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(instance(&http.get(proxy.url("/")).send().await.unwrap()));
    }
    assert!(seen.contains(&"b".to_string()), "{seen:?}");

    // Each change logged once at INFO, with its reason.
    let log = proxy.log();
    let about_b: Vec<_> = log
        .lines()
        .filter(|l| l.contains(&format!("upstream app: server {b_addr} is ")))
        .collect();
    assert_eq!(about_b.len(), 2, "{log}");
    assert!(about_b.iter().all(|l| l.contains(" INFO ")), "{about_b:?}");
    assert!(about_b[0].contains("is down: "), "{about_b:?}");
    assert!(
        about_b[1].contains("is up (2 successful check(s))"),
        "{about_b:?}"
    );
}

#[tokio::test]
async fn http_checks_judge_by_status_and_tcp_checks_by_connect() {
    let a = Backend::start("a");
    let (dead, _dead_held) = common::dead_port();
    let metrics_port = free_port();
    let check = |path: &str, expect: &str| {
        format!("health_check: {{ type: http, path: {path}, {expect} interval: 200ms, timeout: 200ms, fall: 1, rise: 1 }}")
    };
    // /status/500 fails the default any-2xx check.
    let proxy = Proxy::start(&upstream(
        metrics_port,
        &check("/status/500", ""),
        &[format!("{{ addr: \"{}\" }}", a.addr())],
    ));
    wait_up(metrics_port, &a.addr(), false, Duration::from_secs(2)).await;
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 503, "no ready server answers 503 at once");
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("upstream `app` has no server ready"));
    drop(proxy);

    // expect_status is honoured both ways.
    let metrics_port = free_port();
    let _p = Proxy::start(&upstream(
        metrics_port,
        &check("/status/404", "expect_status: [404],"),
        &[format!("{{ addr: \"{}\" }}", a.addr())],
    ));
    wait_passed_check(metrics_port, &a.addr()).await;
    wait_up(metrics_port, &a.addr(), true, Duration::from_secs(1)).await;
    let metrics_port = free_port();
    let _p = Proxy::start(&upstream(
        metrics_port,
        &check("/health", "expect_status: [204],"),
        &[format!("{{ addr: \"{}\" }}", a.addr())],
    ));
    wait_up(metrics_port, &a.addr(), false, Duration::from_secs(2)).await;

    // TCP: a closed port is down, a listening one up.
    let metrics_port = free_port();
    let _p = Proxy::start(&upstream(
        metrics_port,
        "health_check: { type: tcp, interval: 200ms, timeout: 200ms, fall: 1, rise: 1 }",
        &[
            format!("{{ addr: \"{}\" }}", a.addr()),
            format!("{{ addr: \"127.0.0.1:{dead}\" }}"),
        ],
    ));
    wait_up(
        metrics_port,
        &format!("127.0.0.1:{dead}"),
        false,
        Duration::from_secs(2),
    )
    .await;
    wait_passed_check(metrics_port, &a.addr()).await;
    wait_up(metrics_port, &a.addr(), true, Duration::from_secs(1)).await;
}

#[tokio::test]
async fn passive_failures_skip_a_server_for_fail_timeout_then_try_it_again() {
    let good = Backend::start("good");
    let (dead, _dead_held) = common::dead_port();
    let metrics_port = free_port();
    let proxy = Proxy::start(&upstream(
        metrics_port,
        "retries: 0",
        &[
            format!("{{ addr: \"127.0.0.1:{dead}\", id: dead, max_fails: 2, fail_timeout: 1s }}"),
            format!("{{ addr: \"{}\", id: good }}", good.addr()),
        ],
    ));
    let http = client();
    let get_statuses = |n| {
        let (http, url) = (http.clone(), proxy.url("/"));
        async move {
            let mut statuses = Vec::new();
            for _ in 0..n {
                statuses.push(http.get(&url).send().await.unwrap().status().as_u16());
            }
            statuses
        }
    };
    let statuses = get_statuses(12).await;
    // Round robin alternates until the second failure takes the dead server out.
    assert_eq!(statuses[..4], [502, 200, 502, 200], "{statuses:?}");
    assert!(statuses[4..].iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        metric(metrics_port, &up_gauge(&format!("127.0.0.1:{dead}"))).await,
        Some(0.0)
    );

    // Past the 1 s fail_timeout.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = get_statuses(2).await;
    assert!(
        after.contains(&502),
        "tried again after fail_timeout: {after:?}"
    );
}

#[tokio::test]
async fn retries_move_a_refused_request_to_another_server() {
    let good = Backend::start("good");
    let (dead, _dead_held) = common::dead_port();
    let proxy = Proxy::start(&upstream(
        free_port(),
        "retries: 1",
        &[
            format!("{{ addr: \"127.0.0.1:{dead}\", max_fails: 0 }}"),
            format!("{{ addr: \"{}\", id: good }}", good.addr()),
        ],
    ));
    let http = client();
    for _ in 0..6 {
        let resp = http
            .post(proxy.url("/models"))
            .header("content-type", "application/json")
            .body(r#"{"name":"X","pieces":10,"theme":"City","difficulty":"easy","price_us":9.5,"year":2020}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            200,
            "a POST whose connection failed is retried"
        );
        assert_eq!(instance(&resp), "good");
    }
}

#[tokio::test]
async fn a_request_the_server_may_have_acted_on_is_replayed_only_if_idempotent() {
    let dying = RawBackend::start(false);
    let healthy = RawBackend::start(true);
    let metrics_port = free_port();
    let proxy = Proxy::start(&upstream(
        metrics_port,
        "retries: 1",
        &[
            format!("{{ addr: \"127.0.0.1:{}\", max_fails: 0 }}", dying.port),
            format!("{{ addr: \"127.0.0.1:{}\", max_fails: 0 }}", healthy.port),
        ],
    ));
    let http = client();
    // Round robin sends the first request to the dying server.
    let resp = http
        .post(proxy.url("/orders"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(
        (dying.requests(), healthy.requests()),
        (1, 0),
        "the POST was replayed"
    );
    assert_eq!(metric(metrics_port, APP_RETRIES).await, Some(0.0));

    let _ = http.get(proxy.url("/")).send().await.unwrap(); // the healthy server's turn
    let resp = http.get(proxy.url("/items")).send().await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "a GET the server dropped is retried elsewhere"
    );
    assert_eq!((dying.requests(), healthy.requests()), (2, 2));
    assert_eq!(
        metric(metrics_port, APP_RETRIES).await,
        Some(1.0),
        "exactly the GET was sent again"
    );
    let post = line_with(|| proxy.stdout(), "\"POST /orders ").await;
    assert!(post.ends_with(" retries=0"), "{post}");
    let get = line_with(|| proxy.stdout(), "\"GET /items ").await;
    assert!(get.ends_with(" retries=1"), "{get}");
}

#[tokio::test]
async fn an_http_probe_is_a_get_on_a_new_connection_with_its_host_and_user_agent() {
    // HTTP/1.1 also to an upstream that gets its requests over h2c.
    for protocol in ["", "http2: true\n"] {
        probe_shape(protocol).await;
    }
}

async fn probe_shape(protocol: &str) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (probes, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // One probe per accepted connection: each gets its answer, and the next must come on
        // a new connection.
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            if probes
                .send(String::from_utf8_lossy(&seen).into_owned())
                .is_err()
            {
                return;
            }
        }
    });
    let _proxy = Proxy::start(&upstream(
        free_port(),
        &format!(
            "{protocol}health_check: {{ type: http, path: /health, host: app.internal, interval: 200ms }}"
        ),
        &[format!("{{ addr: \"127.0.0.1:{port}\" }}")],
    ));
    for _ in 0..2 {
        let probe = received
            .recv_timeout(Duration::from_secs(5))
            .expect("a probe");
        let lower = probe.to_ascii_lowercase();
        assert!(
            probe.starts_with("GET /health HTTP/1.1\r\n"),
            "{protocol}{probe:?}"
        );
        for line in [
            "host: app.internal",
            "connection: close",
            "user-agent: edgeproxy-health-check",
        ] {
            assert!(
                lower.contains(&format!("\r\n{line}\r\n")),
                "no {line}: {probe:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_server_down_at_start_never_gets_traffic() {
    let good = Backend::start("good");
    let (dead, _dead_held) = common::dead_port();
    let metrics_port = free_port();
    // Probes 10 s apart, passive checks off: only the first probe can keep requests away
    // from the dead server, and it must have decided by the time the proxy serves.
    let proxy = Proxy::start(&upstream(
        metrics_port,
        "health_check: { type: tcp, interval: 10s }",
        &[
            format!("{{ addr: \"127.0.0.1:{dead}\", max_fails: 0 }}"),
            format!("{{ addr: \"{}\", id: good }}", good.addr()),
        ],
    ));
    for _ in 0..6 {
        let resp = client().get(proxy.url("/")).send().await.unwrap();
        assert_eq!(
            (resp.status().as_u16(), instance(&resp)),
            (200, "good".into())
        );
    }
    assert_eq!(
        metric(metrics_port, APP_RETRIES).await,
        Some(0.0),
        "a request went to the server that was down at start"
    );
}

#[tokio::test]
async fn a_read_timeout_is_not_retried() {
    // Both servers take 1 s to answer: a retry would only double the load they are under.
    let slow_a = RawBackend::answering("", Duration::from_secs(1));
    let slow_b = RawBackend::answering("", Duration::from_secs(1));
    let metrics_port = free_port();
    let proxy = Proxy::start(&upstream(
        metrics_port,
        "retries: 2\nread_timeout: 300ms",
        &[
            format!("{{ addr: \"127.0.0.1:{}\", max_fails: 0 }}", slow_a.port),
            format!("{{ addr: \"127.0.0.1:{}\", max_fails: 0 }}", slow_b.port),
        ],
    ));
    let resp = client().get(proxy.url("/items")).send().await.unwrap();
    assert_eq!(resp.status(), 504);
    assert_eq!(
        slow_a.requests() + slow_b.requests(),
        1,
        "the timed-out GET was sent again"
    );
    assert_eq!(metric(metrics_port, APP_RETRIES).await, Some(0.0));
}

#[tokio::test]
async fn a_5xx_answer_is_not_a_passive_failure() {
    let b1 = Backend::start("1");
    let metrics_port = free_port();
    let proxy = Proxy::start(&upstream(
        metrics_port,
        "retries: 1",
        &[format!(
            "{{ addr: \"{}\", max_fails: 1, fail_timeout: 10s }}",
            b1.addr()
        )],
    ));
    // With max_fails: 1, one counted failure would leave no server: 503 from the second on.
    for _ in 0..5 {
        let resp = client().get(proxy.url("/status/500")).send().await.unwrap();
        assert_eq!(resp.status(), 500);
    }
    assert_eq!(metric(metrics_port, &up_gauge(&b1.addr())).await, Some(1.0));
}

#[tokio::test]
async fn backup_servers_serve_only_while_every_primary_is_down() {
    let p1 = Backend::start("p1");
    let p2 = Backend::start("p2");
    let spare = Backend::start("spare");
    let p1_port = p1.port;
    let metrics_port = free_port();
    let proxy = Proxy::start(&upstream(
        metrics_port,
        CHECK,
        &[
            format!("{{ addr: \"{}\", id: p1 }}", p1.addr()),
            format!("{{ addr: \"{}\", id: p2 }}", p2.addr()),
            format!("{{ addr: \"{}\", id: spare, backup: true }}", spare.addr()),
        ],
    ));
    let http = client();
    let ids = |n| {
        let http = http.clone();
        let url = proxy.url("/");
        async move {
            let mut ids = Vec::new();
            for _ in 0..n {
                let resp = http.get(&url).send().await.unwrap();
                assert_eq!(resp.status(), 200);
                ids.push(instance(&resp));
            }
            ids
        }
    };
    assert!(ids(20).await.iter().all(|id| id != "spare"));

    let (p1_addr, p2_addr) = (p1.addr(), p2.addr());
    drop(p1);
    drop(p2);
    assert!(
        ids(10).await.iter().all(|id| id == "spare"),
        "retries reach the backup at once"
    );

    // Once the checks have seen both down (fall: 2 failed checks each; the passive mark of
    // the retries above already reads as down), coming back clears the passive mark too.
    for addr in [&p1_addr, &p2_addr] {
        let failed = checks(addr, "fail");
        wait_metric_at_least(metrics_port, &failed, 2.0, Duration::from_secs(3)).await;
    }
    assert!(ids(5).await.iter().all(|id| id == "spare"));
    let _p1 = Backend::start_on(p1_port, "p1", &[]);
    wait_up(metrics_port, &p1_addr, true, Duration::from_secs(3)).await;
    assert!(ids(10).await.iter().all(|id| id == "p1"));
}

#[tokio::test]
async fn when_all_down_try_all_still_tries_the_servers() {
    let a = Backend::start("a");
    let metrics_port = free_port();
    let proxy = Proxy::start(&upstream(
        metrics_port,
        "when_all_down: try_all\nhealth_check: { type: http, path: /status/500, interval: 200ms, timeout: 200ms, fall: 1, rise: 1 }",
        &[format!("{{ addr: \"{}\", id: a }}", a.addr())],
    ));
    wait_up(metrics_port, &a.addr(), false, Duration::from_secs(2)).await;
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the check says down, the server still answers"
    );
    assert_eq!(instance(&resp), "a");
}

/// The descriptors of process `pid` numbered below `limit`, those a new one could take (one
/// inherited from the test runner may sit above it).
fn fds_below(pid: u32, limit: usize) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<usize>().ok())
        .filter(|fd| *fd < limit)
        .count()
}

/// Waits until the count of [`fds_below`] satisfies `done`, failing with `what` after 5 s.
fn wait_fds(pid: u32, limit: usize, done: &dyn Fn(usize) -> bool, what: &str) {
    let started = Instant::now();
    while !done(fds_below(pid, limit)) {
        assert!(started.elapsed() < Duration::from_secs(5), "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A connection the proxy cannot open because it has no file descriptor left is this host's
/// failure, not the server's: that request gets 502, and the server stays in.
#[tokio::test]
async fn running_out_of_file_descriptors_does_not_take_the_server_out() {
    const LIMIT: usize = 64;
    let backend = Backend::start("1");
    let metrics_port = free_port();
    let proxy = Proxy::start_with_fd_limit(
        &upstream(
            metrics_port,
            "retries: 0",
            &[format!(
                "{{ addr: \"{}\", id: one, max_fails: 1, fail_timeout: 60s }}",
                backend.addr()
            )],
        ),
        LIMIT as u64,
    );
    let pid = proxy.child.pid();
    // The readiness probe's connection may still be closing: start from a settled count.
    let mut settled = fds_below(pid, LIMIT);
    let settling = Instant::now();
    loop {
        assert!(
            settling.elapsed() < Duration::from_secs(10),
            "the proxy's descriptor count never settled"
        );
        std::thread::sleep(Duration::from_millis(300));
        let now = fds_below(pid, LIMIT);
        if now == settled {
            break;
        }
        settled = now;
    }
    // Idle clients take the free descriptors one by one, each accepted before the next
    // connects, until the last one is taken by the client that sends a request. The idle ones
    // are the metrics listener's: the proxy's own connections are held below what the
    // descriptors allow (at 64, one), so only another listener can use them up.
    let mut clients = Vec::new();
    while settled + clients.len() + 1 < LIMIT {
        clients.push(TcpStream::connect(("127.0.0.1", metrics_port)).unwrap());
        let accepted = settled + clients.len();
        wait_fds(
            pid,
            LIMIT,
            &|open| open >= accepted,
            "connection not accepted",
        );
    }
    let mut last = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    wait_fds(
        pid,
        LIMIT,
        &|open| open >= LIMIT,
        "the last connection not accepted",
    );
    last.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    last.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = last.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(raw_status(&answer), Some(502), "{answer}");

    drop(clients);
    wait_fds(
        pid,
        LIMIT,
        &|open| open <= settled,
        "idle clients not closed",
    );
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(instance(&resp), "one");
    let failures = format!(
        "edgeproxy_upstream_failures_total{{backend=\"{}\",reason=\"connect\",upstream=\"app\"}}",
        backend.addr()
    );
    assert_eq!(metric(metrics_port, &failures).await, Some(0.0));
}

/// A probe that cannot leave this host, for want of a file descriptor, neither takes the
/// server down nor counts as a failed check.
#[tokio::test]
async fn probes_the_proxy_cannot_send_leave_the_server_up() {
    const LIMIT: usize = 64;
    let backend = Backend::start("1");
    let metrics_port = free_port();
    let proxy = Proxy::start_with_fd_limit(
        &upstream(
            metrics_port,
            // Down after two failed probes, and slow to come back, so that a server taken
            // down while the descriptors were gone would still be down when looked at.
            "health_check: { type: http, path: /health, interval: 100ms, timeout: 1s, fall: 2, rise: 50 }",
            &[format!("{{ addr: \"{}\", id: one }}", backend.addr())],
        ),
        LIMIT as u64,
    );
    let pid = proxy.child.pid();
    let checks_ok = checks(&backend.addr(), "ok");
    wait_metric_at_least(metrics_port, &checks_ok, 1.0, Duration::from_secs(5)).await;

    // A connection to /status opened now stays usable once no new one can be accepted.
    let status_url = format!("http://127.0.0.1:{metrics_port}/status");
    let status_client = client();
    let status = || async {
        let resp = status_client.get(&status_url).send().await.unwrap();
        resp.json::<serde_json::Value>().await.unwrap()["upstreams"][0]["servers"][0]["last_probe"]
            .clone()
    };
    assert_eq!(status().await, "ok");

    // More idle clients than descriptors: the proxy takes them until it has none left. They
    // are the metrics listener's: the proxy's own connections are held below what the
    // descriptors allow.
    let clients: Vec<_> = (0..LIMIT)
        .map(|_| TcpStream::connect(("127.0.0.1", metrics_port)).unwrap())
        .collect();
    wait_fds(pid, LIMIT, &|open| open >= LIMIT, "descriptors not used up");
    // Once no descriptor is left, none comes back while the clients stay: wait until more
    // probes than `fall` (2) could not be sent, each of them logged.
    let unsent = |log: &str| {
        log.matches("not checked, this host could not open a socket")
            .count()
    };
    let started = Instant::now();
    while unsent(&proxy.log()) < 3 {
        let log = proxy.log();
        assert!(started.elapsed() < Duration::from_secs(5), "{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let shown = status().await;
    assert!(
        shown.as_str().is_some_and(|p| p.starts_with("not sent: ")),
        "{shown}"
    );
    drop(clients);
    assert_eq!(
        metric(metrics_port, &up_gauge(&backend.addr())).await,
        Some(1.0)
    );
    let failed = checks_ok.replace("result=\"ok\"", "result=\"fail\"");
    assert_eq!(metric(metrics_port, &failed).await, Some(0.0));
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

/// A server on raw sockets that answers each probe after `delay`, sending its answer
/// `trickle` apart a byte at a time; the time of each connection's arrival goes to the channel.
fn slow_prober_target(
    delay: Duration,
    trickle: Duration,
) -> (u16, std::sync::mpsc::Receiver<Instant>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (arrived, arrivals) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            if arrived.send(Instant::now()).is_err() {
                return;
            }
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf);
                std::thread::sleep(delay);
                for byte in b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n" {
                    if stream.write_all(&[*byte]).is_err() {
                        return;
                    }
                    std::thread::sleep(trickle);
                }
            });
        }
    });
    (port, arrivals)
}

#[tokio::test]
async fn the_servers_of_an_upstream_are_probed_in_parallel() {
    // Each answers 800 ms late, within the 2 s timeout: one after the other, the second
    // probe would start 800 ms after the first.
    let slow = Duration::from_millis(800);
    let (first, first_probes) = slow_prober_target(slow, Duration::ZERO);
    let (second, second_probes) = slow_prober_target(slow, Duration::ZERO);
    let _proxy = Proxy::start(&upstream(
        free_port(),
        "health_check: { type: http, path: /health, interval: 5s, timeout: 2s }",
        &[
            format!("{{ addr: \"127.0.0.1:{first}\" }}"),
            format!("{{ addr: \"127.0.0.1:{second}\" }}"),
        ],
    ));
    let limit = Duration::from_secs(10);
    let (a, b) = (
        first_probes.recv_timeout(limit).expect("a probe"),
        second_probes.recv_timeout(limit).expect("a probe"),
    );
    let apart = if a > b { a - b } else { b - a };
    assert!(apart < Duration::from_millis(400), "probes {apart:?} apart");
}

#[tokio::test]
async fn the_probe_timeout_bounds_the_whole_probe() {
    // Every byte of the answer comes 100 ms after the last: no single read waits long, the
    // whole answer takes 4 s.
    let (port, probes) = slow_prober_target(Duration::ZERO, Duration::from_millis(100));
    let metrics_port = free_port();
    let _proxy = Proxy::start(&upstream(
        metrics_port,
        "health_check: { type: http, path: /health, interval: 5s, timeout: 500ms }",
        &[format!("{{ addr: \"127.0.0.1:{port}\" }}")],
    ));
    let probed = probes
        .recv_timeout(Duration::from_secs(10))
        .expect("a probe");
    wait_up(
        metrics_port,
        &format!("127.0.0.1:{port}"),
        false,
        Duration::from_secs(10),
    )
    .await;
    let took = probed.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(2500),
        "down {took:?} after the probe began"
    );
}
