//! The [`BackendSelection`] of every upstream: one of the `balance:` algorithms.
//!
//! Pingora's `LoadBalancer` is generic over one selection type; making that type an enum keeps
//! one pool type for all upstreams. Ketama hashing and weighted random are Pingora's own;
//! `least_time` draws its two candidates by weighted random and compares them in the pool.

use super::least_conn::{LeastConn, LeastConnIter};
use super::smooth::{SmoothIter, SmoothWeighted};
use super::Addresses;
use crate::config::Balance;
use crate::sync::inflight::Inflight;
use pingora::lb::selection::consistent::{KetamaHashing, OwnedNodeIterator};
use pingora::lb::selection::weighted::WeightedIterator;
use pingora::lb::selection::{algorithms, BackendIter, BackendSelection, Random};
use pingora::lb::Backend;
use std::collections::BTreeSet;
use std::sync::Arc;

/// What a selector is built from, besides the backend set: kept by the `LoadBalancer` and
/// reused on every rebuild, so the per-server counters outlive any one selector.
pub(super) struct SelectorConfig {
    /// The algorithm.
    pub balance: Balance,
    /// Where each server is now, to map backends to servers.
    pub addresses: Arc<Addresses>,
    /// Every server's in-flight counter, by server index.
    pub inflight: Vec<Inflight>,
}

/// One upstream's selection algorithm over its current backends.
pub(super) enum Selector {
    /// Smooth weighted round robin.
    RoundRobin(Arc<SmoothWeighted>),
    /// Fewest in flight per unit of weight.
    LeastConn(Arc<LeastConn>),
    /// Weighted Ketama consistent hashing of a request key.
    Hash(Arc<KetamaHashing>),
    /// Weighted random.
    Random(Arc<Random>),
}

/// The candidates for one request, best first.
pub(super) enum SelectorIter {
    /// See [`Selector::RoundRobin`].
    RoundRobin(SmoothIter),
    /// See [`Selector::LeastConn`].
    LeastConn(LeastConnIter),
    /// See [`Selector::Hash`].
    Hash(OwnedNodeIterator),
    /// See [`Selector::Random`].
    Random(WeightedIterator<algorithms::Random>),
}

impl BackendSelection for Selector {
    type Iter = SelectorIter;
    type Config = SelectorConfig;

    fn build_with_config(backends: &BTreeSet<Backend>, config: &SelectorConfig) -> Self {
        let addresses = &config.addresses;
        let mut ordered: Vec<(usize, Backend)> = backends
            .iter()
            .filter_map(|b| Some((addresses.index_of(b)?, b.clone())))
            .collect();
        ordered.sort_by_key(|(i, _)| *i);
        match config.balance {
            Balance::RoundRobin => Self::RoundRobin(Arc::new(SmoothWeighted::new(
                ordered.into_iter().map(|(_, b)| b).collect(),
            ))),
            Balance::LeastConn => {
                let (counters, backends) = ordered
                    .into_iter()
                    .map(|(i, b)| (config.inflight[i].clone(), b))
                    .unzip();
                Self::LeastConn(Arc::new(LeastConn::new(backends, counters)))
            }
            Balance::IpHash => Self::Hash(Arc::new(KetamaHashing::build(backends))),
            Balance::Random | Balance::LeastTime => Self::Random(Arc::new(Random::build(backends))),
        }
    }

    fn build(backends: &BTreeSet<Backend>) -> Self {
        Self::RoundRobin(Arc::new(SmoothWeighted::new(
            backends.iter().cloned().collect(),
        )))
    }

    fn iter(self: &Arc<Self>, key: &[u8]) -> SelectorIter {
        match &**self {
            Self::RoundRobin(s) => SelectorIter::RoundRobin(s.iter()),
            Self::LeastConn(s) => SelectorIter::LeastConn(s.iter()),
            Self::Hash(s) => SelectorIter::Hash(s.iter(key)),
            Self::Random(s) => SelectorIter::Random(s.iter(key)),
        }
    }
}

impl BackendIter for SelectorIter {
    fn next(&mut self) -> Option<&Backend> {
        match self {
            Self::RoundRobin(it) => it.next(),
            Self::LeastConn(it) => it.next(),
            Self::Hash(it) => it.next(),
            Self::Random(it) => it.next(),
        }
    }
}
