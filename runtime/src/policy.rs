//! Retry policies: how often and how long a step retries, with delays from `backon`.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// How a step retries failed attempts.
///
/// Delays come from `backon`'s [`ExponentialBuilder`]: `initial`, then ×`multiplier` per retry,
/// capped at `max_interval`; with `jitter`, a random extra of up to 100 % of the delay (backon's
/// jitter), seeded per run and step so a rebuilt sequence is the same after a restart.
///
/// Budgets:
/// - `max_attempts` counts attempts that ended in a [`Retryable`](crate::ErrorClass::Retryable)
///   error, across process restarts (the counts are read back from the journal). Attempts cut short
///   by a crash or a shutdown, and [`RateLimited`](crate::ErrorClass::RateLimited) attempts, do not
///   count: neither says anything about the operation.
/// - `max_elapsed` bounds the time one process spends on the step, from its first attempt in that
///   process to the start of the next retry; time the run spent stopped between a crash and a
///   resume does not count (otherwise a run resumed the next day would give up at the first error).
///
/// When a budget is used up the step fails for good and the run ends `failed`.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct RetryPolicy {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Factor applied to the delay after every retry (≥ 1).
    pub multiplier: f32,
    /// Upper bound of a single delay (before jitter).
    pub max_interval: Duration,
    /// Add a random extra delay of up to 100 % (deterministic per run and step).
    pub jitter: bool,
    /// Give up after this many retryable failures; `None` = no limit.
    pub max_attempts: Option<u32>,
    /// Give up when the next retry would start later than this after the first attempt.
    pub max_elapsed: Option<Duration>,
}

impl Default for RetryPolicy {
    /// 1 s initial, ×2, at most 60 s apart, jitter, 8 attempts, 15 minutes.
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(1),
            multiplier: 2.0,
            max_interval: Duration::from_secs(60),
            jitter: true,
            max_attempts: Some(8),
            max_elapsed: Some(Duration::from_secs(15 * 60)),
        }
    }
}

impl RetryPolicy {
    /// The default policy (see [`Default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// A single attempt: any failure fails the step (rate limits still wait and retry).
    pub fn no_retry() -> Self {
        RetryPolicy {
            max_attempts: Some(1),
            ..Self::default()
        }
    }

    /// Sets the delay before the first retry.
    pub fn with_initial(mut self, initial: Duration) -> Self {
        self.initial = initial;
        self
    }

    /// Sets the delay factor.
    pub fn with_multiplier(mut self, multiplier: f32) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// Sets the maximum single delay.
    pub fn with_max_interval(mut self, max_interval: Duration) -> Self {
        self.max_interval = max_interval;
        self
    }

    /// Turns jitter on or off.
    pub fn with_jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets the attempt budget (`None` = unlimited).
    pub fn with_max_attempts(mut self, max_attempts: Option<u32>) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets the time budget (`None` = unlimited).
    pub fn with_max_elapsed(mut self, max_elapsed: Option<Duration>) -> Self {
        self.max_elapsed = max_elapsed;
        self
    }

    /// The delay after the `failures`-th retryable failure (1-based), or `None` when the attempt
    /// budget is used up.
    ///
    /// The backon iterator is rebuilt with the same seed and advanced to `failures`, so the
    /// sequence continues where it stopped before a restart.
    pub fn delay(&self, failures: u32, seed: u64) -> Option<Duration> {
        if failures == 0 {
            return Some(Duration::ZERO);
        }
        if self.max_attempts.is_some_and(|max| failures >= max) {
            return None;
        }
        let mut builder = ExponentialBuilder::new()
            .with_min_delay(self.initial)
            .with_max_delay(self.max_interval.max(self.initial))
            .with_factor(self.multiplier.max(1.0))
            .without_max_times()
            .with_total_delay(None);
        if self.jitter {
            builder = builder.with_jitter().with_jitter_seed(seed);
        }
        // backon multiplies in f32; round to whole milliseconds (the journal's resolution).
        let delay = builder.build().nth(failures as usize - 1)?;
        Some(Duration::from_millis(
            u64::try_from((delay.as_secs_f64() * 1000.0).round() as u128).unwrap_or(u64::MAX),
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delays_grow_then_cap_then_stop() {
        let p = RetryPolicy::new()
            .with_initial(ms(100))
            .with_multiplier(2.0)
            .with_max_interval(ms(500))
            .with_jitter(false)
            .with_max_attempts(Some(6));
        let delays: Vec<_> = (1..=6).map(|n| p.delay(n, 0)).collect();
        assert_eq!(
            delays,
            vec![
                Some(ms(100)),
                Some(ms(200)),
                Some(ms(400)),
                Some(ms(500)),
                Some(ms(500)),
                None
            ]
        );
    }

    #[test]
    fn jitter_is_bounded_and_reproducible_per_seed() {
        let p = RetryPolicy::new()
            .with_initial(ms(100))
            .with_max_attempts(None);
        for n in 1..10 {
            let a = p.delay(n, 42).unwrap();
            assert_eq!(Some(a), p.delay(n, 42), "same seed, same delay");
            let base = p.clone().with_jitter(false).delay(n, 42).unwrap();
            assert!(a >= base && a <= base * 2, "{a:?} vs {base:?}");
        }
    }

    #[test]
    fn no_retry_gives_up_after_the_first_failure() {
        assert_eq!(RetryPolicy::no_retry().delay(1, 0), None);
    }
}
