//! Smooth weighted round robin, the algorithm of nginx's `upstream` block.
//!
//! Pingora's own `RoundRobin` repeats each backend `weight` times in a row (5:1:1 gives
//! `a a a a a b c`). nginx interleaves them (`a a b a c a a`), which spreads a heavy server's
//! share evenly over time. One full cycle of nginx's algorithm is computed when the backend
//! set changes; requests then walk it with an atomic cursor, so the hot path takes no lock.

use pingora::lb::selection::BackendIter;
use pingora::lb::Backend;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The selector over backends in file order, which decides who goes first among equal
/// weights.
pub(super) struct SmoothWeighted {
    backends: Box<[Backend]>,
    schedule: Box<[u16]>,
    cursor: AtomicUsize,
}

impl SmoothWeighted {
    /// A schedule for `backends`, given in file order.
    pub(super) fn new(backends: Vec<Backend>) -> Self {
        let weights: Vec<i64> = backends.iter().map(|b| b.weight as i64).collect();
        Self {
            schedule: smooth_schedule(&weights).into_boxed_slice(),
            backends: backends.into_boxed_slice(),
            cursor: AtomicUsize::new(0),
        }
    }
}

/// One cycle of nginx's smooth weighted round robin: every step each server gains its weight,
/// the one with the most is picked and pays back the total. Ties go to the earlier server.
fn smooth_schedule(weights: &[i64]) -> Vec<u16> {
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    (0..total)
        .map(|_| {
            let mut best = 0;
            for (i, w) in weights.iter().enumerate() {
                current[i] += w;
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            best as u16
        })
        .collect()
}

impl SmoothWeighted {
    /// The next scheduled backend, then the others.
    pub(super) fn iter(self: &Arc<Self>) -> SmoothIter {
        SmoothIter {
            selector: Arc::clone(self),
            start: self.cursor.fetch_add(1, Ordering::Relaxed),
            step: 0,
        }
    }
}

/// Yields the scheduled backend first, then every other backend once, in order, so a caller
/// that skips unusable backends still finds each candidate within `backends.len()` steps.
pub(super) struct SmoothIter {
    selector: Arc<SmoothWeighted>,
    start: usize,
    step: usize,
}

impl BackendIter for SmoothIter {
    fn next(&mut self) -> Option<&Backend> {
        let sel = &*self.selector;
        let n = sel.backends.len();
        if n == 0 || self.step >= n {
            return None;
        }
        let first = sel.schedule[self.start % sel.schedule.len()] as usize;
        let index = (first + self.step) % n;
        self.step += 1;
        Some(&sel.backends[index])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(weights: &[i64]) -> String {
        smooth_schedule(weights)
            .into_iter()
            .map(|i| (b'a' + i as u8) as char)
            .collect()
    }

    #[test]
    fn heavy_server_is_interleaved_not_repeated() {
        assert_eq!(names(&[5, 1, 1]), "aabacaa");
    }

    #[test]
    fn one_two_three_matches_nginx() {
        assert_eq!(names(&[1, 2, 3]), "cbacbc");
    }

    #[test]
    fn equal_weights_rotate_in_file_order() {
        assert_eq!(names(&[1, 1, 1]), "abc");
    }

    #[test]
    fn each_server_gets_exactly_its_weight_per_cycle() {
        let weights = [7, 1, 3, 13, 2];
        let schedule = smooth_schedule(&weights);
        assert_eq!(schedule.len(), 26);
        for (i, w) in weights.iter().enumerate() {
            let count = schedule.iter().filter(|&&s| s as usize == i).count();
            assert_eq!(count as i64, *w, "server {i}");
        }
    }

    fn backend(port: u16, weight: usize) -> Backend {
        let mut b = Backend::new(&format!("127.0.0.1:{port}")).unwrap();
        b.weight = weight;
        b
    }

    fn port(b: &Backend) -> u16 {
        b.addr.as_inet().unwrap().port()
    }

    #[test]
    fn equal_weights_follow_the_given_order() {
        let sel = Arc::new(SmoothWeighted::new(vec![
            backend(9003, 1),
            backend(9001, 1),
            backend(9002, 1),
        ]));
        let firsts: Vec<u16> = (0..6).map(|_| port(sel.iter().next().unwrap())).collect();
        assert_eq!(firsts, [9003, 9001, 9002, 9003, 9001, 9002]);
    }

    #[test]
    fn iterator_visits_every_backend_once() {
        let sel = Arc::new(SmoothWeighted::new(vec![
            backend(9001, 5),
            backend(9002, 1),
            backend(9003, 1),
        ]));
        for _ in 0..7 {
            let mut it = sel.iter();
            let mut seen = Vec::new();
            while let Some(b) = it.next() {
                seen.push(port(b));
            }
            seen.sort();
            assert_eq!(seen, [9001, 9002, 9003]);
        }
    }

    #[test]
    fn a_single_server_is_always_chosen() {
        let sel = Arc::new(SmoothWeighted::new(vec![backend(9001, 3)]));
        for _ in 0..5 {
            assert_eq!(port(sel.iter().next().unwrap()), 9001);
        }
    }
}
