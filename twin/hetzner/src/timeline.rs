//! Seeded latency jitter and the per-server record of the durations the twin actually applied
//! (the raw material of the twin's critical path, `GET /twin/critical-path`).
//!
//! Real action durations vary from server to server, so a client that waits for every server
//! before it goes on pays for the slowest one. [`Jitter`] draws a factor in
//! `[1 - fraction, 1 + fraction]` for each duration from a seeded generator (the same seed gives
//! the same draws in the same order); [`Timeline`] keeps, per server, each applied duration in
//! wall seconds (already divided by the speed factor in force).

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::model::Id;

/// A seeded source of duration factors.
#[derive(Debug)]
pub struct Jitter {
    fraction: f64,
    rng: StdRng,
}

impl Default for Jitter {
    /// No jitter (every factor is 1).
    fn default() -> Self {
        Self::new(0.0, 0)
    }
}

impl Jitter {
    /// Factors in `[1 - fraction, 1 + fraction]` (`fraction` clamped to `0..=0.9`) drawn from
    /// a generator seeded with `seed`.
    pub fn new(fraction: f64, seed: u64) -> Self {
        let fraction = if fraction.is_finite() {
            fraction.clamp(0.0, 0.9)
        } else {
            0.0
        };
        Jitter {
            fraction,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The jitter fraction.
    pub fn fraction(&self) -> f64 {
        self.fraction
    }

    /// `base` times the next factor.
    pub fn apply(&mut self, base: f64) -> f64 {
        if self.fraction == 0.0 {
            return base;
        }
        let f = self
            .rng
            .random_range(1.0 - self.fraction..=1.0 + self.fraction);
        base * f
    }
}

/// One applied duration of a server's life.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Segment {
    /// What it was (`create_server`, `start_server`, `boot`, `install`, …).
    pub phase: String,
    /// Its length in wall seconds (base × jitter ÷ speed).
    pub secs: f64,
}

/// The applied durations, per server, in the order they were applied.
#[derive(Debug, Default)]
pub struct Timeline {
    servers: BTreeMap<Id, (String, Vec<Segment>)>,
}

impl Timeline {
    /// Records that server `id` (`name`) spent `secs` wall seconds in `phase`.
    pub fn record(&mut self, id: Id, name: &str, phase: &str, secs: f64) {
        let entry = self
            .servers
            .entry(id)
            .or_insert_with(|| (name.to_string(), Vec::new()));
        entry.1.push(Segment {
            phase: phase.to_string(),
            secs,
        });
    }

    /// Every server's name and segments.
    pub fn servers(&self) -> impl Iterator<Item = (Id, &str, &[Segment])> {
        self.servers
            .iter()
            .map(|(id, (name, segs))| (*id, name.as_str(), segs.as_slice()))
    }

    /// Forgets everything recorded (a new measurement starts).
    pub fn clear(&mut self) {
        self.servers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_draws_within_bounds() {
        let mut a = Jitter::new(0.2, 7);
        let mut b = Jitter::new(0.2, 7);
        for _ in 0..100 {
            let x = a.apply(10.0);
            assert_eq!(x, b.apply(10.0));
            assert!((8.0..=12.0).contains(&x), "{x}");
        }
        let mut c = Jitter::new(0.2, 8);
        let draws: Vec<f64> = (0..10).map(|_| c.apply(10.0)).collect();
        assert!(draws.iter().any(|d| (d - 10.0).abs() > 1e-9));
        assert_eq!(Jitter::default().apply(10.0), 10.0);
    }

    #[test]
    fn timeline_keeps_order_per_server() {
        let mut t = Timeline::default();
        t.record(2, "b", "create_server", 1.0);
        t.record(1, "a", "create_server", 2.0);
        t.record(1, "a", "start_server", 0.5);
        let v: Vec<_> = t.servers().collect();
        assert_eq!(v[0].1, "a");
        assert_eq!(v[0].2.len(), 2);
        assert_eq!(v[0].2[1].phase, "start_server");
    }
}
