//! HTTPS termination end to end: certificates made in the test, a real TLS client that
//! verifies them, HTTP/2 by ALPN, certificate renewal by reload, and the HTTP→HTTPS redirect.

mod common;

use common::{
    edgeproxy, free_port, header, metric, upstream, wait_metric, Backend, Proxy, RawBackend,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;

const ROUTE_ALL: &str = "routes:\n  - { path: /, upstream: app }\n";

/// A certificate for `localhost` written as `cert.pem` and `key.pem` in its own temp dir.
struct CertFiles {
    dir: TempDir,
    /// The PEM of the certificate, for the client to trust.
    pem: String,
    /// The DER of the certificate, as the server sends it.
    der: Vec<u8>,
}

impl CertFiles {
    fn new() -> Self {
        let files = CertFiles {
            dir: tempfile::tempdir().expect("temp dir"),
            pem: String::new(),
            der: Vec::new(),
        };
        files.renew()
    }

    /// Writes a new certificate and key over the files, as certbot's renewal does.
    fn renew(mut self) -> Self {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .expect("a certificate");
        self.pem = made.cert.pem();
        self.der = made.cert.der().to_vec();
        std::fs::write(self.cert(), &self.pem).expect("write cert");
        std::fs::write(self.key(), made.key_pair.serialize_pem()).expect("write key");
        self
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// The `server:` lines for an HTTPS listener on `port` with these files.
    fn server_keys(&self, port: u16, extra: &str) -> String {
        format!(
            "  tls:\n    listen: [\"127.0.0.1:{port}\"]\n    cert: {}\n    key: {}\n{extra}",
            self.cert().display(),
            self.key().display()
        )
    }
}

/// A client that trusts only `pem` and reaches `localhost` at 127.0.0.1:`port`.
fn https_client(pem: &str, port: u16, http1_only: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("pem"))
        .tls_built_in_root_certs(false)
        .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], port)))
        .tls_info(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20));
    if http1_only {
        builder = builder.http1_only();
    }
    builder.build().expect("client")
}

/// `GET https://localhost:PORT/` from a new client trusting only `pem`: a new connection, so
/// a new handshake with whatever certificate the proxy serves now.
async fn get_root(pem: &str, port: u16) -> reqwest::Result<reqwest::Response> {
    https_client(pem, port, false)
        .get(format!("https://localhost:{port}/"))
        .send()
        .await
}

/// The DER of the certificate the server presented.
fn peer_certificate(resp: &reqwest::Response) -> Vec<u8> {
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("a peer certificate")
        .to_vec()
}

/// What an `/echo` request over HTTPS saw: the HTTP version, the server's certificate and
/// the headers the backend received.
async fn echo(http: &reqwest::Client, url: &str) -> (reqwest::Version, Vec<u8>, serde_json::Value) {
    let resp = http.get(url).send().await.expect("request");
    assert_eq!(resp.status(), 200);
    assert!(!header(&resp, "x-served-by").is_empty());
    let (version, certificate) = (resp.version(), peer_certificate(&resp));
    let body: serde_json::Value = resp.json().await.expect("json");
    (version, certificate, body["headers"].clone())
}

/// A proxy with an HTTPS listener (plus `tls_extra` lines) in front of one backend; returns
/// them, the certificate and the HTTPS port.
fn https_proxy(tls_extra: &str) -> (Backend, CertFiles, u16, Proxy) {
    let backend = Backend::start("1");
    let certs = CertFiles::new();
    let tls_port = free_port();
    let proxy = Proxy::start_with(
        &certs.server_keys(tls_port, tls_extra),
        &format!("{}{ROUTE_ALL}", upstream(&[&backend], &[1])),
    );
    (backend, certs, tls_port, proxy)
}

#[tokio::test]
async fn https_with_http2_reaches_the_backend_as_forwarded_https() {
    let (_backend, certs, tls_port, proxy) = https_proxy("");
    let url = format!("https://localhost:{tls_port}/echo");

    let (version, certificate, headers) =
        echo(&https_client(&certs.pem, tls_port, false), &url).await;
    assert_eq!(version, reqwest::Version::HTTP_2);
    assert_eq!(certificate, certs.der);
    assert_eq!(headers["x-forwarded-proto"], "https");
    assert_eq!(headers["x-real-ip"], "127.0.0.1");
    assert_eq!(headers["host"], format!("localhost:{tls_port}"));

    let (version, _, headers) = echo(&https_client(&certs.pem, tls_port, true), &url).await;
    assert_eq!(version, reqwest::Version::HTTP_11);
    assert_eq!(headers["x-forwarded-proto"], "https");

    // Plain HTTP goes on beside it.
    let body = common::get_json(&proxy.url("/echo")).await;
    assert_eq!(body["headers"]["x-forwarded-proto"], "http");
}

