//! What is known about one server while it runs: requests in flight, active health, passive
//! failures. The request path reads it with atomic loads; only failures and probes write.

use super::latency::PeakEwma;
use super::traffic::Traffic;
use crate::sync::inflight::Inflight;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The live state of one server; a reload keeps it for servers that stay.
#[derive(Debug, Default)]
pub(crate) struct ServerState {
    /// Requests being served by the server.
    pub inflight: Inflight,
    /// Active health, as the last probes judged it.
    pub health: ActiveHealth,
    /// Failures seen by requests.
    pub passive: PassiveFailures,
    /// Response time, for `least_time`.
    pub latency: PeakEwma,
    /// Answers, for the status page.
    pub traffic: Traffic,
}

impl ServerState {
    /// The state of a server that joins a running pool: with a health check, it gets no
    /// request before its first probe passes.
    pub(crate) fn joining(checked: bool) -> Self {
        Self {
            health: if checked {
                ActiveHealth::pending()
            } else {
                ActiveHealth::default()
            },
            ..Self::default()
        }
    }

    /// Whether new requests may go to the server.
    pub(crate) fn ready(&self) -> bool {
        self.health.is_up() && !self.passive.is_failed()
    }
}

/// Up or down according to probes, with rise/fall hysteresis.
#[derive(Debug)]
pub(crate) struct ActiveHealth {
    up: AtomicBool,
    streak: Mutex<Streak>,
    last_probe: Mutex<Option<String>>,
    /// When probes last changed the state, in seconds since the epoch; 0 before.
    changed_at: AtomicU64,
}

#[derive(Debug, Default)]
struct Streak {
    probed: bool,
    last_ok: bool,
    length: u32,
}

impl Default for PassiveFailures {
    fn default() -> Self {
        Self::new()
    }
}

impl Default for ActiveHealth {
    fn default() -> Self {
        Self {
            up: AtomicBool::new(true),
            streak: Mutex::new(Streak::default()),
            last_probe: Mutex::new(None),
            changed_at: AtomicU64::new(0),
        }
    }
}

impl ActiveHealth {
    /// Down until a first probe passes.
    fn pending() -> Self {
        Self {
            up: AtomicBool::new(false),
            ..Self::default()
        }
    }

    /// Whether the server is up.
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// When probes last changed the state (seconds since the epoch), if they have.
    pub(crate) fn changed_at(&self) -> Option<u64> {
        Some(self.changed_at.load(Ordering::Relaxed)).filter(|&t| t > 0)
    }

