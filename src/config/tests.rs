use super::*;
use std::time::Duration;

fn parse_ok(yaml: &str) -> Config {
    parse(Path::new("test.yaml"), yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn parse_err(yaml: &str) -> ConfigError {
    match parse(Path::new("test.yaml"), yaml) {
        Ok(config) => panic!("accepted: {config:?}"),
        Err(e) => e,
    }
}

/// Asserts the error names `key` (as the key path or in the message) and says `what`.
/// Asserts that `yaml` is refused with an error at `key`, the whole key path or its end
/// (`servers[0].weight` for `upstreams.app.servers[0].weight`), or at `test.yaml` for the
/// file as a whole, saying `what`.
fn assert_err(yaml: &str, key: &str, what: &str) {
    let err = parse_err(yaml);
    let text = err.to_string();
    assert!(text.starts_with("test.yaml"), "no file name: {text}");
    let at_key = match err.key() {
        None => key == "test.yaml",
        Some(found) => found == key || found.ends_with(&format!(".{key}")),
    };
    assert!(at_key, "error is not at `{key}`: {text}");
    assert!(text.contains(what), "error does not say `{what}`: {text}");
}

const MINIMAL: &str = "
upstreams:
  app:
    servers:
      - addr: 127.0.0.1:8001
routes:
  - { path: /, upstream: app }
";

#[test]
fn the_shipped_config_is_valid() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/edgeproxy.yaml"))
        .unwrap();
    let config = parse_ok(&text);
    let weights: Vec<u16> = config.upstreams[0]
        .servers
        .iter()
        .map(|s| s.weight)
        .collect();
    assert_eq!(weights, [1, 2, 3]);
}

#[test]
fn defaults_fill_what_is_left_out() {
    let config = parse_ok(MINIMAL);
    assert_eq!(config.process.listen, ["0.0.0.0:8080".parse().unwrap()]);
    assert_eq!(config.server.health_path, "/edge-health");
    assert_eq!(config.process.grace_period, Duration::from_secs(10));
    assert!(config.process.threads >= 1);
    assert_eq!(config.metrics, None);
    let app = &config.upstreams[0];
    assert_eq!(app.balance, Balance::RoundRobin);
    assert_eq!(app.timeouts, Timeouts::DEFAULT);
    assert_eq!(app.timeouts.idle, Duration::from_secs(4));
    assert_eq!(app.servers[0].id, "1");
    assert_eq!(app.servers[0].weight, 1);
}

#[test]
fn every_key_of_the_schema_is_read() {
    let config = parse_ok(
        r#"
server:
  listen: ["127.0.0.1:8080", "[::1]:8081"]
  threads: 3
  health_path: /nginx-health
  grace_period: 1500ms
metrics:
  listen: 127.0.0.1:9091
upstreams:
  app:
    balance: round_robin
    servers:
      - addr: 127.0.0.1:8001
        id: "a"
        weight: 5
      - { addr: "localhost:8002", id: 7, weight: 1 }
    connect_timeout: 150ms
    read_timeout: 5m
    write_timeout: 1h
    idle_timeout: 1500ms
routes:
  - { path: /api/, upstream: app, host: API.example.com }
  - { path: /, upstream: app }
"#,
    );
    assert_eq!(config.process.listen.len(), 2);
    assert_eq!(config.process.threads, 3);
    assert_eq!(config.server.health_path, "/nginx-health");
    assert_eq!(config.process.grace_period, Duration::from_millis(1500));
    assert_eq!(
        config.process.metrics_listen.unwrap(),
        "127.0.0.1:9091".parse().unwrap()
    );
    let app = &config.upstreams[0];
    assert_eq!(app.timeouts.connect, Duration::from_millis(150));
    assert_eq!(app.timeouts.read, Duration::from_secs(300));
    assert_eq!(app.timeouts.write, Duration::from_secs(3600));
    assert_eq!(app.timeouts.idle, Duration::from_millis(1500));
    assert_eq!(app.servers[0].id, "a");
    assert_eq!(app.servers[0].weight, 5);
    assert_eq!(app.servers[1].id, "7");
    assert_eq!(
        app.servers[1].addr, "localhost:8002",
        "kept as written for X-Served-By"
    );
    let resolved = &app.servers[1].addresses;
    assert!(
        !resolved.is_empty() && resolved.iter().all(|a| a.ip().is_loopback()),
        "host names are resolved: {resolved:?}"
    );
    assert_eq!(app.servers[1].resolve, Resolve::All);
    assert_eq!(config.routes[0].host.as_deref(), Some("api.example.com"));
    assert_eq!(config.routes[0].upstream, 0);
}

#[test]
fn unknown_keys_are_rejected_at_every_level() {
    assert_err(
        &format!("servr: {{}}\n{MINIMAL}"),
        "test.yaml",
        "unknown field `servr`, expected one of",
    );
    assert_err(
        &format!("server: {{ listn: [] }}\n{MINIMAL}"),
        "server",
        "unknown field `listn`",
    );
    assert_err(
        &format!("metrics: {{ listen: 127.0.0.1:9091, path: /m }}\n{MINIMAL}"),
        "metrics",
        "unknown field `path`",
    );
    assert_err(
        "upstreams: { app: { servers: [ { addr: 127.0.0.1:1 } ], timeout: 2s } }\nroutes: [ { path: /, upstream: app } ]",
        "upstreams.app",
        "unknown field `timeout`",
    );
    assert_err(
        "upstreams: { app: { servers: [ { addr: 127.0.0.1:1, wieght: 2 } ] } }\nroutes: [ { path: /, upstream: app } ]",
        "upstreams.app.servers[0]",
        "unknown field `wieght`",
    );
    assert_err(
        "upstreams: { app: { servers: [ { addr: 127.0.0.1:1 } ] } }\nroutes: [ { path: /, upstream: app, cahce: 1h } ]",
        "routes[0]",
        "unknown field `cahce`",
    );
}

#[test]
fn yaml_errors_point_at_line_and_column() {
    let err = parse_err("upstreams:\n  app:\n    servers:\n      - addr: 127.0.0.1:8001\n        wieght: 2\nroutes: []\n");
    assert!(err.to_string().starts_with("test.yaml:5:9: "), "{err}");
    let err = parse_err("upstreams: [\n");
    assert!(err.to_string().starts_with("test.yaml:"), "{err}");
}

#[test]
fn type_errors_speak_yaml_not_rust() {
    for (yaml, expected) in [
        ("server:\n  threads: many\n", "expected a whole number"),
        (
            "server: 8080\n",
            "expected a block of `key: value` settings",
        ),
        ("server:\n  watch: sometimes\n", "expected true or false"),
    ] {
        let err = parse_err(&format!("{yaml}{MINIMAL}"));
        assert!(err.message().contains(expected), "{yaml}: {err}");
        for rust in ["usize", "struct", "File"] {
            assert!(!err.message().contains(rust), "{yaml}: {err}");
        }
    }
}

#[test]
fn a_tab_in_the_indentation_is_named() {
    let err =
        parse_err("upstreams:\n  app:\n\tservers: [ { addr: 127.0.0.1:8001 } ]\nroutes: []\n");
    assert!(err.to_string().starts_with("test.yaml:3:"), "{err}");
    assert!(
        err.message().contains("YAML indents with spaces only"),
        "{err}"
    );
}

#[test]
fn bad_values_point_at_their_own_key_and_line() {
    // A block with several values of a kind: the error must name the one that is wrong.
    let err = parse_err(
        "server:\n  header_timeout: 10s\n  grace_period: 1.5s\n  body_timeout: 60s\nupstreams:\n  app:\n    servers: [ { addr: 127.0.0.1:8001 } ]\n    connect_timeout: 1s\n    read_timeout: 5\nroutes: [ { path: /, upstream: app } ]\n",
    );
    assert!(
        err.to_string()
            .starts_with("test.yaml:3:17: server.grace_period: "),
        "{err}"
    );
    let err = parse_err(
        "upstreams:\n  app:\n    servers: [ { addr: 127.0.0.1:8001 } ]\n    connect_timeout: 1s\n    read_timeout: 5\nroutes: [ { path: /, upstream: app } ]\n",
    );
    assert!(
        err.to_string()
            .starts_with("test.yaml:5:19: upstreams.app.read_timeout: "),
        "{err}"
    );
    assert!(err.message().contains("missing unit"), "{err}");
}

#[test]
fn bad_values_say_what_is_wrong() {
    let with_server = |server: &str| {
        format!("upstreams: {{ app: {{ servers: [ {server} ] }} }}\nroutes: [ {{ path: /, upstream: app }} ]")
    };
    assert_err(
        &with_server("{ addr: 127.0.0.1 }"),
        "upstreams.app.servers[0].addr",
        "missing port",
    );
    assert_err(
        &with_server("{ addr: '127.0.0.1:99999' }"),
        "servers[0].addr",
        "1 to 65535",
    );
    assert_err(
        &with_server("{ addr: 127.0.0.1:1, weight: 0 }"),
        "servers[0].weight",
        "invalid weight 0",
    );
    assert_err(
        &with_server("{ addr: 127.0.0.1:1, weight: 1001 }"),
        "servers[0].weight",
        "1 to 1000",
    );
    assert_err(
        &with_server("{ addr: 127.0.0.1:1, weight: heavy }"),
        "servers[0].weight",
        "invalid weight heavy: must be a whole number",
    );
    assert_err(
        &with_server("{ id: 1 }"),
        "servers[0]",
        "missing field `addr`",
    );
    assert_err(
        &with_server("{ addr: 'no-such-host.invalid:80' }"),
        "upstreams.app.servers[0].addr",
        "cannot resolve",
    );
    assert_err(
        &with_server("{ addr: 127.0.0.1:1, id: 'a b' }"),
        "upstreams.app.servers[0].id",
        "header value",
    );
    assert_err(
        &with_server("{ addr: 127.0.0.1:1 }, { addr: 127.0.0.1:2, id: '1' }"),
        "servers[1].id",
        "already used",
    );
    assert_err(
        &with_server("{ addr: 127.0.0.1:1 }, { addr: 127.0.0.1:1 }"),
        "servers[1].addr",
        "same server",
    );
    assert_err(&with_server(""), "upstreams.app.servers", "empty");
}

#[test]
fn bad_upstream_keys_say_what_is_wrong() {
    let with_upstream = |extra: &str| {
        format!("upstreams: {{ app: {{ servers: [ {{ addr: 127.0.0.1:1 }} ], {extra} }} }}\nroutes: [ {{ path: /, upstream: app }} ]")
    };
    assert_err(
        &with_upstream("connect_timeout: 2"),
        "upstreams.app.connect_timeout",
        "missing unit",
    );
    assert_err(
        &with_upstream("read_timeout: 2 sec"),
        "upstreams.app.read_timeout",
        "unknown unit `sec`",
    );
    assert_err(
        &with_upstream("write_timeout: 0s"),
        "upstreams.app.write_timeout",
        "positive",
    );
    assert_err(
        &with_upstream("idle_timeout: 0s"),
        "upstreams.app.idle_timeout",
        "positive",
    );
    assert_err(
        &with_upstream("balance: fastest"),
        "upstreams.app.balance",
        "unknown variant `fastest`",
    );
}

#[test]
fn server_section_is_checked() {
    assert_err(
        &format!("server: {{ listen: ['localhost:80'] }}\n{MINIMAL}"),
        "server.listen[0]",
        "IP:port",
    );
    assert_err(
        &format!("server: {{ listen: [] }}\n{MINIMAL}"),
        "server.listen",
        "empty",
    );
    assert_err(
        &format!("server: {{ listen: ['127.0.0.1:80', '127.0.0.1:80'] }}\n{MINIMAL}"),
        "server.listen",
        "listed twice",
    );
    assert_err(
        &format!("server: {{ threads: 0 }}\n{MINIMAL}"),
        "server.threads",
        "out of range",
    );
    assert_err(
        &format!("server: {{ health_path: health }}\n{MINIMAL}"),
        "server.health_path",
        "start with `/`",
    );
    assert_err(
        &format!("server: {{ grace_period: soon }}\n{MINIMAL}"),
        "server.grace_period",
        "invalid duration `soon`",
    );
    assert_err(
        &format!("server: {{ listen: ['127.0.0.1:8080'] }}\nmetrics: {{ listen: '127.0.0.1:8080' }}\n{MINIMAL}"),
        "metrics.listen",
        "127.0.0.1:8080 is also in server.listen",
    );
}

#[test]
fn routes_are_checked() {
    let with_routes = |routes: &str| {
        format!("upstreams: {{ app: {{ servers: [ {{ addr: 127.0.0.1:1 }} ] }} }}\nroutes: [ {routes} ]")
    };
    assert_err(
        &with_routes("{ path: /, upstream: api }"),
        "routes[0].upstream",
        "unknown upstream `api`; defined upstreams: app",
    );
    assert_err(
        &with_routes("{ path: api, upstream: app }"),
        "routes[0].path",
        "start with `/`",
    );
    assert_err(
        &with_routes("{ path: /, upstream: app }, { path: /, upstream: app }"),
        "routes[1].path",
        "already has path",
    );
    assert_err(
        &with_routes("{ path: /, upstream: app, host: 'a b' }"),
        "routes[0].host",
        "not a host name",
    );
    assert_err(
        &with_routes("{ upstream: app }"),
        "routes[0]",
        "missing field `path`",
    );
    assert_err(&with_routes(""), "routes", "no route");
    // The same path on two hosts is fine.
    parse_ok(&with_routes(
        "{ path: /, upstream: app }, { path: /, upstream: app, host: a.example }",
    ));
}

#[test]
fn whole_file_problems_are_reported() {
    assert_err("", "test.yaml", "missing field `upstreams`");
    assert_err("upstreams: {}\nroutes: []", "upstreams", "no upstream");
    assert_err(
        "upstreams:\n  app: { servers: [ { addr: 127.0.0.1:1 } ] }\n  app: { servers: [ { addr: 127.0.0.1:2 } ] }\nroutes: [ { path: /, upstream: app } ]",
        "upstreams",
        "`app` is defined twice",
    );
    assert_err("- just\n- a list", "test.yaml", "invalid type");
}

#[test]
fn a_missing_file_says_so() {
    let err = load(Path::new("/nonexistent/edgeproxy.yaml")).unwrap_err();
    assert!(
        err.to_string()
            .contains("/nonexistent/edgeproxy.yaml: cannot read the file"),
        "{err}"
    );
}

#[test]
fn every_balance_mode_is_accepted() {
    for (text, balance) in [
        ("round_robin", Balance::RoundRobin),
        ("least_conn", Balance::LeastConn),
        ("ip_hash", Balance::IpHash),
        ("random", Balance::Random),
        ("least_time", Balance::LeastTime),
    ] {
        let config =
            parse_ok(&MINIMAL.replace("  app:\n", &format!("  app:\n    balance: {text}\n")));
        assert_eq!(config.upstreams[0].balance, balance);
    }
}

#[test]
fn hash_key_is_read_and_checked() {
    let with = |extra: &str| MINIMAL.replace("  app:\n", &format!("  app:\n{extra}"));
    let config = parse_ok(&with(
        "    balance: ip_hash\n    hash_key: cookie:session\n",
    ));
    assert_eq!(
        config.upstreams[0].hash_key,
        HashKey::Cookie("session".into())
    );
    assert_eq!(
        parse_ok(&with("    balance: ip_hash\n")).upstreams[0].hash_key,
        HashKey::ClientIp
    );
    assert_err(
        &with("    hash_key: header:X-User\n"),
        "upstreams.app.hash_key",
        "only applies to `balance: ip_hash`",
    );
    assert_err(
        &with("    balance: ip_hash\n    hash_key: query:user\n"),
        "upstreams.app.hash_key",
        "invalid hash_key",
    );
}

#[test]
fn listen_port_zero_is_rejected() {
    assert_err(
        &format!("server: {{ listen: ['127.0.0.1:0'] }}\n{MINIMAL}"),
        "server.listen[0]",
        "port 0",
    );
}

/// No input may panic: every prefix of a full config, and the config with any one line
/// removed, must parse or fail with an error.
#[test]
fn no_mutilation_of_a_valid_file_panics() {
    let full = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/edgeproxy.yaml"))
        .unwrap()
        + "metrics:\n  listen: 127.0.0.1:9091\n";
    for end in (0..full.len()).filter(|&i| full.is_char_boundary(i)) {
        let _ = parse(Path::new("t.yaml"), &full[..end]);
    }
    let lines: Vec<&str> = full.lines().collect();
    for skip in 0..lines.len() {
        let text: Vec<&str> = lines
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, l)| *l)
            .collect();
        let _ = parse(Path::new("t.yaml"), &text.join("\n"));
    }
}

