//! Counting requests in flight, so that shutdown can wait for exactly them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A shared count of requests being served.
#[derive(Debug, Clone, Default)]
pub(crate) struct Inflight(Arc<AtomicUsize>);

impl Inflight {
    /// Counts one request until the returned guard is dropped.
    pub(crate) fn enter(&self) -> InflightGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        InflightGuard(Arc::clone(&self.0))
    }

    /// Requests being served now.
    pub(crate) fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// Releases its request's count when dropped, on every path out of a request, errors included.
#[derive(Debug)]
pub(crate) struct InflightGuard(Arc<AtomicUsize>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_while_alive() {
        let inflight = Inflight::default();
        let a = inflight.enter();
        let b = inflight.enter();
        assert_eq!(inflight.count(), 2);
        drop(a);
        assert_eq!(inflight.count(), 1);
        drop(b);
        assert_eq!(inflight.count(), 0);
    }
}
