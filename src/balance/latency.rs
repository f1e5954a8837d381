//! A server's response time as `least_time` sees it: a peak EWMA (Finagle's and Linkerd's)
//! of the time to the response header, that decays toward zero while no sample arrives.
//!
//! A slower answer than the estimate replaces it at once, so a server that got slow is
//! found by its next answer; faster answers pull it down over the decay period. With no
//! answers the estimate fades, so a server passed over for being slow is tried again within
//! a few decay periods and can win its share back once it is fast.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// No sample yet.
const NONE: u64 = u64::MAX;

/// The estimate of one server, shared by every thread that sends to it. Updates race
/// without a lock: a lost sample among many does not move a decaying average.
#[derive(Debug)]
pub(crate) struct PeakEwma {
    epoch: Instant,
    /// The estimate in seconds (`f64` bits), or [`NONE`].
    estimate: AtomicU64,
    /// Nanoseconds after `epoch` of the last sample.
    updated: AtomicU64,
}

impl Default for PeakEwma {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            estimate: AtomicU64::new(NONE),
            updated: AtomicU64::new(0),
        }
    }
}

impl PeakEwma {
    /// Adds an answer that took `rtt`, seen at `now`.
    pub(crate) fn observe(&self, rtt: Duration, now: Instant, decay: Duration) {
        let rtt = rtt.as_secs_f64();
        let next = match self.sample(now, decay) {
            Some((estimate, weight)) if rtt < estimate => estimate * weight + rtt * (1.0 - weight),
            _ => rtt,
        };
        self.estimate.store(next.to_bits(), Ordering::Relaxed);
        self.updated.store(self.nanos(now), Ordering::Relaxed);
    }

    /// The estimate at `now`, in seconds, faded by the time since the last sample; `None`
    /// before the first.
    pub(crate) fn cost(&self, now: Instant, decay: Duration) -> Option<f64> {
        self.sample(now, decay)
            .map(|(estimate, weight)| estimate * weight)
    }

    /// The last estimate and `e^(-elapsed / decay)`, the weight it keeps at `now`.
    fn sample(&self, now: Instant, decay: Duration) -> Option<(f64, f64)> {
        let bits = self.estimate.load(Ordering::Relaxed);
        if bits == NONE {
            return None;
        }
        let elapsed = self
            .nanos(now)
            .saturating_sub(self.updated.load(Ordering::Relaxed));
        let weight = (-(elapsed as f64) / decay.as_nanos().max(1) as f64).exp();
        Some((f64::from_bits(bits), weight))
    }

    fn nanos(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_nanos() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECAY: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_slower_answer_is_taken_at_once_and_faster_ones_pull_it_down() {
        let ewma = PeakEwma::default();
        let t0 = Instant::now();
        assert_eq!(ewma.cost(t0, DECAY), None);
        ewma.observe(2 * MS, t0, DECAY);
        ewma.observe(40 * MS, t0 + MS, DECAY);
        let peak = ewma.cost(t0 + MS, DECAY).unwrap();
        assert!((peak - 0.040).abs() < 1e-6, "{peak}");
        // Fast answers every 10 ms for a second bring it near their time.
        let mut now = t0 + MS;
        for _ in 0..100 {
            now += 10 * MS;
            ewma.observe(2 * MS, now, DECAY);
        }
        let settled = ewma.cost(now, DECAY).unwrap();
        assert!(settled < 0.016, "{settled}");
        assert!(settled > 0.002, "{settled}");
    }

    #[test]
    fn without_answers_the_estimate_fades() {
        let ewma = PeakEwma::default();
        let t0 = Instant::now();
        ewma.observe(40 * MS, t0, DECAY);
        let later = ewma.cost(t0 + 3 * DECAY, DECAY).unwrap();
        assert!((later - 0.040 * (-3f64).exp()).abs() < 1e-6, "{later}");
        // A fast answer after the fade counts almost whole.
        ewma.observe(MS, t0 + 5 * DECAY, DECAY);
        let fast = ewma.cost(t0 + 5 * DECAY, DECAY).unwrap();
        assert!(fast < 0.0013, "{fast}");
    }
}
