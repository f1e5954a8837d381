//! /metrics and /status, checked against the traffic that was sent.

mod common;

use common::{client, free_port, get_json, get_text, wait_metric, Backend, Proxy};
use std::time::{Duration, Instant};

/// Scrapes /metrics and checks that a real Prometheus text-format parser accepts it all.
async fn scrape(metrics_port: u16) -> prometheus_parse::Scrape {
    let text = get_text(&format!("http://127.0.0.1:{metrics_port}/metrics")).await;
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text format")
}

fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(ref buckets) => {
                buckets.last().map_or(0.0, |b| b.count)
            }
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

/// The requests of that traffic, by route, upstream, backend and code: 10 answered by each
/// backend, the 500s, the 502s and the 404 from a backend, and two health checks (this
/// test's and the harness's readiness probe). Returns b1's 200s and 500s.
fn assert_request_counts(s: &prometheus_parse::Scrape, b1: &str, b2: &str) -> (f64, f64) {
    let requests = |route: &str, upstream: &str, backend: &str, code: &str| {
        value(
            s,
            "edgeproxy_requests_total",
            &[
                ("route", route),
                ("upstream", upstream),
                ("backend", backend),
                ("code", code),
            ],
        )
    };
    let b1_200 = requests("/", "app", b1, "200").unwrap();
    let b2_200 = requests("/", "app", b2, "200").unwrap();
    assert_eq!((b1_200, b2_200), (10.0, 10.0));
    let b1_500 = requests("/", "app", b1, "500").unwrap_or(0.0);
    let b2_500 = requests("/", "app", b2, "500").unwrap_or(0.0);
    assert_eq!(b1_500 + b2_500, 3.0);
    assert_eq!(
        requests("/gone/", "gone", "", "502"),
        Some(2.0),
        "proxy's own answers have backend=\"\""
    );
    assert_eq!(
        requests("api.example.com/api/", "app", b2, "404").or(requests(
            "api.example.com/api/",
            "app",
            b1,
            "404"
        )),
        Some(1.0)
    );
    // Ours and the harness's readiness probe.
    assert_eq!(
        requests("", "", "", "200"),
        Some(2.0),
        "health checks are the proxy's own answers"
    );

    (b1_200, b1_500)
}

/// The failures of that traffic: two refused connects to the dead server, with no retry,
/// and three 500s from the app's backends.
fn assert_failures(s: &prometheus_parse::Scrape, dead: &str, b1: &str, b2: &str) {
    let failures = |reason: &str, backend: &str, upstream: &str| {
        value(
            s,
            "edgeproxy_upstream_failures_total",
            &[
                ("upstream", upstream),
                ("backend", backend),
                ("reason", reason),
            ],
        )
    };
    assert_eq!(failures("connect", dead, "gone"), Some(2.0));
    assert_eq!(
        failures("http_5xx", b1, "app").unwrap() + failures("http_5xx", b2, "app").unwrap(),
        3.0
    );
    assert_eq!(
        value(s, "edgeproxy_retries_total", &[("upstream", "gone")]),
        Some(0.0)
    );
}

/// 20 answered requests, 3 answered 500 by a backend, 2 to a dead server (502), one 404
/// from a backend on a host route, and one health check.
async fn send_known_traffic(proxy: &Proxy) {
    let http = client();
    for _ in 0..20 {
        assert_eq!(http.get(proxy.url("/")).send().await.unwrap().status(), 200);
    }
    for _ in 0..3 {
        assert_eq!(
            http.get(proxy.url("/status/500"))
                .send()
                .await
                .unwrap()
                .status(),
            500
        );
    }
    for _ in 0..2 {
        assert_eq!(
            http.get(proxy.url("/gone/x"))
                .send()
                .await
                .unwrap()
                .status(),
            502
        );
    }
    let resp = http
        .get(proxy.url("/api/x"))
        .header("Host", "api.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        404,
        "the demo has no /api/x; a backend answered"
    );
    http.get(proxy.url("/edge-health")).send().await.unwrap();
}

