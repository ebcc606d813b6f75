//! Writes on the `runs` table: creating runs, leases and finishing.
//!
//! Lease rules: every acquisition increments `fence`; every write that takes a [`Lease`] checks,
//! inside its transaction, that the run's `(owner_id, fence)` still equal the lease's, else it
//! fails with [`JournalError::Fenced`] and writes nothing. An expired lease stays valid for its
//! holder until someone else acquires the run; expiry only allows others to take over.

use std::time::Duration;

use crate::codec::{expiry, owner_from, to_ms};
use crate::error::JournalError;
use crate::ids::{Lease, Owner, RunId};
use crate::journal::Journal;
use crate::model::RunStatus;
use crate::options::Durability;
use crate::queue::cluster_busy;
use crate::sql::{RowLock, Tx, TxError, vals};
use chrono::{DateTime, Utc};

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
            let sql = format!(
                "SELECT status, owner_host, owner_pid, owner_id, lease_expires_at, fence, \
                 owner_machine, cluster FROM runs WHERE id = ?1{}",
                tx.locking(RowLock::Update)
            );
            let current = match tx.query_opt(&sql, vals![run.to_string()])? {
                Some(r) => {
                    let holder = match r.opt_text(3)? {
                        Some(id) => Some((owner_from(&r, 1, 2, 6, id)?, r.int(4)?)),
                        None => None,
                    };
                    Some((r.text(0)?, holder, r.int(5)?, r.text(7)?))
                }
                None => None,
            };
            // Read after the row lock was granted: a lease decision never uses an instant
            // from before a wait.
            let now = tx.lease_now(now)?;
            let Some((status, holder, fence, cluster)) = current else {
                return Err(not_found(run).into());
            };
            let parsed: Option<RunStatus> = status.parse().ok();
            if let Some(status @ (RunStatus::Succeeded | RunStatus::Cancelled)) = parsed {
                return Err(JournalError::RunFinished { run: *run, status }.into());
            }
            // A run that becomes active again must be its cluster's only active run.
            if !parsed.is_some_and(RunStatus::is_active)
                && let Some(busy) = cluster_busy(tx, &cluster, Some(run))?
            {
                return Err(busy.into());
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
                        holder: Box::new(holder),
                        expires_at,
                    }
                    .into());
                }
            }
            let expires_at = expiry(now, ttl);
            let fence = fence + 1;
            tx.execute(
                "UPDATE runs SET owner_host = ?2, owner_pid = ?3, owner_id = ?4, \
                 lease_expires_at = ?5, fence = ?6, status = 'running', error = NULL, \
                 finished_at = NULL, updated_at = ?7, owner_machine = ?8, \
                 resume_count = resume_count + (CASE WHEN fence > 0 THEN 1 ELSE 0 END) \
                 WHERE id = ?1",
                vals![
                    run.to_string(),
                    &owner.host,
                    owner.pid,
                    &owner.id,
                    to_ms(expires_at),
                    fence,
                    to_ms(now),
                    &owner.machine,
                ],
            )?;
            Ok(Lease {
                run_id: *run,
                owner: owner.clone(),
                fence,
                expires_at,
            })
        })
    }

    /// Checks, without writing, that `lease` still holds its run: the read a process does before
    /// it acts, when it has nothing to journal yet.
    ///
    /// # Errors
    /// [`JournalError::Fenced`] if another owner acquired the run since;
    /// [`JournalError::RunNotFound`]; storage errors.
    pub fn check_lease(&self, lease: &Lease) -> Result<(), JournalError> {
        self.read("check lease", |tx| fence_holds(tx, lease, RowLock::None))
    }

    /// Extends the lease to `now + ttl` (heartbeat), `now` being the database's clock on
    /// PostgreSQL. Committed without fsync (intent record).
    ///
    /// # Errors
    /// [`JournalError::Fenced`] if another owner acquired the run since; storage errors.
    pub fn renew_lease(
        &self,
        lease: &mut Lease,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<(), JournalError> {
        let run = &*lease;
        let expires_at = self.write("renew lease", Durability::Intent, |tx| {
            check_fence(tx, run)?;
            let expires_at = expiry(tx.lease_now(now)?, ttl);
            tx.execute(
                "UPDATE runs SET lease_expires_at = ?2 WHERE id = ?1",
                vals![run.run_id.to_string(), to_ms(expires_at)],
            )?;
            Ok(expires_at)
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
            // Put back in the queue by a worker that shut down: that claim ended cleanly, so
            // it does not count as one without progress.
            let stalled: i64 = if status == RunStatus::Queued { 1 } else { 0 };
            tx.execute(
                "UPDATE runs SET status = ?2, error = ?3, finished_at = ?4, \
                 stalled_claims = CASE WHEN stalled_claims > ?5 THEN stalled_claims - ?5 ELSE 0 END \
                 WHERE id = ?1",
                vals![
                    lease.run_id.to_string(),
                    status.as_str(),
                    error,
                    finished_at,
                    stalled
                ],
            )?;
            clear_lease(tx, &lease.run_id, now)?;
            Ok(())
        })
    }
}

