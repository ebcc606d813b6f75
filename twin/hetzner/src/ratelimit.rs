//! The token bucket behind `RateLimit-*` headers and 429 `rate_limit_exceeded`.
//!
//! Hetzner allows 3600 requests per hour per project; the bucket refills by one every second and
//! bursts are allowed. Every request counts, authenticated or not.

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Size and refill rate of the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Bucket size, reported as `RateLimit-Limit`.
    pub capacity: u32,
    /// Tokens added per second.
    pub refill_per_sec: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            capacity: 3600,
            refill_per_sec: 1.0,
        }
    }
}

/// The outcome of one request against the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// `RateLimit-Limit`.
    pub limit: u32,
    /// `RateLimit-Remaining`.
    pub remaining: u32,
    /// `RateLimit-Reset`: UNIX time when the bucket is full again.
    pub reset_unix: i64,
}

/// A token bucket; callers pass the clock so tests are deterministic.
#[derive(Debug, Clone)]
pub struct Bucket {
    limit: RateLimit,
    tokens: f64,
    last: Option<Instant>,
}

impl Bucket {
    /// A full bucket.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.capacity),
            last: None,
        }
    }

    /// The configured limit.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Replaces the limit and refills the bucket.
    pub fn reconfigure(&mut self, limit: RateLimit) {
        *self = Self::new(limit);
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens =
                (self.tokens + dt * self.limit.refill_per_sec).min(f64::from(self.limit.capacity));
        }
        self.last = Some(now);
    }

    /// Takes one token if there is one; `now_unix` is only used for the reset header.
    pub fn take(&mut self, now: Instant, now_unix: i64) -> Decision {
        self.refill(now);
        let allowed = self.tokens >= 1.0;
        if allowed {
            self.tokens -= 1.0;
        }
        let missing = f64::from(self.limit.capacity) - self.tokens;
        let secs = if self.limit.refill_per_sec > 0.0 {
            (missing / self.limit.refill_per_sec).ceil()
        } else {
            0.0
        };
        Decision {
            allowed,
            limit: self.limit.capacity,
            remaining: self.tokens.floor().max(0.0) as u32,
            reset_unix: now_unix + secs as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_429_then_refill() {
        let mut b = Bucket::new(RateLimit {
            capacity: 3,
            refill_per_sec: 1.0,
        });
        let t0 = Instant::now();
        let d = b.take(t0, 1000);
        assert!(d.allowed);
        assert_eq!((d.limit, d.remaining, d.reset_unix), (3, 2, 1001));
        assert!(b.take(t0, 1000).allowed);
        let d = b.take(t0, 1000);
        assert!(d.allowed);
        assert_eq!((d.remaining, d.reset_unix), (0, 1003));
        let d = b.take(t0, 1000);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        let d = b.take(t0 + Duration::from_millis(1500), 1001);
        assert!(d.allowed);
        assert!(!b.take(t0 + Duration::from_millis(1600), 1001).allowed);
    }

    #[test]
    fn never_exceeds_capacity() {
        let mut b = Bucket::new(RateLimit {
            capacity: 2,
            refill_per_sec: 10.0,
        });
        let t0 = Instant::now();
        b.take(t0, 0);
        let d = b.take(t0 + Duration::from_secs(100), 100);
        assert_eq!(d.remaining, 1);
    }
}