#[test]
fn health_and_failover_keys_are_read() {
    let config = parse_ok(
        "
upstreams:
  app:
    health_check:
      type: http
      path: /health
      host: app.internal
      expect_status: [200, 204]
      interval: 2s
      timeout: 500ms
      fall: 4
      rise: 1
    retries: 1
    when_all_down: try_all
    resolve_interval: 10s
    servers:
      - { addr: 127.0.0.1:8001, max_fails: 3, fail_timeout: 30s }
      - { addr: 127.0.0.1:8002, backup: true }
routes: [ { path: /, upstream: app } ]
",
    );
    let app = &config.upstreams[0];
    let check = app.health_check.as_ref().unwrap();
    assert_eq!(
        check.probe,
        Probe::Http {
            path: "/health".into(),
            host: Some("app.internal".into()),
            expect_status: vec![200, 204]
        }
    );
    assert_eq!(
        (check.interval, check.timeout),
        (Duration::from_secs(2), Duration::from_millis(500))
    );
    assert_eq!((check.fall, check.rise), (4, 1));
    assert_eq!((app.retries, app.when_all_down), (1, WhenAllDown::TryAll));
    assert_eq!(app.resolve_interval, Duration::from_secs(10));
    assert_eq!(
        (app.servers[0].max_fails, app.servers[0].fail_timeout),
        (3, Duration::from_secs(30))
    );
    assert!(app.servers[1].backup && !app.servers[0].backup);
}