#[tokio::test]
async fn both_tls_1_2_and_tls_1_3_are_offered() {
    let (_backend, certs, tls_port, _proxy) = https_proxy("");
    for version in [
        reqwest::tls::Version::TLS_1_2,
        reqwest::tls::Version::TLS_1_3,
    ] {
        // A client that speaks only this version.
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(certs.pem.as_bytes()).unwrap())
            .tls_built_in_root_certs(false)
            .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], tls_port)))
            .min_tls_version(version)
            .max_tls_version(version)
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let resp = http
            .get(format!("https://localhost:{tls_port}/"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{version:?}: {e:?}"));
        assert_eq!(resp.status(), 200, "{version:?}");
    }
}

#[tokio::test]
async fn http2_can_be_turned_off() {
    let (_backend, certs, tls_port, _proxy) = https_proxy("    http2: false\n");
    let resp = get_root(&certs.pem, tls_port).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
}

#[tokio::test]
async fn a_reload_serves_the_renewed_certificate_and_a_bad_one_changes_nothing() {
    let backend = Backend::start("1");
    let certs = CertFiles::new();
    let (tls_port, metrics_port) = (free_port(), free_port());
    let body = format!(
        "metrics: {{ listen: \"127.0.0.1:{metrics_port}\" }}\n{}{ROUTE_ALL}",
        upstream(&[&backend], &[1])
    );
    let proxy = Proxy::start_with(&certs.server_keys(tls_port, ""), &body);
    let (first, first_der) = (certs.pem.clone(), certs.der.clone());
    let resp = get_root(&first, tls_port).await.unwrap();
    assert_eq!(peer_certificate(&resp), first_der);
    // A file certificate's expiry is exported too, by name, and shown in /status.
    let expiry = "edgeproxy_certificate_expiry_timestamp_seconds{domain=\"localhost\"}";
    let expires = metric(metrics_port, expiry).await;
    assert!(expires.is_some_and(|t| t > 1.7e9), "{expires:?}");
    let status = common::get_json(&format!("http://127.0.0.1:{metrics_port}/status")).await;
    assert_eq!(status["certificates"][0]["source"], "file");
    assert_eq!(status["certificates"][0]["names"][0], "localhost");
    // A connection opened before the renewal, kept alive by its client.
    let kept = https_client(&first, tls_port, true);
    let url = format!("https://localhost:{tls_port}/");
    let resp = kept.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();

    let certs = certs.renew();
    assert!(proxy.reload(&body), "the reload is taken");
    // It goes on with the certificate it shook hands with.
    let resp = kept.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(peer_certificate(&resp), first_der);
    // A client that trusts only the old certificate is now refused; one that trusts the new
    // one gets it, on a new connection.
    assert!(get_root(&first, tls_port).await.is_err());
    let resp = get_root(&certs.pem, tls_port).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(peer_certificate(&resp), certs.der);

    // A key that does not match: the reload is refused, the renewed certificate stays.
    let other = CertFiles::new();
    std::fs::copy(other.key(), certs.key()).unwrap();
    assert!(!proxy.reload(&body), "a mismatched key is refused");
    assert!(proxy.log().contains("server.tls.key"), "{}", proxy.log());
    let error = "edgeproxy_config_reloads_total{result=\"error\"}";
    assert_eq!(metric(metrics_port, error).await, Some(1.0));
    let resp = get_root(&certs.pem, tls_port).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(peer_certificate(&resp), certs.der);
}

