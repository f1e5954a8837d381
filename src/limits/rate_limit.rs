//! Per-client request rates of a route: a token bucket per client address.
//!
//! Each address may make `burst` requests at once, refilled at `requests_per_second`. The
//! buckets are split over locks by address ([`IpShards`]), and a shard drops the buckets that
//! have refilled (idle clients) once it holds many, so a stream of new addresses cannot grow
//! it without bound.

use crate::config::RateLimit;
use crate::limits::ip_shards::IpShards;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
/// Buckets a shard holds before it looks for idle ones to drop.
const SHARD_SOFT_CAP: usize = 1024;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// The buckets of one route.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    settings: RateLimit,
    buckets: IpShards<Bucket>,
    /// Requests refused so far, for the status page.
    refused: AtomicU64,
}

impl RateLimiter {
    /// An empty limiter with these settings.
    pub(crate) fn new(settings: RateLimit) -> Self {
        Self {
            settings,
            buckets: IpShards::default(),
            refused: AtomicU64::new(0),
        }
    }

    /// Requests refused so far.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The settings it enforces.
    pub(crate) fn settings(&self) -> RateLimit {
        self.settings
    }

    /// Takes a token for a request from `client` at `now`; when there is none, how long
    /// until there is.
    pub(crate) fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let RateLimit {
            requests_per_second: rate,
            burst,
        } = self.settings;
        let burst = f64::from(burst);
        let mut shard = self.buckets.shard(client);
        if shard.len() >= SHARD_SOFT_CAP && !shard.contains_key(&client) {
            let refill = Duration::from_secs_f64(burst / rate);
            shard.retain(|_, b| now.saturating_duration_since(b.updated) < refill);
        }
        let bucket = shard.entry(client).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: f64, burst: u32) -> RateLimiter {
        RateLimiter::new(RateLimit {
            requests_per_second: rate,
            burst,
        })
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let limiter = limiter(10.0, 5);
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let start = Instant::now();
        for _ in 0..5 {
            assert_eq!(limiter.check(client, start), Ok(()));
        }
        let wait = limiter.check(client, start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        assert!(limiter
            .check(client, start + Duration::from_millis(50))
            .is_err());
        assert_eq!(
            limiter.check(client, start + Duration::from_millis(100)),
            Ok(())
        );
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(
            limiter.check(other, start),
            Ok(()),
            "each client has its own bucket"
        );
        let later = start + Duration::from_secs(60);
        for _ in 0..5 {
            assert_eq!(
                limiter.check(client, later),
                Ok(()),
                "refilled up to the burst"
            );
        }
        assert!(limiter.check(client, later).is_err());
    }

    #[test]
    fn idle_clients_are_forgotten_when_a_shard_fills() {
        let limiter = limiter(1.0, 1);
        let start = Instant::now();
        let shards = IpShards::<Bucket>::SHARDS;
        for i in 0..(shards * SHARD_SOFT_CAP * 2) as u32 {
            let client = IpAddr::from(i.to_be_bytes());
            let _ = limiter.check(client, start + Duration::from_millis(u64::from(i)));
        }
        let held = limiter.buckets.len();
        assert!(held <= shards * (SHARD_SOFT_CAP + 1), "{held} buckets held");
    }
}