#[test]
fn health_and_failover_defaults() {
    let config = parse_ok(&MINIMAL.replace("  app:\n", "  app:\n    health_check: {}\n"));
    let app = &config.upstreams[0];
    let check = app.health_check.as_ref().unwrap();
    assert_eq!(
        check.probe,
        Probe::Http {
            path: "/".into(),
            host: None,
            expect_status: vec![]
        }
    );
    assert_eq!(
        (check.interval, check.timeout, check.fall, check.rise),
        (Duration::from_secs(5), Duration::from_secs(1), 3, 2)
    );
    assert_eq!((app.retries, app.when_all_down), (2, WhenAllDown::Fail));
    assert_eq!(app.resolve_interval, Duration::from_secs(30));
    assert_eq!(
        (app.servers[0].max_fails, app.servers[0].fail_timeout),
        (1, Duration::from_secs(10))
    );
    assert_eq!(parse_ok(MINIMAL).upstreams[0].health_check, None);
}

#[test]
fn health_and_failover_mistakes_are_reported() {
    let with = |extra: &str| MINIMAL.replace("  app:\n", &format!("  app:\n{extra}"));
    assert_err(
        &with("    health_check: { type: tcp, path: /health }\n"),
        "health_check.path",
        "only applies to `type: http`",
    );
    assert_err(
        &with("    health_check: { type: udp }\n"),
        "upstreams.app.health_check.type",
        "unknown variant `udp`",
    );
    assert_err(
        &with("    health_check: { expect_status: [700] }\n"),
        "health_check.expect_status",
        "not an HTTP status",
    );
    assert_err(
        &with("    health_check: { fall: 0 }\n"),
        "health_check.fall",
        "at least 1",
    );
    assert_err(
        &with("    health_check: { interval: 0s }\n"),
        "health_check.interval",
        "positive",
    );
    assert_err(
        &with("    health_check: { path: health }\n"),
        "health_check.path",
        "start with `/`",
    );
    assert_err(
        &with("    health_check: { intervl: 1s }\n"),
        "health_check",
        "unknown field `intervl`",
    );
    assert_err(
        &with("    when_all_down: retry\n"),
        "upstreams.app.when_all_down",
        "unknown variant `retry`",
    );
    assert_err(
        &with("    retries: -1\n"),
        "upstreams.app.retries",
        "expected a whole number",
    );
    let servers = |list: &str| {
        format!("upstreams: {{ app: {{ servers: [ {list} ] }} }}\nroutes: [ {{ path: /, upstream: app }} ]")
    };
    assert_err(
        &servers("{ addr: 127.0.0.1:1, backup: true }"),
        "upstreams.app.servers",
        "every server is a backup",
    );
    assert_err(
        &servers("{ addr: 127.0.0.1:1, max_fails: 2, fail_timeout: 0s }"),
        "servers[0].fail_timeout",
        "max_fails: 0",
    );
    parse_ok(&servers(
        "{ addr: 127.0.0.1:1, max_fails: 0, fail_timeout: 0s }",
    ));
}

