//! Test harness: real demo backends and a real edgeproxy, as child processes on 127.0.0.1
//! ephemeral ports, each proxy with its own temp dir. Everything is killed on drop.

#![allow(dead_code)] // each test crate uses a different part of the harness

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio_tungstenite::tungstenite::Message;

/// How long a child may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A port on 127.0.0.1 reserved for the rest of the test process, for the test to hand to a
/// process it starts. It is held by a socket that is bound, with SO_REUSEADDR, and never
/// listens: the kernel gives the port to no other bind(:0) or outgoing connection, so no
/// parallel test can take it, while the process it is meant for can still bind and listen on
/// it (Pingora's and std's listeners set SO_REUSEADDR too). Until then a connect to it is
/// refused.
pub fn free_port() -> u16 {
    use std::os::fd::IntoRawFd;
    let (port, socket) = bound_port(true);
    // Left open on purpose: the reservation lasts as long as the test process.
    let _held = socket.into_raw_fd();
    port
}

/// A socket bound to an ephemeral port of 127.0.0.1, never listening, and that port.
fn bound_port(reuse_addr: bool) -> (u16, tokio::net::TcpSocket) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_reuseaddr(reuse_addr).expect("SO_REUSEADDR");
    socket
        .bind("127.0.0.1:0".parse().unwrap())
        .expect("an ephemeral port");
    let port = socket.local_addr().expect("its address").port();
    (port, socket)
}

/// A port on 127.0.0.1 held by a socket that is bound but does not listen, for as long as the
/// returned guard lives: a connect to it is refused, as to a server that is down, and, unlike
/// a [`free_port`], nothing can bind it meanwhile, not even on purpose.
pub fn dead_port() -> (u16, DeadPort) {
    // Without SO_REUSEADDR, which std's listeners set, nothing else can bind the port.
    let (port, socket) = bound_port(false);
    (port, DeadPort(socket))
}

/// Holds the port of [`dead_port`].
pub struct DeadPort(tokio::net::TcpSocket);

/// A listener whose accept queue is full and never drained: the kernel drops further SYNs, so
/// a connect to it hangs until the connecting side gives up, as to a host that is down.
pub struct FullListener {
    /// Its port on 127.0.0.1.
    pub port: u16,
    _listener: tokio::net::TcpListener,
    _queued: Vec<TcpStream>,
}

impl FullListener {
    /// Listens with a backlog of 0 and queues connections until one no longer connects.
    pub fn start() -> FullListener {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut queued = Vec::new();
        for _ in 0..8 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(stream) => queued.push(stream),
                Err(_) => {
                    return FullListener {
                        port: addr.port(),
                        _listener: listener,
                        _queued: queued,
                    }
                }
            }
        }
        panic!("the accept queue of {addr} took 8 connections with a backlog of 0");
    }
}

/// Runs the edgeproxy binary with `args` to the end, e.g. `check -c FILE`.
pub fn edgeproxy(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_edgeproxy"))
        .args(args)
        .output()
        .expect("edgeproxy runs")
}

/// A child process killed when dropped.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Sends a signal by name (TERM, INT, …).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends a GET with `Connection: close` over a plain socket and returns the status code, or
/// None if nothing answered within 5 s (more than any backend `--delay` a test uses). Used only
/// to wait for readiness.
pub fn probe_status(port: u16, path: &str) -> Option<u16> {
    probe_status_at("127.0.0.1", port, path)
}

