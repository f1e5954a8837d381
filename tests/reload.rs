//! Reloading the config on SIGHUP while traffic flows.

mod common;

use common::{client, free_port, instance, metric, Backend, Proxy};
use std::collections::BTreeMap;
use std::time::Duration;

fn config(metrics_port: u16, servers: &[(&Backend, u16)]) -> String {
    let mut yaml = format!(
        "metrics: {{ listen: \"127.0.0.1:{metrics_port}\" }}\nupstreams:\n  app:\n    servers:\n"
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_the_config_twice_under_load_fails_no_request() {
    let (b1, b2, b3) = (
        Backend::start("1"),
        Backend::start("2"),
        Backend::start("3"),
    );
    let metrics_port = free_port();
    let proxy = Proxy::start(&config(metrics_port, &[(&b1, 1), (&b2, 1)]));

    // 8 clients × 188 ≥ 1,500 requests, spread over about a second and a half.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let url = proxy.url("/");
            tokio::spawn(async move {
                let http = client();
                let mut seen = BTreeMap::<String, usize>::new();
                for _ in 0..188 {
                    let key = match http.get(&url).send().await {
                        Ok(resp) if resp.status() == 200 => instance(&resp),
                        Ok(resp) => format!("status {}", resp.status()),
                        Err(e) => format!("error {e}"),
                    };
                    *seen.entry(key).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(4)).await;
                }
                seen
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        proxy.reload(&config(metrics_port, &[(&b1, 1), (&b2, 1), (&b3, 1)])),
        "add a server"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        proxy.reload(&config(metrics_port, &[(&b1, 1), (&b2, 1), (&b3, 8)])),
        "change weights"
    );

    let mut totals = BTreeMap::<String, usize>::new();
    for task in tasks {
        for (key, n) in task.await.unwrap() {
            *totals.entry(key).or_default() += n;
        }
    }
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
            .contains("upstreams.app.servers[0]: invalid weight 0"),
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
    tokio::time::sleep(Duration::from_millis(150)).await;
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
    let silent_up = format!("edgeproxy_backend_up{{backend=\"{silent_addr}\",upstream=\"app\"}}");
    while metric(metrics_port, &silent_up).await != Some(0.0) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(proxy.reload(&body(2)));
    let http = client();
    for _ in 0..10 {
        assert_eq!(http.get(proxy.url("/")).send().await.unwrap().status(), 200);
    }
    assert_eq!(metric(metrics_port, &silent_up).await, Some(0.0));
}
