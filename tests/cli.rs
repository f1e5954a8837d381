//! The command line and the process lifecycle: `check`, start-up failures, signals.

mod common;

use common::{client, edgeproxy, free_port, upstream, wait_inflight, wait_metric, Backend, Proxy};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn write_config(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("edgeproxy.yaml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn valid_config(port: u16) -> String {
    format!(
        "server: {{ listen: [\"127.0.0.1:{port}\"] }}
upstreams:
  app:
    servers: [ {{ addr: 127.0.0.1:8001 }}, {{ addr: 127.0.0.1:8002 }} ]
routes:
  - {{ path: /, upstream: app }}
"
    )
}

#[test]
fn check_accepts_a_valid_file_with_a_one_line_summary() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, &valid_config(free_port()));
    let out = edgeproxy(&["check", "-c", &path]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains(&path) && stdout.contains("is valid"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 upstream(s) with 2 server(s)"),
        "{stdout}"
    );
}

#[test]
fn check_accepts_the_shipped_config() {
    let out = edgeproxy(&[
        "check",
        "-c",
        concat!(env!("CARGO_MANIFEST_DIR"), "/conf/edgeproxy.yaml"),
    ]);
    // The shipped config listens on 0.0.0.0:8080, which another program may hold: that is a
    // warning, not an error.
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn check_rejects_a_bad_file_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        &dir,
        "upstreams:\n  app:\n    servers:\n      - addr: 127.0.0.1:8001\n      - addr: 127.0.0.1:0\nroutes:\n  - { path: /, upstream: app }\n",
    );
    let out = edgeproxy(&["check", "-c", &path]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with(&format!("edgeproxy: error: {path}:5:")),
        "{stderr}"
    );
    assert!(stderr.contains("upstreams.app.servers[1]"), "{stderr}");
    assert!(stderr.contains("1 to 65535"), "{stderr}");
}

#[test]
fn check_rejects_a_route_to_an_unknown_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        &dir,
        &valid_config(free_port()).replace("upstream: app }", "upstream: ap }"),
    );
    let out = edgeproxy(&["check", "-c", &path]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("routes[0].upstream: unknown upstream `ap`"),
        "{stderr}"
    );
}

#[test]
fn check_rejects_an_address_this_host_cannot_listen_on() {
    let dir = tempfile::tempdir().unwrap();
    // 192.0.2.1 (TEST-NET-1) is never assigned here; only bind() is tried, nothing is sent.
    let path = write_config(
        &dir,
        &valid_config(free_port()).replace("127.0.0.1:", "192.0.2.1:"),
    );
    let out = edgeproxy(&["check", "-c", &path]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("server.listen: cannot listen on 192.0.2.1"),
        "{stderr}"
    );
}

#[test]
fn check_rejects_a_privileged_port_without_the_capability() {
    let start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .expect("Linux's unprivileged port start")
        .trim()
        .parse()
        .unwrap();
    assert!(
        start > 1,
        "this host lets anyone bind every port (net.ipv4.ip_unprivileged_port_start = {start}), \
         so there is no privileged port to try"
    );
    let port = start - 1;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, &valid_config(port));
    // Tests may run as root: run the check without CAP_NET_BIND_SERVICE, as a service
    // started without it would be.
    let out = std::process::Command::new("setpriv")
        .args([
            "--inh-caps=-net_bind_service",
            "--bounding-set=-net_bind_service",
        ])
        .arg(env!("CARGO_BIN_EXE_edgeproxy"))
        .args(["check", "-c", &path])
        .output()
        .expect("setpriv (util-linux) runs");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("server.listen: cannot listen on 127.0.0.1:{port}"))
            && stderr.contains("ports below 1024 need root or CAP_NET_BIND_SERVICE"),
        "{stderr}"
    );
}