/// [`probe_status`] of a server on another loopback address.
pub fn probe_status_at(ip: &str, port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect((ip, port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Waits until `path` answers with `status`, or with anything if `status` is None.
pub fn wait_ready(child: &mut ChildGuard, port: u16, path: &str, status: Option<u16>, what: &str) {
    wait_ready_at(child, "127.0.0.1", port, path, status, what)
}

/// [`wait_ready`] for a server on another loopback address.
fn wait_ready_at(
    child: &mut ChildGuard,
    ip: &str,
    port: u16,
    path: &str,
    status: Option<u16>,
    what: &str,
) {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(got) = probe_status_at(ip, port, path) {
            if status.is_none_or(|want| want == got) {
                return;
            }
        }
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            panic!("{what} exited during start-up: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not answer {path} on port {port} within {START_TIMEOUT:?}");
}

/// The port of the metrics listener the start-up log announces ("metrics on http://ADDR/...").
fn announced_metrics_port(log: &str) -> Option<u16> {
    let (_, rest) = log.split_once("metrics on http://")?;
    let (addr, _) = rest.split_once("/metrics")?;
    let port = addr.rsplit_once(':')?.1;
    Some(port.parse().expect("a port in the metrics line"))
}

/// A demo backend process.
pub struct Backend {
    /// Its IP, 127.0.0.1 unless started with [`Backend::start_at`].
    pub ip: String,
    /// Its port.
    pub port: u16,
    /// Its instance id.
    pub id: String,
    child: ChildGuard,
    log: tempfile::NamedTempFile,
}

impl Backend {
    /// Starts `edgeproxy-demo` with this id and waits until it answers.
    pub fn start(id: &str) -> Backend {
        Self::start_with(id, &[])
    }

    /// Starts `edgeproxy-demo` with extra arguments, e.g. `["--delay", "600ms"]`.
    pub fn start_with(id: &str, args: &[&str]) -> Backend {
        Self::start_on(free_port(), id, args)
    }

    /// Starts `edgeproxy-demo` on a given port, e.g. to bring a killed backend back.
    pub fn start_on(port: u16, id: &str, args: &[&str]) -> Backend {
        Self::start_at("127.0.0.1", port, id, args)
    }

    /// Starts `edgeproxy-demo` on another loopback address, such as 127.0.0.2.
    pub fn start_at(ip: &str, port: u16, id: &str, args: &[&str]) -> Backend {
        let log = tempfile::NamedTempFile::new().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_edgeproxy-demo"))
            .args(["--listen", &format!("{ip}:{port}"), "--id", id])
            .args(args)
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("log file"))
            .spawn()
            .expect("edgeproxy-demo starts");
        let mut child = ChildGuard(child);
        wait_ready_at(&mut child, ip, port, "/health", Some(200), "demo backend");
        Backend {
            ip: ip.to_string(),
            port,
            id: id.to_string(),
            child,
            log,
        }
    }

    /// Everything the backend wrote to stderr so far.
    pub fn log(&self) -> String {
        read_log(self.log.path())
    }

    /// `IP:PORT`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// Kills the backend now.
    pub fn kill(self) {}
}

/// A running edgeproxy with its config and log in a temp dir.
pub struct Proxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The temp dir with `edgeproxy.yaml` and `stderr.log`.
    pub dir: TempDir,
    /// The process.
    pub child: ChildGuard,
    /// The `server:` section the config started with, kept across reloads.
    head: String,
}

impl Proxy {
    /// Starts edgeproxy with `body` (the config without the `server:` section) and waits until
    /// it answers HTTP. `server` holds extra `server:` keys, one per line.
    pub fn start_with(server: &str, body: &str) -> Proxy {
        Self::start_limited(server, body, None)
    }

    /// Starts edgeproxy like [`Proxy::start`], its open-file limit (soft and hard, so that it
    /// cannot raise it) set to `limit`.
    pub fn start_with_fd_limit(body: &str, limit: u64) -> Proxy {
        Self::start_limited("", body, Some((limit, limit)))
    }

    /// Starts edgeproxy with `server:` keys like [`Proxy::start_with`], its open-file limit
    /// `soft` with room up to `hard`.
    pub fn start_with_fd_limits(server: &str, body: &str, soft: u64, hard: u64) -> Proxy {
        Self::start_limited(server, body, Some((soft, hard)))
    }

    /// Starts edgeproxy like [`Proxy::start`] in a mount namespace of its own where `hosts`
    /// is `/etc/hosts`: the test drives what the proxy's host names resolve to by writing
    /// that file (in place, so that the bind mount keeps following it).
    pub fn start_with_hosts(body: &str, hosts: &Path) -> Proxy {
        let port = free_port();
        let head = format!("server:\n  listen: [\"127.0.0.1:{port}\"]\n  threads: 2\n");
        let mut proxy = Self::launch(port, &format!("{head}{body}"), None, Some(hosts));
        proxy.head = head;
        proxy
    }

    fn start_limited(server: &str, body: &str, fd_limit: Option<(u64, u64)>) -> Proxy {
        let port = free_port();
        let head = format!("server:\n  listen: [\"127.0.0.1:{port}\"]\n  threads: 2\n{server}\n");
        let mut proxy = Self::launch(port, &format!("{head}{body}"), fd_limit, None);
        proxy.head = head;
        proxy
    }

    /// Starts edgeproxy with `body`, default server settings.
    pub fn start(body: &str) -> Proxy {
        Self::start_with("", body)
    }

    /// Starts edgeproxy with a complete config that listens on `port`.
    pub fn start_config(port: u16, config: &str) -> Proxy {
        Self::launch(port, config, None, None)
    }

    fn launch(
        port: u16,
        config: &str,
        fd_limit: Option<(u64, u64)>,
        hosts: Option<&Path>,
    ) -> Proxy {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("edgeproxy.yaml");
        std::fs::write(&config_path, config).expect("write config");
        let log = File::create(dir.path().join("stderr.log")).expect("log file");
        let access_log = File::create(dir.path().join("stdout.log")).expect("log file");
        let mut command = match hosts {
            None => Command::new(env!("CARGO_BIN_EXE_edgeproxy")),
            Some(hosts) => {
                // unshare execs sh, which execs edgeproxy: the child's pid stays the proxy's.
                let mut command = Command::new("unshare");
                command
                    .args(["--mount", "sh", "-c"])
                    .arg("mount --bind \"$0\" /etc/hosts && exec \"$@\"")
                    .arg(hosts)
                    .arg(env!("CARGO_BIN_EXE_edgeproxy"));
                command
            }
        };
        command
            .arg("-c")
            .arg(&config_path)
            .env("RUST_LOG", "info")
            .stdout(access_log)
            .stderr(log);
        if let Some((soft, hard)) = fd_limit {
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            // SAFETY: setrlimit is async-signal-safe and only reads the struct, which was
            // built before the fork.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = command.spawn().expect("edgeproxy starts");
        let mut child = ChildGuard(child);
        // The default health path is answered locally, so probing it takes no balancing turn.
        // Any answer will do: a test may move the health path and proxy this one to a dead
        // server.
        wait_ready(&mut child, port, "/edge-health", None, "edgeproxy");
        // The metrics listener is a service of its own that may start a moment later.
        let started = read_log(&dir.path().join("stderr.log"));
        if let Some(metrics_port) = announced_metrics_port(&started) {
            let what = "edgeproxy's metrics listener";
            wait_ready(&mut child, metrics_port, "/metrics", None, what);
        }
        Proxy {
            port,
            dir,
            child,
            head: String::new(),
        }
    }

    /// The config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("edgeproxy.yaml")
    }

    /// Replaces the config file, keeping its `server:` section; signals nothing.
    pub fn rewrite(&self, body: &str) {
        std::fs::write(self.config_path(), format!("{}{body}", self.head)).expect("write config");
    }

    /// Replaces the config (keeping the `server:` section) and sends SIGHUP; returns once the
    /// proxy logged the outcome, true if the reload was taken.
    pub fn reload(&self, body: &str) -> bool {
        let outcomes =
            |log: &str| log.matches("reloaded ").count() + log.matches("reload failed").count();
        let before = outcomes(&self.log());
        self.rewrite(body);
        self.child.signal("HUP");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if outcomes(&log) > before {
                let last = log.lines().rev().find(|l| l.contains("reload"));
                return last.is_some_and(|l| l.contains("reloaded "));
            }
            assert!(
                Instant::now() < deadline,
                "no reload outcome logged:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The proxy's peak resident memory so far, in bytes (VmHWM).
    pub fn peak_rss(&self) -> u64 {
        self.memory("VmHWM")
    }

    /// The proxy's resident memory now, in bytes (VmRSS).
    pub fn rss(&self) -> u64 {
        self.memory("VmRSS")
    }

    /// A memory figure of the proxy's `/proc/PID/status`, in bytes.
    fn memory(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.pid()))
            .expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{key} in /proc status"))
            * 1024
    }

    /// Everything the proxy wrote to stdout so far: the access log, by default.
    pub fn stdout(&self) -> String {
        read_log(&self.dir.path().join("stdout.log"))
    }

    /// Everything the proxy wrote to stderr so far.
    pub fn log(&self) -> String {
        read_log(&self.log_path())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("stderr.log")
    }
}

/// A test whose proxy panicked, or died of a crash or a failing exit, fails at its end, even if
/// every request it checked was answered: nothing may panic on user or network input, and a
/// proxy that died early makes a later "nothing happened" check pass for the wrong reason.
impl Drop for Proxy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let log = read_log(&self.log_path());
        if let Some(line) = log.lines().find(|l| l.contains("panicked at")) {
            panic!("edgeproxy panicked: {line}\n{log}");
        }
        if let Ok(Some(status)) = self.child.0.try_wait() {
            use std::os::unix::process::ExitStatusExt;
            // Tests stop the proxy with TERM, INT, QUIT or KILL, which it may exit by; a
            // crash signal or a failing exit code is never expected.
            let crashed = status.signal().is_some_and(|signal| {
                [
                    libc::SIGSEGV,
                    libc::SIGABRT,
                    libc::SIGBUS,
                    libc::SIGILL,
                    libc::SIGFPE,
                ]
                .contains(&signal)
            });
            if crashed || status.code().is_some_and(|code| code != 0) {
                panic!("edgeproxy exited with {status}:\n{log}");
            }
        }
    }
}

