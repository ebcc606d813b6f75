//! Crash-test hooks, read from the environment (the CLI is the only crate that reads it).
//!
//! `HK8S_DEBUG_KILL_AFTER_COMMIT=N` sends SIGKILL to this process right after the N-th
//! journal commit (attempt started, attempt failed, step completed, step failed), so crash
//! tests can stop the binary exactly at every step boundary — the same idea as DBOS's
//! `DEBUG_TRIGGER_STEP_COMMIT`. Nothing else in the product changes behaviour with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hk8s_runtime::{Event, Observer};

/// Wraps `inner` so that the process kills itself after the configured commit, if any.
pub fn with_kill_hook(inner: Observer) -> Observer {
    let Some(target) = std::env::var("HK8S_DEBUG_KILL_AFTER_COMMIT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return inner;
    };
    let commits = Arc::new(AtomicU64::new(0));
    Arc::new(move |event: &Event| {
        inner(event);
        if event.is_commit() && commits.fetch_add(1, Ordering::SeqCst) + 1 == target {
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::KILL,
            );
        }
    })
}

/// `HK8S_ACTION_POLL_MS`: the interval between action polls (default: the client's 1 s).
pub fn action_poll_interval() -> Option<std::time::Duration> {
    std::env::var("HK8S_ACTION_POLL_MS")
        .ok()?
        .parse::<u64>()
        .ok()
        .map(std::time::Duration::from_millis)
}

/// `HK8S_RETRY_INITIAL_MS`: the first retry delay of cloud steps (default 1 s); tests shorten it.
pub fn retry_policy() -> hk8s_runtime::RetryPolicy {
    let policy = hk8s_runtime::RetryPolicy::default();
    match std::env::var("HK8S_RETRY_INITIAL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(ms) => policy
            .with_initial(std::time::Duration::from_millis(ms))
            .with_max_interval(std::time::Duration::from_millis(ms.saturating_mul(8))),
        None => policy,
    }
}