#[test]
fn check_rejects_a_pid_file_in_a_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let config = valid_config(free_port()).replace(
        "server: {",
        &format!("server: {{ pid_file: {}/edgeproxy.pid,", missing.display()),
    );
    let path = write_config(&dir, &config);
    let out = edgeproxy(&["check", "-c", &path]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!(
            "server.pid_file: directory {} does not exist",
            missing.display()
        )),
        "{stderr}"
    );
    std::fs::create_dir(&missing).unwrap();
    let out = edgeproxy(&["check", "-c", &path]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn check_reports_a_missing_file() {
    let out = edgeproxy(&["check", "-c", "/nonexistent/edgeproxy.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("/nonexistent/edgeproxy.yaml: cannot read the file"),
        "{stderr}"
    );
}

#[test]
fn check_offline_validates_a_file_meant_for_another_host() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        &dir,
        "server: { listen: [\"192.0.2.1:80\"] }
upstreams:
  app:
    servers: [ { addr: \"app1.invalid:8000\" }, { addr: \"app2.invalid:8000\" } ]
routes:
  - { path: /, upstream: app }
",
    );
    let out = edgeproxy(&["check", "-c", &path]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot resolve `app1.invalid:8000`"),
        "{stderr}"
    );
    assert!(stderr.contains("edgeproxy check --offline"), "{stderr}");

    let out = edgeproxy(&["check", "--offline", "-c", &path]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("is valid: 1 listener(s), 1 upstream(s) with 2 server(s)"));

    // Everything but the network is still checked.
    std::fs::write(
        &path,
        "server: { listen: [\"192.0.2.1:80\"] }\nupstreams: {}\nroutes: []\n",
    )
    .unwrap();
    let out = edgeproxy(&["check", "--offline", "-c", &path]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn check_only_warns_about_a_port_in_use() {
    // A running edgeproxy holds its own ports: checking its file must still pass.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, &valid_config(port));
    let out = edgeproxy(&["check", "-c", &path]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("edgeproxy: warning: ")
            && stderr.contains(&format!(
                "cannot listen on 127.0.0.1:{port}: Address already in use"
            )),
        "{stderr}"
    );
}

#[test]
fn check_offline_skips_the_access_log_but_reads_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir/access.log");
    let config = valid_config(free_port()).replace(
        "server: {",
        &format!("server: {{ access_log: \"{}\",", missing.display()),
    );
    let path = write_config(&dir, &config);
    let out = edgeproxy(&["check", "-c", &path]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = edgeproxy(&["check", "--offline", "-c", &path]);
    assert!(
        out.status.success(),
        "the access log was opened offline: {out:?}"
    );

    // A certificate that is not there fails the offline check all the same.
    let tls = format!(
        "  tls: {{ listen: [\"127.0.0.1:{}\"], cert: \"{}\", key: \"{}\" }}\n",
        free_port(),
        dir.path().join("missing.crt").display(),
        dir.path().join("missing.key").display()
    );
    let config = format!(
        "server:\n  listen: [\"127.0.0.1:{}\"]\n{tls}upstreams:\n  app:\n    servers: [ {{ addr: 127.0.0.1:8001 }} ]\nroutes:\n  - {{ path: /, upstream: app }}\n",
        free_port()
    );
    let path = write_config(&dir, &config);
    let out = edgeproxy(&["check", "--offline", "-c", &path]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing.crt"), "{stderr}");
}

#[test]
fn run_refuses_to_start_on_a_port_in_use() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, &valid_config(port));
    let out = edgeproxy(&["-c", &path]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
}

/// A proxy with this grace period in front of `backend`; its metrics port comes second.
fn proxy_with_grace(backend: &Backend, grace: &str) -> (Proxy, u16) {
    let metrics_port = free_port();
    let proxy = Proxy::start_with(
        &format!("  grace_period: {grace}"),
        &format!(
            "metrics: {{ listen: \"127.0.0.1:{metrics_port}\" }}\n{}routes:\n  - {{ path: /, upstream: app }}\n",
            upstream(&[backend], &[1])
        ),
    );
    (proxy, metrics_port)
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits_before_the_grace_period() {
    let backend = Backend::start("1");
    let (mut proxy, metrics_port) = proxy_with_grace(&backend, "5s");
    let slow = tokio::spawn(client().get(proxy.url("/slow?ms=1000")).send());
    wait_inflight(metrics_port, &backend, 1.0).await;

    let signalled = Instant::now();
    proxy.child.signal("TERM");
    wait_refused(proxy.port).await;

    let resp = slow
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(resp.status(), 200);
    let status = proxy
        .child
        .wait_exit(Duration::from_secs(5))
        .expect("exits");
    let elapsed = signalled.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        elapsed < Duration::from_secs(3),
        "exited {elapsed:?} after SIGTERM; nothing was left in flight after ~0.8s"
    );
}

/// Waits until connections to `port` are refused, failing the test if they still are
/// accepted 3 s on.
async fn wait_refused(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting 3 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the proxy has accepted `n` client connections.
async fn wait_connections(metrics_port: u16, n: f64) {
    let open = "edgeproxy_downstream_connections";
    wait_metric(metrics_port, open, n, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn sigterm_answers_a_request_sent_late_on_a_connection_accepted_before_it() {
    let backend = Backend::start("1");
    let (mut proxy, metrics_port) = proxy_with_grace(&backend, "5s");
    let mut late = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    let mut silent = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    for conn in [&late, &silent] {
        // Longer than the shutdown's wait: a proxy that never answers fails, not hangs.
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
    }
    wait_connections(metrics_port, 2.0).await;

    let signalled = Instant::now();
    proxy.child.signal("TERM");
    // Sent once the proxy has stopped accepting, so well after SIGTERM was handled.
    wait_refused(proxy.port).await;
    late.write_all(b"GET / HTTP/1.1\r\nHost: edge\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    late.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "no keep-alive past shutdown: {answer}"
    );

    // A connection that never sends a request is closed once the wait is over.
    let mut rest = Vec::new();
    assert_eq!(silent.read_to_end(&mut rest).unwrap_or(0), 0);
    let status = proxy
        .child
        .wait_exit(Duration::from_secs(5))
        .expect("exits");
    assert!(status.success(), "{status}");
    let elapsed = signalled.elapsed();
    assert!(
        elapsed < Duration::from_secs(3),
        "exited {elapsed:?} after SIGTERM, with only an idle connection left after 0.3s"
    );
}

#[tokio::test]
async fn sigterm_gives_up_on_requests_longer_than_the_grace_period() {
    let backend = Backend::start("1");
    let (mut proxy, metrics_port) = proxy_with_grace(&backend, "700ms");
    let slow = tokio::spawn(client().get(proxy.url("/slow?ms=10000")).send());
    wait_inflight(metrics_port, &backend, 1.0).await;

    let signalled = Instant::now();
    proxy.child.signal("TERM");
    let status = proxy
        .child
        .wait_exit(Duration::from_secs(5))
        .expect("exits");
    let elapsed = signalled.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        elapsed >= Duration::from_millis(650) && elapsed < Duration::from_millis(2000),
        "exited {elapsed:?} after SIGTERM with a 700ms grace period"
    );
    assert!(
        slow.await.unwrap().is_err(),
        "the cut request cannot succeed"
    );
}

#[tokio::test]
async fn sigterm_on_an_idle_proxy_exits_at_once() {
    let backend = Backend::start("1");
    let (mut proxy, _) = proxy_with_grace(&backend, "10s");
    let signalled = Instant::now();
    proxy.child.signal("TERM");
    let status = proxy
        .child
        .wait_exit(Duration::from_secs(5))
        .expect("exits");
    assert!(status.success(), "{status}");
    assert!(
        signalled.elapsed() < Duration::from_secs(1),
        "{:?}",
        signalled.elapsed()
    );
}

#[tokio::test]
async fn sigint_exits_fast_even_with_requests_in_flight() {
    let backend = Backend::start("1");
    let (mut proxy, metrics_port) = proxy_with_grace(&backend, "10s");
    let _slow = tokio::spawn(client().get(proxy.url("/slow?ms=10000")).send());
    wait_inflight(metrics_port, &backend, 1.0).await;
    let signalled = Instant::now();
    proxy.child.signal("INT");
    proxy
        .child
        .wait_exit(Duration::from_secs(5))
        .expect("exits");
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "{:?}",
        signalled.elapsed()
    );
}

#[test]
fn check_warns_when_metrics_are_open_to_every_host() {
    let dir = tempfile::tempdir().unwrap();
    let body = "upstreams:\n  app:\n    servers:\n      - addr: 127.0.0.1:8001\nroutes:\n  - { path: /, upstream: app }\n";
    let open = write_config(
        &dir,
        &format!(
            "metrics: {{ listen: \"0.0.0.0:{}\" }}\n{body}",
            common::free_port()
        ),
    );
    let out = edgeproxy(&["check", "--offline", "-c", &open]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("warning") && stderr.contains("metrics.allow"),
        "{stderr}"
    );

    let allowed = write_config(
        &dir,
        &format!(
            "metrics: {{ listen: \"0.0.0.0:{}\", allow: [10.0.0.0/8] }}\n{body}",
            common::free_port()
        ),
    );
    let out = edgeproxy(&["check", "--offline", "-c", &allowed]);
    assert!(out.status.success(), "{out:?}");
    assert!(!String::from_utf8(out.stderr)
        .unwrap()
        .contains("metrics.allow"));
}

/// The harness itself: a proxy that crashes fails the test that started it, even when the test
/// checks nothing after the crash.
#[test]
#[should_panic(expected = "edgeproxy exited with")]
fn a_proxy_that_crashed_fails_its_test() {
    let backend = Backend::start("1");
    let mut proxy = Proxy::start(&format!(
        "{}routes:\n  - {{ path: /, upstream: app }}\n",
        upstream(&[&backend], &[1])
    ));
    proxy.child.signal("ABRT");
    assert!(proxy.child.wait_exit(Duration::from_secs(5)).is_some());
}

#[test]
fn check_without_c_reads_the_default_path() {
    let out = edgeproxy(&["check"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Valid or not, present or not (on a test machine it is normally missing), the file that
    // was checked is named.
    assert!(said.contains("/etc/edgeproxy/edgeproxy.yaml"), "{said}");
}

/// Starts the binary on `config` with `RUST_LOG` set to `rust_log` (unset if None), until it
/// answers; returns it with its stdout and stderr files.
fn run_with_log_filter(
    dir: &tempfile::TempDir,
    config: &str,
    port: u16,
    rust_log: Option<&str>,
) -> (common::ChildGuard, std::path::PathBuf, std::path::PathBuf) {
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_edgeproxy"));
    command
        .args(["-c", config])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    match rust_log {
        Some(filter) => command.env("RUST_LOG", filter),
        None => command.env_remove("RUST_LOG"),
    };
    let mut child = common::ChildGuard(command.spawn().unwrap());
    common::wait_ready(&mut child, port, "/edge-health", Some(200), "edgeproxy");
    (child, out, err)
}

#[test]
fn diagnostics_go_to_stderr_at_info_unless_rust_log_says_otherwise() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, &valid_config(port));
    let (child, out, err) = run_with_log_filter(&dir, &path, port, None);
    let started = format!("listening on http://127.0.0.1:{port}");
    let stderr = common::read_log(&err);
    assert!(
        stderr.contains(&started) && stderr.contains(" INFO "),
        "{stderr}"
    );
    let stdout = common::read_log(&out);
    assert!(!stdout.contains(&started), "{stdout}");
    drop(child);

    let (_child, _, err) = run_with_log_filter(&dir, &path, port, Some("warn"));
    let stderr = common::read_log(&err);
    assert!(!stderr.contains(&started), "{stderr}");
}

#[tokio::test]
async fn the_start_up_log_warns_when_metrics_are_open_to_every_host() {
    let backend = Backend::start("1");
    let metrics_port = free_port();
    let proxy = Proxy::start(&format!(
        "metrics: {{ listen: \"0.0.0.0:{metrics_port}\" }}\n{}routes:\n  - {{ path: /, upstream: app }}\n",
        upstream(&[&backend], &[1])
    ));
    let warning = common::line_with(|| proxy.log(), "metrics.allow").await;
    assert!(warning.contains(" WARN "), "{warning}");
}

#[test]
fn check_warns_when_an_acme_domain_does_not_point_here() {
    let dir = tempfile::tempdir().unwrap();
    let (http, https) = (free_port(), free_port());
    let config = format!(
        "server:
  listen: [\"127.0.0.1:{http}\"]
  tls:
    listen: [\"127.0.0.1:{https}\"]
    acme: {{ domains: [localhost.localdomain.invalid], state_dir: {} }}
upstreams:
  app: {{ servers: [ {{ addr: \"127.0.0.1:9000\" }} ] }}
routes:
  - {{ path: /, upstream: app }}
",
        dir.path().join("acme").display()
    );
    let path = write_config(&dir, &config);
    let out = edgeproxy(&["check", "-c", &path]);
    assert!(out.status.success(), "a warning, not an error: {out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("warning")
            && stderr.contains("localhost.localdomain.invalid does not resolve"),
        "{stderr}"
    );
    // --offline looks nothing up.
    let out = edgeproxy(&["check", "--offline", "-c", &path]);
    assert!(out.status.success(), "{out:?}");
    assert!(!String::from_utf8(out.stderr).unwrap().contains("resolve"));
}
