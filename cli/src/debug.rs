//! Knobs read from the environment (the CLI is the only crate that reads it): crash-test hooks
//! and timing overrides.
//!
//! - `HK8S_DEBUG_KILL_AFTER_OUTCOME=N` sends SIGKILL to this process right after the N-th attempt
//!   outcome was committed (attempt failed, step completed, step failed), so crash tests stop the
//!   binary exactly at every step boundary — the idea of DBOS's `DEBUG_TRIGGER_STEP_COMMIT`.
//!   Intent records are not counted: whether an attempt gets one depends on how long it runs.
//! - `HK8S_DEBUG_KILL_AFTER_STEP=PREFIX` sends SIGKILL right after the first step whose key starts
//!   with `PREFIX` was journaled as completed (`server/`: a server step has certainly finished).
//! - `HK8S_DEBUG_KILL_AFTER_ACTIVITY=KEY` sends SIGKILL right after step `KEY`'s activity
//!   succeeded and before its result is journaled: the "did it, not recorded" instant.
//! - `HK8S_ACTION_POLL_MS` and `HK8S_RETRY_INITIAL_MS` shorten action polls and retry delays
//!   (tests); `--sandbox` scales them by its speed factor the same way.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hk8s_runtime::{Event, Observer, RetryPolicy};
use hk8s_workflows::Policies;

/// Wraps `inner` so that the process kills itself at the configured instant, if any.
pub fn with_kill_hook(inner: Observer) -> Observer {
    let after_outcome = env_u64("HK8S_DEBUG_KILL_AFTER_OUTCOME");
    let after_step = std::env::var("HK8S_DEBUG_KILL_AFTER_STEP").ok();
    let after_activity = std::env::var("HK8S_DEBUG_KILL_AFTER_ACTIVITY").ok();
    if after_outcome.is_none() && after_step.is_none() && after_activity.is_none() {
        return inner;
    }
    let outcomes = Arc::new(AtomicU64::new(0));
    Arc::new(move |event: &Event| {
        inner(event);
        let outcome_hit = event.is_outcome()
            && after_outcome.is_some_and(|n| outcomes.fetch_add(1, Ordering::SeqCst) + 1 == n);
        let step_hit = matches!(
            (event, &after_step),
            (Event::StepCompleted { key, .. }, Some(prefix)) if key.starts_with(prefix.as_str())
        );
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
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    /// First interval between action polls; `None` keeps the client's default.
    pub action_poll: Option<Duration>,
    /// First retry delay of every step; `None` keeps the workflows' defaults.
    pub retry_initial: Option<Duration>,
}

impl Timing {
    /// From `HK8S_ACTION_POLL_MS` and `HK8S_RETRY_INITIAL_MS`.
    pub fn from_env() -> Timing {
        Timing {
            action_poll: env_u64("HK8S_ACTION_POLL_MS").map(Duration::from_millis),
            retry_initial: env_u64("HK8S_RETRY_INITIAL_MS").map(Duration::from_millis),
        }
    }

    /// The sandbox's timing: realistic intervals divided by its speed (environment wins).
    pub fn for_sandbox(speed: f64) -> Timing {
        let scaled =
            |d: Duration| Duration::from_secs_f64((d.as_secs_f64() / speed.max(1.0)).max(0.01));
        let env = Timing::from_env();
        Timing {
            action_poll: env.action_poll.or(Some(scaled(Duration::from_secs(1)))),
            retry_initial: env.retry_initial.or(Some(scaled(Duration::from_secs(2)))),
        }
    }

    /// The workflows' policies (cloud steps, steps that wait for machines), shortened.
    pub fn policies(&self) -> Policies {
        let Policies { cloud, wait } = Policies::default();
        Policies {
            cloud: self.shorten(cloud),
            wait: self.shorten(wait),
        }
    }

    fn shorten(&self, policy: RetryPolicy) -> RetryPolicy {
        match self.retry_initial {
            Some(d) => policy
                .with_initial(d)
                .with_max_interval(d.saturating_mul(8)),
            None => policy,
        }
    }
}