#[tokio::test]
async fn plain_http_is_redirected_to_https_but_health_checks_are_not() {
    let backend = RawBackend::start(true);
    let certs = CertFiles::new();
    let tls_port = free_port();
    let proxy = Proxy::start_with(
        &certs.server_keys(tls_port, "    redirect_http_to_https: true\n"),
        &format!(
            "upstreams:\n  app:\n    servers:\n      - addr: 127.0.0.1:{}\n{ROUTE_ALL}",
            backend.port
        ),
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let resp = http
        .get(proxy.url("/shop/cart?item=7"))
        .header("Host", format!("shop.example.com:{}", proxy.port))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 301);
    assert_eq!(
        header(&resp, "location"),
        format!("https://shop.example.com:{tls_port}/shop/cart?item=7")
    );
    let resp = http.post(proxy.url("/form")).send().await.unwrap();
    assert_eq!(resp.status(), 308);
    assert_eq!(
        header(&resp, "location"),
        format!("https://127.0.0.1:{tls_port}/form")
    );
    let resp = http.get(proxy.url("/edge-health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        backend.requests(),
        0,
        "nothing reached the backend over plain HTTP"
    );

    let resp = get_root(&certs.pem, tls_port).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(backend.requests(), 1);
}

fn check(config: &Path) -> std::process::Output {
    edgeproxy(&["check", "-c", config.to_str().expect("a UTF-8 path")])
}

#[test]
fn check_rejects_a_missing_or_wrong_certificate() {
    let certs = CertFiles::new();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edgeproxy.yaml");
    let write = |cert: &Path, key: &Path| {
        let text = format!(
            "server:\n  listen: [\"127.0.0.1:{}\"]\n  tls:\n    listen: [\"127.0.0.1:{}\"]\n    cert: {}\n    key: {}\nupstreams:\n  app:\n    servers:\n      - addr: 127.0.0.1:9\n{ROUTE_ALL}",
            free_port(),
            free_port(),
            cert.display(),
            key.display()
        );
        std::fs::write(&config, text).unwrap();
    };

    write(&certs.cert(), &certs.key());
    let out = check(&config);
    assert!(out.status.success(), "{out:?}");

    write(&dir.path().join("missing.pem"), &certs.key());
    let out = check(&config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("server.tls.cert") && stderr.contains("missing.pem"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    write(&certs.key(), &certs.key());
    let out = check(&config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("holds no certificate"), "{stderr}");
}

#[tokio::test]
async fn watch_picks_up_renewed_certificate_files() {
    let (_backend, certs, tls_port, _proxy) = https_proxy("  watch: true\n");
    let certs = certs.renew();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        // A new client each time: a new connection, a new handshake.
        if let Ok(resp) = get_root(&certs.pem, tls_port).await {
            assert_eq!(peer_certificate(&resp), certs.der);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_keepalive_timeout() {
    let backend = Backend::start("1");
    let certs = CertFiles::new();
    let (tls_port, metrics) = (free_port(), free_port());
    let _proxy = Proxy::start_with(
        &certs.server_keys(tls_port, "  keepalive_timeout: 1s\n"),
        &format!(
            "metrics: {{ listen: \"127.0.0.1:{metrics}\" }}\n{}{ROUTE_ALL}",
            upstream(&[&backend], &[1])
        ),
    );
    let http = https_client(&certs.pem, tls_port, false);
    let resp = http
        .get(format!("https://localhost:{tls_port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let open = "edgeproxy_downstream_connections";
    assert_eq!(
        metric(metrics, open).await,
        Some(1.0),
        "the client keeps its connection"
    );
    // The client would keep it for 90 s; the proxy closes it once idle for 1 s.
    wait_metric(metrics, open, 0.0, Duration::from_millis(2500)).await;
}

/// Runs `openssl` with `args`, failing the test if it fails.
fn openssl(args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs (scripts/setup.sh --test installs it)");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

#[tokio::test]
async fn keys_of_each_documented_format_and_algorithm_serve() {
    let backend = Backend::start("1");
    for (what, generate, begins) in [
        (
            "RSA, PKCS#1",
            &["genrsa", "-traditional", "-out", "KEY", "2048"][..],
            "-----BEGIN RSA PRIVATE KEY-----",
        ),
        (
            "RSA, PKCS#8",
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "KEY",
            ][..],
            "-----BEGIN PRIVATE KEY-----",
        ),
        (
            "ECDSA P-256, SEC1",
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "KEY",
            ][..],
            "-----BEGIN EC PRIVATE KEY-----",
        ),
        (
            "Ed25519, PKCS#8",
            &["genpkey", "-algorithm", "ed25519", "-out", "KEY"][..],
            "-----BEGIN PRIVATE KEY-----",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
        let (key_path, cert_path) = (key.to_str().unwrap(), cert.to_str().unwrap());
        let generate: Vec<_> = generate
            .iter()
            .map(|a| if *a == "KEY" { key_path } else { a })
            .collect();
        openssl(&generate);
        let text = std::fs::read_to_string(&key).unwrap();
        assert!(text.starts_with(begins), "{what}: {text}");
        openssl(&[
            "req",
            "-new",
            "-x509",
            "-key",
            key_path,
            "-out",
            cert_path,
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ]);
        let port = free_port();
        let _proxy = Proxy::start_with(
            &format!("  tls:\n    listen: [\"127.0.0.1:{port}\"]\n    cert: {cert_path}\n    key: {key_path}\n"),
            &format!("{}{ROUTE_ALL}", upstream(&[&backend], &[1])),
        );
        let pem = std::fs::read_to_string(&cert).unwrap();
        let resp = get_root(&pem, port)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
        assert_eq!(resp.status(), 200, "{what}");
    }
}
