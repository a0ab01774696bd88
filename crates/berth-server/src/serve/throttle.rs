//! Throttling with token buckets: per source address (every request, before anything
//! else is done for it), per principal (once a request is authenticated), and a much
//! smaller budget of authentication failures per address (password guessing), which,
//! once spent, refuses every request from that address until it refills.
//!
//! A bucket holds `rate × burst_seconds` tokens and refills at `rate` a second; a
//! request takes one. Refusals are in the protocol's own words: the ECR API answers
//! `ThrottlingException` (400, as AWS does), IAM and STS `Throttling` (400), the OCI API
//! `429 TOOMANYREQUESTS`; every refusal says `Retry-After` (seconds until a token is
//! there). The SDKs, docker, containerd and skopeo all retry those.
//!
//! The buckets live in this node's memory: behind a load balancer, each node throttles
//! what reaches it (as distribution's and zot's limits do). Memory is bounded: past
//! [`MAX_BUCKETS`] the full (idle) buckets are dropped, and if that is not enough a new
//! key goes unthrottled rather than growing the table.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most buckets kept per kind.
pub const MAX_BUCKETS: usize = 100_000;

/// A rate: tokens a second, and how many seconds' worth a bucket holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    /// `per_second` (0: unlimited) with `burst_seconds` of it in hand.
    pub fn new(per_second: f64, burst_seconds: f64) -> Rate {
        Rate {
            per_second,
            burst: (per_second * burst_seconds).max(1.0),
        }
    }

    fn unlimited(&self) -> bool {
        self.per_second <= 0.0
    }
}

/// How the throttle is set (`rate_limit_*` in the config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub per_address: Rate,
    pub per_principal: Rate,
    pub failures_per_address: Rate,
}