/// The process families are there, with values a live process can have.
fn assert_process_families(s: &prometheus_parse::Scrape) {
    assert!(value(s, "process_resident_memory_bytes", &[]).unwrap() > 0.0);
    assert!(value(s, "process_open_fds", &[]).unwrap() > 0.0);
    assert!(value(s, "process_cpu_seconds_total", &[]).unwrap() >= 0.0);
    let max_fds = value(s, "process_max_fds", &[]).unwrap();
    assert!(max_fds >= value(s, "process_open_fds", &[]).unwrap());
    // the config asks for worker threads of its own beside the main thread
    assert!(value(s, "process_threads", &[]).unwrap() > 2.0);
    let started = value(s, "process_start_time_seconds", &[]).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        started <= now && started > now - 600.0,
        "{started} vs {now}"
    );
}

#[tokio::test]
async fn counters_match_the_traffic_sent() {
    let (b1, b2) = (Backend::start("1"), Backend::start("2"));
    let (dead, _dead_held) = common::dead_port();
    let metrics_port = free_port();
    let proxy = Proxy::start(&format!(
        "metrics: {{ listen: \"127.0.0.1:{metrics_port}\" }}
upstreams:
  app: {{ servers: [ {{ addr: \"{}\" }}, {{ addr: \"{}\" }} ] }}
  gone: {{ retries: 0, servers: [ {{ addr: \"127.0.0.1:{dead}\", max_fails: 0 }} ] }}
routes:
  - {{ path: /, upstream: app }}
  - {{ path: /gone/, upstream: gone }}
  - {{ path: /api/, upstream: app, host: api.example.com }}
",
        b1.addr(),
        b2.addr()
    ));
    send_known_traffic(&proxy).await;

    let s = scrape(metrics_port).await;
    let (b1_200, b1_500) = assert_request_counts(&s, &b1.addr(), &b2.addr());
    assert_eq!(
        value(
            &s,
            "edgeproxy_request_duration_seconds",
            &[("route", "/"), ("upstream", "app")]
        ),
        Some(23.0)
    );
    assert_eq!(
        value(
            &s,
            "edgeproxy_upstream_response_seconds",
            &[("upstream", "app"), ("backend", &b1.addr())]
        ),
        Some(b1_200 + b1_500)
    );
    assert_failures(&s, &format!("127.0.0.1:{dead}"), &b1.addr(), &b2.addr());
    assert_eq!(
        value(&s, "edgeproxy_config_reloads_total", &[("result", "ok")]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &s,
            "edgeproxy_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert_process_families(&s);
}

/// Waits until the dead server failed two checks and the good one passed two.
async fn wait_for_two_check_rounds(metrics_port: u16, dead: &str, good: &str) {
    let rounds = |backend: &str, result: &str| {
        format!(
            "edgeproxy_health_checks_total{{backend=\"{backend}\",result=\"{result}\",upstream=\"app\"}}"
        )
    };
    let (dead_failed, good_passed) = (rounds(dead, "fail"), rounds(good, "ok"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while common::metric(metrics_port, &dead_failed)
        .await
        .unwrap_or(0.0)
        < 2.0
        || common::metric(metrics_port, &good_passed)
            .await
            .unwrap_or(0.0)
            < 2.0
    {
        assert!(Instant::now() < deadline, "no two rounds of checks in 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One miss then two hits on the cached `/health`, and no cache series for `/events`.
fn assert_cache_lookups(s: &prometheus_parse::Scrape) {
    let gauge = |name: &str, labels: &[(&str, &str)]| value(s, name, labels);
    assert_eq!(
        gauge(
            "edgeproxy_cache_lookups_total",
            &[("route", "/health"), ("result", "miss")]
        ),
        Some(1.0)
    );
    assert_eq!(
        gauge(
            "edgeproxy_cache_lookups_total",
            &[("route", "/health"), ("result", "hit")]
        ),
        Some(2.0)
    );
    assert_eq!(
        gauge(
            "edgeproxy_cache_lookups_total",
            &[("route", "/events"), ("result", "miss")]
        ),
        None,
        "a route without a cache exports no cache series"
    );
}

#[tokio::test]
async fn retries_health_checks_streams_connections_and_cache_are_counted() {
    let good = Backend::start("good");
    let (dead, _dead_held) = common::dead_port();
    let metrics_port = free_port();
    let proxy = Proxy::start(&format!(
        "metrics: {{ listen: \"127.0.0.1:{metrics_port}\" }}
upstreams:
  app:
    health_check: {{ type: tcp, interval: 200ms, timeout: 200ms, fall: 1, rise: 1 }}
    servers: [ {{ addr: \"127.0.0.1:{dead}\", max_fails: 0 }}, {{ addr: \"{}\" }} ]
    when_all_down: try_all
routes:
  - {{ path: /events, upstream: app, sse: true }}
  - {{ path: /health, upstream: app, cache: 1h }}
  - {{ path: /, upstream: app }}
",
        good.addr()
    ));
    assert!(
        proxy.log().contains(&format!(
            "metrics on http://127.0.0.1:{metrics_port}/metrics, status on http://127.0.0.1:{metrics_port}/status"
        )),
        "the start-up log says where metrics are served:\n{}",
        proxy.log()
    );
    let http = client();
    // Before the first probe, round robin may still pick the dead server: that is a retry.
    for _ in 0..4 {
        assert_eq!(http.get(proxy.url("/")).send().await.unwrap().status(), 200);
    }
    for _ in 0..3 {
        http.get(proxy.url("/health")).send().await.unwrap();
    }
    let mut stream = http
        .get(proxy.url("/events?interval_ms=100"))
        .send()
        .await
        .unwrap();
    stream.chunk().await.unwrap();
    // Two rounds of checks of each server, then one scrape holds everything below.
    wait_for_two_check_rounds(metrics_port, &format!("127.0.0.1:{dead}"), &good.addr()).await;

    let s = scrape(metrics_port).await;
    let gauge = |name: &str, labels: &[(&str, &str)]| value(&s, name, labels);
    assert_eq!(
        gauge("edgeproxy_sse_streams", &[("route", "/events")]),
        Some(1.0)
    );
    assert!(gauge("edgeproxy_downstream_connections", &[]).unwrap() >= 1.0);
    let checks = |backend: &str, result: &str| {
        gauge(
            "edgeproxy_health_checks_total",
            &[
                ("upstream", "app"),
                ("backend", backend),
                ("result", result),
            ],
        )
        .unwrap()
    };
    assert!(checks(&format!("127.0.0.1:{dead}"), "fail") >= 2.0);
    assert!(checks(&good.addr(), "ok") >= 2.0);
    assert_eq!(checks(&good.addr(), "fail"), 0.0);
    let connects = gauge(
        "edgeproxy_upstream_failures_total",
        &[
            ("backend", &format!("127.0.0.1:{dead}")),
            ("reason", "connect"),
        ],
    )
    .unwrap_or(0.0);
    assert_eq!(
        gauge("edgeproxy_retries_total", &[("upstream", "app")]),
        Some(connects),
        "one retry per refused attempt"
    );
    assert_cache_lookups(&s);

    drop(stream);
    let streams = "edgeproxy_sse_streams{route=\"/events\"}";
    wait_metric(metrics_port, streams, 0.0, Duration::from_secs(3)).await;
}

#[tokio::test]
async fn status_page_shows_each_server() {
    let good = Backend::start("good");
    let ((dead, _dead_held), (gone, _gone_held)) = (common::dead_port(), common::dead_port());
    let metrics_port = free_port();
    let proxy = Proxy::start(&format!(
        "metrics: {{ listen: \"127.0.0.1:{metrics_port}\" }}
upstreams:
  app:
    balance: least_conn
    health_check: {{ type: http, path: /health, interval: 200ms, timeout: 200ms }}
    servers: [ {{ addr: \"{}\", id: good, weight: 3 }}, {{ addr: \"127.0.0.1:{dead}\", backup: true }} ]
  plain:
    servers: [ {{ addr: \"localhost:{gone}\", max_fails: 1 }} ]
routes:
  - {{ path: /plain, upstream: plain }}
  - {{ path: /, upstream: app }}
",
        good.addr()
    ));
    // A failed request marks the server of `plain` as failed for its fail_timeout.
    let failed = client().get(proxy.url("/plain")).send().await.unwrap();
    assert_eq!(failed.status(), 502);
    let url = format!("http://127.0.0.1:{metrics_port}/status");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = get_json(&url).await;
        let probed = |i: usize| status["upstreams"][0]["servers"][i]["last_probe"].is_string();
        if probed(0) && probed(1) {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "no probe shown in time: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let app = &status["upstreams"][0];
    assert_eq!(app["name"], "app");
    assert_eq!(app["balance"], "least_conn");
    assert_eq!(app["health_check"], true);
    assert_eq!(app["servers"][0]["addr"], good.addr());
    assert_eq!(app["servers"][0]["address"], good.addr());
    assert_eq!(app["servers"][0]["passive_failed"], false);
    let plain = &status["upstreams"][1];
    assert_eq!(
        (plain["name"].as_str(), plain["health_check"].as_bool()),
        (Some("plain"), Some(false))
    );
    let named = &plain["servers"][0];
    assert_eq!(named["addr"], format!("localhost:{gone}"));
    // The address the name resolved to, which is what a connection goes to.
    let resolved = named["address"].as_str().unwrap();
    assert!(
        [format!("127.0.0.1:{gone}"), format!("[::1]:{gone}")].contains(&resolved.to_string()),
        "{named}"
    );
    assert_eq!(named["passive_failed"], true, "{named}");
    let (up, down) = (&app["servers"][0], &app["servers"][1]);
    assert_eq!(
        (up["id"].as_str(), up["weight"].as_u64()),
        (Some("good"), Some(3))
    );
    assert_eq!(
        (
            up["health"].as_str(),
            up["ready"].as_bool(),
            up["last_probe"].as_str()
        ),
        (Some("up"), Some(true), Some("ok"))
    );
    assert_eq!(up["inflight"], 0);
    assert_eq!(
        (down["backup"].as_bool(), down["health"].as_str()),
        (Some(true), Some("down"))
    );
    assert!(
        down["last_probe"].as_str().unwrap().contains("refused"),
        "{down}"
    );
}

#[tokio::test]
async fn only_allowed_addresses_may_read_metrics_and_status() {
    let backend = Backend::start("1");
    let metrics_port = free_port();
    let _proxy = Proxy::start(&format!(
        "metrics: {{ listen: \"127.0.0.1:{metrics_port}\", allow: [127.0.0.2/32] }}\n\
         upstreams:\n  app:\n    servers:\n      - {{ addr: \"{}\" }}\nroutes:\n  - {{ path: /, upstream: app }}\n",
        backend.addr()
    ));
    let from = |last: u8| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, last]))
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap()
    };
    for path in ["/metrics", "/status"] {
        let url = format!("http://127.0.0.1:{metrics_port}{path}");
        let refused = from(1).get(&url).send().await.unwrap();
        assert_eq!(refused.status(), 403, "{path}");
        let allowed = from(2).get(&url).send().await.unwrap();
        assert_eq!(allowed.status(), 200, "{path}");
    }
}

/// Scrapes at once each see every server's gauges: a collector that shared its gauges
/// between scrapes let one scrape reset them while another was filling them.
#[tokio::test]
async fn concurrent_scrapes_each_see_every_backend() {
    let backends: Vec<_> = (0..8).map(|i| Backend::start(&format!("b{i}"))).collect();
    let metrics_port = free_port();
    let servers: Vec<_> = backends
        .iter()
        .map(|b| format!("{{ addr: \"{}\" }}", b.addr()))
        .collect();
    let _proxy = Proxy::start(&format!(
        "metrics: {{ listen: \"127.0.0.1:{metrics_port}\" }}
upstreams:
  app:
    servers: [ {} ]
routes:
  - {{ path: /, upstream: app }}
",
        servers.join(", ")
    ));
    let scrapes: Vec<_> = (0..16)
        .map(|_| {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..20 {
                    let scrape = scrape(metrics_port).await;
                    let up = scrape
                        .samples
                        .iter()
                        .filter(|s| s.metric == "edgeproxy_backend_up")
                        .count();
                    let inflight = scrape
                        .samples
                        .iter()
                        .filter(|s| s.metric == "edgeproxy_backend_inflight")
                        .count();
                    seen.push((up, inflight));
                }
                seen
            })
        })
        .collect();
    for scrapes in scrapes {
        for counts in scrapes.await.unwrap() {
            assert_eq!(
                counts,
                (8, 8),
                "series of edgeproxy_backend_up and _inflight"
            );
        }
    }
}
