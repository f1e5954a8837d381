//! deploy/ checked offline: its configs pass `edgeproxy check`, the compose file and
//! Prometheus agree with them, the Grafana dashboard asks only for metrics edgeproxy exports,
//! and install.sh lays out a staging root. (deploy/validate.sh runs the external linters.)

mod common;

use common::{client, edgeproxy, free_port, get_text, upstream, Backend, Proxy};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn check_offline(path: &Path) -> String {
    let out = edgeproxy(&["check", "--offline", "-c", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Renders terraform's `%{ if length(acme_domains) > 0 ~}` block and `%{ for b in backends ~}`
/// loop of the config template the way `templatefile` does, for `backends` as (addr, id)
/// and, if given, ACME `domains`.
fn render_terraform_config(template: &str, backends: &[(&str, &str)], domains: &[&str]) -> String {
    let (before, rest) = template
        .split_once("%{ if length(acme_domains) > 0 ~}\n")
        .expect("the acme block");
    let (acme, after) = rest.split_once("%{ endif ~}\n").expect("its end");
    let acme = if domains.is_empty() {
        String::new()
    } else {
        acme.replace(
            "${jsonencode(acme_domains)}",
            &serde_json::to_string(domains).unwrap(),
        )
        .replace("${acme_email}", "ops@example.com")
        .replace(
            "${acme_directory}",
            "https://acme-v02.api.letsencrypt.org/directory",
        )
    };
    let template = format!("{before}{acme}{after}");
    let (head, rest) = template
        .split_once("%{ for b in backends ~}\n")
        .expect("the loop");
    let (line, tail) = rest.split_once("%{ endfor ~}\n").expect("its end");
    let servers: String = backends
        .iter()
        .map(|(addr, id)| line.replace("${b.addr}", addr).replace("${b.id}", id))
        .collect();
    assert!(
        !servers.contains("${"),
        "an unrendered reference: {servers}"
    );
    format!("{head}{servers}{tail}").replace("${prometheus_cidr}", "10.0.0.0/8")
}

#[test]
fn deploy_configs_pass_check() {
    let summary = check_offline(&repo("deploy/docker/edgeproxy.yaml"));
    assert!(
        summary.contains("1 upstream(s) with 3 server(s)"),
        "{summary}"
    );
    check_offline(&repo("deploy/ec2/edgeproxy.yaml"));

    let dir = tempfile::tempdir().unwrap();
    let rendered = dir.path().join("edgeproxy.yaml");
    let template = read("deploy/ec2/terraform/edgeproxy.yaml.tftpl");
    let backends = [
        ("10.0.1.5:8000", "backend-1"),
        ("10.0.2.7:8000", "backend-2"),
    ];
    std::fs::write(
        &rendered,
        render_terraform_config(&template, &backends, &[]),
    )
    .unwrap();
    let summary = check_offline(&rendered);
    assert!(summary.contains("with 2 server(s)"), "{summary}");
    // With acme_domains: HTTPS on 443 from Let's Encrypt, state in the unit's StateDirectory.
    let with_acme = render_terraform_config(&template, &backends, &["shop.example.com"]);
    std::fs::write(&rendered, &with_acme).unwrap();
    check_offline(&rendered);
    let yaml: serde_yaml::Value = serde_yaml::from_str(&with_acme).unwrap();
    let acme = &yaml["server"]["tls"]["acme"];
    assert_eq!(acme["domains"][0].as_str(), Some("shop.example.com"));
    assert_eq!(acme["state_dir"].as_str(), Some("/var/lib/edgeproxy/acme"));
}

#[test]
fn compose_backends_prometheus_and_config_agree() {
    let compose: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/docker/docker-compose.yml")).unwrap();
    let services = compose["services"].as_mapping().expect("services");
    let config: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/docker/edgeproxy.yaml")).unwrap();

    // Every server of the upstream is a compose service, with weights 1:2:3.
    let servers = config["upstreams"]["app"]["servers"].as_sequence().unwrap();
    let mut weights = Vec::new();
    for server in servers {
        let addr = server["addr"].as_str().unwrap();
        let host = addr.split(':').next().unwrap();
        assert!(services.contains_key(host), "no compose service `{host}`");
        let id = &services[host]["environment"]["INSTANCE_ID"];
        assert_eq!(id.as_str(), server["id"].as_str(), "{host}'s INSTANCE_ID");
        weights.push(server["weight"].as_u64().unwrap());
    }
    assert_eq!(weights, [1, 2, 3]);

    // The files it mounts exist; edgeproxy's is the config checked above.
    let proxy = &services["edgeproxy"];
    let mounts: Vec<&str> = proxy["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(mounts.contains(&"./edgeproxy.yaml:/etc/edgeproxy/edgeproxy.yaml:ro"));
    // A named volume keeps the ACME state; bind mounts name files that exist.
    assert!(mounts.contains(&"edgeproxy-state:/var/lib/edgeproxy"));
    let volumes = compose["volumes"].as_mapping().expect("top-level volumes");
    assert!(volumes.contains_key("edgeproxy-state"), "{volumes:?}");
    for service in services.values() {
        for mount in service["volumes"].as_sequence().into_iter().flatten() {
            let source = mount.as_str().unwrap().split(':').next().unwrap();
            if !source.starts_with('.') {
                continue;
            }
            assert!(
                repo("deploy/docker").join(source).exists(),
                "mounted but missing: {source}"
            );
        }
    }

    // Prometheus scrapes the port the config serves metrics on, which compose does not
    // publish; the proxy port is published.
    let metrics_port = config["metrics"]["listen"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    assert!(read("deploy/docker/prometheus/prometheus.yml")
        .contains(&format!("\"edgeproxy:{metrics_port}\"")));
    let published: Vec<&str> = proxy["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(published, ["8080:8080"]);
    assert!(read("deploy/docker/Dockerfile").contains("http://127.0.0.1:8080/edge-health"));
    assert_eq!(
        config["server"]["health_path"].as_str(),
        Some("/edge-health")
    );
}

#[test]
fn images_limits_scrapes_and_grafana_are_as_documented() {
    // The image edgeproxy runs in: the last stage, on debian:bookworm-slim, as `edgeproxy`.
    let dockerfile = read("deploy/docker/Dockerfile");
    let stages: Vec<&str> = dockerfile.split("\nFROM ").skip(1).collect();
    let stage = |name: &str| {
        stages
            .iter()
            .find(|s| s.lines().next().unwrap().ends_with(&format!(" AS {name}")))
            .unwrap_or_else(|| panic!("no stage {name}"))
    };
    let runtime = stages.last().expect("stages");
    assert!(runtime.starts_with("base AS edgeproxy"), "{runtime}");
    assert!(runtime.contains("\nUSER edgeproxy\n"), "{runtime}");
    assert!(stage("base").starts_with("debian:bookworm-slim AS base"));
    assert!(
        stage("base").contains("useradd --system") && stage("base").contains(" edgeproxy \\\n")
    );
    // The state volume's mount point belongs to edgeproxy, so that a new volume does too.
    assert!(
        stage("base").contains("install -d -o edgeproxy -g edgeproxy -m 0750 /var/lib/edgeproxy")
    );

    let compose: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/docker/docker-compose.yml")).unwrap();
    let services = &compose["services"];
    // The seeds' limits: 0.125 CPU/64M, 0.25/128M, 0.25/256M.
    let limits: Vec<(&str, &str)> = ["app1", "app2", "app3"]
        .iter()
        .map(|app| {
            let l = &services[*app]["deploy"]["resources"]["limits"];
            (l["cpus"].as_str().unwrap(), l["memory"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        limits,
        [("0.125", "64M"), ("0.25", "128M"), ("0.25", "256M")]
    );

    let prometheus: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/docker/prometheus/prometheus.yml")).unwrap();
    assert_eq!(prometheus["global"]["scrape_interval"].as_str(), Some("5s"));

    let grafana = &services["grafana"]["environment"];
    assert_eq!(grafana["GF_AUTH_ANONYMOUS_ENABLED"].as_str(), Some("true"));
    assert_eq!(
        grafana["GF_AUTH_ANONYMOUS_ORG_ROLE"].as_str(),
        Some("Viewer")
    );
    assert_eq!(
        grafana["GF_SECURITY_ADMIN_PASSWORD"].as_str(),
        Some("${GRAFANA_ADMIN_PASSWORD:-admin}")
    );
}

/// A systemd unit's `[Service]` settings, each key with its values in order.
fn service_settings(unit: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut settings = std::collections::BTreeMap::<String, Vec<String>>::new();
    let service = unit.split("[Service]").nth(1).expect("a [Service] section");
    let service = service.split("\n[").next().unwrap();
    for line in service.lines().filter(|l| !l.starts_with('#')) {
        if let Some((key, value)) = line.split_once('=') {
            settings.entry(key.into()).or_default().push(value.into());
        }
    }
    settings
}

#[test]
fn the_service_unit_is_as_documented() {
    let unit = service_settings(&read("deploy/ec2/edgeproxy.service"));
    let one = |key: &str| -> &str {
        match unit.get(key).map(Vec::as_slice) {
            Some([value]) => value,
            other => panic!("{key}: {other:?}"),
        }
    };
    let config = "-c /etc/edgeproxy/edgeproxy.yaml";
    assert_eq!(one("Type"), "forking");
    assert_eq!(one("PIDFile"), "/run/edgeproxy/edgeproxy.pid");
    assert_eq!(
        one("ExecStart"),
        format!("/usr/local/bin/edgeproxy -d {config}")
    );
    assert_eq!(
        one("ExecStartPre"),
        format!("/usr/local/bin/edgeproxy check {config}")
    );
    assert_eq!(
        unit["ExecReload"],
        [
            format!("/usr/local/bin/edgeproxy check {config}"),
            "/bin/kill -HUP $MAINPID".to_string()
        ],
        "check first, so a bad file is never signalled"
    );
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("LimitNOFILE"), "1048576");
    assert_eq!(one("User"), "edgeproxy");
    // server.tls.acme's default state_dir is inside the one directory the unit may write.
    assert_eq!(one("StateDirectory"), "edgeproxy");
    assert_eq!(one("AmbientCapabilities"), "CAP_NET_BIND_SERVICE");
    assert_eq!(one("CapabilityBoundingSet"), "CAP_NET_BIND_SERVICE");
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallFilter", "@system-service"),
    ] {
        assert_eq!(one(key), value, "{key}");
    }
    // The pid file is written where the unit says, inside the runtime directory it creates.
    let pid_file = std::path::Path::new(one("PIDFile"));
    assert_eq!(
        pid_file.parent().unwrap(),
        std::path::Path::new("/run").join(one("RuntimeDirectory"))
    );
    let ec2: serde_yaml::Value = serde_yaml::from_str(&read("deploy/ec2/edgeproxy.yaml")).unwrap();
    assert_eq!(ec2["server"]["pid_file"].as_str(), Some(one("PIDFile")));
}

/// The metric names in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(start) = rest.find("edgeproxy_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[tokio::test]
async fn the_dashboard_asks_only_for_exported_metrics() {
    let backend = Backend::start("1");
    let metrics_port = free_port();
    let proxy = Proxy::start(&format!(
        "metrics: {{ listen: \"127.0.0.1:{metrics_port}\" }}\n{}routes:\n  - {{ path: /, upstream: app }}\n",
        upstream(&[&backend], &[1])
    ));
    for _ in 0..3 {
        client().get(proxy.url("/")).send().await.unwrap();
    }
    let exposition = get_text(&format!("http://127.0.0.1:{metrics_port}/metrics")).await;
    // Every sample name edgeproxy exports, histograms' _bucket/_sum/_count included.
    let exported: BTreeSet<String> = exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect();

    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/docker/grafana/dashboards/edgeproxy.json")).unwrap();
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut asked = BTreeSet::new();
    let mut titles = Vec::new();
    for panel in panels {
        titles.push(panel["title"].as_str().unwrap().to_lowercase());
        assert_eq!(panel["datasource"]["uid"], "prometheus");
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let names = metric_names(expr);
            assert!(
                !names.is_empty(),
                "a query with no edgeproxy metric: {expr}"
            );
            asked.extend(names);
        }
    }
    let unknown: Vec<_> = asked.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard asks for {unknown:?}, which edgeproxy does not export"
    );
    for wanted in [
        "requests/s per backend",
        "latency",
        "backend up",
        "in flight",
        "5xx",
        "upstream failures",
        "backend response time",
        "connections and event streams",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(wanted)),
            "no panel on {wanted}: {titles:?}"
        );
    }
    for metric in [
        "edgeproxy_upstream_failures_total",
        "edgeproxy_retries_total",
        "edgeproxy_upstream_response_seconds_bucket",
        "edgeproxy_downstream_connections",
        "edgeproxy_sse_streams",
    ] {
        assert!(asked.contains(metric), "no panel asks for {metric}");
    }
    let latency = serde_json::to_string(&dashboard).unwrap();
    for quantile in ["0.50", "0.95", "0.99"] {
        assert!(latency.contains(&format!("histogram_quantile({quantile}")));
    }
    let datasource = read("deploy/docker/grafana/provisioning/datasources/prometheus.yml");
    assert!(
        datasource.contains("uid: prometheus") && datasource.contains("http://prometheus:9090")
    );
}

fn install(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(repo("deploy/ec2/install.sh"))
        .args(args)
        .env_remove("DESTDIR")
        .output()
        .expect("bash runs")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn install_sh_lays_out_a_staging_root_and_keeps_an_edited_config() {
    let root = tempfile::tempdir().unwrap();
    let root_arg = root.path().to_str().unwrap();
    let binary = env!("CARGO_BIN_EXE_edgeproxy");
    let out = install(&["--destdir", root_arg, "--binary", binary]);
    assert!(out.status.success(), "{out:?}");

    let at = |p: &str| root.path().join(p);
    assert_eq!(mode(&at("usr/local/bin/edgeproxy")), 0o755);
    assert_eq!(
        std::fs::read(at("usr/local/bin/edgeproxy")).unwrap(),
        std::fs::read(binary).unwrap()
    );
    assert_eq!(mode(&at("etc/edgeproxy/edgeproxy.yaml")), 0o644);
    assert_eq!(
        std::fs::read_to_string(at("etc/edgeproxy/edgeproxy.yaml")).unwrap(),
        read("deploy/ec2/edgeproxy.yaml")
    );
    assert_eq!(mode(&at("etc/edgeproxy/tls")), 0o750);
    assert_eq!(
        std::fs::read_to_string(at("etc/systemd/system/edgeproxy.service")).unwrap(),
        read("deploy/ec2/edgeproxy.service")
    );

    // Run again: idempotent, and an edited config is kept.
    let edited = read("deploy/ec2/edgeproxy.yaml").replace("grace_period: 20s", "grace_period: 5s");
    std::fs::write(at("etc/edgeproxy/edgeproxy.yaml"), &edited).unwrap();
    let out = install(&["--destdir", root_arg, "--binary", binary]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("kept"));
    assert_eq!(
        std::fs::read_to_string(at("etc/edgeproxy/edgeproxy.yaml")).unwrap(),
        edited
    );
}

#[test]
fn install_sh_takes_a_tarball_and_refuses_bad_input() {
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("bin")).unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_edgeproxy"),
        work.path().join("bin/edgeproxy"),
    )
    .unwrap();
    let tarball = work.path().join("edgeproxy.tar.gz");
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(work.path())
        .arg("bin")
        .status()
        .unwrap();
    assert!(status.success());
    let root = tempfile::tempdir().unwrap();
    let root_arg = root.path().to_str().unwrap();
    let out = install(&[
        "--destdir",
        root_arg,
        "--tarball",
        tarball.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(root.path().join("usr/local/bin/edgeproxy").exists());

    let refused = |args: &[&str], says: &str| {
        let out = install(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{args:?} was accepted");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    };
    refused(
        &["--destdir", root_arg, "--upgrade"],
        "cannot go with --destdir",
    );
    refused(
        &["--destdir", root_arg, "--binary", "/nonexistent/edgeproxy"],
        "no edgeproxy binary",
    );
    refused(&["--frobnicate"], "unknown option --frobnicate");
    let bad = work.path().join("bad.yaml");
    std::fs::write(&bad, "upstreams: {}\nroutes: []\n").unwrap();
    let fresh = tempfile::tempdir().unwrap();
    refused(
        &[
            "--destdir",
            fresh.path().to_str().unwrap(),
            "--binary",
            env!("CARGO_BIN_EXE_edgeproxy"),
            "--config",
            bad.to_str().unwrap(),
        ],
        "upstreams",
    );
}
