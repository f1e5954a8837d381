//! Automatic HTTPS against a real ACME CA: Let's Encrypt's Pebble (Debian's `pebble`), with
//! `pebble-challtestsrv` as its DNS server answering 127.0.0.1 for every name, so that its
//! HTTP-01 checks reach the proxy's plain-HTTP listener. Everything on 127.0.0.1.

mod common;

use common::{client, free_port, get_json, metric, Backend, ChildGuard, Proxy};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tempfile::TempDir;

const DOMAIN: &str = "shop.test";

/// A Pebble CA and its DNS server, with the test CA its own HTTPS is signed by.
struct Pebble {
    directory: String,
    management: u16,
    dns_management: u16,
    /// The root Pebble's own HTTPS certificate is signed by: `directory_ca`.
    https_ca: PathBuf,
    _dir: TempDir,
    _children: [ChildGuard; 2],
}

impl Pebble {
    /// Starts both, Pebble checking HTTP-01 on `http_port` of whatever the names resolve to.
    async fn start(http_port: u16) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("ca.pem"), ca.pem()).unwrap();
        std::fs::write(path("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(path("key.pem"), leaf_key.serialize_pem()).unwrap();
        let (listen, management, dns, dns_management) =
            (free_port(), free_port(), free_port(), free_port());
        let config = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": path("cert.pem"),
            "privateKey": path("key.pem"),
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        std::fs::write(path("pebble.json"), config.to_string()).unwrap();
        let dns_server = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-management", &format!("127.0.0.1:{dns_management}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv runs (scripts/setup.sh --test installs pebble)");
        let ca_server = Command::new("pebble")
            .arg("-config")
            .arg(path("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns}"), "-strict=false"])
            // No pause before checks, no nonce refused for practice, no authorization reused:
            // each order is checked anew, so a failing check fails the order.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(Stdio::null())
            .spawn()
            .expect("pebble runs");
        let pebble = Pebble {
            directory: format!("https://127.0.0.1:{listen}/dir"),
            management,
            dns_management,
            https_ca: path("ca.pem"),
            _dir: dir,
            _children: [ChildGuard(dns_server), ChildGuard(ca_server)],
        };
        pebble.wait_ready().await;
        pebble
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let http = self.client();
        while http.get(&self.directory).send().await.is_err() {
            assert!(Instant::now() < deadline, "pebble did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn client(&self) -> reqwest::Client {
        let ca = std::fs::read(&self.https_ca).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .build()
            .unwrap()
    }

    /// The root Pebble issues under (made anew at each start).
    async fn root(&self) -> reqwest::Certificate {
        let url = format!("https://127.0.0.1:{}/roots/0", self.management);
        let pem = self
            .client()
            .get(url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        reqwest::Certificate::from_pem(&pem).unwrap()
    }

    /// Makes `DOMAIN` resolve to 127.0.0.9, where nothing answers Pebble's checks.
    async fn break_dns(&self) {
        let url = format!("http://127.0.0.1:{}/add-a", self.dns_management);
        let body = serde_json::json!({ "host": format!("{DOMAIN}."), "addresses": ["127.0.0.9"] });
        let resp = reqwest::Client::new()
            .post(url)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
    }
}

/// A proxy with `acme` for `DOMAIN`, its ports and its state.
struct Setup {
    http: u16,
    https: u16,
    metrics: u16,
    state_dir: PathBuf,
    config: String,
}

impl Setup {
    fn new(pebble: &Pebble, http: u16, dir: &Path, backend: &Backend, extra: &str) -> Setup {
        let (https, metrics) = (free_port(), free_port());
        let state_dir = dir.join("acme");
        let config = format!(
            "server:
  listen: [\"127.0.0.1:{http}\"]
  threads: 2
  tls:
    listen: [\"127.0.0.1:{https}\"]
    # The CA's checks pass over plain HTTP even so.
    redirect_http_to_https: true
    acme:
      domains: [{DOMAIN}]
      email: ops@example.com
      directory: {}
      directory_ca: {}
      state_dir: {}
{extra}metrics: {{ listen: \"127.0.0.1:{metrics}\" }}
upstreams:
  app:
    servers: [ {{ addr: \"{}\" }} ]
routes:
  - {{ path: /, upstream: app }}
",
            pebble.directory,
            pebble.https_ca.display(),
            state_dir.display(),
            backend.addr()
        );
        Setup {
            http,
            https,
            metrics,
            state_dir,
            config,
        }
    }

    fn start(&self) -> Proxy {
        Proxy::start_config(self.http, &self.config)
    }

    /// The `edgeproxy_acme_orders_total` series of `result`.
    fn orders(&self, result: &str) -> String {
        format!("edgeproxy_acme_orders_total{{result=\"{result}\"}}")
    }

    /// An HTTPS client trusting only `root`, reaching `DOMAIN` at the proxy.
    fn https_client(&self, root: &reqwest::Certificate) -> reqwest::Client {
        reqwest::Client::builder()
            .add_root_certificate(root.clone())
            .tls_built_in_root_certs(false)
            .resolve(DOMAIN, SocketAddr::from(([127, 0, 0, 1], self.https)))
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    }

    fn url(&self) -> String {
        format!("https://{DOMAIN}:{}/", self.https)
    }

    /// The certificate served now, as `/status` shows it.
    async fn served(&self) -> serde_json::Value {
        let status = get_json(&format!("http://127.0.0.1:{}/status", self.metrics)).await;
        status["certificates"][0].clone()
    }
}

/// A CA, a backend, and the settings of a proxy in front of it with `acme`.
struct World {
    pebble: Pebble,
    backend: Backend,
    dir: TempDir,
    setup: Setup,
}

impl World {
    async fn new() -> World {
        let http = free_port();
        let pebble = Pebble::start(http).await;
        let backend = Backend::start("1");
        let dir = tempfile::tempdir().unwrap();
        let setup = Setup::new(&pebble, http, dir.path(), &backend, "");
        World {
            pebble,
            backend,
            dir,
            setup,
        }
    }

    /// Starts the proxy and waits for its first certificate.
    async fn issued(&self) -> Proxy {
        let proxy = self.setup.start();
        let orders = self.setup.orders("ok");
        wait_count(self.setup.metrics, &orders, 1.0, Duration::from_secs(30)).await;
        proxy
    }
}

/// Waits until `series` reaches `want`.
async fn wait_count(port: u16, series: &str, want: f64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while metric(port, series).await.unwrap_or(0.0) < want {
        assert!(Instant::now() < deadline, "{series} never reached {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn a_certificate_is_obtained_served_and_kept_across_a_restart() {
    let world = World::new().await;
    let (pebble, setup) = (&world.pebble, &world.setup);
    let proxy = world.issued().await;

    // The chain verifies against Pebble's root, for the domain.
    let root = pebble.root().await;
    let resp = setup
        .https_client(&root)
        .get(setup.url())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let served = setup.served().await;
    assert_eq!(served["source"], "acme");
    assert_eq!(served["names"], serde_json::json!([DOMAIN]));
    assert!(
        served["issuer"].as_str().unwrap().contains("Pebble"),
        "{served}"
    );
    assert!(served["next_renewal"].is_string(), "{served}");
    let expiry = format!("edgeproxy_certificate_expiry_timestamp_seconds{{domain=\"{DOMAIN}\"}}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    assert!(metric(setup.metrics, &expiry).await.unwrap() > now);

    // Private to edgeproxy's user.
    assert_eq!(mode(&setup.state_dir), 0o700);
    for entry in std::fs::read_dir(&setup.state_dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }

    // A restart serves the stored certificate at once, with no new order.
    drop(proxy);
    let again = setup.start();
    let resp = setup
        .https_client(&root)
        .get(setup.url())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(setup.served().await["not_after"], served["not_after"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(metric(setup.metrics, &setup.orders("ok")).await, Some(0.0));
    assert!(
        again.log().contains("serving the stored certificate"),
        "{}",
        again.log()
    );
}

#[tokio::test]
async fn renewal_replaces_the_certificate_and_a_failing_check_keeps_it_with_backoff() {
    let world = World::new().await;
    let (pebble, first) = (&world.pebble, &world.setup);
    let proxy = world.issued().await;
    let issued = first.served().await;

    // Renewal due 3 s after issuance: set by renew_before, read from the certificate.
    let pem = std::fs::read(first.state_dir.join("certificate.pem")).unwrap();
    let (_, der) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let parsed = der.parse_x509().unwrap();
    let lifetime =
        parsed.validity().not_after.timestamp() - parsed.validity().not_before.timestamp();
    let extra = format!(
        "      renew_before: {}s\n      retry_after: 2s\n",
        lifetime - 3
    );
    let renewing = Setup::new(pebble, first.http, world.dir.path(), &world.backend, &extra);
    // The same listeners as the running proxy's: only the acme keys change.
    let config = renewing
        .config
        .replace(
            &format!("127.0.0.1:{}", renewing.https),
            &format!("127.0.0.1:{}", first.https),
        )
        .replace(
            &format!("127.0.0.1:{}", renewing.metrics),
            &format!("127.0.0.1:{}", first.metrics),
        );
    std::fs::write(proxy.config_path(), config).unwrap();
    proxy.child.signal("HUP");
    wait_count(
        first.metrics,
        &first.orders("ok"),
        2.0,
        Duration::from_secs(30),
    )
    .await;
    let renewed = first.served().await;
    assert_ne!(
        renewed["not_before"], issued["not_before"],
        "a new certificate"
    );
    let root = pebble.root().await;
    let https = first.https_client(&root);
    assert_eq!(https.get(first.url()).send().await.unwrap().status(), 200);

    // The CA's checks now fail: the certificate in hand stays, and orders back off.
    pebble.break_dns().await;
    wait_count(
        first.metrics,
        &first.orders("error"),
        1.0,
        Duration::from_secs(30),
    )
    .await;
    let failed_at = Instant::now();
    let kept = first.served().await;
    assert!(
        kept["last_error"].as_str().unwrap().contains(DOMAIN),
        "the error names the domain: {kept}"
    );
    assert_eq!(https.get(first.url()).send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_secs(9).saturating_sub(failed_at.elapsed())).await;
    let errors = metric(first.metrics, &first.orders("error")).await.unwrap();
    eprintln!("{errors} failed orders in 9 s; kept: {kept}");
    // 2 s, then 4 s: tries at 0, 2 and 6 s; a fixed 2 s would have made five.
    assert!(
        (2.0..=3.0).contains(&errors),
        "{errors} failed orders in 9 s"
    );
    let still = first.served().await;
    assert!(still["not_before"] != issued["not_before"] && still["not_after"].is_string());
    assert!(
        proxy.log().contains("the current certificate"),
        "{}",
        proxy.log()
    );
}

#[tokio::test]
async fn a_binary_upgrade_serves_the_stored_certificate_without_ordering() {
    let mut world = World::new().await;
    let sock = world.dir.path().join("upgrade.sock");
    world.setup.config = world.setup.config.replace(
        "  threads: 2\n",
        &format!("  threads: 2\n  upgrade_sock: {}\n", sock.display()),
    );
    let mut old = world.issued().await;
    let (pebble, setup, dir) = (&world.pebble, &world.setup, &world.dir);
    let root = pebble.root().await;
    let served = setup.served().await;

    let log = dir.path().join("new.log");
    let new = Command::new(env!("CARGO_BIN_EXE_edgeproxy"))
        .args(["-u", "-c", old.config_path().to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut new = ChildGuard(new);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < deadline && new.0.try_wait().unwrap().is_none());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    old.child.signal("QUIT");
    assert!(
        old.child.wait_exit(Duration::from_secs(10)).is_some(),
        "the old process left"
    );
    // Only the new process holds the listeners now; new connections get its certificate.
    let https = setup.https_client(&root);
    let resp = https.get(setup.url()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(setup.served().await["not_after"], served["not_after"]);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("serving the stored certificate"), "{text}");
    assert!(!text.contains("ordering a certificate"), "{text}");
}

#[tokio::test]
async fn until_a_certificate_arrives_https_fails_cleanly_and_http_works() {
    let http = free_port();
    let backend = Backend::start("1");
    let dir = tempfile::tempdir().unwrap();
    let (dead, _held) = common::dead_port();
    let https_ca = dir.path().join("ca.pem");
    let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(&https_ca, ca.cert.pem()).unwrap();
    let https = free_port();
    let proxy = Proxy::start_config(
        http,
        &format!(
            "server:
  listen: [\"127.0.0.1:{http}\"]
  tls:
    listen: [\"127.0.0.1:{https}\"]
    acme:
      domains: [{DOMAIN}]
      directory: https://127.0.0.1:{dead}/dir
      directory_ca: {}
      state_dir: {}
upstreams:
  app:
    servers: [ {{ addr: \"{}\" }} ]
routes:
  - {{ path: /, upstream: app }}
",
            https_ca.display(),
            dir.path().join("acme").display(),
            backend.addr()
        ),
    );
    let plain = client()
        .get(format!("http://127.0.0.1:{http}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);
    let tls = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve(DOMAIN, SocketAddr::from(([127, 0, 0, 1], https)))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let refused = tls.get(format!("https://{DOMAIN}:{https}/")).send().await;
    assert!(refused.is_err(), "no certificate yet: {refused:?}");
    let line = common::line_with(|| proxy.log(), "acme: no certificate for shop.test").await;
    assert!(line.contains("HTTPS handshakes fail"), "{line}");
    // A challenge token nobody opened is not found, and never routed to the backend.
    let probe = client()
        .get(format!(
            "http://127.0.0.1:{http}/.well-known/acme-challenge/nope"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 404);
}