impl Default for Limits {
    /// High enough that a CI fleet behind one address does not meet them (a docker
    /// push of a ten-layer image is ~40 requests), low enough that one client cannot
    /// take a node: 2000 requests a second per address and 1000 per principal, each
    /// with 10 seconds' burst; 60 authentication failures that could be guesses per
    /// address (see [`crate::auth::failures`]), refilled at one a second.
    fn default() -> Limits {
        Limits {
            per_address: Rate::new(2000.0, 10.0),
            per_principal: Rate::new(1000.0, 10.0),
            failures_per_address: Rate {
                per_second: 1.0,
                burst: 60.0,
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets of one kind, by key.
struct Buckets<K> {
    rate: Rate,
    map: Mutex<HashMap<K, Bucket>>,
}

impl<K: std::hash::Hash + Eq + Clone> Buckets<K> {
    fn new(rate: Rate) -> Buckets<K> {
        Buckets {
            rate,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn refilled(&self, b: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        (b.tokens + elapsed * self.rate.per_second).min(self.rate.burst)
    }

    /// Take `n` tokens for `key`: `Err(wait)` if there are not enough (none are taken).
    fn take(&self, key: &K, n: f64, now: Instant) -> Result<(), Duration> {
        if self.rate.unlimited() {
            return Ok(());
        }
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(key) && map.len() >= MAX_BUCKETS {
            let rate = self.rate;
            map.retain(|_, b| {
                let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
                b.tokens + elapsed * rate.per_second < rate.burst
            });
            if map.len() >= MAX_BUCKETS {
                return Ok(());
            }
        }
        let b = map.entry(key.clone()).or_insert(Bucket {
            tokens: self.rate.burst,
            at: now,
        });
        let tokens = self.refilled(b, now);
        if tokens >= n {
            *b = Bucket {
                tokens: tokens - n,
                at: now,
            };
            Ok(())
        } else {
            *b = Bucket { tokens, at: now };
            Err(Duration::from_secs_f64((n - tokens) / self.rate.per_second))
        }
    }

    /// Whether `key` has fewer than one token (`Some(wait)`), without taking any.
    fn empty(&self, key: &K, now: Instant) -> Option<Duration> {
        if self.rate.unlimited() {
            return None;
        }
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let b = map.get(key)?;
        let tokens = self.refilled(b, now);
        (tokens < 1.0).then(|| Duration::from_secs_f64((1.0 - tokens) / self.rate.per_second))
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Address,
    Principal,
    Failures,
}

impl Limit {
    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            Limit::Address => "address",
            Limit::Principal => "principal",
            Limit::Failures => "authentication_failures",
        }
    }
}

/// A refusal: which limit, and how long until it would let the request through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub limit: Limit,
    pub retry_after: Duration,
}

impl Throttled {
    /// `Retry-After`, in whole seconds (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }

    /// The sentence the client reads.
    pub fn message(&self) -> String {
        match self.limit {
            Limit::Failures => format!(
                "Rate exceeded: too many requests with wrong credentials came from this address; retry in {} s",
                self.retry_after_secs()
            ),
            _ => format!("Rate exceeded; retry in {} s", self.retry_after_secs()),
        }
    }
}

/// This node's throttle.
pub struct Throttle {
    addresses: Buckets<IpAddr>,
    principals: Buckets<String>,
    failures: Buckets<IpAddr>,
}

impl Throttle {
    pub fn new(limits: Limits) -> Throttle {
        Throttle {
            addresses: Buckets::new(limits.per_address),
            principals: Buckets::new(limits.per_principal),
            failures: Buckets::new(limits.failures_per_address),
        }
    }

    /// A request from `client` arrives: refused if the address spent its failure
    /// budget, or is over its rate.
    pub fn arrive(&self, client: IpAddr) -> Result<(), Throttled> {
        let now = Instant::now();
        if let Some(wait) = self.failures.empty(&client, now) {
            return Err(self.refused(Limit::Failures, wait));
        }
        self.addresses
            .take(&client, 1.0, now)
            .map_err(|wait| self.refused(Limit::Address, wait))
    }

    /// An authenticated request of `principal` (an ARN).
    pub fn principal(&self, principal: &str) -> Result<(), Throttled> {
        self.principals
            .take(&principal.to_string(), 1.0, Instant::now())
            .map_err(|wait| self.refused(Limit::Principal, wait))
    }

    /// An authentication failure from `client`: one token of its failure budget.
    pub fn failed(&self, client: IpAddr) {
        let _ = self.failures.take(&client, 1.0, Instant::now());
    }

    fn refused(&self, limit: Limit, retry_after: Duration) -> Throttled {
        Throttled { limit, retry_after }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_bucket_refuses_past_its_burst_and_refills_at_its_rate() {
        let b: Buckets<u8> = Buckets::new(Rate::new(10.0, 2.0));
        let t0 = Instant::now();
        for _ in 0..20 {
            b.take(&1, 1.0, t0).unwrap();
        }
        let wait = b.take(&1, 1.0, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        // Another key has its own bucket.
        b.take(&2, 1.0, t0).unwrap();
        // A second later: ten more.
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..10 {
            b.take(&1, 1.0, t1).unwrap();
        }
        assert!(b.take(&1, 1.0, t1).is_err());
        // Never more than the burst, however long it rested.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..20 {
            b.take(&1, 1.0, t2).unwrap();
        }
        assert!(b.take(&1, 1.0, t2).is_err());
    }

    #[test]
    fn spent_failures_refuse_the_address_until_they_refill() {
        let t = Throttle::new(Limits {
            per_address: Rate::new(1000.0, 1.0),
            per_principal: Rate::new(0.0, 1.0),
            failures_per_address: Rate {
                per_second: 1.0,
                burst: 3.0,
            },
        });
        let (bad, good) = (ip("192.0.2.1"), ip("192.0.2.2"));
        for _ in 0..3 {
            t.arrive(bad).unwrap();
            t.failed(bad);
        }
        let r = t.arrive(bad).unwrap_err();
        assert_eq!(r.limit, Limit::Failures);
        assert_eq!(r.retry_after_secs(), 1);
        assert!(r.message().contains("wrong credentials"));
        t.arrive(good).unwrap();
        // Unlimited principals are never refused.
        for _ in 0..10_000 {
            t.principal("arn:aws:iam::111111111111:user/ci").unwrap();
        }
    }

    #[test]
    fn the_table_is_bounded() {
        let b: Buckets<u32> = Buckets::new(Rate::new(1.0, 1.0));
        let t0 = Instant::now();
        for k in 0..(MAX_BUCKETS as u32) {
            b.take(&k, 1.0, t0).unwrap();
        }
        // Every bucket is spent: a new key is let through, not stored.
        b.take(&u32::MAX, 1.0, t0).unwrap();
        assert_eq!(b.map.lock().unwrap().len(), MAX_BUCKETS);
        // Once they refilled, they are dropped to make room.
        let later = t0 + Duration::from_secs(5);
        b.take(&u32::MAX, 1.0, later).unwrap();
        assert_eq!(b.map.lock().unwrap().len(), 1);
    }
}
