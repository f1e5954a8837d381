use super::*;
use crate::config::{parse_with, NameLookup};
use std::path::Path;

fn live(upstreams: &str) -> (Arc<LiveSnapshot>, Arc<Metrics>) {
    let text = format!(
        "server:\n  listen: [\"127.0.0.1:8080\"]\nupstreams:\n{upstreams}routes:\n  - {{ path: /, upstream: app }}\n"
    );
    let config = parse_with(Path::new("test.yaml"), &text, NameLookup::Skip).unwrap();
    let metrics = Arc::new(Metrics::new().unwrap());
    let snapshot = Snapshot::new(config, &metrics, None);
    (Arc::new(LiveSnapshot::new(snapshot)), metrics)
}

fn follower(live: &Arc<LiveSnapshot>, metrics: &Arc<Metrics>) -> Follower {
    Follower {
        live: Arc::clone(live),
        metrics: Arc::clone(metrics),
        notes: Arc::default(),
        upstream: 0,
    }
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

fn servers(live: &LiveSnapshot) -> Vec<String> {
    live.load().pools[0]
        .servers()
        .iter()
        .map(|s| s.name.clone())
        .collect()
}

const NAMED: &str = "  app:\n    servers:\n      - { addr: \"127.0.0.1:9000\" }\n      - { addr: \"app.internal:8000\" }\n";

#[tokio::test]
async fn each_address_of_a_name_becomes_a_server_and_follows_changes() {
    let (live, metrics) = live(NAMED);
    let follower = follower(&live, &metrics);
    let answer = |list: &'static [&'static str]| {
        move |host: String, port: u16| async move {
            assert_eq!(
                (host.as_str(), port),
                ("app.internal", 8000),
                "IPs are not looked up"
            );
            Ok(addrs(list))
        }
    };
    follower
        .follow(answer(&["127.0.0.3:8000", "127.0.0.2:8000"]))
        .await;
    assert_eq!(
        servers(&live),
        ["127.0.0.1:9000", "127.0.0.2:8000", "127.0.0.3:8000"]
    );
    let kept = Arc::clone(&live.load().pools[0].servers()[2].state);

    follower
        .follow(answer(&[
            "127.0.0.2:8000",
            "127.0.0.3:8000",
            "127.0.0.4:8000",
        ]))
        .await;
    assert_eq!(servers(&live).len(), 4);
    follower
        .follow(answer(&["127.0.0.4:8000", "127.0.0.3:8000"]))
        .await;
    assert_eq!(
        servers(&live),
        ["127.0.0.1:9000", "127.0.0.3:8000", "127.0.0.4:8000"]
    );
    let now = live.load();
    assert!(
        Arc::ptr_eq(&now.pools[0].servers()[1].state, &kept),
        "127.0.0.3 kept its state"
    );

    // The same answer in another order changes nothing.
    follower
        .follow(answer(&["127.0.0.3:8000", "127.0.0.4:8000"]))
        .await;
    assert!(Arc::ptr_eq(&now, &live.load()), "no new snapshot");
}

#[tokio::test]
async fn a_failed_or_empty_lookup_keeps_the_addresses() {
    let (live, metrics) = live(NAMED);
    let follower = follower(&live, &metrics);
    follower
        .follow(|_, _| async { Ok(addrs(&["127.0.0.2:8000"])) })
        .await;
    let before = live.load();
    follower
        .follow(|_, _| async { Err(io::Error::other("no such host")) })
        .await;
    follower.follow(|_, _| async { Ok(Vec::new()) }).await;
    assert!(Arc::ptr_eq(&before, &live.load()));
    assert_eq!(servers(&live), ["127.0.0.1:9000", "127.0.0.2:8000"]);
}

#[tokio::test]
async fn an_address_of_an_earlier_server_is_skipped() {
    let (live, metrics) = live(NAMED);
    follower(&live, &metrics)
        .follow(|_, _| async { Ok(addrs(&["127.0.0.1:9000", "127.0.0.5:9000"])) })
        .await;
    assert_eq!(servers(&live), ["127.0.0.1:9000", "127.0.0.5:9000"]);
}

#[tokio::test]
async fn resolve_first_keeps_one_address() {
    let (live, metrics) =
        live("  app:\n    servers:\n      - { addr: \"app.internal:8000\", resolve: first }\n");
    follower(&live, &metrics)
        .follow(|_, _| async { Ok(addrs(&["[::1]:8000", "127.0.0.7:8000", "127.0.0.2:8000"])) })
        .await;
    assert_eq!(servers(&live), ["127.0.0.7:8000"], "the first IPv4 address");
}

#[tokio::test]
async fn a_reload_in_between_is_not_undone() {
    let (live, metrics) = live(NAMED);
    let follower = follower(&live, &metrics);
    let slow_lookup = {
        let live = Arc::clone(&live);
        move |_: String, _: u16| {
            let live = Arc::clone(&live);
            let metrics = Arc::clone(&metrics);
            async move {
                // A reload lands while the name is being looked up.
                let reloaded = Snapshot::new(live.load().config.clone(), &metrics, None);
                live.store(reloaded);
                Ok(addrs(&["127.0.0.2:8000"]))
            }
        }
    };
    follower.follow(slow_lookup).await;
    assert_eq!(servers(&live), ["127.0.0.1:9000", "0.0.0.0:8000"]);
}
