use super::*;
use crate::config::{Resolve, Timeouts, UpstreamServer};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

fn pool(upstream: &Upstream, previous: Option<&Pool>) -> Pool {
    Pool::new(upstream, &Metrics::new().unwrap(), previous)
}

fn entry(i: usize, weight: u16) -> UpstreamServer {
    let addr = format!("127.0.0.1:{}", 9001 + i);
    UpstreamServer {
        host: "127.0.0.1".into(),
        port: 9001 + i as u16,
        resolve: Resolve::All,
        addresses: vec![addr.parse().unwrap()],
        addr,
        id: (i + 1).to_string(),
        weight,
        max_fails: 1,
        fail_timeout: Duration::from_secs(10),
        backup: false,
    }
}

/// An entry `app:8000` standing for these loopback addresses.
fn named(ips: &[&str]) -> UpstreamServer {
    UpstreamServer {
        host: "app".into(),
        port: 8000,
        addr: "app:8000".into(),
        id: "app".into(),
        addresses: ips
            .iter()
            .map(|ip| SocketAddr::new(ip.parse().unwrap(), 8000))
            .collect(),
        ..entry(0, 1)
    }
}

fn upstream(weights: &[u16]) -> Upstream {
    upstream_with(Balance::RoundRobin, weights)
}

fn upstream_with(balance: Balance, weights: &[u16]) -> Upstream {
    Upstream {
        name: "app".into(),
        balance,
        hash_key: HashKey::ClientIp,
        health_check: None,
        retries: 2,
        when_all_down: WhenAllDown::Fail,
        resolve_interval: Duration::from_secs(30),
        least_time_decay: Duration::from_secs(1),
        http2: false,
        servers: weights
            .iter()
            .enumerate()
            .map(|(i, w)| entry(i, *w))
            .collect(),
        timeouts: Timeouts::DEFAULT,
    }
}

const EVERY_MODE: [Balance; 5] = [
    Balance::RoundRobin,
    Balance::LeastConn,
    Balance::IpHash,
    Balance::Random,
    Balance::LeastTime,
];

/// How many of `n` selections (keys `0..n` for ip_hash) each server gets, each request
/// staying in flight until `window` later ones have been sent.
fn shares_in_flight(pool: &Pool, n: usize, window: usize) -> Vec<usize> {
    let mut counts = vec![0; pool.servers().len()];
    let mut open = std::collections::VecDeque::new();
    for k in 0..n {
        let i = pool.select(k.to_string().as_bytes(), &[]).unwrap();
        counts[i] += 1;
        open.push_back(pool.enter(i));
        if open.len() > window {
            open.pop_front();
        }
    }
    counts
}

/// [`shares_in_flight`] one request at a time.
fn shares(pool: &Pool, n: usize) -> Vec<usize> {
    shares_in_flight(pool, n, 0)
}

#[test]
fn selection_follows_weights_exactly_over_a_cycle() {
    let pool = pool(&upstream(&[1, 2, 3]), None);
    let mut counts = [0; 3];
    for _ in 0..600 {
        counts[pool.select(b"", &[]).unwrap()] += 1;
    }
    assert_eq!(counts, [100, 200, 300]);
}

#[test]
fn every_mode_splits_by_weight() {
    for balance in EVERY_MODE {
        let pool = pool(&upstream_with(balance, &[1, 2, 3]), None);
        let counts = shares_in_flight(&pool, 6000, 60);
        for (i, want) in [1000, 2000, 3000].into_iter().enumerate() {
            // A hash ring of three servers is uneven by up to a fifth; random draws and
            // in-flight counts are within a few percent.
            let slack = if balance == Balance::IpHash {
                want / 4
            } else {
                want / 10
            };
            assert!(
                counts[i].abs_diff(want) <= slack,
                "{balance:?}: {counts:?}, want 1:2:3"
            );
        }
    }
}

#[test]
fn tried_servers_are_skipped_in_every_mode() {
    for balance in EVERY_MODE {
        let pool = pool(&upstream_with(balance, &[1, 2, 3]), None);
        for key in [&b"10.0.0.1"[..], b"10.0.0.2", b"x"] {
            let first = pool.select(key, &[]).unwrap();
            let second = pool.select(key, &[first]).unwrap();
            assert_ne!(first, second, "{balance:?}");
            let third = pool.select(key, &[first, second]).unwrap();
            assert!(third != first && third != second, "{balance:?}");
            assert_eq!(pool.select(key, &[0, 1, 2]), None, "{balance:?}");
        }
    }
}

#[test]
fn least_conn_follows_the_guards() {
    let pool = pool(&upstream_with(Balance::LeastConn, &[1, 1]), None);
    let busy = pool.enter(0);
    assert_eq!(pool.select(b"", &[]), Some(1));
    assert_eq!(pool.select(b"", &[]), Some(1));
    drop(busy);
    let both: HashSet<_> = (0..4).map(|_| pool.select(b"", &[]).unwrap()).collect();
    assert_eq!(both.len(), 2);
}