fn clear_lease(tx: &mut dyn Tx, run: &RunId, now: DateTime<Utc>) -> Result<(), TxError> {
    tx.execute(
        "UPDATE runs SET owner_host = NULL, owner_pid = NULL, owner_id = NULL, \
         owner_machine = NULL, lease_expires_at = NULL, updated_at = ?2 WHERE id = ?1",
        vals![run.to_string(), to_ms(now)],
    )?;
    Ok(())
}

pub(crate) fn not_found(run: &RunId) -> JournalError {
    JournalError::RunNotFound {
        run: run.to_string(),
    }
}

/// Fails with `Fenced` unless the run's current `(owner_id, fence)` equal the lease's.
/// Call first inside every write transaction that takes a lease.
/// On PostgreSQL the run row stays locked `FOR UPDATE` until the transaction ends, so a takeover
/// waits for this write (and this write, had the takeover come first, sees its new fence). Not
/// `FOR SHARE`: most of these writes then update the run row, and two share holders upgrading
/// (a lease renewal and a step commit of one run) deadlock.
pub(crate) fn check_fence(tx: &mut dyn Tx, lease: &Lease) -> Result<(), TxError> {
    fence_holds(tx, lease, RowLock::Update)
}

fn fence_holds(tx: &mut dyn Tx, lease: &Lease, lock: RowLock) -> Result<(), TxError> {
    let sql = format!(
        "SELECT owner_id, fence FROM runs WHERE id = ?1{}",
        tx.locking(lock)
    );
    let current = match tx.query_opt(&sql, vals![lease.run_id.to_string()])? {
        Some(r) => Some((r.opt_text(0)?, r.int(1)?)),
        None => None,
    };
    match current {
        None => Err(not_found(&lease.run_id).into()),
        Some((Some(owner), fence)) if owner == lease.owner.id && fence == lease.fence => Ok(()),
        Some(_) => Err(JournalError::Fenced { run: lease.run_id }.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StepStatus;
    use crate::testutil::{TTL, each_backend, leased_run, new_run, owner, t};

    #[test]
    fn create_run_stores_the_run_without_a_lease() {
        each_backend(|journal| {
            let run = new_run("cluster.create", "demo");
            journal.create_run(&run, t(5)).unwrap();
            let state = journal.load_run(&run.id).unwrap();
            let r = state.run;
            assert_eq!(r.id, run.id);
            assert_eq!(r.workflow, "cluster.create");
            assert_eq!(r.workflow_version, 3);
            assert_eq!(r.cluster, "demo");
            assert_eq!(r.input, run.input);
            assert_eq!(r.status, RunStatus::Running);
            assert_eq!(
                (r.created_at, r.updated_at, r.finished_at),
                (t(5), t(5), None)
            );
            assert_eq!(
                (r.owner, r.lease_expires_at, r.fence, r.resume_count),
                (None, None, 0, 0)
            );
            assert!(state.steps.is_empty() && state.attempts.is_empty());
        });
    }

    #[test]
    fn creating_a_run_twice_is_refused() {
        each_backend(|journal| {
            let run = new_run("cluster.create", "demo");
            journal.create_run(&run, t(0)).unwrap();
            let err = journal.create_run(&run, t(1)).unwrap_err();
            assert_eq!(err.to_string(), format!("run {} already exists", run.id));
            assert_eq!(journal.load_run(&run.id).unwrap().run.created_at, t(0));
        });
    }

    #[test]
    fn acquiring_a_free_run_sets_owner_expiry_and_fence() {
        each_backend(|journal| {
            let lease = leased_run(journal, 1_000);
            assert_eq!(lease.fence, 1);
            assert_eq!(lease.owner, owner("a"));
            assert_eq!(lease.expires_at, t(31_000));
            let run = journal.load_run(&lease.run_id).unwrap().run;
            assert_eq!(run.owner, Some(owner("a")));
            assert_eq!(run.lease_expires_at, Some(t(31_000)));
            assert_eq!((run.fence, run.resume_count), (1, 0));
            assert_eq!(run.status, RunStatus::Running);
        });
    }

    #[test]
    fn acquiring_an_unknown_run_is_not_found() {
        each_backend(|journal| {
            let id = RunId::new();
            let err = journal
                .acquire_lease(&id, &owner("a"), t(0), TTL, Takeover::IfFree)
                .unwrap_err();
            assert_eq!(err.to_string(), format!("no run matches \"{id}\""));
        });
    }

    #[test]
    fn a_live_lease_held_by_another_owner_is_refused_naming_the_holder() {
        each_backend(|journal| {
            let lease = leased_run(journal, 0);
            let err = journal
                .acquire_lease(&lease.run_id, &owner("b"), t(29_999), TTL, Takeover::IfFree)
                .unwrap_err();
            match &err {
                JournalError::LeaseHeld {
                    run,
                    holder,
                    expires_at,
                } => {
                    assert_eq!(
                        (run, holder, *expires_at),
                        (&lease.run_id, &Box::new(owner("a")), t(30_000))
                    );
                }
                other => panic!("unexpected {other:?}"),
            }
            assert_eq!(
                err.to_string(),
                format!(
                    "run {} is held by pid 101 on a-host (owner a-id) until 2023-11-14 22:13:50 UTC",
                    lease.run_id
                )
            );
            // Nothing changed.
            let run = journal.load_run(&lease.run_id).unwrap().run;
            assert_eq!((run.fence, run.owner), (1, Some(owner("a"))));
        });
    }

    #[test]
    fn the_same_owner_reacquires_its_own_live_lease() {
        each_backend(|journal| {
            let lease = leased_run(journal, 0);
            let again = journal
                .acquire_lease(&lease.run_id, &owner("a"), t(10), TTL, Takeover::IfFree)
                .unwrap();
            assert_eq!(again.fence, 2);
            // The first lease is now stale: fences are compared, not only owners.
            let err = journal
                .renew_lease(&mut lease.clone(), t(20), TTL)
                .unwrap_err();
            assert!(matches!(err, JournalError::Fenced { .. }), "{err:?}");
        });
    }

    #[test]
    fn an_expired_lease_is_taken_over_and_counts_as_a_resume() {
        each_backend(|journal| {
            let lease = leased_run(journal, 0);
            let b = journal
                .acquire_lease(&lease.run_id, &owner("b"), t(30_000), TTL, Takeover::IfFree)
                .unwrap();
            assert_eq!((b.fence, b.expires_at), (2, t(60_000)));
            let run = journal.load_run(&lease.run_id).unwrap().run;
            assert_eq!((run.owner, run.resume_count), (Some(owner("b")), 1));
        });
    }

    #[test]
    fn steal_is_a_compare_and_swap_on_the_holder() {
        each_backend(|journal| {
            let lease = leased_run(journal, 0);
            let err = journal
                .acquire_lease(
                    &lease.run_id,
                    &owner("b"),
                    t(1),
                    TTL,
                    Takeover::Steal(owner("c")),
                )
                .unwrap_err();
            assert!(
                matches!(&err, JournalError::LeaseHeld { holder, .. } if **holder == owner("a")),
                "{err:?}"
            );
            let b = journal
                .acquire_lease(
                    &lease.run_id,
                    &owner("b"),
                    t(2),
                    TTL,
                    Takeover::Steal(owner("a")),
                )
                .unwrap();
            assert_eq!(b.fence, 2);
            // A second steal naming the old holder fails: the swap already happened.
            let err = journal
                .acquire_lease(
                    &lease.run_id,
                    &owner("c"),
                    t(3),
                    TTL,
                    Takeover::Steal(owner("a")),
                )
                .unwrap_err();
            assert!(
                matches!(&err, JournalError::LeaseHeld { holder, .. } if **holder == owner("b")),
                "{err:?}"
            );
        });
    }

    #[test]
    fn force_takes_a_live_lease() {
        each_backend(|journal| {
            let lease = leased_run(journal, 0);
            let c = journal
                .acquire_lease(&lease.run_id, &owner("c"), t(1), TTL, Takeover::Force)
                .unwrap();
            assert_eq!(c.fence, 2);
            let run = journal.load_run(&lease.run_id).unwrap().run;
            assert_eq!((run.owner, run.resume_count), (Some(owner("c")), 1));
        });
    }

    #[test]
    fn renew_extends_from_now_and_is_fenced_after_a_takeover() {
        each_backend(|journal| {
            let mut lease = leased_run(journal, 0);
            journal.renew_lease(&mut lease, t(10_000), TTL).unwrap();
            assert_eq!(lease.expires_at, t(40_000));
            let run = journal.load_run(&lease.run_id).unwrap().run;
            assert_eq!(run.lease_expires_at, Some(t(40_000)));
            // Still ours after expiry as long as nobody took it.
            journal.renew_lease(&mut lease, t(50_000), TTL).unwrap();
            journal
                .acquire_lease(&lease.run_id, &owner("b"), t(80_001), TTL, Takeover::IfFree)
                .unwrap();
            let before = lease.clone();
            let err = journal.renew_lease(&mut lease, t(80_002), TTL).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "lost the lease on run {}: another process took it over (fenced out); nothing was written",
                    lease.run_id
                )
            );
            assert_eq!(lease, before);
            let run = journal.load_run(&lease.run_id).unwrap().run;
            assert_eq!(run.lease_expires_at, Some(t(110_001)));
        });
    }

    #[test]
    fn a_fenced_out_owner_cannot_write_and_the_journal_is_unchanged() {
        each_backend(|journal| {
            let a = leased_run(journal, 0);
            let network = crate::testutil::start("network", 1, 1);
            journal.start_attempt(&a, &network).unwrap();
            // A stalls past its lease; B takes over.
            let b = journal
                .acquire_lease(&a.run_id, &owner("b"), t(40_000), TTL, Takeover::IfFree)
                .unwrap();
            assert_eq!(b.fence, a.fence + 1);
            let before = journal.load_run(&a.run_id).unwrap();

            let fenced = |r: Result<(), JournalError>| {
                assert!(
                    matches!(r, Err(JournalError::Fenced { run }) if run == a.run_id),
                    "{r:?}"
                );
            };
            fenced(journal.complete_step(&a, &network, &serde_json::json!({"id": 1}), t(40_001)));
            fenced(journal.start_attempt(&a, &crate::testutil::start("subnet", 1, 40_002)));
            fenced(journal.complete_step(
                &a,
                &crate::testutil::start("subnet", 1, 40_002),
                &serde_json::json!({"id": 2}),
                t(40_002),
            ));
            fenced(journal.fail_attempt(
                &a,
                &network,
                &crate::testutil::failure(crate::FailureKind::Retryable, "boom", None, false),
                t(40_003),
            ));
            fenced(journal.check_lease(&a));
            fenced(journal.finish_run(&a, RunStatus::Failed, Some("boom"), t(40_004)));
            fenced(journal.release_lease(&a, t(40_005)));
            assert_eq!(journal.load_run(&a.run_id).unwrap(), before);

            // B's writes go through.
            journal.check_lease(&b).unwrap();
            journal
                .complete_step(&b, &network, &serde_json::json!({"id": 1}), t(40_010))
                .unwrap();
            let state = journal.load_run(&a.run_id).unwrap();
            assert_eq!(state.steps[0].status, StepStatus::Succeeded);
        });
    }

    #[test]
    fn finish_run_sets_status_and_clears_the_lease() {
        each_backend(|journal| {
            let lease = leased_run(journal, 0);
            journal
                .finish_run(&lease, RunStatus::Failed, Some("quota exceeded"), t(5))
                .unwrap();
            let run = journal.load_run(&lease.run_id).unwrap().run;
            assert_eq!(run.status, RunStatus::Failed);
            assert_eq!(run.error.as_deref(), Some("quota exceeded"));
            assert_eq!((run.finished_at, run.updated_at), (Some(t(5)), t(5)));
            assert_eq!(
                (run.owner, run.lease_expires_at, run.fence),
                (None, None, 1)
            );
            // The finished lease no longer writes.
            let err = journal
                .finish_run(&lease, RunStatus::Succeeded, None, t(6))
                .unwrap_err();
            assert!(matches!(err, JournalError::Fenced { .. }), "{err:?}");

            // A failed run can be resumed: status back to running, error and finish cleared.
            let b = journal
                .acquire_lease(&lease.run_id, &owner("b"), t(7), TTL, Takeover::IfFree)
                .unwrap();
            let run = journal.load_run(&lease.run_id).unwrap().run;
            assert_eq!(
                (run.status, run.error, run.finished_at),
                (RunStatus::Running, None, None)
            );
            assert_eq!((run.fence, run.resume_count), (2, 1));
            journal
                .finish_run(&b, RunStatus::Interrupted, None, t(8))
                .unwrap();
            let run = journal.load_run(&lease.run_id).unwrap().run;
            assert_eq!(
                (run.status, run.finished_at),
                (RunStatus::Interrupted, None)
            );
        });
    }

    #[test]
    fn succeeded_and_cancelled_runs_cannot_be_leased() {
        each_backend(|journal| {
            for status in [RunStatus::Succeeded, RunStatus::Cancelled] {
                let lease = leased_run(journal, 0);
                journal.finish_run(&lease, status, None, t(1)).unwrap();
                let err = journal
                    .acquire_lease(&lease.run_id, &owner("a"), t(2), TTL, Takeover::Force)
                    .unwrap_err();
                assert_eq!(
                    err.to_string(),
                    format!("run {} is {status}; it cannot be resumed", lease.run_id)
                );
            }
        });
    }

    #[test]
    fn release_keeps_the_status_and_frees_the_run_at_once() {
        each_backend(|journal| {
            let lease = leased_run(journal, 0);
            journal.release_lease(&lease, t(1)).unwrap();
            let run = journal.load_run(&lease.run_id).unwrap().run;
            assert_eq!((run.status, run.owner), (RunStatus::Running, None));
            let b = journal
                .acquire_lease(&lease.run_id, &owner("b"), t(2), TTL, Takeover::IfFree)
                .unwrap();
            assert_eq!(b.fence, 2);
        });
    }

    #[test]
    fn two_processes_racing_for_a_free_run_get_exactly_one_lease() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let run = new_run("cluster.create", "demo");
        Journal::open(&path)
            .unwrap()
            .create_run(&run, t(0))
            .unwrap();
        for round in 0..5 {
            let barrier = std::sync::Barrier::new(2);
            let results: Vec<_> = std::thread::scope(|s| {
                let handles: Vec<_> = ["a", "b"]
                    .into_iter()
                    .map(|name| {
                        let (path, barrier, id) = (&path, &barrier, run.id);
                        s.spawn(move || {
                            // Separate connections, as two processes would have.
                            let journal = Journal::open(path).unwrap();
                            barrier.wait();
                            let now = t(round * 100_000);
                            journal.acquire_lease(&id, &owner(name), now, TTL, Takeover::IfFree)
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let won = results.iter().filter(|r| r.is_ok()).count();
            let held = results
                .iter()
                .filter(|r| matches!(r, Err(JournalError::LeaseHeld { .. })))
                .count();
            assert_eq!((won, held), (1, 1), "round {round}: {results:?}");
            let fence = journal_fence(&path, &run.id);
            assert_eq!(fence, round + 1);
        }
    }

    fn journal_fence(path: &std::path::Path, id: &RunId) -> i64 {
        Journal::open(path).unwrap().load_run(id).unwrap().run.fence
    }
}
