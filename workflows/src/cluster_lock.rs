//! Two operators, one cluster: the cluster lock in the cloud, held for the whole execution of a
//! run, and its record in the run's journal.
//!
//! The lock is a placement group `hk8s-lock-<cluster>` (see `hk8s_hetzner`'s `lock` module for
//! why and for the protocol). [`acquire`] takes it before a run is journaled or resumed (it is
//! the run's first mutation, so a read-only token stops there), a renewal task moves its expiry
//! forward every third of the TTL while the run is active, and [`LockRelease`] deletes it
//! when the workflow body succeeds or, at the latest, when the execution ends, however it ends. A second run on another machine (another journal)
//! finds it held and stops naming the holder; a lock whose holder died expires and is taken
//! over. [`Locked`] journals who held the lock as the step `cloud-lock/<id>@<host>`, so
//! `hk8s history` shows it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use hk8s_hetzner::{ClusterLock, Hetzner, HetznerError, LockAttempt, LockOwner};
use hk8s_runtime::{Ctx, RetryPolicy, Workflow, WorkflowError};
use serde::{Deserialize, Serialize};

/// The default lock TTL (`HK8S_LOCK_TTL_SECS` overrides it).
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(120);

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live run holds it.
    #[error("{}", held_message(cluster, lock))]
    Held {
        /// The cluster.
        cluster: String,
        /// The holder's lock.
        lock: ClusterLock,
    },
    /// The API refused or failed (a read-only token: 403 on the create).
    #[error("cannot take the lock of cluster {cluster}: {source}")]
    Api {
        /// The cluster.
        cluster: String,
        /// The cause.
        #[source]
        source: HetznerError,
    },
}

/// "cluster demo is locked by run … on host … until …".
pub fn held_message(cluster: &str, lock: &ClusterLock) -> String {
    format!(
        "cluster {cluster} is locked by run {} on host {} until {}",
        lock.owner.run,
        lock.owner.host,
        lock.expires.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// A host identity usable as a label value: letters, digits, `-`, `_` and `.`, at most 63
/// characters, alphanumeric at both ends (`host` as given otherwise).
pub fn host_label(host: &str) -> String {
    let mut out: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    while out.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        out.pop();
    }
    let trimmed = out.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed.is_empty() {
        "unknown-host".into()
    } else {
        trimmed.to_string()
    }
}

/// What the journal keeps of a held lock (the step output of `cloud-lock/<id>@<host>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    /// Placement group id.
    pub id: i64,
    /// `hk8s-lock-<cluster>`.
    pub name: String,
    /// Holder host.
    pub host: String,
    /// Holder run.
    pub run: String,
    /// Expiry when it was taken.
    pub expires: DateTime<Utc>,
    /// The stale lock this one replaced: "run … on host … (expired …)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub took_over: Option<String>,
}

/// A lock this process holds, renewed in the background until released.
pub struct HeldLock {
    release: LockRelease,
    record: LockRecord,
}

/// A handle that deletes a [`HeldLock`]'s lock once, from wherever the run ends first: the end of
/// the workflow body ([`Locked`]) or the caller after the execution.
#[derive(Clone)]
pub struct LockRelease(Arc<ReleaseInner>);

struct ReleaseInner {
    hetzner: Arc<Hetzner>,
    lock: Arc<Mutex<ClusterLock>>,
    renewal: tokio::task::JoinHandle<()>,
    released: tokio::sync::Mutex<bool>,
}

impl std::fmt::Debug for LockRelease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = self
            .0
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .id;
        f.debug_struct("LockRelease").field("lock", &id).finish()
    }
}

impl LockRelease {
    /// Stops renewing and deletes the lock (by id: never someone else's); later calls do
    /// nothing once one succeeded.
    ///
    /// # Errors
    /// The delete failed; the lock then expires by itself after its TTL.
    pub async fn release(&self) -> Result<(), HetznerError> {
        let mut released = self.0.released.lock().await;
        if *released {
            return Ok(());
        }
        self.0.renewal.abort();
        let id = self
            .0
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .id;
        // A lock left behind blocks other hosts until it expires: wait out a busy API.
        crate::policies::retry_transient(|| self.0.hetzner.delete_cluster_lock(id)).await?;
        *released = true;
        Ok(())
    }
}

/// Takes the lock of `cluster` for `owner` with `ttl` and starts renewing it every `ttl / 3`.
/// `on_lost` is called once, with a sentence, when a renewal finds the lock taken over (the
/// caller stops the run).
///
/// # Errors
/// [`LockError::Held`] naming the holder; [`LockError::Api`] for API failures.
pub async fn acquire(
    hetzner: Arc<Hetzner>,
    cluster: &str,
    owner: LockOwner,
    ttl: Duration,
    on_lost: impl Fn(String) + Send + 'static,
) -> Result<HeldLock, LockError> {
    let ttl_chrono = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(120));
    let now = Utc::now();
    let pid = std::process::id();
    // A holder on this very host whose process is gone will never renew or release it.
    let host = owner.host.clone();
    let holder_dead = move |lock: &ClusterLock| {
        lock.owner.host == host && lock.pid.is_some_and(|p| !hk8s_runtime::pid_alive(p))
    };
    // Retried as a whole: a create whose answer was lost finds the lock already ours.
    let attempt = crate::policies::retry_transient(|| {
        hetzner.acquire_cluster_lock(cluster, &owner, pid, now, now + ttl_chrono, &holder_dead)
    })
    .await
    .map_err(|source| LockError::Api {
        cluster: cluster.to_string(),
        source,
    })?;
    let (lock, took_over) = match attempt {
        LockAttempt::Held(lock) => {
            return Err(LockError::Held {
                cluster: cluster.to_string(),
                lock,
            });
        }
        LockAttempt::Acquired { lock, took_over } => (lock, took_over),
    };
    if let Some(stale) = &took_over {
        tracing::warn!(
            cluster,
            stale_run = %stale.owner.run,
            stale_host = %stale.owner.host,
            "took over an expired cluster lock"
        );
    }
    let record = LockRecord {
        id: lock.id,
        name: lock.name.clone(),
        host: lock.owner.host.clone(),
        run: lock.owner.run.clone(),
        expires: lock.expires,
        took_over: took_over.map(|s| {
            format!(
                "run {} on host {} (expired {})",
                s.owner.run,
                s.owner.host,
                s.expires.to_rfc3339_opts(SecondsFormat::Secs, true)
            )
        }),
    };
    let shared = Arc::new(Mutex::new(lock));
    let renewal = tokio::spawn(renew(
        hetzner.clone(),
        shared.clone(),
        cluster.to_string(),
        ttl,
        on_lost,
    ));
    Ok(HeldLock {
        release: LockRelease(Arc::new(ReleaseInner {
            hetzner,
            lock: shared,
            renewal,
            released: tokio::sync::Mutex::new(false),
        })),
        record,
    })
}

