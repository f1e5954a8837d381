//! How many client connections are served at once: `server.max_connections`, lowered to what
//! the open-file limit allows, and with `server.when_full: queue` the permits that Pingora's
//! accept loops take before they accept (patches/pingora/0025).

use crate::config::WhenFull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Semaphore;

/// Descriptors kept for everything but client and backend connections: listeners, log
/// files, health probes, name lookups, the metrics listener and its scrapes.
pub(crate) const FD_RESERVE: u64 = 100;

/// Descriptors a client connection may cost: its own, a backend connection in use, and one
/// idle in the pool. The pool holds as many connections as there may be clients (a burst
/// then finds its connections again): at 8,000 clients it was seen holding 5,000 idle beside
/// the 8,000 in use, so a budget of two descriptors per connection ran out.
pub(crate) const DESCRIPTORS_PER_CONNECTION: u64 = 3;

/// The connection limit in force.
pub(crate) struct Slots {
    /// The most connections the open-file limit allows: each client connection may hold a
    /// backend connection in use beside it, and as many again may wait idle in the pool.
    fd_cap: usize,
    /// With `when_full: queue`, the permits of the accept loops.
    queue: Option<Arc<Semaphore>>,
    /// The permits `queue` holds in all, given out or not; changed under `resizing` only.
    permits: AtomicUsize,
    resizing: Mutex<()>,
}

impl Slots {
    /// The limit for `max_connections` under an open-file limit of `fd_limit`.
    pub(crate) fn new(fd_limit: u64, max_connections: usize, when_full: WhenFull) -> Self {
        let fd_cap = fd_limit.saturating_sub(FD_RESERVE) / DESCRIPTORS_PER_CONNECTION;
        let fd_cap = usize::try_from(fd_cap).unwrap_or(usize::MAX).max(1);
        let permits = max_connections.min(fd_cap);
        let queue = match when_full {
            WhenFull::Queue => Some(Arc::new(Semaphore::new(permits))),
            WhenFull::Reject => None,
        };
        Self {
            fd_cap,
            queue,
            permits: AtomicUsize::new(permits),
            resizing: Mutex::new(()),
        }
    }

    /// The most connections served at once for a configured `max_connections`.
    pub(crate) fn limit(&self, max_connections: usize) -> usize {
        max_connections.min(self.fd_cap)
    }

    /// True while clients may be waiting in the listen backlog: every permit is taken.
    pub(crate) fn full(&self) -> bool {
        self.queue
            .as_ref()
            .is_some_and(|queue| queue.available_permits() == 0)
    }

    /// The permits for Pingora's accept loops, with `when_full: queue`.
    pub(crate) fn queue(&self) -> Option<Arc<Semaphore>> {
        self.queue.clone()
    }

    /// Brings the permits to the limit of a reloaded `max_connections`; a load and a
    /// comparison while it has not changed. Permits given out cannot be taken back: a
    /// lowered limit takes the free ones now and the rest as their connections end, and
    /// until then the count check refuses what is over it.
    pub(crate) fn follow(&self, max_connections: usize) {
        let Some(queue) = &self.queue else {
            return;
        };
        let want = self.limit(max_connections);
        if self.permits.load(Ordering::Acquire) == want {
            return;
        }
        // Only after a reload changed the limit: resizing is rare, and two connections must
        // not both add the difference.
        let _resizing = self.resizing.lock().unwrap_or_else(PoisonError::into_inner);
        let had = self.permits.load(Ordering::Acquire);
        let now = if want > had {
            queue.add_permits(want - had);
            want
        } else {
            had - queue.forget_permits(had - want)
        };
        self.permits.store(now, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_file_limit_caps_the_connections() {
        let slots = Slots::new(3100, 16384, WhenFull::Reject);
        assert_eq!(slots.limit(16384), 1000);
        assert_eq!(slots.limit(500), 500);
        assert!(slots.queue().is_none());
        assert_eq!(Slots::new(50, 10, WhenFull::Reject).limit(10), 1);
        assert_eq!(
            Slots::new(1 << 20, 16384, WhenFull::Reject).limit(16384),
            16384
        );
    }

    #[test]
    fn the_queue_follows_a_reloaded_limit() {
        let slots = Slots::new(1600, 300, WhenFull::Queue);
        let queue = slots.queue().unwrap();
        assert_eq!(queue.available_permits(), 300);
        assert!(!slots.full());
        slots.follow(400);
        assert_eq!(queue.available_permits(), 400);
        slots.follow(100_000);
        assert_eq!(
            queue.available_permits(),
            500,
            "capped by the open-file limit"
        );
        let held = Arc::clone(&queue).try_acquire_many_owned(450).unwrap();
        slots.follow(100);
        assert_eq!(
            queue.available_permits(),
            0,
            "the free permits went at once"
        );
        assert!(slots.full());
        drop(held);
        slots.follow(100);
        assert_eq!(queue.available_permits(), 100, "the rest as they came back");
    }
}
