//! Knobs read from the environment (the CLI is the only crate that reads it): crash-test hooks
//! and timing overrides.
//!
//! - `HK8S_DEBUG_KILL_AFTER_OUTCOME=N` sends SIGKILL to this process right after the N-th attempt
//!   outcome was committed (attempt failed, step completed, step failed), so crash tests stop the
//!   binary exactly at every step boundary — the idea of DBOS's `DEBUG_TRIGGER_STEP_COMMIT`.
//!   Intent records are not counted: whether an attempt gets one depends on how long it runs.
//! - `HK8S_DEBUG_KILL_AFTER_STEP=PREFIX[,PREFIX…]` sends SIGKILL right after, for every
//!   `PREFIX`, a step whose key starts with it was journaled as completed (`server/`: a server
//!   step has certainly finished; `load-balancer,server/`: both, whichever came last).
//! - `HK8S_DEBUG_KILL_AFTER_ACTIVITY=KEY` sends SIGKILL right after step `KEY`'s activity
//!   succeeded and before its result is journaled: the "did it, not recorded" instant.
//! - `HK8S_TIME_SCALE=N` divides every poll and retry interval of the product (action polls,
//!   step retries, the waits for machines) by `N`, keeping their shape and their attempt
//!   budgets: against a twin running at speed `N` a run then makes the same polls as against
//!   the real cloud. `--sandbox` sets it to its speed factor. Pacing (the API budget) is not
//!   scaled: the twin's rate limit runs in real time, as Hetzner's does.
//! - `HK8S_ACTION_POLL_MS` and `HK8S_RETRY_INITIAL_MS` override the first action poll interval
//!   and the first retry delay (tests; they win over `HK8S_TIME_SCALE`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hk8s_runtime::{Event, Observer, RetryPolicy};
use hk8s_workflows::Policies;

/// Wraps `inner` so that the process kills itself at the configured instant, if any.
pub fn with_kill_hook(inner: Observer) -> Observer {
    let after_outcome = env_u64("HK8S_DEBUG_KILL_AFTER_OUTCOME");
    let after_step: Option<Vec<String>> = std::env::var("HK8S_DEBUG_KILL_AFTER_STEP")
        .ok()
        .map(|v| v.split(',').map(str::to_string).collect());
    let after_activity = std::env::var("HK8S_DEBUG_KILL_AFTER_ACTIVITY").ok();
    if after_outcome.is_none() && after_step.is_none() && after_activity.is_none() {
        return inner;
    }
    let outcomes = Arc::new(AtomicU64::new(0));
    let completed = std::sync::Mutex::new(Vec::<String>::new());
    Arc::new(move |event: &Event| {
        inner(event);
        let outcome_hit = event.is_outcome()
            && after_outcome.is_some_and(|n| outcomes.fetch_add(1, Ordering::SeqCst) + 1 == n);
        let step_hit = match (event, &after_step) {
            (Event::StepCompleted { key, .. }, Some(prefixes)) => {
                let mut done = completed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                done.extend(
                    prefixes
                        .iter()
                        .filter(|p| key.starts_with(p.as_str()))
                        .cloned(),
                );
                prefixes.iter().all(|p| done.contains(p))
            }
            _ => false,
        };
        let activity_hit = matches!(
            (event, &after_activity),
            (Event::ActivityReturned { key, ok: true, .. }, Some(target)) if key == target
        );
        if outcome_hit || step_hit || activity_hit {
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::KILL,
            );
        }
    })
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// Timing of polls and retries.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// First interval between action polls; `None` keeps the client's default (÷ `scale`).
    pub action_poll: Option<Duration>,
    /// First retry delay of every step; `None` keeps the workflows' defaults (÷ `scale`).
    pub retry_initial: Option<Duration>,
    /// Every interval is divided by this (`HK8S_TIME_SCALE`, the sandbox's speed; 1 = real).
    pub scale: f64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            action_poll: None,
            retry_initial: None,
            scale: 1.0,
        }
    }
}

/// The shortest interval a scale produces (a poll loop never spins).
const MIN_SCALED_INTERVAL: Duration = Duration::from_millis(10);

impl Timing {
    /// From `HK8S_TIME_SCALE`, `HK8S_ACTION_POLL_MS` and `HK8S_RETRY_INITIAL_MS`.
    pub fn from_env() -> Timing {
        let scale = std::env::var("HK8S_TIME_SCALE")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .unwrap_or(1.0);
        Timing::scaled_by(scale)
    }

    /// The sandbox's timing: the product's intervals divided by its speed (the environment's
    /// `HK8S_ACTION_POLL_MS` / `HK8S_RETRY_INITIAL_MS` win).
    pub fn for_sandbox(speed: f64) -> Timing {
        Timing::scaled_by(speed)
    }

    fn scaled_by(scale: f64) -> Timing {
        Timing {
            action_poll: env_u64("HK8S_ACTION_POLL_MS").map(Duration::from_millis),
            retry_initial: env_u64("HK8S_RETRY_INITIAL_MS").map(Duration::from_millis),
            scale: if scale.is_finite() && scale >= 1.0 {
                scale
            } else {
                1.0
            },
        }
    }

    /// `d` divided by the scale.
    pub fn scale(&self, d: Duration) -> Duration {
        if self.scale == 1.0 {
            return d;
        }
        d.div_f64(self.scale).max(MIN_SCALED_INTERVAL)
    }

    /// The workflows' policies (cloud steps, steps that wait for machines), scaled.
    pub fn policies(&self) -> Policies {
        let Policies { cloud, wait } = Policies::default();
        Policies {
            cloud: self.shorten(cloud),
            wait: self.shorten(wait),
        }
    }

    fn shorten(&self, mut policy: RetryPolicy) -> RetryPolicy {
        policy.initial = self.scale(policy.initial);
        policy.max_interval = self.scale(policy.max_interval);
        match self.retry_initial {
            Some(d) => policy
                .with_initial(d)
                .with_max_interval(d.saturating_mul(8)),
            None => policy,
        }
    }
}