/// Moves the expiry forward every `ttl / 3`; transient errors are retried at the next tick
/// until the lock would have expired.
async fn renew(
    hetzner: Arc<Hetzner>,
    lock: Arc<Mutex<ClusterLock>>,
    cluster: String,
    ttl: Duration,
    on_lost: impl Fn(String) + Send + 'static,
) {
    let ttl_chrono = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(120));
    let pid = std::process::id();
    loop {
        tokio::time::sleep(ttl / 3).await;
        let current = lock.lock().unwrap_or_else(PoisonError::into_inner).clone();
        match hetzner
            .renew_cluster_lock(&current, pid, Utc::now() + ttl_chrono)
            .await
        {
            Ok(renewed) => *lock.lock().unwrap_or_else(PoisonError::into_inner) = renewed,
            Err(e) if e.is_not_found() => {
                on_lost(format!(
                    "the lock of cluster {cluster} was taken over by another run after it expired; stopping"
                ));
                return;
            }
            Err(e) if Utc::now() >= current.expires => {
                on_lost(format!(
                    "the lock of cluster {cluster} expired because it could not be renewed ({e}); stopping"
                ));
                return;
            }
            Err(e) => tracing::warn!(error = %e, "cannot renew the cluster lock; trying again"),
        }
    }
}

impl HeldLock {
    /// What the journal records.
    pub fn record(&self) -> &LockRecord {
        &self.record
    }

    /// The handle [`Locked`] uses to release the lock as soon as the workflow body succeeds.
    pub fn release_handle(&self) -> LockRelease {
        self.release.clone()
    }

    /// Stops renewing and deletes the lock, unless the workflow body already did.
    ///
    /// # Errors
    /// The delete failed; the lock then expires by itself after its TTL.
    pub async fn release(self) -> Result<(), HetznerError> {
        self.release.release().await
    }
}

/// A workflow that first journals who holds the cluster lock (`cloud-lock/<id>@<host>`), then
/// runs `inner`, and releases the lock when `inner` succeeds: before the run's success is
/// journaled, so a kill in between leaves no lock behind that a resume could not release (a
/// succeeded run is never resumed). Same name, version, input and output as `inner`.
pub struct Locked<W> {
    inner: W,
    record: LockRecord,
    release: LockRelease,
}

impl<W> Locked<W> {
    /// `inner`, run under `lock`.
    pub fn new(inner: W, lock: &HeldLock) -> Self {
        Locked {
            inner,
            record: lock.record().clone(),
            release: lock.release_handle(),
        }
    }
}

impl<W: Workflow> Workflow for Locked<W> {
    const NAME: &'static str = W::NAME;
    const VERSION: u32 = W::VERSION;
    type Input = W::Input;
    type Output = W::Output;

    async fn run(&self, ctx: &Ctx, input: W::Input) -> Result<W::Output, WorkflowError> {
        let record = &self.record;
        let key = format!("cloud-lock/{}@{}", record.id, record.host);
        let _: LockRecord = ctx
            .step(
                &key,
                &RetryPolicy::no_retry(),
                &(record.id, &record.host, &record.run),
                |_| async { Ok::<_, hk8s_runtime::StepError>(record.clone()) },
            )
            .await?;
        let output = self.inner.run(ctx, input).await?;
        if let Err(e) = self.release.release().await {
            // Not the run's failure: the lock expires by itself after its TTL.
            tracing::warn!(lock = %record.name, error = %e, "cannot release the cluster lock; it expires by itself");
        }
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_labels_are_valid_label_values() {
        for (host, want) in [
            ("build-01.example.com", "build-01.example.com"),
            ("Laptop (Ana)", "Laptop--Ana"),
            ("--", "unknown-host"),
            ("", "unknown-host"),
        ] {
            let label = host_label(host);
            assert_eq!(label, want);
            hk8s_hetzner::labels::validate_label_value(&label).unwrap();
        }
        assert_eq!(host_label(&"x".repeat(100)).len(), 63);
    }

    #[test]
    fn the_held_message_names_run_host_and_expiry() {
        let lock = ClusterLock {
            id: 3,
            name: "hk8s-lock-demo".into(),
            owner: LockOwner {
                host: "ops-2".into(),
                run: "0194f1d2".into(),
            },
            pid: Some(7),
            expires: "2026-12-02T10:15:00Z".parse().unwrap(),
        };
        assert_eq!(
            held_message("demo", &lock),
            "cluster demo is locked by run 0194f1d2 on host ops-2 until 2026-12-02T10:15:00Z"
        );
    }
}