/// A metrics listener on `metrics_port` and an upstream `app` over `servers` (with weights)
/// balanced by `balance`, routed at `/`.
pub fn metrics_and_app(metrics_port: u16, balance: &str, servers: &[(&Backend, u16)]) -> String {
    let mut yaml = format!(
        "metrics: {{ listen: \"127.0.0.1:{metrics_port}\" }}\nupstreams:\n  app:\n    balance: {balance}\n    servers:\n"
    );
    for (backend, weight) in servers {
        yaml.push_str(&format!(
            "      - {{ addr: \"{}\", id: \"{}\", weight: {weight} }}\n",
            backend.addr(),
            backend.id
        ));
    }
    yaml + "routes:\n  - { path: /, upstream: app }\n"
}

/// An upstream block named `app` over these backends with these weights.
pub fn upstream(backends: &[&Backend], weights: &[u16]) -> String {
    let mut yaml = String::from("upstreams:\n  app:\n    servers:\n");
    for (backend, weight) in backends.iter().zip(weights) {
        yaml.push_str(&format!(
            "      - {{ addr: \"{}\", id: \"{}\", weight: {weight} }}\n",
            backend.addr(),
            backend.id
        ));
    }
    yaml
}

/// A backend on raw sockets that counts the requests it reads and then either answers
/// `200 ok` or drops the connection without a word, like a server dying mid-request.
pub struct RawBackend {
    /// Its port on 127.0.0.1.
    pub port: u16,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    answer: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl RawBackend {
    /// Starts it; `answer: false` drops every request.
    pub fn start(answer: bool) -> RawBackend {
        Self::start_with(answer, "", Duration::ZERO)
    }

    /// Answers every request after `delay` with `200 ok` plus `headers` (CRLF-terminated
    /// lines).
    pub fn answering(headers: &'static str, delay: Duration) -> RawBackend {
        Self::start_with(true, headers, delay)
    }

    fn start_with(answer: bool, headers: &'static str, delay: Duration) -> RawBackend {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let answer = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(answer));
        let (counter, answering) = (requests.clone(), answer.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (counter, answering) = (counter.clone(), answering.clone());
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            counter.fetch_add(1, Ordering::SeqCst);
                            seen.clear();
                            if !answering.load(Ordering::SeqCst) {
                                return;
                            }
                            std::thread::sleep(delay);
                            let reply = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: text/css\r\ncontent-length: 2\r\n{headers}\r\nok"
                            );
                            if stream.write_all(reply.as_bytes()).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        RawBackend {
            port,
            requests,
            answer,
        }
    }

    /// From now on drops every request, like a server that died.
    pub fn stop_answering(&self) {
        self.answer
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Requests read so far.
    pub fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A log file the harness created for a process it started. An unreadable one fails the test,
/// so that a check that something was *not* logged cannot pass on a file it never read.
pub fn read_log(path: &Path) -> String {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The series counting retries of the upstream `app`, the one the harness's configs name.
pub const APP_RETRIES: &str = "edgeproxy_retries_total{upstream=\"app\"}";

/// The readiness gauge of `backend` (its `addr`) in the upstream `app`.
pub fn up_gauge(backend: &str) -> String {
    format!("edgeproxy_backend_up{{backend=\"{backend}\",upstream=\"app\"}}")
}

/// The value of a metric line `name{labels}` on a metrics port; `None` only when that series
/// is not exported (a labelled counter before its first count). A scrape that fails or is
/// refused fails the test: it must never read as an absent series, or as zero.
pub async fn metric(port: u16, name_and_labels: &str) -> Option<f64> {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let resp = client()
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("cannot scrape {url}: {e}"));
    assert_eq!(resp.status(), 200, "scraping {url}");
    let text = resp
        .text()
        .await
        .unwrap_or_else(|e| panic!("cannot read the scrape of {url}: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .map(|v| {
            v.trim().parse().unwrap_or_else(|_| {
                panic!("{name_and_labels} has a value that is not a number: {v}")
            })
        })
}

/// Polls the series `name{labels}` on a metrics port until it reads `want`, failing the test
/// after `limit`; returns how long it took.
pub async fn wait_metric(port: u16, series: &str, want: f64, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let now = metric(port, series).await;
        if now == Some(want) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{series} is {now:?}, not {want}, after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the proxy counts `n` requests in flight to `backend` of upstream `app`, so a
/// test acts only once its request has really arrived.
pub async fn wait_inflight(metrics_port: u16, backend: &Backend, n: f64) {
    let gauge = format!(
        "edgeproxy_backend_inflight{{backend=\"{}\",upstream=\"app\"}}",
        backend.addr()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(metrics_port, &gauge).await != Some(n) {
        assert!(
            Instant::now() < deadline,
            "never {n} in flight to {}",
            backend.addr()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts `clients` tasks that each send `per_client` GETs to `url`, `pause` apart; each
/// counts answers by `X-Instance-ID`, and anything else under `status N` or `error …`.
pub fn steady_load(
    url: String,
    clients: usize,
    per_client: usize,
    pause: Duration,
) -> Vec<tokio::task::JoinHandle<std::collections::BTreeMap<String, usize>>> {
    (0..clients)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let http = client();
                let mut seen = std::collections::BTreeMap::<String, usize>::new();
                for _ in 0..per_client {
                    let key = match http.get(&url).send().await {
                        Ok(resp) if resp.status() == 200 => instance(&resp),
                        Ok(resp) => format!("status {}", resp.status()),
                        Err(e) => format!("error {e}"),
                    };
                    *seen.entry(key).or_default() += 1;
                    tokio::time::sleep(pause).await;
                }
                seen
            })
        })
        .collect()
}

/// Adds up what the [`steady_load`] tasks counted.
pub async fn load_totals(
    tasks: Vec<tokio::task::JoinHandle<std::collections::BTreeMap<String, usize>>>,
) -> std::collections::BTreeMap<String, usize> {
    let mut totals = std::collections::BTreeMap::new();
    for task in tasks {
        for (key, n) in task.await.expect("load task") {
            *totals.entry(key).or_default() += n;
        }
    }
    totals
}

/// The body of a GET to `url`, as text.
pub async fn get_text(url: &str) -> String {
    client()
        .get(url)
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body")
}

/// The body of a GET to `url`, as JSON.
pub async fn get_json(url: &str) -> serde_json::Value {
    serde_json::from_str(&get_text(url).await).expect("JSON")
}

/// An HTTP client that keeps connections alive, like a browser.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// The `X-Instance-ID` of a response.
pub fn instance(resp: &reqwest::Response) -> String {
    header(resp, "x-instance-id")
}

/// A response header as text, empty if absent.
pub fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The first line `read()` returns that contains `needle`, waiting up to 5 s for it.
pub async fn line_with(read: impl Fn() -> String, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(line) = read().lines().find(|l| l.contains(needle)) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no line with {needle:?} in:\n{}",
            read()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `request` as is over a fresh connection to 127.0.0.1:`port` and returns all that
/// comes back until the proxy closes the connection. A proxy that keeps it open for 5 s fails
/// the test: every exchange sent this way expects an answer that ends the connection.
pub fn raw_exchange(port: u16, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // The proxy may answer and close before reading everything; that is fine.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        // Closing with unread request bytes resets the connection: the answer stands.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "no end of the answer within 5 s ({e}); got so far: {:?}",
            String::from_utf8_lossy(&answer)
        ),
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// A WebSocket server on 127.0.0.1 that answers each text or binary message with `tag`
/// followed by the message; returns its port. It runs on a thread of its own until the test
/// process ends.
pub fn websocket_echo(tag: &'static str) -> u16 {
    use futures_util::{SinkExt, StreamExt};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        let reply = match msg {
                            Message::Text(text) => Message::text(format!("{tag}{text}")),
                            Message::Binary(data) => {
                                Message::binary([tag.as_bytes(), &data].concat())
                            }
                            _ => continue,
                        };
                        if ws.send(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
    });
    port
}

/// The status code at the start of a raw HTTP/1 answer, if there is one.
pub fn raw_status(answer: &str) -> Option<u16> {
    answer.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Raises this process's open-file limit (inherited by the proxies it starts) to at least
/// `needed`, failing the test with a clear message if the hard limit does not allow it.
pub fn raise_fd_limit(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        assert!(
            limit.rlim_max >= needed,
            "this test needs {needed} open files; the hard limit is {} (raise it with ulimit -Hn)",
            limit.rlim_max
        );
        limit.rlim_cur = limit.rlim_cur.max(needed);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
}

/// Polls the series `name{labels}` on a metrics port until it reads at least `min` (a series
/// not exported yet counts as 0), failing the test after `limit`.
pub async fn wait_metric_at_least(port: u16, series: &str, min: f64, limit: Duration) {
    let started = Instant::now();
    loop {
        let now = metric(port, series).await.unwrap_or(0.0);
        if now >= min {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "{series} is {now}, below {min}, after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The series counting the `200`s that `backend` (its `addr`) of the upstream `app` gave on
/// the route `/`, for a test to follow how far a load has got whatever the machine's speed.
pub fn answered_by(backend: &str) -> String {
    format!(
        "edgeproxy_requests_total{{backend=\"{backend}\",code=\"200\",route=\"/\",upstream=\"app\"}}"
    )
}
