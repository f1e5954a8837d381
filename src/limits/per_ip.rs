//! Open connections per client address, for `server.max_connections_per_ip`.
//!
//! The counts are split over locks by address ([`IpShards`]); an address leaves the table
//! when its last connection closes, so it never holds more entries than there are open
//! connections.

use crate::limits::ip_shards::IpShards;
use std::net::IpAddr;
use std::sync::Arc;

/// Open connections by client address.
#[derive(Debug, Default)]
pub(crate) struct PerIp(IpShards<u32>);

impl PerIp {
    /// Counts a connection from `ip` unless it already has `limit` open; the count lasts as
    /// long as the returned guard.
    pub(crate) fn enter(self: &Arc<Self>, ip: IpAddr, limit: u32) -> Option<PerIpGuard> {
        let mut shard = self.0.shard(ip);
        let open = shard.get(&ip).copied().unwrap_or(0);
        if open >= limit {
            return None;
        }
        shard.insert(ip, open + 1);
        Some(PerIpGuard {
            table: Arc::clone(self),
            ip,
        })
    }
}

/// One connection counted against its address.
#[derive(Debug)]
pub(crate) struct PerIpGuard {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl Drop for PerIpGuard {
    fn drop(&mut self) {
        let mut shard = self.table.0.shard(self.ip);
        if let Some(open) = shard.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                shard.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_is_limited_on_its_own_and_forgotten_when_idle() {
        let table = Arc::new(PerIp::default());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = table.enter(a, 2).unwrap();
        let second = table.enter(a, 2).unwrap();
        assert!(table.enter(a, 2).is_none());
        assert!(table.enter(b, 2).is_some());
        drop(first);
        assert_eq!(table.0.shard(a).get(&a), Some(&1));
        let third = table.enter(a, 2).unwrap();
        drop((second, third));
        assert!(table.0.is_empty());
    }
}
