//! Writes on the `runs` table: creating runs, leases and finishing.
//!
//! Lease rules: every acquisition increments `fence`; every write that takes a [`Lease`] checks,
//! inside its transaction, that the run's `(owner_id, fence)` still equal the lease's, else it
//! fails with [`JournalError::Fenced`] and writes nothing. An expired lease stays valid for its
//! holder until someone else acquires the run; expiry only allows others to take over.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Transaction, params};

use crate::codec::{expiry, to_ms};
use crate::error::JournalError;
use crate::ids::{Lease, Owner, RunId};
use crate::journal::{Durability, Journal, TxError};
use crate::model::{NewRun, RunStatus};

/// When `acquire_lease` may take a run whose lease another owner holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Takeover {
    /// Only if nobody holds it, the lease expired, or the holder has the caller's owner id.
    IfFree,
    /// Also if the current holder is exactly this owner (compare-and-swap on its id): used after
    /// the runtime found that holder's pid dead on this host.
    Steal(Owner),
    /// Regardless of the holder (`--force`).
    Force,
}

impl Journal {
    /// Records a new run in status `running`, without a lease.
    ///
    /// # Errors
    /// [`JournalError::RunExists`] if the id is taken; storage errors.
    pub fn create_run(&self, run: &NewRun, now: DateTime<Utc>) -> Result<(), JournalError> {
        self.write("create run", Durability::Full, |tx| {
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO runs (id, workflow, workflow_version, cluster, input_json, status, \
                     created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?6) \
                     ON CONFLICT (id) DO NOTHING",
                )?
                .execute(params![
                    run.id.to_string(),
                    run.workflow,
                    run.workflow_version,
                    run.cluster,
                    run.input.to_string(),
                    to_ms(now),
                ])?;
            if inserted == 0 {
                return Err(JournalError::RunExists { run: run.id }.into());
            }
            Ok(())
        })
    }

    /// Takes the run's lease for `owner` until `now + ttl`, following `takeover`.
    ///
    /// Increments the fence, sets status `running` (clearing `error` and `finished_at`), and
    /// increments `resume_count` if the run had been leased before. `now` is compared with the
    /// stored expiry inside the write transaction.
    ///
    /// # Errors
    /// [`JournalError::LeaseHeld`] naming the holder; [`JournalError::RunNotFound`];
    /// [`JournalError::RunFinished`] for a succeeded or cancelled run; storage errors.
    pub fn acquire_lease(
        &self,
        run: &RunId,
        owner: &Owner,
        now: DateTime<Utc>,
        ttl: Duration,
        takeover: Takeover,
    ) -> Result<Lease, JournalError> {
        self.write("acquire lease", Durability::Full, |tx| {
            let current = tx
                .prepare_cached(
                    "SELECT status, owner_host, owner_pid, owner_id, lease_expires_at, fence \
                     FROM runs WHERE id = ?1",
                )?
                .query_row([run.to_string()], |r| {
                    let holder = match r.get::<_, Option<String>>(3)? {
                        Some(id) => Some((
                            Owner {
                                host: r.get(1)?,
                                pid: r.get(2)?,
                                id,
                            },
                            r.get::<_, i64>(4)?,
                        )),
                        None => None,
                    };
                    Ok((r.get::<_, String>(0)?, holder, r.get::<_, i64>(5)?))
                })
                .optional()?;
            let Some((status, holder, fence)) = current else {
                return Err(not_found(run).into());
            };
            if let Ok(status @ (RunStatus::Succeeded | RunStatus::Cancelled)) = status.parse() {
                return Err(JournalError::RunFinished { run: *run, status }.into());
            }
            if let Some((holder, expires_ms)) = holder {
                let free = expires_ms <= to_ms(now) || holder.id == owner.id;
                let allowed = match &takeover {
                    Takeover::IfFree => free,
                    Takeover::Steal(victim) => free || holder.id == victim.id,
                    Takeover::Force => true,
                };
                if !allowed {
                    let expires_at = DateTime::from_timestamp_millis(expires_ms)
                        .unwrap_or(DateTime::<Utc>::MAX_UTC);
                    return Err(JournalError::LeaseHeld {
                        run: *run,
                        holder,
                        expires_at,
                    }
                    .into());
                }
            }
            let expires_at = expiry(now, ttl);
            let fence = fence + 1;
            tx.prepare_cached(
                "UPDATE runs SET owner_host = ?2, owner_pid = ?3, owner_id = ?4, \
                 lease_expires_at = ?5, fence = ?6, status = 'running', error = NULL, \
                 finished_at = NULL, updated_at = ?7, \
                 resume_count = resume_count + (CASE WHEN fence > 0 THEN 1 ELSE 0 END) \
                 WHERE id = ?1",
            )?
            .execute(params![
                run.to_string(),
                owner.host,
                owner.pid,
                owner.id,
                to_ms(expires_at),
                fence,
                to_ms(now),
            ])?;
            Ok(Lease {
                run_id: *run,
                owner: owner.clone(),
                fence,
                expires_at,
            })
        })
    }

    /// Extends the lease to `now + ttl` (heartbeat). Committed without fsync (intent record).
    ///
    /// # Errors
    /// [`JournalError::Fenced`] if another owner acquired the run since; storage errors.
    pub fn renew_lease(
        &self,
        lease: &mut Lease,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<(), JournalError> {
        let expires_at = expiry(now, ttl);
        self.write("renew lease", Durability::Intent, |tx| {
            check_fence(tx, lease)?;
            tx.prepare_cached("UPDATE runs SET lease_expires_at = ?2 WHERE id = ?1")?
                .execute(params![lease.run_id.to_string(), to_ms(expires_at)])?;
            Ok(())
        })?;
        lease.expires_at = expires_at;
        Ok(())
    }

    /// Gives the lease up without changing the run's status (another process may take it at once).
    ///
    /// # Errors
    /// [`JournalError::Fenced`] if the lease was already lost; storage errors.
    pub fn release_lease(&self, lease: &Lease, now: DateTime<Utc>) -> Result<(), JournalError> {
        self.write("release lease", Durability::Full, |tx| {
            check_fence(tx, lease)?;
            clear_lease(tx, &lease.run_id, now)?;
            Ok(())
        })
    }

    /// Sets the run's status and error, stamps `finished_at` for terminal statuses, and clears
    /// the lease — one transaction.
    ///
    /// # Errors
    /// [`JournalError::Fenced`] if the caller no longer holds the lease; storage errors.
    pub fn finish_run(
        &self,
        lease: &Lease,
        status: RunStatus,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), JournalError> {
        self.write("finish run", Durability::Full, |tx| {
            check_fence(tx, lease)?;
            let finished_at = status.is_terminal().then(|| to_ms(now));
            tx.prepare_cached(
                "UPDATE runs SET status = ?2, error = ?3, finished_at = ?4 WHERE id = ?1",
            )?
            .execute(params![
                lease.run_id.to_string(),
                status.as_str(),
                error,
                finished_at
            ])?;
            clear_lease(tx, &lease.run_id, now)?;
            Ok(())
        })
    }
}

fn clear_lease(tx: &Transaction<'_>, run: &RunId, now: DateTime<Utc>) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE runs SET owner_host = NULL, owner_pid = NULL, owner_id = NULL, \
         lease_expires_at = NULL, updated_at = ?2 WHERE id = ?1",
    )?
    .execute(params![run.to_string(), to_ms(now)])?;
    Ok(())
}

pub(crate) fn not_found(run: &RunId) -> JournalError {
    JournalError::RunNotFound {
        run: run.to_string(),
    }
}

/// Fails with `Fenced` unless the run's current `(owner_id, fence)` equal the lease's.
/// Call first inside every write transaction that takes a lease.
pub(crate) fn check_fence(tx: &Transaction<'_>, lease: &Lease) -> Result<(), TxError> {
    let current = tx
        .prepare_cached("SELECT owner_id, fence FROM runs WHERE id = ?1")?
        .query_row([lease.run_id.to_string()], |r| {
            Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)?))
        })
        .optional()?;
    match current {
        None => Err(not_found(&lease.run_id).into()),
        Some((Some(owner), fence)) if owner == lease.owner.id && fence == lease.fence => Ok(()),
        Some(_) => Err(JournalError::Fenced { run: lease.run_id }.into()),
    }
}