#[test]
fn streaming_route_keys_are_read_and_checked() {
    let with_routes = |routes: &str| {
        format!("upstreams: {{ app: {{ servers: [ {{ addr: 127.0.0.1:1 }} ] }} }}\nroutes: [ {routes} ]")
    };
    let config = parse_ok(&with_routes(
        "{ path: /events, upstream: app, sse: true, stream_idle_timeout: 10m }, { path: /, upstream: app, compress: true }",
    ));
    let (events, rest) = (&config.routes[0], &config.routes[1]);
    assert!(events.sse && !events.compress);
    assert_eq!(events.stream_idle_timeout, Duration::from_secs(600));
    assert!(rest.compress && !rest.sse);
    assert_eq!(
        rest.stream_idle_timeout,
        Duration::from_secs(3600),
        "default 1h"
    );
    assert_err(
        &with_routes("{ path: /, upstream: app, stream_idle_timeout: 1h }"),
        "routes[0].stream_idle_timeout",
        "only applies to `sse: true`",
    );
    assert_err(
        &with_routes("{ path: /, upstream: app, sse: yes please }"),
        "routes[0].sse",
        "invalid type",
    );
}

#[test]
fn cache_keys_are_read_and_checked() {
    let with = |top: &str, route: &str| {
        format!("{top}upstreams: {{ app: {{ servers: [ {{ addr: 127.0.0.1:1 }} ] }} }}\nroutes: [ {{ path: /, upstream: app{route} }} ]")
    };
    let config = parse_ok(&with("cache: { max_size: 128MiB }\n", ", cache: 1h"));
    assert_eq!(config.process.cache.max_size, 128 << 20);
    assert_eq!(config.routes[0].cache, Some(Duration::from_secs(3600)));
    let config = parse_ok(&with("", ""));
    assert_eq!(
        (config.process.cache.max_size, config.routes[0].cache),
        (64 << 20, None)
    );
    assert_err(
        &with("cache: { max_size: 64 }\n", ""),
        "cache.max_size",
        "missing unit",
    );
    assert_err(
        &with("cache: { max_size: 10KiB }\n", ""),
        "cache.max_size",
        "at least 1MiB",
    );
    assert_err(
        &with("cache: { size: 1GiB }\n", ""),
        "cache",
        "unknown field `size`",
    );
    assert_err(&with("", ", cache: 0s"), "routes[0].cache", "positive");
    assert_err(
        &with("", ", cache: 1h, sse: true"),
        "routes[0].cache",
        "cannot be cached",
    );
}

