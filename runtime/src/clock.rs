//! The clock seam: every instant and every wait of the runtime goes through a [`Clock`].

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

/// A boxed sleep future returned by [`Clock::sleep`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Source of "now" and of waits for the runtime (retry delays, durable sleeps, heartbeats, grace).
///
/// The journal never reads a clock itself: the runtime passes `clock.now()` into every write.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;

    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> Sleep;

    /// A future that completes at `instant` (immediately if it has passed).
    fn sleep_until(&self, instant: DateTime<Utc>) -> Sleep {
        let remaining = (instant - self.now()).to_std().unwrap_or(Duration::ZERO);
        self.sleep(remaining)
    }
}

/// The real clock: `Utc::now()` and `tokio::time::sleep`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A simulated clock for tests: a fixed start instant plus tokio's monotonic time.
///
/// Under a paused tokio runtime (`#[tokio::test(start_paused = true)]`) tokio's time only moves
/// when every task waits, and then jumps straight to the next timer, so retry delays and durable
/// sleeps of hours complete at once and deterministically, concurrent sleepers included.
/// `tokio::time::advance` moves it by hand.
#[derive(Debug, Clone, Copy)]
pub struct SimClock {
    start_wall: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl SimClock {
    /// A simulated clock that reads 2026-01-01T00:00:00Z now; must be created inside a tokio runtime.
    pub fn new() -> Self {
        let start_wall = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_else(Utc::now);
        Self::starting_at(start_wall)
    }

    /// A simulated clock that reads `start_wall` now.
    pub fn starting_at(start_wall: DateTime<Utc>) -> Self {
        SimClock {
            start_wall,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for SimClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SimClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now().duration_since(self.start);
        self.start_wall + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::MAX)
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sim_clock_moves_only_with_tokio_time() {
        let clock = SimClock::new();
        let t0 = clock.now();
        clock.sleep(Duration::from_secs(3600)).await;
        assert_eq!(clock.now() - t0, chrono::Duration::seconds(3600));
        clock.sleep_until(t0).await; // in the past: immediate
        assert_eq!(clock.now() - t0, chrono::Duration::seconds(3600));
    }
}
