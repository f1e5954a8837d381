//! README.md's tour of the demo, run as written against the shipped conf/edgeproxy.yaml and
//! three demo backends: each command of the tour is run by bash, with the demo's ports
//! replaced by free ones, and what it prints is checked against what the tour says it shows.

mod common;

use common::{free_port, Backend, Proxy};
use std::process::Command;
use std::time::{Duration, Instant};

/// The commands of the tour's shell block, comments left out.
fn tour_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let tour = &readme[readme
        .find("## A tour of the demo")
        .expect("a tour in README.md")..];
    let block = &tour[tour.find("```sh\n").expect("a shell block in the tour") + 6..];
    let block = &block[..block.find("```").expect("the end of the block")];
    block
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Runs one command of the tour with bash, `/events` under a time limit since it streams
/// until stopped; returns what it printed.
fn run(command: &str) -> String {
    let command = if command.contains("/events") {
        format!("timeout 2 {command}")
    } else {
        command.to_string()
    };
    let out = Command::new("bash")
        .args(["-c", &command])
        .output()
        .expect("bash runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The instances a weights line printed, in order.
fn instances(output: &str) -> String {
    output
        .lines()
        .filter_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("x-instance-id: ")
                .map(|id| id.trim().to_string())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The demo as the tour sees it, and what the tour's commands showed so far.
struct Tour<'a> {
    proxy: &'a Proxy,
    /// The tour's command with the demo's ports replaced by this test's.
    local: &'a dyn Fn(&str) -> String,
    /// Instance 3, until the tour stops it.
    third: Option<Backend>,
    static_answers: Vec<String>,
}

impl Tour<'_> {
    /// Runs one command of the tour and checks that it shows what the tour says.
    fn check(&mut self, command: &str) {
        // The tour's `kill` lines would signal whatever runs on the machine: the test does
        // what they do to its own processes instead.
        let output = if command.starts_with("kill ") {
            String::new()
        } else {
            run(&(self.local)(command))
        };
        if command.starts_with("for ") {
            // Before the failover the weights show; after it, instance 3 is gone.
            let seen = instances(&output);
            if self.third.is_some() {
                assert_eq!(seen, "3 2 1 3 2 3", "{command}");
            } else {
                assert_eq!(seen.split(' ').count(), 6, "{command}: {seen}");
                assert!(!seen.contains('3'), "{command}: {seen}");
            }
        } else if command.contains("/edge-health") {
            assert!(output.starts_with("HTTP/1.1 200"), "{command}: {output}");
        } else if command.contains("/events") {
            assert!(output.contains("event: tick"), "{command}: {output}");
        } else if command.contains("/static/") {
            self.static_answers.push(output.to_ascii_lowercase());
        } else if command.contains("/metrics") {
            assert!(
                output.contains("edgeproxy_requests_total{"),
                "{command}: {output}"
            );
        } else if command.contains("/status") && command.contains("grep") {
            // The health check needs two failed probes, 2 s apart.
            let deadline = Instant::now() + Duration::from_secs(15);
            let mut output = output;
            while !output.contains("\"health\": \"down\"") {
                assert!(Instant::now() < deadline, "{command}: {output}");
                std::thread::sleep(Duration::from_millis(200));
                output = run(&(self.local)(command));
            }
        } else if command.contains("/status") {
            let status: serde_json::Value = serde_json::from_str(&output).expect("JSON status");
            assert_eq!(
                status["upstreams"][0]["servers"].as_array().map(Vec::len),
                Some(3)
            );
        } else if command.starts_with("kill $(pgrep -f") {
            // The tour stops instance 3 by its command line; this test's backends run from
            // target/, so it stops its own.
            assert!(command.contains("8003"), "{command}");
            drop(self.third.take());
        } else if command.starts_with("kill -HUP") {
            self.proxy.child.signal("HUP");
            let deadline = Instant::now() + Duration::from_secs(10);
            while !self.proxy.log().contains("reloaded") {
                assert!(Instant::now() < deadline, "no reload: {}", self.proxy.log());
                std::thread::sleep(Duration::from_millis(50));
            }
        } else {
            panic!("the tour has a command this test does not know: {command}");
        }
    }
}

#[test]
fn the_readme_tour_shows_what_it_says() {
    let mut backends: Vec<_> = ["1", "2", "3"]
        .iter()
        .map(|id| Backend::start(id))
        .collect();
    let (port, metrics_port) = (free_port(), free_port());
    let mut config =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/edgeproxy.yaml"))
            .expect("conf/edgeproxy.yaml")
            .replace("0.0.0.0:8080", &format!("127.0.0.1:{port}"))
            .replace("127.0.0.1:9091", &format!("127.0.0.1:{metrics_port}"));
    for (i, backend) in backends.iter().enumerate() {
        config = config.replace(&format!("127.0.0.1:800{}", i + 1), &backend.addr());
    }
    let proxy = Proxy::start_config(port, &config);
    let third = backends.pop();
    let local = |command: &str| {
        command
            .replace("localhost:8080", &format!("127.0.0.1:{port}"))
            .replace("127.0.0.1:9091", &format!("127.0.0.1:{metrics_port}"))
    };

    let mut tour = Tour {
        proxy: &proxy,
        local: &local,
        third,
        static_answers: Vec::new(),
    };
    let commands = tour_commands();
    for command in &commands {
        tour.check(command);
    }
    let Tour {
        third,
        static_answers,
        ..
    } = tour;
    let checked = commands.len();
    assert!(third.is_none(), "the tour shows no failover");
    assert_eq!(checked, 11, "commands in the tour");
    let [miss, hit] = static_answers.as_slice() else {
        panic!("two /static/ requests in the tour: {static_answers:?}");
    };
    assert!(miss.contains("x-cache: miss"), "{miss}");
    assert!(hit.contains("x-cache: hit"), "{hit}");
    let instance = |answer: &str| {
        answer
            .lines()
            .find_map(|l| l.strip_prefix("x-instance-id: ").map(str::to_string))
    };
    assert_eq!(instance(miss), instance(hit), "a HIT comes from the cache");
    assert!(instance(miss).is_some(), "{miss}");
}
