//! What requests read: the immutable snapshot built from a config (router, pools, metric
//! children, rate limiters), and the live one, swapped atomically on reload.

pub(crate) mod reloads;
pub(crate) mod router;
pub(crate) mod snapshot;