#[test]
fn ip_hash_is_sticky_and_random_is_weighted() {
    let pool1 = pool(&upstream_with(Balance::IpHash, &[1, 1, 1]), None);
    let first = pool1.select(b"192.0.2.7", &[]).unwrap();
    assert!((0..50).all(|_| pool1.select(b"192.0.2.7", &[]) == Some(first)));

    let pool2 = pool(&upstream_with(Balance::Random, &[1, 3]), None);
    let heavy = (0..4000)
        .filter(|_| pool2.select(b"", &[]) == Some(1))
        .count();
    assert!((2800..=3200).contains(&heavy), "{heavy} of 4000");
}

#[test]
fn ip_hash_keeps_clients_when_other_addresses_come_and_go() {
    let mut upstream = upstream_with(Balance::IpHash, &[]);
    upstream.servers = vec![named(&["127.0.0.2", "127.0.0.3", "127.0.0.4"])];
    let three = pool(&upstream, None);
    let at = |pool: &Pool, key: usize| {
        let i = pool.select(key.to_string().as_bytes(), &[]).unwrap();
        pool.servers()[i].address
    };
    upstream.servers = vec![named(&["127.0.0.2", "127.0.0.4"])];
    let two = pool(&upstream, Some(&three));
    let gone: SocketAddr = "127.0.0.3:8000".parse().unwrap();
    let mut moved = 0;
    for key in 0..3000 {
        let before = at(&three, key);
        if before != gone {
            assert_eq!(at(&two, key), before, "client {key} moved");
        } else {
            moved += 1;
        }
    }
    assert!(
        (700..1300).contains(&moved),
        "{moved} of 3000 were on the address that left"
    );
    // The address coming back takes back about its third, the others keep theirs.
    upstream.servers = vec![named(&["127.0.0.2", "127.0.0.3", "127.0.0.4"])];
    let back = pool(&upstream, Some(&two));
    assert!((0..3000).all(|key| at(&back, key) == at(&three, key)));
}

#[test]
fn a_name_with_several_addresses_makes_a_server_of_each() {
    let mut upstream = upstream(&[1]);
    upstream.servers.push(named(&["127.0.0.2", "127.0.0.3"]));
    let first = pool(&upstream, None);
    let names: Vec<&str> = first.servers().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["127.0.0.1:9001", "127.0.0.2:8000", "127.0.0.3:8000"]
    );
    let served_by: Vec<_> = first
        .servers()
        .iter()
        .map(|s| s.served_by.clone())
        .collect();
    assert_eq!(
        served_by,
        ["127.0.0.1:9001", "127.0.0.2:8000", "127.0.0.3:8000"]
    );
    let ids: Vec<_> = first
        .servers()
        .iter()
        .map(|s| s.instance_id.clone())
        .collect();
    assert_eq!(ids, ["1", "app-127.0.0.2", "app-127.0.0.3"]);
    assert_eq!(shares(&first, 300), [100, 100, 100]);
    assert_eq!(first.resolve_interval(), Some(Duration::from_secs(30)));
    assert_eq!(
        pool(&upstream_with(Balance::Random, &[1]), None).resolve_interval(),
        None
    );

    // 127.0.0.2 leaves; 127.0.0.3 stays with its state and id; 127.0.0.4 joins.
    first.record_failure(2, FailureReason::Connect, "refused");
    let _busy = first.enter(2);
    upstream.servers[1] = named(&["127.0.0.3", "127.0.0.4"]);
    let second = pool(&upstream, Some(&first));
    let by_name: HashMap<&str, &Server> = second
        .servers()
        .iter()
        .map(|s| (s.name.as_str(), s))
        .collect();
    let stayed = by_name["127.0.0.3:8000"];
    assert!(Arc::ptr_eq(&stayed.state, &first.servers()[2].state));
    assert!(stayed.state.passive.is_failed());
    assert_eq!(stayed.state.inflight.count(), 1);
    assert_eq!(stayed.instance_id, "app-127.0.0.3");
    assert_eq!(by_name["127.0.0.4:8000"].instance_id, "app-127.0.0.4");
    assert!(!by_name.contains_key("127.0.0.2:8000"));

    // Down to one address: it keeps the id it joined with.
    upstream.servers[1] = named(&["127.0.0.4"]);
    let third = pool(&upstream, Some(&second));
    assert_eq!(third.servers()[1].instance_id, "app-127.0.0.4");
    // A name that stands for one address from the start keeps the entry's id.
    upstream.servers[1] = named(&["127.0.0.9"]);
    assert_eq!(pool(&upstream, None).servers()[1].instance_id, "app");
}

