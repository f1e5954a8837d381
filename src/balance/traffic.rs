//! What a server answered, for the status page: counts the request path adds to (one relaxed
//! atomic add each), and a ring of per-second samples that a background sampler fills once a
//! second, off the request path.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Seconds of history kept: the status page's sparklines span five minutes.
pub(crate) const HISTORY_SECONDS: usize = 300;
/// Seconds the rates of the status page average over.
const RATE_SECONDS: usize = 60;

/// Answers of one server.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    answered: AtomicU64,
    errors: AtomicU64,
    header_micros: AtomicU64,
    history: Mutex<History>,
}

#[derive(Debug, Default)]
struct History {
    /// The totals at the last sample, to take differences from.
    last: Totals,
    samples: VecDeque<Second>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    answered: u64,
    errors: u64,
    header_micros: u64,
}

/// One second of a server's answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Second {
    /// Answers (response headers) received.
    pub answered: u64,
    /// Of which 5xx.
    pub errors: u64,
    /// Mean time to the response header, in seconds; 0 without answers.
    pub response_seconds: f64,
}

/// The rates over the last minute and the per-second history, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TrafficView {
    /// Answers a second.
    pub requests_per_second: f64,
    /// 5xx answers a second.
    pub errors_per_second: f64,
    /// Up to [`HISTORY_SECONDS`] seconds.
    pub seconds: Vec<Second>,
}

impl Traffic {
    /// Counts an answer that took `header_micros` to its header.
    pub(crate) fn answered(&self, server_error: bool, header_micros: u64) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        if server_error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.header_micros
            .fetch_add(header_micros, Ordering::Relaxed);
    }

    /// Closes the second since the last call: called once a second.
    pub(crate) fn sample(&self) {
        let now = Totals {
            answered: self.answered.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            header_micros: self.header_micros.load(Ordering::Relaxed),
        };
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let answered = now.answered.saturating_sub(history.last.answered);
        let micros = now.header_micros.saturating_sub(history.last.header_micros);
        let second = Second {
            answered,
            errors: now.errors.saturating_sub(history.last.errors),
            response_seconds: if answered == 0 {
                0.0
            } else {
                micros as f64 / answered as f64 / 1e6
            },
        };
        history.last = now;
        if history.samples.len() == HISTORY_SECONDS {
            history.samples.pop_front();
        }
        history.samples.push_back(second);
    }

    /// The rates of the last minute and the history.
    pub(crate) fn view(&self) -> TrafficView {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let seconds: Vec<Second> = history.samples.iter().copied().collect();
        let recent = &seconds[seconds.len().saturating_sub(RATE_SECONDS)..];
        let per_second = |f: fn(&Second) -> u64| {
            let n = recent.len().max(1) as f64;
            recent.iter().map(f).sum::<u64>() as f64 / n
        };
        TrafficView {
            requests_per_second: per_second(|s| s.answered),
            errors_per_second: per_second(|s| s.errors),
            seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_differences_and_the_ring_is_bounded() {
        let traffic = Traffic::default();
        for _ in 0..4 {
            traffic.answered(false, 2_000);
        }
        traffic.answered(true, 6_000);
        traffic.sample();
        traffic.sample();
        let view = traffic.view();
        assert_eq!(view.seconds.len(), 2);
        assert_eq!(view.seconds[0].answered, 5);
        assert_eq!(view.seconds[0].errors, 1);
        assert!((view.seconds[0].response_seconds - 0.0028).abs() < 1e-9);
        assert_eq!(view.seconds[1].answered, 0, "nothing in the second second");
        assert!((view.requests_per_second - 2.5).abs() < 1e-9);
        for _ in 0..HISTORY_SECONDS + 10 {
            traffic.sample();
        }
        assert_eq!(traffic.view().seconds.len(), HISTORY_SECONDS);
    }
}
