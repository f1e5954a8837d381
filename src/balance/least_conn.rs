//! Least connections: the server with the fewest requests in flight relative to its weight.
//!
//! The counts are the per-server [`Inflight`] counters the proxy holds a guard on for each
//! request, so they are exact: every request releases its count once, on every path.

use crate::sync::inflight::Inflight;
use pingora::lb::selection::BackendIter;
use pingora::lb::Backend;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The selector: backends in file order with their counters.
pub(super) struct LeastConn {
    backends: Box<[Backend]>,
    inflight: Box<[Inflight]>,
    cursor: AtomicUsize,
}

impl LeastConn {
    /// `inflight[i]` counts the requests of `backends[i]`.
    pub(super) fn new(backends: Vec<Backend>, inflight: Vec<Inflight>) -> Self {
        debug_assert_eq!(backends.len(), inflight.len());
        Self {
            backends: backends.into_boxed_slice(),
            inflight: inflight.into_boxed_slice(),
            cursor: AtomicUsize::new(0),
        }
    }

    /// Backends from least to most loaded. Equal loads are ordered from a start position that
    /// moves on each call, so ties rotate instead of always favouring the first server.
    pub(super) fn iter(self: &Arc<Self>) -> LeastConnIter {
        let n = self.backends.len();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let loads: Vec<u64> = self.inflight.iter().map(|c| c.count() as u64).collect();
        let weight = |i: usize| self.backends[i].weight.max(1) as u64;
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| {
            // loads[a] / weight(a) against loads[b] / weight(b), without division.
            (loads[a] * weight(b))
                .cmp(&(loads[b] * weight(a)))
                .then_with(|| rotated(a, start, n).cmp(&rotated(b, start, n)))
        });
        LeastConnIter {
            selector: Arc::clone(self),
            order,
            next: 0,
        }
    }
}

fn rotated(i: usize, start: usize, n: usize) -> usize {
    (i + n - start % n) % n
}

/// Yields backends by increasing load.
pub(super) struct LeastConnIter {
    selector: Arc<LeastConn>,
    order: Vec<usize>,
    next: usize,
}

impl BackendIter for LeastConnIter {
    fn next(&mut self) -> Option<&Backend> {
        let index = *self.order.get(self.next)?;
        self.next += 1;
        Some(&self.selector.backends[index])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(weights: &[usize]) -> (Arc<LeastConn>, Vec<Inflight>) {
        let backends = weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let mut b = Backend::new(&format!("127.0.0.1:{}", 9001 + i)).unwrap();
                b.weight = *w;
                b
            })
            .collect();
        let counters: Vec<Inflight> = weights.iter().map(|_| Inflight::default()).collect();
        (
            Arc::new(LeastConn::new(backends, counters.clone())),
            counters,
        )
    }

    fn first(sel: &Arc<LeastConn>) -> u16 {
        sel.iter().next().unwrap().addr.as_inet().unwrap().port()
    }

    #[test]
    fn the_least_loaded_server_goes_first() {
        let (sel, counters) = selector(&[1, 1, 1]);
        let _a = counters[0].enter();
        let _b = counters[0].enter();
        let _c = counters[2].enter();
        assert_eq!(first(&sel), 9002);
        let mut it = sel.iter();
        let order: Vec<u16> =
            std::iter::from_fn(|| it.next().map(|b| b.addr.as_inet().unwrap().port())).collect();
        assert_eq!(order, [9002, 9003, 9001]);
    }

    #[test]
    fn load_is_relative_to_weight() {
        let (sel, counters) = selector(&[1, 3]);
        // 1 of weight 1 is heavier than 2 of weight 3.
        let _a = counters[0].enter();
        let _b = counters[1].enter();
        let _c = counters[1].enter();
        assert_eq!(first(&sel), 9002);
        let _d = counters[1].enter();
        // 1/1 == 3/3: a tie, so both get turns.
        let firsts: std::collections::HashSet<u16> = (0..4).map(|_| first(&sel)).collect();
        assert_eq!(firsts.len(), 2);
    }

    #[test]
    fn ties_rotate_instead_of_favouring_the_first() {
        let (sel, _) = selector(&[1, 1, 1]);
        let firsts: Vec<u16> = (0..6).map(|_| first(&sel)).collect();
        assert_eq!(firsts, [9001, 9002, 9003, 9001, 9002, 9003]);
    }

    #[test]
    fn a_single_server_is_always_chosen() {
        let (sel, counters) = selector(&[1]);
        let _a = counters[0].enter();
        assert_eq!(first(&sel), 9001);
    }
}