#[test]
fn access_log_keys_are_read_and_checked() {
    let with = |server: &str| format!("server: {{ {server} }}\n{MINIMAL}");
    assert_eq!(
        parse_ok(MINIMAL).process.access_log,
        AccessLogTarget::Stdout
    );
    assert_eq!(
        parse_ok(MINIMAL).process.access_log_format,
        AccessLogFormat::Combined
    );
    assert_eq!(
        parse_ok(&with("access_log: off")).process.access_log,
        AccessLogTarget::Off
    );
    let config = parse_ok(&with(
        "access_log: /var/log/edgeproxy/access.log, access_log_format: json",
    ));
    assert_eq!(
        config.process.access_log,
        AccessLogTarget::File("/var/log/edgeproxy/access.log".into())
    );
    assert_eq!(config.process.access_log_format, AccessLogFormat::Json);
    assert_err(
        &with("access_log: logs/access.log"),
        "server.access_log",
        "absolute file path",
    );
    assert_err(
        &with("access_log_format: main"),
        "server.access_log_format",
        "unknown variant `main`",
    );
}

#[test]
fn pid_file_and_watch_are_read_and_checked() {
    let with = |server: &str| format!("server: {{ {server} }}\n{MINIMAL}");
    let config = parse_ok(MINIMAL);
    assert_eq!(
        (config.process.pid_file, config.process.watch),
        (None, false)
    );
    let config = parse_ok(&with("pid_file: /run/edgeproxy.pid, watch: true"));
    assert_eq!(config.process.pid_file, Some("/run/edgeproxy.pid".into()));
    assert!(config.process.watch);
    assert!(!config.process.preserve_header_case);
    assert!(
        parse_ok(&with("preserve_header_case: true"))
            .process
            .preserve_header_case
    );
    assert_err(
        &with("preserve_header_case: 1"),
        "server.preserve_header_case",
        "invalid type",
    );
    assert_err(
        &with("pid_file: edgeproxy.pid"),
        "server.pid_file",
        "absolute path",
    );
    assert_err(&with("watch: sometimes"), "server.watch", "invalid type");
}

#[test]
fn upgrade_sock_is_read_and_checked() {
    let with = |server: &str| format!("server: {{ {server} }}\n{MINIMAL}");
    assert_eq!(
        parse_ok(MINIMAL).process.upgrade_sock,
        std::path::PathBuf::from("/tmp/edgeproxy_upgrade.sock")
    );
    let config = parse_ok(&with("upgrade_sock: /run/edgeproxy/upgrade.sock"));
    assert_eq!(
        config.process.upgrade_sock,
        std::path::PathBuf::from("/run/edgeproxy/upgrade.sock")
    );
    assert_err(
        &with("upgrade_sock: upgrade.sock"),
        "server.upgrade_sock",
        "absolute path",
    );
}

#[test]
fn http2_upstreams_are_read() {
    assert!(!parse_ok(MINIMAL).upstreams[0].http2);
    let config = parse_ok(&MINIMAL.replace("  app:\n", "  app:\n    http2: true\n"));
    assert!(config.upstreams[0].http2);
    assert_err(
        &MINIMAL.replace("  app:\n", "  app:\n    http2: h2c\n"),
        "upstreams.app.http2",
        "invalid type",
    );
}

