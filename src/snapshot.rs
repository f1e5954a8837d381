//! The immutable runtime state built from one [`Config`]: what every request reads.
//!
//! A request holds an `Arc` of the snapshot it started on, so it finishes on that state even
//! if a newer one is published meanwhile.

use crate::balance::Pool;
use crate::config::Config;
use crate::route::Router;

/// Everything the request path needs, prepared once per config.
pub struct Snapshot {
    /// The validated config.
    pub config: Config,
    /// Route lookup.
    pub router: Router,
    /// One pool per upstream, at the same index as in [`Config::upstreams`].
    pub pools: Vec<Pool>,
}

impl Snapshot {
    /// Prepares the router and the server pools.
    pub fn new(config: Config) -> Self {
        Self {
            router: Router::new(&config.routes),
            pools: config.upstreams.iter().map(Pool::new).collect(),
            config,
        }
    }
}
