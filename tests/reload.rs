//! Reloading the config on SIGHUP while traffic flows.

mod common;

use common::{
    answered_by, client, free_port, instance, metric, up_gauge, wait_metric, wait_metric_at_least,
    Backend, Proxy, APP_RETRIES,
};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

fn config(metrics_port: u16, servers: &[(&Backend, u16)]) -> String {
    common::metrics_and_app(metrics_port, "round_robin", servers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_the_config_twice_under_load_fails_no_request() {
    let (b1, b2, b3) = (
        Backend::start("1"),
        Backend::start("2"),
        Backend::start("3"),
    );
    let metrics_port = free_port();
    let proxy = Proxy::start(&config(metrics_port, &[(&b1, 1), (&b2, 1)]));

    // 8 clients × 188 ≥ 1,500 requests, spread over about a second and a half. The reloads
    // come about a fifth and two fifths of the way in, told by the requests each server
    // answered rather than by time, so at any speed.
    let tasks = common::steady_load(proxy.url("/"), 8, 188, Duration::from_millis(4));
    let limit = Duration::from_secs(10);
    // b1 answers half of the first fifth.
    wait_metric_at_least(metrics_port, &answered_by(&b1.addr()), 150.0, limit).await;
    assert!(
        proxy.reload(&config(metrics_port, &[(&b1, 1), (&b2, 1), (&b3, 1)])),
        "add a server"
    );
    // b3 answers a third of the next.
    wait_metric_at_least(metrics_port, &answered_by(&b3.addr()), 100.0, limit).await;
    assert!(
        proxy.reload(&config(metrics_port, &[(&b1, 1), (&b2, 1), (&b3, 8)])),
        "change weights"
    );

    let totals = common::load_totals(tasks).await;
    assert_eq!(totals.values().sum::<usize>(), 8 * 188);
    let failed: usize = totals
        .iter()
        .filter(|(k, _)| !["1", "2", "3"].contains(&k.as_str()))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(failed, 0, "{totals:?}");
    assert!(
        totals.get("3").copied().unwrap_or(0) > 0,
        "the added server got traffic: {totals:?}"
    );

    // The new weights hold exactly over a full round-robin cycle.
    let http = client();
    let mut after = BTreeMap::<String, usize>::new();
    for _ in 0..100 {
        *after
            .entry(instance(&http.get(proxy.url("/")).send().await.unwrap()))
            .or_default() += 1;
    }
    assert_eq!(after.get("3"), Some(&80), "{after:?}");
    assert_eq!(
        metric(
            metrics_port,
            "edgeproxy_config_reloads_total{result=\"ok\"}"
        )
        .await,
        Some(2.0)
    );
}

#[tokio::test]
async fn a_bad_file_changes_nothing_and_is_reported_like_check() {
    let b1 = Backend::start("1");
    let metrics_port = free_port();
    let proxy = Proxy::start(&config(metrics_port, &[(&b1, 1)]));
    let bad = config(metrics_port, &[(&b1, 1)]).replace("weight: 1", "weight: 0");
    assert!(!proxy.reload(&bad));
    assert!(proxy
        .log()
        .contains("reload failed, the running config stays in force:"));
    assert!(
        proxy
            .log()
            .contains("upstreams.app.servers[0].weight: invalid weight 0"),
        "the message check gives"
    );
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(
        (resp.status().as_u16(), instance(&resp)),
        (200, "1".to_string())
    );
    assert_eq!(
        metric(
            metrics_port,
            "edgeproxy_config_reloads_total{result=\"error\"}"
        )
        .await,
        Some(1.0)
    );
    assert_eq!(
        metric(
            metrics_port,
            "edgeproxy_config_reloads_total{result=\"ok\"}"
        )
        .await,
        Some(0.0)
    );
}

#[tokio::test]
async fn requests_in_flight_finish_on_the_config_they_started_with() {
    let (b1, b2) = (Backend::start("1"), Backend::start("2"));
    let metrics_port = free_port();
    let proxy = Proxy::start(&config(metrics_port, &[(&b1, 1)]));
    let slow = tokio::spawn(client().get(proxy.url("/slow?ms=800")).send());
    common::wait_inflight(metrics_port, &b1, 1.0).await;
    assert!(
        proxy.reload(&config(metrics_port, &[(&b2, 1)])),
        "swap server 1 for 2"
    );
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(instance(&resp), "2", "new requests use the new config");
    let resp = slow.await.unwrap().unwrap();
    assert_eq!(
        (resp.status().as_u16(), instance(&resp)),
        (200, "1".to_string())
    );
}

/// The data lines of an event stream until it ends.
async fn event_data(mut resp: reqwest::Response) -> Vec<String> {
    let mut text = String::new();
    while let Some(chunk) = resp.chunk().await.expect("the stream ends cleanly") {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

type Chat =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket to the proxy's `/chat`, opened within 5 s.
async fn chat(port: u16) -> Chat {
    let url = format!("ws://127.0.0.1:{port}/chat");
    let connect = tokio_tungstenite::connect_async(url);
    let (ws, _) = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .expect("the WebSocket opens within 5 s")
        .expect("the WebSocket opens");
    ws
}

/// Sends `text` and returns the text of the reply, which must come within 5 s.
async fn ask(ws: &mut Chat, text: &str) -> String {
    use futures_util::{SinkExt, StreamExt};
    ws.send(Message::text(text)).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a reply within 5 s")
        .expect("the socket stays open")
        .expect("a message");
    reply.into_text().expect("a text reply").to_string()
}

#[tokio::test]
async fn open_event_streams_and_websockets_finish_on_the_config_they_started_with() {
    let (b1, b2) = (Backend::start("1"), Backend::start("2"));
    let (ws1, ws2) = (
        common::websocket_echo("ws1:"),
        common::websocket_echo("ws2:"),
    );
    let metrics_port = free_port();
    let body = |app: &Backend, ws: u16| {
        format!(
            "metrics: {{ listen: \"127.0.0.1:{metrics_port}\" }}
upstreams:
  app: {{ servers: [ {{ addr: \"{}\", id: \"{}\" }} ] }}
  ws: {{ servers: [ {{ addr: \"127.0.0.1:{ws}\" }} ] }}
routes:
  - {{ path: /events, upstream: app, sse: true }}
  - {{ path: /chat, upstream: ws }}
",
            app.addr(),
            app.id
        )
    };
    let proxy = Proxy::start(&body(&b1, ws1));
    let stream = client()
        .get(proxy.url("/events?interval_ms=100&count=15"))
        .send()
        .await
        .unwrap();
    assert_eq!(instance(&stream), "1");
    let mut ws = chat(proxy.port).await;
    assert_eq!(ask(&mut ws, "before").await, "ws1:before");

    assert!(proxy.reload(&body(&b2, ws2)), "swap both servers");
    // New requests get the new servers at once.
    let fresh = client()
        .get(proxy.url("/events?interval_ms=10&count=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(instance(&fresh), "2");
    assert_eq!(event_data(fresh).await.len(), 1);
    let mut fresh_ws = chat(proxy.port).await;
    assert_eq!(ask(&mut fresh_ws, "new").await, "ws2:new");

    // The open ones stay with the old servers to their end.
    assert_eq!(ask(&mut ws, "after").await, "ws1:after");
    ws.close(None).await.unwrap();
    assert_eq!(
        event_data(stream).await.len(),
        15,
        "every event of the old stream"
    );
}

#[tokio::test]
async fn a_server_that_stays_keeps_its_inflight_count() {
    let (b1, b2) = (Backend::start("1"), Backend::start("2"));
    let metrics_port = free_port();
    let least_conn =
        |servers: &[(&Backend, u16)]| common::metrics_and_app(metrics_port, "least_conn", servers);
    let proxy = Proxy::start(&least_conn(&[(&b1, 1)]));
    let slow = tokio::spawn(client().get(proxy.url("/slow?ms=3000")).send());
    common::wait_inflight(metrics_port, &b1, 1.0).await;
    assert!(
        proxy.reload(&least_conn(&[(&b1, 1), (&b2, 1)])),
        "add server 2"
    );
    common::wait_inflight(metrics_port, &b1, 1.0).await;
    // Server 1 still counts its slow request, so least_conn sends everything else to 2.
    let http = client();
    for i in 0..5 {
        let resp = http.get(proxy.url("/")).send().await.unwrap();
        assert_eq!(instance(&resp), "2", "request {i} after the reload");
    }
    let resp = slow.await.unwrap().unwrap();
    assert_eq!((resp.status().as_u16(), instance(&resp)), (200, "1".into()));
}

#[tokio::test]
async fn a_server_that_stays_keeps_its_health_so_nothing_flaps() {
    let good = Backend::start("good");
    // Accepts connections and never answers: a probe of it takes its whole timeout, so a
    // server whose state a reload reset to "up" would get requests for that long.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let metrics_port = free_port();
    let body = |good_weight: u16| {
        format!(
            "metrics: {{ listen: \"127.0.0.1:{metrics_port}\" }}
upstreams:
  app:
    retries: 0
    read_timeout: 300ms
    health_check: {{ type: http, path: /health, interval: 1s, timeout: 800ms, fall: 1, rise: 1 }}
    servers: [ {{ addr: \"{silent_addr}\", max_fails: 0 }}, {{ addr: \"{}\", weight: {good_weight} }} ]
routes:
  - {{ path: /, upstream: app }}
",
            good.addr()
        )
    };
    let proxy = Proxy::start(&body(1));
    let silent_up = up_gauge(&silent_addr.to_string());
    common::wait_metric(metrics_port, &silent_up, 0.0, Duration::from_secs(5)).await;
    assert!(proxy.reload(&body(2)));
    let http = client();
    for _ in 0..10 {
        assert_eq!(http.get(proxy.url("/")).send().await.unwrap().status(), 200);
    }
    assert_eq!(metric(metrics_port, &silent_up).await, Some(0.0));
}

/// Instances answering 20 requests in a row.
async fn answers(proxy: &Proxy) -> BTreeMap<String, usize> {
    let http = client();
    let mut seen = BTreeMap::new();
    for _ in 0..20 {
        *seen
            .entry(instance(&http.get(proxy.url("/")).send().await.unwrap()))
            .or_default() += 1;
    }
    seen
}

#[tokio::test]
async fn watch_reloads_when_the_file_changes() {
    let (b1, b2) = (Backend::start("1"), Backend::start("2"));
    let metrics_port = free_port();
    let proxy = Proxy::start_with("  watch: true", &config(metrics_port, &[(&b1, 1)]));
    proxy.rewrite(&config(metrics_port, &[(&b2, 1)]));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while answers(&proxy).await.get("2") != Some(&20) {
        assert!(
            std::time::Instant::now() < deadline,
            "the change was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(proxy.log().contains("reloaded "));
}

#[tokio::test]
async fn watch_makes_one_reload_of_several_quick_writes() {
    let (b1, b2) = (Backend::start("1"), Backend::start("2"));
    let metrics_port = free_port();
    let proxy = Proxy::start_with("  watch: true", &config(metrics_port, &[(&b1, 1)]));
    // Five saves 100 ms apart, each a valid file: an editor writing in several steps.
    for weight in 1..=5 {
        proxy.rewrite(&config(metrics_port, &[(&b1, 1), (&b2, weight)]));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ok = "edgeproxy_config_reloads_total{result=\"ok\"}";
    wait_metric(metrics_port, ok, 1.0, Duration::from_secs(10)).await;
    // Two more looks at the unchanged file (one a second) make no second reload. A look that
    // finds nothing new shows nothing, so only time tells that two have passed.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(metric(metrics_port, ok).await, Some(1.0));
    assert_eq!(
        proxy.log().matches("reloaded ").count(),
        1,
        "{}",
        proxy.log()
    );
}

#[tokio::test]
async fn a_restart_only_change_is_logged_and_the_rest_reloads() {
    let (b1, b2) = (Backend::start("1"), Backend::start("2"));
    let metrics_port = free_port();
    let proxy = Proxy::start(&config(metrics_port, &[(&b1, 1)]));
    let moved = free_port();
    let body = config(metrics_port, &[(&b2, 1)]).replacen(
        &format!("listen: \"127.0.0.1:{metrics_port}\""),
        &format!("listen: \"127.0.0.1:{moved}\""),
        1,
    );
    assert!(proxy.reload(&body));
    let warning = common::line_with(|| proxy.log(), "takes a restart").await;
    assert!(warning.contains("metrics.listen"), "{warning}");
    // The listener stays where it was; the new servers are in force.
    assert_eq!(answers(&proxy).await.get("2"), Some(&20));
    assert!(metric(metrics_port, APP_RETRIES).await.is_some());
    assert!(std::net::TcpStream::connect(("127.0.0.1", moved)).is_err());
}

fn edgeproxy(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_edgeproxy"))
        .args(args)
        .output()
        .unwrap()
}

/// Starts edgeproxy with `body` and a `server.pid_file` in a directory of its own.
fn with_pid_file(body: &str) -> (Proxy, tempfile::TempDir, std::path::PathBuf) {
    let pid_dir = tempfile::tempdir().unwrap();
    let pid_file = pid_dir.path().join("edgeproxy.pid");
    let proxy = Proxy::start_with(&format!("  pid_file: {}", pid_file.display()), body);
    (proxy, pid_dir, pid_file)
}

#[tokio::test]
async fn the_reload_command_checks_the_file_then_signals_the_running_process() {
    let (b1, b2) = (Backend::start("1"), Backend::start("2"));
    let metrics_port = free_port();
    let (proxy, _pid_dir, pid_file) = with_pid_file(&config(metrics_port, &[(&b1, 1)]));
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, proxy.child.pid());
    let path = proxy.config_path();
    let path = path.to_str().unwrap();

    // An invalid file is refused before anything is signalled.
    proxy.rewrite(&config(metrics_port, &[(&b2, 0)]));
    let out = edgeproxy(&["reload", "-c", path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid weight 0"));
    // A signal sent anyway would show as a failed reload within milliseconds; one not sent
    // shows nothing, so there is no event to poll for, only a while to wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        metric(
            metrics_port,
            "edgeproxy_config_reloads_total{result=\"error\"}"
        )
        .await,
        Some(0.0)
    );
    assert_eq!(answers(&proxy).await.get("1"), Some(&20));

    proxy.rewrite(&config(metrics_port, &[(&b2, 1)]));
    let out = edgeproxy(&["reload", "-c", path]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("asked process {pid} to reload"))
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while answers(&proxy).await.get("2") != Some(&20) {
        assert!(std::time::Instant::now() < deadline, "not reloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn the_reload_command_needs_a_pid_file_that_names_an_edgeproxy() {
    let dir = tempfile::tempdir().unwrap();
    let body = "upstreams: { app: { servers: [ { addr: 127.0.0.1:1 } ] } }\nroutes: [ { path: /, upstream: app } ]\n";
    let path = dir.path().join("edgeproxy.yaml");
    std::fs::write(&path, body).unwrap();
    let out = edgeproxy(&["reload", "-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.pid_file is not set"));

    // A pid file left behind by a process that has exited.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let pid_file = dir.path().join("stale.pid");
    std::fs::write(&pid_file, format!("{}\n", gone.id())).unwrap();
    std::fs::write(
        &path,
        format!("server: {{ pid_file: {} }}\n{body}", pid_file.display()),
    )
    .unwrap();
    let out = edgeproxy(&["reload", "-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a running edgeproxy"),
        "{out:?}"
    );

    // A stale pid file that names a process whose command line mentions edgeproxy, as
    // `tail -f edgeproxy-notes.txt` does, is refused too, and that process is not signalled.
    let notes = dir.path().join("edgeproxy-notes.txt");
    std::fs::write(&notes, "").unwrap();
    let tail = std::process::Command::new("tail")
        .arg("-f")
        .arg(&notes)
        .spawn()
        .unwrap();
    let mut tail = common::ChildGuard(tail);
    std::fs::write(&pid_file, format!("{}\n", tail.pid())).unwrap();
    let out = edgeproxy(&["reload", "-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a running edgeproxy"),
        "{out:?}"
    );
    assert_eq!(
        tail.wait_exit(Duration::from_millis(300)),
        None,
        "the process the stale pid file names was signalled"
    );
}

#[tokio::test]
async fn the_reload_command_refuses_a_file_the_running_process_does_not_read() {
    let b1 = Backend::start("1");
    let (proxy, pid_dir, _) = with_pid_file(&config(free_port(), &[(&b1, 1)]));
    // The same settings in another file: valid, and it names the same pid file.
    let other = pid_dir.path().join("other.yaml");
    std::fs::copy(proxy.config_path(), &other).unwrap();
    let out = edgeproxy(&["reload", "-c", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let running = proxy.config_path();
    assert!(
        stderr.contains(&format!("runs with {}", running.display())),
        "{stderr}"
    );
    // A signal sent anyway would show as a reload outcome within milliseconds; one not sent
    // shows nothing, so there is no event to poll for, only a while to wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = proxy.log();
    assert!(
        !log.contains("reloaded ") && !log.contains("reload failed"),
        "{log}"
    );

    // Through another spelling of its own file (a relative path), it is the same file.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edgeproxy"))
        .args(["reload", "-c", "edgeproxy.yaml"])
        .current_dir(running.parent().unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // So is a symbolic link to it.
    let link = pid_dir.path().join("link.yaml");
    std::os::unix::fs::symlink(&running, &link).unwrap();
    let out = edgeproxy(&["reload", "-c", link.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test]
async fn metrics_allow_changes_on_reload() {
    let b1 = Backend::start("1");
    let metrics_port = free_port();
    let proxy = Proxy::start(&config(metrics_port, &[(&b1, 1)]));
    let status = || async {
        client()
            .get(format!("http://127.0.0.1:{metrics_port}/status"))
            .send()
            .await
            .expect("the metrics listener answers")
            .status()
    };
    assert_eq!(status().await, 200);

    let allow = |cidr: &str| {
        config(metrics_port, &[(&b1, 1)]).replacen(
            &format!("listen: \"127.0.0.1:{metrics_port}\""),
            &format!("listen: \"127.0.0.1:{metrics_port}\", allow: [{cidr}]"),
            1,
        )
    };
    assert!(proxy.reload(&allow("10.0.0.0/8")));
    assert_eq!(status().await, 403, "the tightened allow-list is in force");
    assert!(!proxy.log().contains("takes a restart"), "{}", proxy.log());
    assert!(proxy.reload(&allow("127.0.0.0/8")));
    assert_eq!(status().await, 200);
}

#[tokio::test]
async fn a_server_that_stays_keeps_its_passive_failures_across_a_reload() {
    let good = Backend::start("good");
    let (dead, _dead_held) = common::dead_port();
    let metrics_port = free_port();
    let body = |retries: u8| {
        format!(
            "metrics: {{ listen: \"127.0.0.1:{metrics_port}\" }}
upstreams:
  app:
    retries: {retries}
    servers:
      - {{ addr: \"127.0.0.1:{dead}\", max_fails: 1, fail_timeout: 60s }}
      - {{ addr: \"{}\", id: good }}
routes:
  - {{ path: /, upstream: app }}
",
            good.addr()
        )
    };
    let proxy = Proxy::start(&body(1));
    let down = up_gauge(&format!("127.0.0.1:{dead}"));
    // Round robin tries the dead server within two requests; one failure takes it out.
    for _ in 0..2 {
        let resp = client().get(proxy.url("/")).send().await.unwrap();
        assert_eq!(
            (resp.status().as_u16(), instance(&resp)),
            (200, "good".into())
        );
    }
    assert_eq!(metric(metrics_port, &down).await, Some(0.0));

    // Another retry count, the same servers: the dead one stays out for its 60 s.
    assert!(proxy.reload(&body(2)), "{}", proxy.log());
    assert_eq!(metric(metrics_port, &down).await, Some(0.0));
    let before = metric(metrics_port, APP_RETRIES).await;
    for _ in 0..4 {
        let resp = client().get(proxy.url("/")).send().await.unwrap();
        assert_eq!(instance(&resp), "good");
    }
    assert_eq!(
        metric(metrics_port, APP_RETRIES).await,
        before,
        "the dead server was tried again after the reload"
    );
}

#[tokio::test]
async fn a_reload_changes_balancing_routes_checks_retries_timeouts_and_caching() {
    let (b1, b2) = (Backend::start("1"), Backend::start("2"));
    let (dead, metrics_port) = (free_port(), free_port());
    let before = format!(
        "metrics: {{ listen: \"127.0.0.1:{metrics_port}\" }}
upstreams:
  app:
    servers: [ {{ addr: \"{}\" }}, {{ addr: \"{}\" }} ]
routes:
  - {{ path: /, upstream: app }}
",
        b1.addr(),
        b2.addr()
    );
    let proxy = Proxy::start(&before);
    let http = client();
    let get = |path: &str| http.get(proxy.url(path)).send();
    assert_eq!(answers(&proxy).await.len(), 2, "round robin uses both");
    assert_eq!(get("/slow?ms=1500").await.unwrap().status(), 200);
    let resp = get("/health").await.unwrap();
    assert!(resp.headers().get("x-cache").is_none());

    let after = format!(
        "metrics: {{ listen: \"127.0.0.1:{metrics_port}\" }}
upstreams:
  app:
    balance: ip_hash
    read_timeout: 1s
    retries: 0
    health_check: {{ type: tcp, interval: 200ms, timeout: 200ms, fall: 1, rise: 1 }}
    servers: [ {{ addr: \"{}\" }}, {{ addr: \"{}\" }}, {{ addr: \"127.0.0.1:{dead}\" }} ]
routes:
  - {{ path: /health, upstream: app, cache: 1h }}
  - {{ path: /, upstream: app }}
",
        b1.addr(),
        b2.addr()
    );
    assert!(proxy.reload(&after), "{}", proxy.log());
    // The new server's check takes it out.
    let down = up_gauge(&format!("127.0.0.1:{dead}"));
    wait_metric(metrics_port, &down, 0.0, Duration::from_secs(5)).await;
    // One client, one server.
    assert_eq!(
        answers(&proxy).await.len(),
        1,
        "ip_hash keeps a client on one server"
    );
    // The new read_timeout, with no retry of the timed-out request.
    let retries = metric(metrics_port, APP_RETRIES).await;
    assert_eq!(get("/slow?ms=1500").await.unwrap().status(), 504);
    assert_eq!(metric(metrics_port, APP_RETRIES).await, retries);
    // The new route caches.
    let statuses: Vec<_> = [get("/health").await.unwrap(), get("/health").await.unwrap()]
        .iter()
        .map(|resp| common::header(resp, "x-cache"))
        .collect();
    assert_eq!(statuses, ["MISS", "HIT"]);
}
