//! The status page in a real browser: Debian's headless Chromium driven through chromedriver
//! (the W3C WebDriver protocol, spoken with reqwest), against a real proxy and demo backends.

mod common;

use common::{free_port, get_json, steady_load, Backend, ChildGuard, Proxy};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A Chromium session.
struct Browser {
    driver: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
    _chromedriver: ChildGuard,
}

impl Browser {
    async fn start() -> Browser {
        let port = free_port();
        let chromedriver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (scripts/setup.sh --test installs chromium-driver)");
        let chromedriver = ChildGuard(chromedriver);
        let driver = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{driver}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        // Headless, as root, and with nothing reaching for the network beyond 127.0.0.1.
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--window-size=1280,1000",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args },
        }}});
        let created: Value = http
            .post(format!("{driver}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        Browser {
            driver,
            session,
            http,
            _profile: profile,
            _chromedriver: chromedriver,
        }
    }

    async fn command(&self, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}/{path}", self.driver, self.session);
        let request = match body {
            Some(body) => self.http.post(url).json(&body),
            None => self.http.get(url),
        };
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        answer["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.command("url", Some(json!({ "url": url }))).await;
    }

    /// What `script` (a function body) returns in the page.
    async fn eval(&self, script: &str) -> Value {
        self.command(
            "execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Waits until `script` returns true, and how long that took.
    async fn until(&self, script: &str, limit: Duration) -> Duration {
        let started = Instant::now();
        while self.eval(script).await != json!(true) {
            assert!(
                started.elapsed() < limit,
                "not within {limit:?}: {script}; the page reads: {}",
                self.eval("return document.body.innerText").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        started.elapsed()
    }

    /// A PNG of the window.
    async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let data = self.command("screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap()
    }
}

/// A script returning the row of server `name`.
fn row(name: &str) -> String {
    format!("document.querySelector('[data-server=\"{name}\"]')")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_a_server_going_down_and_traffic_rising() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let metrics = free_port();
    let proxy = Proxy::start(&format!(
        "metrics: {{ listen: \"127.0.0.1:{metrics}\" }}
upstreams:
  app:
    health_check: {{ type: http, path: /health, interval: 300ms, timeout: 300ms, fall: 1 }}
    servers: [ {{ addr: \"{}\", id: a }}, {{ addr: \"{}\", id: b }} ]
routes:
  - {{ path: /, upstream: app }}
",
        a.addr(),
        b.addr()
    ));
    let page = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{metrics}/status"))
        .header("Accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http") && !html.contains("@import"),
        "no external assets"
    );

    let browser = Browser::start().await;
    browser
        .open(&format!("http://127.0.0.1:{metrics}/status"))
        .await;
    let (row_a, row_b) = (row(&a.addr()), row(&b.addr()));
    browser
        .until(
            &format!("return {row_a}?.dataset.state === 'up' && {row_b}?.dataset.state === 'up'"),
            Duration::from_secs(10),
        )
        .await;

    // A killed backend's row turns down, with the probe's reason, within 3 s.
    drop(b);
    let down = browser
        .until(
            &format!(
                "const r = {row_b}; return r?.dataset.state === 'down' && /DOWN/.test(r.innerText) && /refused/i.test(r.innerText)"
            ),
            Duration::from_secs(3),
        )
        .await;
    eprintln!("shown down after {down:?}");

    // Under load, its neighbour's requests/s rise.
    let load = steady_load(proxy.url("/"), 4, 400, Duration::from_millis(5));
    browser
        .until(
            &format!("return parseFloat({row_a}.querySelector('.rps').innerText) > 0"),
            Duration::from_secs(8),
        )
        .await;
    let shot = browser.screenshot().await;
    assert!(shot.starts_with(b"\x89PNG"), "a PNG");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/target/test-artifacts");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(format!("{dir}/status-page.png"), shot).unwrap();
    for task in load {
        task.abort();
    }
}

/// The fields `/status` had before the page, with their values for one server `addr`, id
/// `one`, up.
fn assert_fields_of_before(status: &Value, addr: &str) {
    assert!(status["version"].is_string());
    let upstream = &status["upstreams"][0];
    for key in ["name", "balance", "health_check", "servers"] {
        assert!(!upstream[key].is_null(), "upstream.{key}: {status}");
    }
    let server = &upstream["servers"][0];
    for key in [
        "addr",
        "address",
        "id",
        "weight",
        "backup",
        "ready",
        "health",
        "passive_failed",
        "inflight",
    ] {
        assert!(!server[key].is_null(), "server.{key}: {server}");
    }
    assert!(
        server.get("last_probe").is_some(),
        "last_probe is there, null before a probe"
    );
    assert_eq!(server["addr"], addr);
    assert_eq!(server["id"], "one");
    assert_eq!(server["health"], "up");
}

#[tokio::test]
async fn status_stays_json_for_scripts_with_its_fields() {
    let backend = Backend::start("1");
    let metrics = free_port();
    let proxy = Proxy::start(&format!(
        "metrics: {{ listen: \"127.0.0.1:{metrics}\" }}
upstreams:
  app: {{ servers: [ {{ addr: \"{}\", id: one }} ] }}
routes:
  - {{ path: /, upstream: app }}
",
        backend.addr()
    ));
    // A keep-alive connection held open to the proxy's listener.
    let held = reqwest::Client::new();
    held.get(proxy.url("/"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let plain = get_json(&format!("http://127.0.0.1:{metrics}/status")).await;
    let html_first = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{metrics}/status.json"))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert!(html_first.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let json_path: Value = html_first.json().await.unwrap();
    for status in [&plain, &json_path] {
        assert_fields_of_before(status, &backend.addr());
    }
    assert!(plain["uptime_seconds"].is_u64());
    assert!(plain["listeners"]["connection_limit"].is_u64());
    let listeners = plain["listeners"]["addresses"].as_array().unwrap();
    let proxy_listener = listeners
        .iter()
        .find(|l| l["key"] == "server.listen")
        .unwrap();
    assert!(
        proxy_listener["connections"].as_u64() >= Some(1),
        "{listeners:?}"
    );
    let metrics_listener = listeners
        .iter()
        .find(|l| l["key"] == "metrics.listen")
        .unwrap();
    assert!(
        metrics_listener["connections"].is_null(),
        "not counted: {listeners:?}"
    );
    assert_eq!(plain["routes"][0]["path"], "/");
    assert!(plain["config"]["path"]
        .as_str()
        .unwrap()
        .ends_with("edgeproxy.yaml"));
}