/// A self-signed certificate and key in a temp dir, which lives as long as the first value.
fn tls_pair() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = crate::config::certificate::testing::self_signed(dir.path(), "localhost");
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    (dir, cert, key)
}

/// A config with a plain-HTTP listener and `server.tls: { tls }`.
fn with_tls(tls: &str) -> String {
    format!("server:\n  listen: ['127.0.0.1:8080']\n  tls: {{ {tls} }}\n{MINIMAL}")
}

#[test]
fn tls_keys_are_read_and_checked() {
    let (_dir, cert, key) = tls_pair();
    let with = with_tls;
    let pair = format!("cert: {cert}, key: {key}");

    assert_eq!(parse_ok(MINIMAL).server.tls, None);
    assert_eq!(parse_ok(MINIMAL).process.https, None);
    let config = parse_ok(&with(&format!("listen: ['127.0.0.1:8443'], {pair}")));
    let (https, tls) = (
        config.process.https.as_ref().unwrap(),
        config.server.tls.as_ref().unwrap(),
    );
    assert_eq!(https.listen, ["127.0.0.1:8443".parse().unwrap()]);
    assert_eq!(
        config
            .server
            .file_certificate()
            .unwrap()
            .cert_path
            .display()
            .to_string(),
        cert.to_string()
    );
    assert!(https.http2);
    assert!(!tls.redirect_http_to_https);
    assert_eq!(config.https_redirect_port(), 8443);
    let config = parse_ok(&with(&format!(
        "listen: ['0.0.0.0:443'], {pair}, http2: false, redirect_http_to_https: true"
    )));
    let (https, tls) = (config.process.https.unwrap(), config.server.tls.unwrap());
    assert!(!https.http2 && tls.redirect_http_to_https);

    let https_only = format!(
        "server:\n  listen: []\n  tls: {{ listen: ['127.0.0.1:8443'], {pair} }}\n{MINIMAL}"
    );
    let config = parse_ok(&https_only);
    assert!(config.process.listen.is_empty());
    assert_eq!(config.process.listeners().count(), 1);
    assert_err(
        &https_only.replace("{ listen", "{ redirect_http_to_https: true, listen"),
        "server.tls.redirect_http_to_https",
        "no plain-HTTP listener",
    );
}

#[test]
fn bad_tls_keys_are_refused_naming_the_key() {
    let (_dir, cert, key) = tls_pair();
    let with = with_tls;
    let pair = format!("cert: {cert}, key: {key}");
    assert_err(
        &with(&format!("listen: [], {pair}")),
        "server.tls.listen",
        "empty",
    );
    assert_err(
        &with(&format!("listen: ['127.0.0.1:8080'], {pair}")),
        "server.tls.listen",
        "127.0.0.1:8080 is also in server.listen",
    );
    assert_err(
        &with(&format!(
            "listen: ['127.0.0.1:8443', '127.0.0.1:8443'], {pair}"
        )),
        "server.tls.listen",
        "listed twice",
    );
    assert_err(
        &with(&format!(
            "listen: ['127.0.0.1:8443'], cert: fullchain.pem, key: {key}"
        )),
        "server.tls.cert",
        "absolute path",
    );
    assert_err(
        &with(&format!(
            "listen: ['127.0.0.1:8443'], cert: {cert}, key: /nonexistent/privkey.pem"
        )),
        "server.tls.key",
        "cannot read /nonexistent/privkey.pem",
    );
    assert_err(
        &with(&format!(
            "listen: ['127.0.0.1:8443'], cert: {key}, key: {key}"
        )),
        "server.tls.cert",
        "holds no certificate",
    );
    assert_err(
        &with(&format!("listen: ['127.0.0.1:8443'], {pair}, alpn: h2")),
        "server.tls",
        "unknown field `alpn`",
    );
    assert_err(
        &with("listen: ['127.0.0.1:8443']"),
        "server.tls",
        "missing field `cert`",
    );
}

#[test]
fn names_are_left_alone_when_not_looked_up() {
    let yaml = MINIMAL.replace(
        "      - addr: 127.0.0.1:8001\n",
        "      - addr: app1.invalid:8000\n      - addr: app2.invalid:8000\n      - addr: 10.0.1.5:8000\n",
    );
    assert_err(&yaml, "upstreams.app.servers[0].addr", "cannot resolve");
    let config = parse_with(Path::new("test.yaml"), &yaml, NameLookup::Skip).unwrap();
    let servers = &config.upstreams[0].servers;
    assert_eq!(servers[0].host, "app1.invalid");
    assert!(servers[0].addresses[0].ip().is_unspecified());
    assert_eq!(servers[2].addresses, ["10.0.1.5:8000".parse().unwrap()]);
    // Literal addresses are still compared.
    let twice = yaml.replace("app2.invalid:8000", "10.0.1.5:8000");
    let err = parse_with(Path::new("test.yaml"), &twice, NameLookup::Skip).unwrap_err();
    assert!(err.to_string().contains("same server"), "{err}");
}

