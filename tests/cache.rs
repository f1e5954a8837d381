//! The response cache of `cache:` routes.

mod common;

use common::{client, header, Proxy, RawBackend};
use std::time::Duration;

fn proxy(backend: &RawBackend, ttl: &str) -> Proxy {
    Proxy::start(&format!(
        "cache: {{ max_size: 8MiB }}
upstreams:
  app: {{ servers: [ {{ addr: \"127.0.0.1:{}\" }} ] }}
routes:
  - {{ path: /static/, upstream: app, cache: {ttl} }}
  - {{ path: /, upstream: app }}
",
        backend.port
    ))
}

/// A proxy whose 1 MiB cache holds the demo backend's `/bytes` for an hour.
fn small_cache_of_bytes(backend: &common::Backend) -> Proxy {
    Proxy::start(&format!(
        "cache: {{ max_size: 1MiB }}
upstreams:
  app: {{ servers: [ {{ addr: \"{}\" }} ] }}
routes:
  - {{ path: /bytes, upstream: app, cache: 1h }}
",
        backend.addr()
    ))
}

async fn get(proxy: &Proxy, path: &str) -> (u16, String, String) {
    let resp = client().get(proxy.url(path)).send().await.unwrap();
    let status = resp.status().as_u16();
    let x_cache = header(&resp, "x-cache");
    (status, x_cache, resp.text().await.unwrap())
}

#[tokio::test]
async fn a_cached_route_asks_the_backend_once_then_hits() {
    let backend = RawBackend::answering("", Duration::ZERO);
    let proxy = proxy(&backend, "1h");
    let mut seen = Vec::new();
    for _ in 0..5 {
        let (status, x_cache, body) = get(&proxy, "/static/app.css").await;
        assert_eq!((status, body.as_str()), (200, "ok"));
        seen.push(x_cache);
    }
    assert_eq!(seen, ["MISS", "HIT", "HIT", "HIT", "HIT"]);
    assert_eq!(backend.requests(), 1);

    // Another query string is another object; other routes are not cached at all.
    assert_eq!(get(&proxy, "/static/app.css?v=2").await.1, "MISS");
    assert_eq!(get(&proxy, "/index.html").await.1, "");
    assert_eq!(get(&proxy, "/index.html").await.1, "");
    assert_eq!(backend.requests(), 4);
}

#[tokio::test]
async fn entries_expire_after_the_ttl() {
    let backend = RawBackend::answering("", Duration::ZERO);
    let proxy = proxy(&backend, "1s");
    assert_eq!(get(&proxy, "/static/a.js").await.1, "MISS");
    assert_eq!(get(&proxy, "/static/a.js").await.1, "HIT");
    // Past the 1 s TTL.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(get(&proxy, "/static/a.js").await.1, "MISS");
    assert_eq!(backend.requests(), 2);
}

#[tokio::test]
async fn an_expired_copy_stands_in_for_a_failing_backend_within_stale_if_error() {
    let lenient = RawBackend::answering("cache-control: stale-if-error=60\r\n", Duration::ZERO);
    let plain = RawBackend::answering("", Duration::ZERO);
    let metrics_port = common::free_port();
    let proxy = Proxy::start(&format!(
        "metrics: {{ listen: \"127.0.0.1:{metrics_port}\" }}
upstreams:
  lenient: {{ retries: 0, servers: [ {{ addr: \"127.0.0.1:{}\" }} ] }}
  plain: {{ retries: 0, servers: [ {{ addr: \"127.0.0.1:{}\" }} ] }}
routes:
  - {{ path: /static/, upstream: lenient, cache: 1s }}
  - {{ path: /plain/, upstream: plain, cache: 1s }}
",
        lenient.port, plain.port
    ));
    assert_eq!(
        get(&proxy, "/static/a.css").await,
        (200, "MISS".into(), "ok".into())
    );
    assert_eq!(get(&proxy, "/plain/a.css").await.1, "MISS");
    lenient.stop_answering();
    plain.stop_answering();
    // Past the 1 s TTL, well within the 60 s of stale-if-error.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    // First a failed attempt (the backend drops the request), then no server left to try.
    for attempt in 0..2 {
        assert_eq!(
            get(&proxy, "/static/a.css").await,
            (200, "STALE".into(), "ok".into()),
            "attempt {attempt}"
        );
    }
    let stale = "edgeproxy_cache_lookups_total{result=\"stale\",route=\"/static/\"}";
    assert_eq!(common::metric(metrics_port, stale).await, Some(2.0));
    // Without the directive an expired copy is not served.
    assert_eq!(get(&proxy, "/plain/a.css").await.0, 502);
}

#[tokio::test]
async fn no_store_and_private_responses_are_not_cached() {
    for control in [
        "cache-control: no-store\r\n",
        "cache-control: private\r\n",
        "set-cookie: id=7\r\n",
    ] {
        let backend = RawBackend::answering(control, Duration::ZERO);
        let proxy = proxy(&backend, "1h");
        for _ in 0..3 {
            assert_eq!(get(&proxy, "/static/me.json").await.1, "MISS", "{control}");
        }
        assert_eq!(backend.requests(), 3, "{control}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_make_one_backend_request() {
    let backend = RawBackend::answering("", Duration::from_millis(300));
    let proxy = proxy(&backend, "1h");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let url = proxy.url("/static/big.css");
            tokio::spawn(async move {
                let resp = client().get(url).send().await.unwrap();
                (resp.status().as_u16(), resp.text().await.unwrap())
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), (200, "ok".to_string()));
    }
    assert_eq!(backend.requests(), 1, "misses were not coalesced");
}

#[tokio::test]
async fn a_waiting_miss_gives_up_after_10_s_and_asks_the_backend_itself() {
    // Slower than the wait, so the first request still holds the key when the wait ends.
    let backend = RawBackend::answering("", Duration::from_secs(12));
    let proxy = proxy(&backend, "1h");
    let first = tokio::spawn(client().get(proxy.url("/static/slow.css")).send());
    let sent = std::time::Instant::now();
    while backend.requests() == 0 {
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "the first miss never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let waiting = tokio::spawn(client().get(proxy.url("/static/slow.css")).send());
    let started = std::time::Instant::now();
    while backend.requests() < 2 {
        assert!(
            started.elapsed() < Duration::from_millis(11_500),
            "the waiting miss never went to the backend"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(9_500),
        "the waiting miss went to the backend after {waited:?}, before the first answered"
    );
    first.abort();
    waiting.abort();
}

#[tokio::test]
async fn the_cache_stays_within_max_size() {
    let backend = common::Backend::start("1");
    let proxy = small_cache_of_bytes(&backend);
    // 30 objects of 100 KiB into 1 MiB: the first ones must make room for the last ones.
    for i in 0..30 {
        let (status, x_cache, body) = get(&proxy, &format!("/bytes?n=102400&i={i}")).await;
        assert_eq!(
            (status, x_cache.as_str(), body.len()),
            (200, "MISS", 102400)
        );
    }
    // The newest ones are all still there (a cache that kept only its last object fails).
    for i in 22..30 {
        let (status, x_cache, body) = get(&proxy, &format!("/bytes?n=102400&i={i}")).await;
        assert_eq!(
            (status, x_cache.as_str(), body.len()),
            (200, "HIT", 102400),
            "object {i}"
        );
    }
    assert_eq!(
        get(&proxy, "/bytes?n=102400&i=0").await.1,
        "MISS",
        "the oldest was evicted"
    );
}

#[tokio::test]
async fn a_response_over_an_eighth_of_the_cache_is_streamed_past_it() {
    let backend = common::Backend::start("1");
    let proxy = small_cache_of_bytes(&backend);
    // 1 MiB / 8 = 128 KiB: the larger body is never stored, the smaller one is.
    for _ in 0..2 {
        let (status, x_cache, body) = get(&proxy, "/bytes?n=140000").await;
        assert_eq!(
            (status, x_cache.as_str(), body.len()),
            (200, "MISS", 140000)
        );
    }
    assert_eq!(get(&proxy, "/bytes?n=120000").await.1, "MISS");
    let (status, x_cache, body) = get(&proxy, "/bytes?n=120000").await;
    assert_eq!((status, x_cache.as_str(), body.len()), (200, "HIT", 120000));
}

#[tokio::test]
async fn answers_to_requests_with_authorization_are_not_stored() {
    let backend = RawBackend::answering("", Duration::ZERO);
    let proxy = proxy(&backend, "1h");
    for _ in 0..3 {
        let resp = client()
            .get(proxy.url("/static/me.json"))
            .header("authorization", "Bearer 7")
            .send()
            .await
            .unwrap();
        assert_eq!(
            (resp.status().as_u16(), header(&resp, "x-cache").as_str()),
            (200, "MISS")
        );
    }
    assert_eq!(backend.requests(), 3);
    // Nothing was stored for the next client either.
    assert_eq!(get(&proxy, "/static/me.json").await.1, "MISS");
    assert_eq!(backend.requests(), 4);
}

#[tokio::test]
async fn a_head_request_is_answered_from_a_stored_get() {
    let backend = RawBackend::answering("", Duration::ZERO);
    let proxy = proxy(&backend, "1h");
    assert_eq!(get(&proxy, "/static/app.css").await.1, "MISS");
    let resp = client()
        .head(proxy.url("/static/app.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), header(&resp, "x-cache").as_str()),
        (200, "HIT")
    );
    assert_eq!(header(&resp, "content-length"), "2");
    assert_eq!(
        resp.bytes().await.unwrap().len(),
        0,
        "a HEAD answer has no body"
    );
    assert_eq!(backend.requests(), 1);
}
