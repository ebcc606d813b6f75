//! The cluster lock as the CLI takes it: settings from the environment (`HK8S_LOCK_TTL_SECS`,
//! `HK8S_HOST_ID`), the exit codes of a held lock (75) or a token that cannot write (2), and the
//! release at the end of every execution.

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use hk8s_hetzner::{Hetzner, LockOwner};
use hk8s_journal::RunId;
use hk8s_workflows::cluster_lock::{self, DEFAULT_LOCK_TTL, HeldLock, LockError};

use crate::exit::{Failure, usage};

/// How this process takes cluster locks.
#[derive(Debug, Clone)]
pub struct LockEnv {
    /// Lock lifetime without renewal (`HK8S_LOCK_TTL_SECS`, default 120 s).
    pub ttl: Duration,
    /// This machine's identity in the lock (`HK8S_HOST_ID`, default the host name).
    pub host: String,
}

/// Reads `HK8S_LOCK_TTL_SECS` (3…86400) and `HK8S_HOST_ID`.
///
/// # Errors
/// A TTL that is not a whole number of seconds in range (exit 2).
pub fn lock_env() -> Result<LockEnv, Failure> {
    let ttl = match std::env::var("HK8S_LOCK_TTL_SECS") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|s| (3..=86_400).contains(s))
            .map(Duration::from_secs)
            .ok_or_else(|| {
                usage(anyhow!(
                    "HK8S_LOCK_TTL_SECS: {v:?} is not a whole number of seconds between 3 and 86400"
                ))
            })?,
        _ => DEFAULT_LOCK_TTL,
    };
    let host = std::env::var("HK8S_HOST_ID")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| hk8s_journal::Owner::current().host);
    Ok(LockEnv {
        ttl,
        host: cluster_lock::host_label(&host),
    })
}

/// Takes the lock of `cluster` for `run`; a lock taken over later calls `on_lost`.
///
/// # Errors
/// Held → exit 75 naming the holder; 401 → the token sentence; 403 (a "Read" token, or a
/// project that forbids it) → one sentence naming the missing permission, exit 2.
pub async fn take(
    hetzner: Arc<Hetzner>,
    env: &LockEnv,
    cluster: &str,
    run: RunId,
    on_lost: impl Fn(String) + Send + 'static,
) -> Result<HeldLock, Failure> {
    let owner = LockOwner {
        host: env.host.clone(),
        run: run.to_string(),
    };
    match cluster_lock::acquire(hetzner, cluster, owner, env.ttl, on_lost).await {
        Ok(lock) => Ok(lock),
        Err(e @ LockError::Held { .. }) => Err(Failure::Held(anyhow!("{e}"))),
        Err(LockError::Api { source, .. }) if source.status == Some(403) => Err(usage(anyhow!(
            "HCLOUD_TOKEN may read but not change this Hetzner project: its first write (creating the cluster lock {}) was refused ({}: {}); create an API token with \"Read & Write\" permission",
            hk8s_hetzner::cluster_lock_name(cluster),
            source.code.as_deref().unwrap_or("forbidden"),
            source.message
        ))),
        Err(LockError::Api { source, .. }) => Err(crate::preflight::api_failure(source)),
    }
}

/// Releases `lock`; a failure only delays the next run until the lock expires, so it is a
/// warning.
pub async fn release(lock: HeldLock) {
    let name = lock.record().name.clone();
    if let Err(e) = lock.release().await {
        eprintln!("warning: cannot release the cluster lock {name} ({e}); it expires by itself");
    }
}