#[test]
fn client_keys_are_read_and_checked() {
    let config = parse_ok(MINIMAL);
    assert!(config.server.trusted_proxies.is_empty());
    assert_eq!(config.server.limits.max_header_size, 32 << 10);
    assert_eq!(config.server.limits.max_header_count, 100);
    assert_eq!(config.server.limits.header_timeout, Duration::from_secs(10));
    assert_eq!(config.server.limits.body_timeout, Duration::from_secs(60));
    assert_eq!(
        config.server.limits.keepalive_timeout,
        Duration::from_secs(60)
    );
    assert_eq!(config.server.limits.max_connections, 16384);
    assert_eq!(config.server.limits.max_connections_per_ip, None);
    let config = parse_ok(&format!(
        "server:\n  trusted_proxies: [10.0.0.0/8, \"2001:db8::/32\", 192.0.2.7]\n  max_header_size: 8KiB\n  max_header_count: 50\n  header_timeout: 5s\n  body_timeout: 30s\n  max_connections: 100\n  max_connections_per_ip: 10\n{MINIMAL}"
    ));
    assert_eq!(config.server.limits.header_timeout, Duration::from_secs(5));
    assert_eq!(config.server.limits.body_timeout, Duration::from_secs(30));
    assert_eq!(config.server.limits.max_connections, 100);
    assert_eq!(config.server.limits.max_connections_per_ip, Some(10));
    assert_eq!(config.server.trusted_proxies.len(), 3);
    assert_eq!(config.server.trusted_proxies[2].to_string(), "192.0.2.7/32");
    assert_eq!(config.server.limits.max_header_size, 8 << 10);
    assert_eq!(config.server.limits.max_header_count, 50);
    for (server, key, what) in [
        (
            "trusted_proxies: [10.0.0.1/8]",
            "server.trusted_proxies[0]",
            "10.0.0.0/8",
        ),
        (
            "trusted_proxies: [alb]",
            "server.trusted_proxies[0]",
            "not an IP",
        ),
        (
            "max_header_size: 2MiB",
            "server.max_header_size",
            "1KiB to 1MiB",
        ),
        (
            "max_header_size: 100B",
            "server.max_header_size",
            "1KiB to 1MiB",
        ),
        ("max_header_count: 0", "server.max_header_count", "1 to 256"),
        (
            "max_header_count: 300",
            "server.max_header_count",
            "1 to 256",
        ),
        (
            "header_timeout: 0s",
            "server.header_timeout",
            "positive duration",
        ),
        ("body_timeout: 10", "server.body_timeout", "missing unit"),
        (
            "keepalive_timeout: 500ms",
            "server.keepalive_timeout",
            "at least 1s",
        ),
        (
            "max_connections: 0",
            "server.max_connections",
            "refuse every client",
        ),
        (
            "max_connections_per_ip: 0",
            "server.max_connections_per_ip",
            "refuse every client",
        ),
        (
            "max_connections: -1",
            "server.max_connections",
            "expected a whole number",
        ),
    ] {
        assert_err(&format!("server:\n  {server}\n{MINIMAL}"), key, what);
    }
}

#[test]
fn route_paths_must_be_in_normal_form() {
    for (path, what) in [
        ("/static/../admin", "write `/admin`"),
        ("//x", "write `/x`"),
        ("/%61pi", "write `/api`"),
        ("/../x", "goes above the root"),
    ] {
        let yaml = MINIMAL.replace("path: /,", &format!("path: \"{path}\","));
        assert_err(&yaml, "routes[0].path", what);
    }
}

#[test]
fn route_limits_are_read_and_checked() {
    let config = parse_ok(MINIMAL);
    assert_eq!(config.routes[0].max_body, Some(10 << 20));
    assert_eq!(config.routes[0].rate_limit, None);
    let with =
        |keys: &str| MINIMAL.replace("upstream: app }", &format!("upstream: app, {keys} }}"));
    let config = parse_ok(&with(
        "max_body: 1MiB, rate_limit: { requests_per_second: 2.5 }",
    ));
    assert_eq!(config.routes[0].max_body, Some(1 << 20));
    let limit = config.routes[0].rate_limit.unwrap();
    assert_eq!((limit.requests_per_second, limit.burst), (2.5, 3));
    let config = parse_ok(&with(
        "max_body: none, rate_limit: { requests_per_second: 10, burst: 50 }",
    ));
    assert_eq!(config.routes[0].max_body, None);
    assert_eq!(config.routes[0].rate_limit.unwrap().burst, 50);
    for (keys, key, what) in [
        ("max_body: 10", "routes[0].max_body", "or none for no limit"),
        (
            "rate_limit: { requests_per_second: 0 }",
            "routes[0].rate_limit.requests_per_second",
            "above 0",
        ),
        (
            "rate_limit: { requests_per_second: 5, burst: 0 }",
            "routes[0].rate_limit.burst",
            "at least 1",
        ),
        (
            "rate_limit: { rps: 5 }",
            "routes[0].rate_limit",
            "unknown field `rps`",
        ),
    ] {
        assert_err(&with(keys), key, what);
    }
}

#[test]
fn metrics_default_to_loopback_and_read_allow() {
    let config = parse_ok(&format!("metrics: {{}}\n{MINIMAL}"));
    assert_eq!(
        config.process.metrics_listen,
        Some("127.0.0.1:9091".parse().unwrap())
    );
    assert_eq!(config.metrics_exposure_warning(), None);
    let metrics = config.metrics.unwrap();
    assert!(metrics.allow.is_empty());
    let config = parse_ok(&format!(
        "metrics: {{ listen: 0.0.0.0:9100, allow: [10.0.0.0/8] }}\n{MINIMAL}"
    ));
    assert_eq!(config.metrics_exposure_warning(), None);
    let metrics = config.metrics.unwrap();
    assert_eq!(metrics.allow.len(), 1);
    let config = parse_ok(&format!("metrics: {{ listen: 0.0.0.0:9100 }}\n{MINIMAL}"));
    assert!(config.metrics_exposure_warning().is_some());
    assert_err(
        &format!("metrics: {{ allow: [10.0.0.1/8] }}\n{MINIMAL}"),
        "metrics.allow[0]",
        "10.0.0.0/8",
    );
}