#[test]
fn a_joining_server_waits_for_its_first_probe_when_checked() {
    let mut upstream = upstream(&[1]);
    upstream.health_check = Some(crate::config::HealthCheck {
        probe: crate::config::Probe::Tcp,
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        fall: 3,
        rise: 2,
    });
    upstream.servers.push(named(&["127.0.0.2"]));
    let first = pool(&upstream, None);
    assert!(
        first.servers().iter().all(|s| s.state.ready()),
        "at start, all ready"
    );
    upstream.servers[1] = named(&["127.0.0.2", "127.0.0.3"]);
    let second = pool(&upstream, Some(&first));
    let joined = &second.servers()[2];
    assert!(!joined.state.ready());
    assert_eq!(
        (0..20)
            .filter(|_| second.select(b"", &[]) == Some(2))
            .count(),
        0
    );
    joined.state.health.observe(true, 2, 3);
    assert!(joined.state.ready(), "the first passing probe lets it in");
}

#[test]
fn a_pool_whose_addresses_all_went_to_other_entries_answers_none() {
    let mut upstream = upstream(&[1]);
    upstream.servers[0].backup = true;
    upstream.servers.push(UpstreamServer {
        addresses: Vec::new(),
        ..named(&[])
    });
    let pool = pool(&upstream, None);
    assert_eq!(pool.servers().len(), 1);
    // Only the backup is left, and it is used; the name is still looked up.
    assert_eq!(pool.select(b"", &[]), Some(0));
    assert_eq!(pool.resolve_interval(), Some(Duration::from_secs(30)));
}

#[test]
fn least_time_prefers_the_fast_server_and_counts_in_flight() {
    let pool = pool(&upstream_with(Balance::LeastTime, &[1, 1]), None);
    pool.observe_response_time(0, Duration::from_millis(1));
    pool.observe_response_time(1, Duration::from_millis(40));
    let fast = (0..1000)
        .filter(|_| pool.select(b"", &[]) == Some(0))
        .count();
    assert_eq!(
        fast, 1000,
        "two candidates out of two: the fast one each time"
    );
    // 50 requests waiting on the fast one make it the slower choice.
    let busy: Vec<_> = (0..50).map(|_| pool.enter(0)).collect();
    assert_eq!(pool.select(b"", &[]), Some(1));
    drop(busy);
    assert!(pool.response_time_estimate(1).unwrap() > 0.03);
}

#[test]
fn least_time_gives_a_server_without_samples_the_median() {
    let pool = pool(&upstream_with(Balance::LeastTime, &[1, 1, 1]), None);
    pool.observe_response_time(0, Duration::from_millis(1));
    pool.observe_response_time(1, Duration::from_millis(10));
    // Server 2 has no sample: scored as 10 ms, the median, it ties with server 1 and loses
    // to server 0, instead of winning everything (0) or nothing (unknown as slow).
    let counts = shares(&pool, 3000);
    assert!(counts[0] > 1700, "{counts:?}");
    assert!((300..700).contains(&counts[1]), "{counts:?}");
    assert!((300..700).contains(&counts[2]), "{counts:?}");
}

#[test]
fn a_single_server_pool_works_in_every_mode() {
    for balance in EVERY_MODE {
        let pool = pool(&upstream_with(balance, &[5]), None);
        assert_eq!(pool.select(b"k", &[]), Some(0), "{balance:?}");
        assert_eq!(pool.select(b"k", &[0]), None, "{balance:?}");
    }
}

#[test]
fn servers_carry_their_identity_headers() {
    let pool = pool(&upstream(&[1, 1]), None);
    let s = &pool.servers()[1];
    assert_eq!(s.served_by, "127.0.0.1:9002");
    assert_eq!(s.instance_id, "2");
    let peer = s.peer();
    assert_eq!(
        peer.options.connection_timeout,
        Some(Timeouts::DEFAULT.connect)
    );
    assert_eq!(peer._address.to_string(), "127.0.0.1:9002");
}

#[test]
fn every_server_is_found_at_its_address() {
    let mut upstream = upstream(&[1, 2, 3]);
    upstream
        .servers
        .push(named(&["127.0.0.9", "::1", "127.0.0.3", "10.0.0.1"]));
    let pool = pool(&upstream, None);
    assert_eq!(pool.servers().len(), 7);
    for (i, server) in pool.servers().iter().enumerate() {
        let backend = Backend::new(&server.address.to_string()).unwrap();
        assert_eq!(
            pool.addresses.index_of(&backend),
            Some(i),
            "{}",
            server.address
        );
    }
    let elsewhere = Backend::new("127.0.0.1:9").unwrap();
    assert_eq!(pool.addresses.index_of(&elsewhere), None);
}
