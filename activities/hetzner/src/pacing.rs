//! Client-side token bucket that keeps hk8s under the project's request budget.
//!
//! Every request the facade sends first takes a token. Tokens refill continuously at
//! `per_hour / 3600` per second up to the bucket's size. A request that finds the bucket
//! empty reserves a future token (the count goes negative), so concurrent callers queue in
//! order instead of waking up together. Time is `tokio::time::Instant`, so tests drive
//! the bucket with tokio's paused clock or with explicit instants.
//!
//! The bucket starts at `burst` tokens, and follows the project's real budget as soon as
//! an answer reports it: `RateLimit-Remaining` minus the `reserve` left for the CCM and the
//! CSI driver (which share the token) becomes the tokens, `RateLimit-Limit` minus the
//! reserve the bucket's size. So a fresh project's 3600 requests are usable at once, and a
//! project another client drained is waited for.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Pacing;

/// What every request of one client passes: a pacing token, then the request counter.
///
/// Shared (in an `Arc`) by the facade's `hcloud` calls and the action waiter's polls.
#[derive(Debug)]
pub(crate) struct RequestGate {
    /// The token bucket.
    pub(crate) pacer: Pacer,
    requests: AtomicU64,
}

impl RequestGate {
    /// A gate over `pacer` that has counted no request yet.
    pub(crate) fn new(pacer: Pacer) -> Self {
        RequestGate {
            pacer,
            requests: AtomicU64::new(0),
        }
    }

    /// Takes a pacing token and counts the request.
    pub(crate) async fn admit(&self) {
        self.pacer.acquire().await;
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// How many requests passed.
    pub(crate) fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// The token bucket.
#[derive(Debug)]
pub(crate) struct Pacer {
    rate_per_sec: f64,
    reserve: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    /// The bucket's size: `burst` until the API reported its limit.
    capacity: f64,
    last: Instant,
}

impl Pacer {
    /// A full bucket at `now`.
    pub(crate) fn new(pacing: Pacing, now: Instant) -> Self {
        let rate_per_sec = (f64::from(pacing.per_hour) / 3600.0).max(1e-6);
        let burst = f64::from(pacing.burst.max(1));
        Self {
            rate_per_sec,
            reserve: f64::from(pacing.reserve),
            state: Mutex::new(State {
                tokens: burst,
                capacity: burst,
                last: now,
            }),
        }
    }

    fn with_state<R>(&self, now: Instant, f: impl FnOnce(&mut State, f64) -> R) -> R {
        // A poisoned lock only means another thread panicked mid-update of two floats;
        // the numbers are still usable.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(state.last).as_secs_f64();
        state.tokens = (state.tokens + elapsed * self.rate_per_sec).min(state.capacity);
        if now > state.last {
            state.last = now;
        }
        f(&mut state, self.rate_per_sec)
    }

    /// Takes one token at `now` and returns how long the caller must wait before sending.
    pub(crate) fn reserve(&self, now: Instant) -> Duration {
        self.with_state(now, |state, rate| {
            state.tokens -= 1.0;
            if state.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-state.tokens / rate)
            }
        })
    }

    /// Waits for a token.
    pub(crate) async fn acquire(&self) {
        let wait = self.reserve(Instant::now());
        if !wait.is_zero() {
            tracing::debug!(wait_ms = wait.as_millis() as u64, "pacing hetzner request");
            tokio::time::sleep(wait).await;
        }
    }

    /// Follows what an answer reported: `RateLimit-Limit` minus the reserve becomes the
    /// bucket's size, `RateLimit-Remaining` minus the reserve its tokens. Lower values are
    /// always taken (budget spent by other clients of the project, such as the CCM and the
    /// CSI driver, is respected); a higher one only while no request is queued (queued
    /// callers already sleep for their reserved tokens).
    pub(crate) fn observe(&self, limit: Option<u64>, remaining: Option<u64>, now: Instant) {
        self.with_state(now, |state, _| {
            if let Some(limit) = limit {
                state.capacity = (limit as f64 - self.reserve).max(1.0);
            }
            if let Some(remaining) = remaining {
                let budget = (remaining as f64 - self.reserve).min(state.capacity);
                if budget < state.tokens || state.tokens >= 0.0 {
                    state.tokens = budget;
                }
            }
        });
    }

    /// Empties the bucket after a 429 and returns how long until the next token.
    pub(crate) fn drain(&self, now: Instant) -> Duration {
        self.with_state(now, |state, rate| {
            if state.tokens > 0.0 {
                state.tokens = 0.0;
            }
            Duration::from_secs_f64((1.0 - state.tokens) / rate)
        })
    }