    /// The last probe's result, `ok` or why it failed; None before the first probe.
    pub(crate) fn last_probe(&self) -> Option<String> {
        self.last_probe
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records what the last probe found.
    pub(crate) fn set_last_probe(&self, result: &Result<(), impl std::fmt::Display>) {
        let text = match result {
            Ok(()) => "ok".to_string(),
            Err(why) => why.to_string(),
        };
        *self.last_probe.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
    }

    /// Records a probe result; returns the new state if it changed. The first probe decides
    /// at once, so a server that is down at start is never offered traffic; after that it
    /// takes `fall` failures or `rise` successes in a row to change.
    pub(crate) fn observe(&self, ok: bool, rise: u32, fall: u32) -> Option<bool> {
        let mut streak = self.streak.lock().unwrap_or_else(|e| e.into_inner());
        let up = self.is_up();
        let first = !streak.probed;
        streak.probed = true;
        if first || streak.last_ok != ok {
            streak.last_ok = ok;
            streak.length = 0;
        }
        streak.length += 1;
        let flip = if ok {
            !up && (first || streak.length >= rise)
        } else {
            up && (first || streak.length >= fall)
        };
        if flip {
            self.up.store(ok, Ordering::Relaxed);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            self.changed_at.store(now, Ordering::Relaxed);
            return Some(ok);
        }
        None
    }
}

/// nginx's `max_fails`/`fail_timeout`: that many failures within `fail_timeout` take a server
/// out for `fail_timeout`; then it is tried again. The two settings come with each failure, from
/// the config in force, so a reload that changes them applies at once.
#[derive(Debug)]
pub(crate) struct PassiveFailures {
    epoch: Instant,
    /// Milliseconds since `epoch` until which the server is out; 0 when it is in.
    failed_until: AtomicU64,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    count: u32,
}

impl PassiveFailures {
    /// No failures yet.
    pub(crate) fn new() -> Self {
        let now = Instant::now();
        Self {
            epoch: now,
            failed_until: AtomicU64::new(0),
            window: Mutex::new(Window {
                started: now,
                count: 0,
            }),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether the server is out because of recent failures.
    pub(crate) fn is_failed(&self) -> bool {
        let until = self.failed_until.load(Ordering::Relaxed);
        until != 0 && self.now_ms() < until
    }

    /// Records a failed attempt; returns true if it takes the server out. `max_fails: 0`
    /// turns passive checks off.
    pub(crate) fn record_failure(&self, max_fails: u32, fail_timeout: Duration) -> bool {
        if max_fails == 0 || self.is_failed() {
            return false;
        }
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if window.started.elapsed() > fail_timeout {
            window.started = Instant::now();
            window.count = 0;
        }
        window.count += 1;
        if window.count < max_fails {
            return false;
        }
        window.count = 0;
        let until = self.now_ms() + fail_timeout.as_millis() as u64;
        self.failed_until.store(until.max(1), Ordering::Relaxed);
        true
    }

    /// Ends a failure period early: the health check saw the server come back.
    pub(crate) fn clear(&self) {
        self.failed_until.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_probe_decides_then_fall_and_rise_apply() {
        let health = ActiveHealth::default();
        assert!(health.is_up());
        assert_eq!(
            health.observe(false, 2, 3),
            Some(false),
            "down at first probe"
        );
        assert_eq!(health.observe(true, 2, 3), None);
        assert_eq!(health.observe(true, 2, 3), Some(true), "rise 2");
        assert_eq!(health.observe(false, 2, 3), None);
        assert_eq!(health.observe(false, 2, 3), None);
        assert_eq!(health.observe(true, 2, 3), None, "streak broken");
        assert_eq!(health.observe(false, 2, 3), None);
        assert_eq!(health.observe(false, 2, 3), None);
        assert_eq!(health.observe(false, 2, 3), Some(false), "fall 3");
    }

    #[test]
    fn a_healthy_first_probe_changes_nothing() {
        let health = ActiveHealth::default();
        assert_eq!(health.observe(true, 2, 3), None);
        assert!(health.is_up());
    }

    #[test]
    fn max_fails_within_fail_timeout_takes_the_server_out() {
        let passive = PassiveFailures::new();
        let fail = || passive.record_failure(3, Duration::from_millis(200));
        assert!(!fail());
        assert!(!fail());
        assert!(fail());
        assert!(passive.is_failed());
        std::thread::sleep(Duration::from_millis(250));
        assert!(!passive.is_failed(), "tried again after fail_timeout");
        assert!(!fail());
        assert!(!fail());
        assert!(fail());
        passive.clear();
        assert!(!passive.is_failed(), "cleared");
    }

    #[test]
    fn failures_spread_wider_than_fail_timeout_do_not_add_up() {
        let passive = PassiveFailures::new();
        assert!(!passive.record_failure(2, Duration::from_millis(100)));
        std::thread::sleep(Duration::from_millis(150));
        assert!(!passive.record_failure(2, Duration::from_millis(100)));
        assert!(!passive.is_failed());
    }

    #[test]
    fn max_fails_zero_never_fails() {
        let passive = PassiveFailures::new();
        for _ in 0..10 {
            assert!(!passive.record_failure(0, Duration::from_secs(10)));
        }
        assert!(!passive.is_failed());
    }
}
