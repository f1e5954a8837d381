//! A table keyed by client address, split over locks by address, so that worker threads
//! serving different clients rarely wait for each other; no lock covers the whole table.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};

const SHARDS: usize = 64;

/// Values of type `T` by client address.
#[derive(Debug)]
pub(crate) struct IpShards<T> {
    shards: Vec<Mutex<HashMap<IpAddr, T>>>,
    hasher: RandomState,
}

impl<T> Default for IpShards<T> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl<T> IpShards<T> {
    /// The part of the table that holds `ip`, locked. Its users leave every entry
    /// consistent before they unlock, so a panic elsewhere does not spoil it.
    pub(crate) fn shard(&self, ip: IpAddr) -> MutexGuard<'_, HashMap<IpAddr, T>> {
        let index = self.hasher.hash_one(ip) as usize % SHARDS;
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Entries in the whole table, shard by shard (not a snapshot).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// Whether the table holds no entry.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many shards the table has.
    #[cfg(test)]
    pub(crate) const SHARDS: usize = SHARDS;
}