#[test]
fn resolve_and_least_time_are_read_and_checked() {
    let yaml = MINIMAL
        .replace(
            "      - addr: 127.0.0.1:8001\n",
            "      - { addr: \"localhost:8001\", resolve: first }\n",
        )
        .replace(
            "  app:\n",
            "  app:\n    balance: least_time\n    least_time_decay: 3s\n",
        );
    let config = parse(Path::new("test.yaml"), &yaml).unwrap();
    let app = &config.upstreams[0];
    assert_eq!(app.balance, Balance::LeastTime);
    assert_eq!(app.least_time_decay, Duration::from_secs(3));
    assert_eq!(app.servers[0].resolve, Resolve::First);
    assert_eq!(app.servers[0].addresses.len(), 1);
    assert_eq!(
        parse(Path::new("test.yaml"), MINIMAL).unwrap().upstreams[0].least_time_decay,
        Duration::from_millis(500)
    );
    assert_err(
        &yaml.replace("resolve: first", "resolve: every"),
        "upstreams.app.servers[0].resolve",
        "unknown variant `every`",
    );
    assert_err(
        &yaml.replace("    balance: least_time\n", ""),
        "upstreams.app.least_time_decay",
        "only applies to `balance: least_time`",
    );
    assert_err(
        &yaml.replace("3s", "0s"),
        "upstreams.app.least_time_decay",
        "",
    );
}

#[test]
fn acme_keys_are_read() {
    let acme = |keys: &str| with_tls(&format!("listen: ['127.0.0.1:8443'], acme: {{ {keys} }}"));
    let config = parse_ok(&acme("domains: [Shop.Example.com., www.example.com]"));
    let settings = config.server.acme().unwrap();
    assert_eq!(settings.domains, ["shop.example.com", "www.example.com"]);
    assert_eq!(
        settings.directory,
        "https://acme-v02.api.letsencrypt.org/directory"
    );
    assert_eq!(settings.state_dir, Path::new("/var/lib/edgeproxy/acme"));
    assert_eq!(settings.renew_before, None);
    assert_eq!(settings.retry_after, Duration::from_secs(600));
    assert_eq!(settings.email, None);
    assert!(config.server.file_certificate().is_none());
    let config = parse_ok(&acme(
        "domains: [a.example.com], email: ops@example.com, \
         directory: 'https://acme-staging-v02.api.letsencrypt.org/directory', \
         state_dir: /srv/acme, renew_before: 30d, retry_after: 1m",
    ));
    let settings = config.server.acme().unwrap();
    assert_eq!(settings.email.as_deref(), Some("ops@example.com"));
    assert_eq!(
        settings.renew_before,
        Some(Duration::from_secs(30 * 86_400))
    );
    assert_eq!(settings.retry_after, Duration::from_secs(60));
    assert!(settings.account_file().starts_with("/srv/acme"));
}

#[test]
fn acme_mistakes_are_refused() {
    let acme = |keys: &str| with_tls(&format!("listen: ['127.0.0.1:8443'], acme: {{ {keys} }}"));
    let (_dir, cert, key) = tls_pair();
    for (keys, at, says) in [
        (
            "domains: []",
            "server.tls.acme.domains",
            "the list is empty",
        ),
        (
            "domains: ['*.example.com']",
            "server.tls.acme.domains[0]",
            "wildcard",
        ),
        (
            "domains: [10.0.0.1]",
            "server.tls.acme.domains[0]",
            "IP address",
        ),
        (
            "domains: [localhost]",
            "server.tls.acme.domains[0]",
            "not a DNS name",
        ),
        (
            "domains: [a.example.com, A.example.com]",
            "server.tls.acme.domains[1]",
            "twice",
        ),
        (
            "domains: [a.example.com], email: ops",
            "server.tls.acme.email",
            "not an email",
        ),
        (
            "domains: [a.example.com], directory: 'http://ca/dir'",
            "server.tls.acme.directory",
            "https://",
        ),
        (
            "domains: [a.example.com], state_dir: acme",
            "server.tls.acme.state_dir",
            "absolute",
        ),
        (
            "domains: [a.example.com], directory_ca: /nonexistent.pem",
            "server.tls.acme.directory_ca",
            "cannot read",
        ),
        (
            "domains: [a.example.com], renew_before: 0s",
            "server.tls.acme.renew_before",
            "positive",
        ),
        (
            "domains: [a.example.com], wildcard: true",
            "server.tls.acme",
            "unknown field `wildcard`",
        ),
    ] {
        assert_err(&acme(keys), at, says);
    }
    assert_err(
        &with_tls(&format!("listen: ['127.0.0.1:8443'], cert: {cert}, key: {key}, acme: {{ domains: [a.example.com] }}")),
        "server.tls.acme",
        "remove cert and key, or remove acme",
    );
    assert_err(
        &with_tls("listen: ['127.0.0.1:8443']"),
        "server.tls",
        "or acme",
    );
    assert_err(
        &format!("server:\n  listen: []\n  tls: {{ listen: ['127.0.0.1:8443'], acme: {{ domains: [a.example.com] }} }}\n{MINIMAL}"),
        "server.tls.acme",
        "HTTP-01",
    );
}