    /// Tokens available at `now` (may be negative when requests are queued).
    #[cfg(test)]
    pub(crate) fn tokens(&self, now: Instant) -> f64 {
        self.with_state(now, |state, _| state.tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacing(per_hour: u32, burst: u32) -> Pacing {
        Pacing {
            per_hour,
            burst,
            reserve: 0,
        }
    }

    #[test]
    fn burst_is_free_then_one_per_second() {
        let t0 = Instant::now();
        let pacer = Pacer::new(pacing(3600, 3), t0);
        for _ in 0..3 {
            assert_eq!(pacer.reserve(t0), Duration::ZERO);
        }
        // The 4th, 5th and 6th requests queue one second apart.
        assert_eq!(pacer.reserve(t0), Duration::from_secs(1));
        assert_eq!(pacer.reserve(t0), Duration::from_secs(2));
        assert_eq!(pacer.reserve(t0), Duration::from_secs(3));
    }

    #[test]
    fn refills_over_time_up_to_burst() {
        let t0 = Instant::now();
        let pacer = Pacer::new(pacing(3600, 5), t0);
        for _ in 0..5 {
            pacer.reserve(t0);
        }
        assert!(pacer.tokens(t0).abs() < 1e-9);
        let t1 = t0 + Duration::from_secs(2);
        assert!((pacer.tokens(t1) - 2.0).abs() < 1e-9);
        let t2 = t0 + Duration::from_secs(3600);
        assert!((pacer.tokens(t2) - 5.0).abs() < 1e-9);
    }

    #[test]
    fn an_hour_never_exceeds_the_budget() {
        // Over one simulated hour, a client that sends as soon as pacing allows sends at
        // most burst + per_hour requests.
        let t0 = Instant::now();
        let pacer = Pacer::new(pacing(3600, 100), t0);
        let mut now = t0;
        let mut sent = 0u32;
        let end = t0 + Duration::from_secs(3600);
        while now < end {
            let wait = pacer.reserve(now);
            now += wait;
            if now <= end {
                sent += 1;
            }
        }
        assert!(sent <= 3700, "sent {sent}");
        assert!(sent >= 3690, "sent {sent}");
    }

    #[test]
    fn server_remaining_lowers_local_tokens() {
        let t0 = Instant::now();
        let pacer = Pacer::new(pacing(3600, 100), t0);
        pacer.observe(None, Some(2), t0);
        assert_eq!(pacer.reserve(t0), Duration::ZERO);
        assert_eq!(pacer.reserve(t0), Duration::ZERO);
        assert_eq!(pacer.reserve(t0), Duration::from_secs(1));
        // While requests are queued, a higher server value does not raise the bucket.
        pacer.observe(None, Some(1000), t0);
        assert!(pacer.tokens(t0) < 0.0);
    }

    #[test]
    fn the_reported_budget_minus_the_reserve_is_usable_at_once() {
        let t0 = Instant::now();
        let pacer = Pacer::new(
            Pacing {
                per_hour: 3600,
                burst: 100,
                reserve: 300,
            },
            t0,
        );
        // A fresh project: 3600 of 3600 left; 3300 may go back to back.
        pacer.observe(Some(3600), Some(3600), t0);
        assert!((pacer.tokens(t0) - 3300.0).abs() < 1e-9);
        for _ in 0..3300 {
            assert_eq!(pacer.reserve(t0), Duration::ZERO);
        }
        assert_eq!(pacer.reserve(t0), Duration::from_secs(1));
        // Refill never goes past limit - reserve.
        let later = t0 + Duration::from_secs(7200);
        assert!((pacer.tokens(later) - 3300.0).abs() < 1e-9);
        // Another client spent most of the budget: only what is left above the reserve.
        pacer.observe(Some(3600), Some(310), later);
        assert!((pacer.tokens(later) - 10.0).abs() < 1e-9);
        // Below the reserve: wait until the bucket refilled above it.
        pacer.observe(Some(3600), Some(100), later);
        assert_eq!(pacer.reserve(later), Duration::from_secs(201));
    }

    #[test]
    fn drain_after_429() {
        let t0 = Instant::now();
        let pacer = Pacer::new(pacing(7200, 50), t0);
        assert_eq!(pacer.drain(t0), Duration::from_millis(500));
        assert_eq!(pacer.reserve(t0), Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_sleeps_on_the_paused_clock() {
        let pacer = Pacer::new(pacing(3600, 1), Instant::now());
        let start = Instant::now();
        pacer.acquire().await;
        pacer.acquire().await;
        pacer.acquire().await;
        // Virtual time: exactly two refills were waited for.
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
    }

    #[test]
    fn unlimited_never_waits() {
        let t0 = Instant::now();
        let pacer = Pacer::new(Pacing::UNLIMITED, t0);
        for _ in 0..10_000 {
            assert!(pacer.reserve(t0) < Duration::from_millis(1));
        }
    }
}
