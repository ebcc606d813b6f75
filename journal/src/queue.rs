//! The run queue: creating runs under the one-active-run-per-cluster rule, enqueueing with a
//! dedup key, the cluster's active run, and a worker's claim of the next runnable run.
//!
//! Two unique partial indexes hold the rules for every runner of a journal (`runs_one_active`
//! on `cluster`, `runs_dedup` on `dedup_key`, both over queued and running runs). An insert
//! that would break one does nothing (`ON CONFLICT DO NOTHING`: on PostgreSQL it waits for a
//! concurrent insert of the same key to commit), and the transaction then reads which rule it
//! met. A claim takes the oldest queued run, or the oldest running run whose lease expired on
//! the database clock, locking it with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so workers
//! never wait on each other; on SQLite the write transaction holds the whole file.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::codec::{RUN_COLUMNS, expiry, run_from_row, to_ms};
use crate::error::JournalError;
use crate::ids::{Owner, RunId};
use crate::journal::Journal;
use crate::model::{NewRun, RunRecord, RunStatus};
use crate::options::Durability;
use crate::sql::{RowLock, Tx, TxError, vals};

/// After this many claims without a completed step, a worker gives the run up (`failed`).
pub const MAX_STALLED_CLAIMS: u32 = 5;

/// The outcome of [`Journal::enqueue_run`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Enqueued {
    /// The queued run: the new one, or the active run that already carries the dedup key.
    pub run: RunId,
    /// Whether this call created it.
    pub created: bool,
}

/// What [`Journal::claim_run`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The run is now held by the claiming owner (status `running`, lease until the TTL):
    /// execute it (the runtime's lease acquisition finds its own lease and fences it anew).
    Run {
        /// The run.
        run: RunId,
        /// Its workflow.
        workflow: String,
        /// Its cluster.
        cluster: String,
    },
    /// The run had been claimed [`MAX_STALLED_CLAIMS`] times without progress and is now
    /// `failed`; claim again for the next one.
    GaveUp {
        /// The run.
        run: RunId,
        /// Claims since its last completed step.
        claims: u32,
    },
}

/// The error journaled on a run a worker gave up on.
pub fn gave_up_message(claims: u32) -> String {
    format!(
        "gave up after {claims} claims without progress: every runner that took this run \
         stopped before completing a step (see `hk8s history` for its attempts; \
         `hk8s resume` tries again)"
    )
}

impl Journal {
    /// Records a new run in status `running`, without a lease.
    ///
    /// # Errors
    /// [`JournalError::RunExists`] if the id is taken; [`JournalError::ClusterBusy`] if the
    /// cluster already has an active (queued or running) run; storage errors.
    pub fn create_run(&self, run: &NewRun, now: DateTime<Utc>) -> Result<(), JournalError> {
        self.write("create run", Durability::Full, |tx| {
            if insert_run(tx, run, RunStatus::Running, None, now)? {
                return Ok(());
            }
            Err(refusal(tx, run, None)?.into())
        })
    }

    /// Records a new run in status `queued` for a worker to claim. With `dedup`, a run that
    /// is active (queued or running) with the same key is returned instead of a new one, so
    /// two triggers of one intent make one run.
    ///
    /// # Errors
    /// [`JournalError::RunExists`]; [`JournalError::ClusterBusy`] if the cluster has another
    /// active run; storage errors.
    pub fn enqueue_run(
        &self,
        run: &NewRun,
        dedup: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Enqueued, JournalError> {
        self.write("enqueue run", Durability::Full, |tx| {
            if insert_run(tx, run, RunStatus::Queued, dedup, now)? {
                return Ok(Enqueued {
                    run: run.id,
                    created: true,
                });
            }
            match refusal(tx, run, dedup)? {
                JournalError::RunExists { run: existing } if existing != run.id => Ok(Enqueued {
                    run: existing,
                    created: false,
                }),
                other => Err(other.into()),
            }
        })
    }

    /// The cluster's active run (queued or running), if any: at most one per cluster exists
    /// in the whole journal. Other workflows check it before they start one.
    ///
    /// # Errors
    /// Storage errors.
    pub fn active_run(&self, cluster: &str) -> Result<Option<RunRecord>, JournalError> {
        self.read("find the active run", |tx| {
            let row = tx.query_opt(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE cluster = ?1 \
                     AND status IN ('queued', 'running')"
                ),
                vals![cluster],
            )?;
            row.as_ref().map(run_from_row).transpose()
        })
    }

    /// Claims the next run for `owner`: the oldest queued run, else the oldest running run
    /// whose lease expired (its holder died or lost the database). Interrupted runs (a
    /// person's Ctrl-C) are never claimed. The claim holds the run's lease until `now + ttl`
    /// (the database's clock on PostgreSQL) and counts as a claim without progress until a
    /// step completes; a run that reached [`MAX_STALLED_CLAIMS`] is failed instead.
    ///
    /// # Errors
    /// Storage errors.
    pub fn claim_run(
        &self,
        owner: &Owner,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<Option<Claim>, JournalError> {
        self.write("claim a run", Durability::Full, |tx| {
            let now = tx.lease_now(now)?;
            let sql = format!(
                "SELECT id, workflow, cluster, stalled_claims FROM runs \
                 WHERE status = 'queued' \
                    OR (status = 'running' AND owner_id IS NOT NULL AND lease_expires_at <= ?1) \
                 ORDER BY created_at, id LIMIT 1{}",
                tx.locking(RowLock::Claim)
            );
            let Some(row) = tx.query_opt(&sql, vals![to_ms(now)])? else {
                return Ok(None);
            };
            let id = row.text(0)?;
            let run: RunId = id.parse().map_err(|_| row.unparsable(0, "a run id"))?;
            let claims = row.u32(3)?;
            if claims >= MAX_STALLED_CLAIMS {
                tx.execute(
                    "UPDATE runs SET status = 'failed', error = ?2, finished_at = ?3, \
                     updated_at = ?3, owner_host = NULL, owner_pid = NULL, owner_id = NULL, \
                     owner_machine = NULL, lease_expires_at = NULL, dedup_key = NULL \
                     WHERE id = ?1",
                    vals![&id, gave_up_message(claims), to_ms(now)],
                )?;
                return Ok(Some(Claim::GaveUp { run, claims }));
            }
            tx.execute(
                "UPDATE runs SET owner_host = ?2, owner_pid = ?3, owner_id = ?4, \
                 owner_machine = ?5, lease_expires_at = ?6, status = 'running', error = NULL, \
                 finished_at = NULL, updated_at = ?7, stalled_claims = stalled_claims + 1 \
                 WHERE id = ?1",
                vals![
                    &id,
                    &owner.host,
                    owner.pid,
                    &owner.id,
                    &owner.machine,
                    to_ms(expiry(now, ttl)),
                    to_ms(now),
                ],
            )?;
            Ok(Some(Claim::Run {
                run,
                workflow: row.text(1)?,
                cluster: row.text(2)?,
            }))
        })
    }
}

impl Journal {
    /// Ends the running run `run` whose holder `holder` is known dead (a process of this
    /// machine that is gone), so a new run of its cluster may start: `failed` with `message`,
    /// lease cleared (compare-and-swap on the holder's owner id). `false` when the run moved
    /// on meanwhile (another process took it, or it ended).
    ///
    /// # Errors
    /// Storage errors.
    pub fn supersede_dead_run(
        &self,
        run: &RunId,
        holder: &Owner,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, JournalError> {
        self.write("supersede a dead run", Durability::Full, |tx| {
            let changed = tx.execute(
                "UPDATE runs SET status = 'failed', error = ?3, finished_at = ?4, updated_at = ?4, \
                 owner_host = NULL, owner_pid = NULL, owner_id = NULL, owner_machine = NULL, \
                 lease_expires_at = NULL, dedup_key = NULL \
                 WHERE id = ?1 AND status = 'running' AND owner_id = ?2",
                vals![run.to_string(), &holder.id, message, to_ms(now)],
            )?;
            Ok(changed > 0)
        })
    }

    /// Lets a claim of `owner` lapse at once (the run could not start there: the cloud lock
    /// is still held, the token was refused): the lease expires now, so the next claim takes
    /// the run again. With `stalled` false the claim does not count as one without progress
    /// (the run waits for something else, it did not die). `false` when `owner` no longer
    /// holds the run.
    ///
    /// # Errors
    /// Storage errors.
    pub fn release_claim(
        &self,
        run: &RunId,
        owner: &Owner,
        now: DateTime<Utc>,
        stalled: bool,
    ) -> Result<bool, JournalError> {
        self.write("release a claim", Durability::Full, |tx| {
            let now = tx.lease_now(now)?;
            let undo: i64 = if stalled { 0 } else { 1 };
            let changed = tx.execute(
                "UPDATE runs SET lease_expires_at = ?3, updated_at = ?3, \
                 stalled_claims = CASE WHEN stalled_claims > ?4 THEN stalled_claims - ?4 \
                 ELSE 0 END WHERE id = ?1 AND owner_id = ?2 AND status = 'running'",
                vals![run.to_string(), &owner.id, to_ms(now), undo],
            )?;
            Ok(changed > 0)
        })
    }
}

/// Inserts `run` unless a unique rule forbids it; `false` when nothing was inserted.
fn insert_run(
    tx: &mut dyn Tx,
    run: &NewRun,
    status: RunStatus,
    dedup: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, TxError> {
    let inserted = tx.execute(
        "INSERT INTO runs (id, workflow, workflow_version, cluster, input_json, status, \
         created_at, updated_at, dedup_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8) \
         ON CONFLICT DO NOTHING",
        vals![
            run.id.to_string(),
            &run.workflow,
            run.workflow_version,
            &run.cluster,
            run.input.to_string(),
            status.as_str(),
            to_ms(now),
            dedup,
        ],
    )?;
    Ok(inserted > 0)
}

/// Why `run` was not inserted: its id exists, an active run carries `dedup`
/// ([`JournalError::RunExists`] naming that run), or the cluster is busy.
fn refusal(tx: &mut dyn Tx, run: &NewRun, dedup: Option<&str>) -> Result<JournalError, TxError> {
    let id = run.id.to_string();
    if tx
        .query_opt("SELECT id FROM runs WHERE id = ?1", vals![&id])?
        .is_some()
    {
        return Ok(JournalError::RunExists { run: run.id });
    }
    if let Some(key) = dedup
        && let Some(row) = tx.query_opt(
            "SELECT id FROM runs WHERE dedup_key = ?1 AND status IN ('queued', 'running')",
            vals![key],
        )?
    {
        let existing = row.text(0)?;
        let existing = existing
            .parse()
            .map_err(|_| row.unparsable(0, "a run id"))?;
        return Ok(JournalError::RunExists { run: existing });
    }
    match cluster_busy(tx, &run.cluster, None)? {
        Some(busy) => Ok(busy),
        // Not reached: the insert did nothing because of a committed row (PostgreSQL waits
        // for a concurrent insert of the same key and inserts if that one rolls back), and the
        // reads above see every committed row that could have conflicted.
        None => Ok(JournalError::RunExists { run: run.id }),
    }
}

/// [`JournalError::ClusterBusy`] if `cluster` has an active run other than `except`.
pub(crate) fn cluster_busy(
    tx: &mut dyn Tx,
    cluster: &str,
    except: Option<&RunId>,
) -> Result<Option<JournalError>, TxError> {
    let except = except.map(ToString::to_string).unwrap_or_default();
    let row = tx.query_opt(
        "SELECT id, workflow, status FROM runs WHERE cluster = ?1 \
         AND status IN ('queued', 'running') AND id <> ?2",
        vals![cluster, &except],
    )?;
    let Some(row) = row else { return Ok(None) };
    let active = row
        .text(0)?
        .parse()
        .map_err(|_| row.unparsable(0, "a run id"))?;
    let status = row
        .text(2)?
        .parse()
        .map_err(|_| row.unparsable(2, "a run status"))?;
    Ok(Some(JournalError::ClusterBusy {
        cluster: cluster.to_owned(),
        active,
        workflow: row.text(1)?,
        status,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{TTL, each_backend, new_run, owner, start, t};
    use crate::{Location, OpenOptions, Takeover};

    fn claimed(claim: Option<Claim>) -> RunId {
        match claim {
            Some(Claim::Run { run, .. }) => run,
            other => panic!("expected a claimed run, got {other:?}"),
        }
    }

    #[test]
    fn a_cluster_has_one_active_run_and_the_refusal_names_it() {
        each_backend(|journal| {
            let first = new_run("cluster.create", "demo");
            journal.create_run(&first, t(0)).unwrap();
            let second = new_run("cluster.destroy", "demo");
            let err = journal.create_run(&second, t(1)).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "cluster demo already has an active run {} (cluster.create, running); one run \
                     per cluster at a time: wait for it, or resume it with `hk8s resume {}`",
                    first.id, first.id
                )
            );
            assert!(journal.load_run(&second.id).is_err(), "nothing was written");
            // Another cluster is independent.
            journal
                .create_run(&new_run("cluster.create", "other"), t(2))
                .unwrap();
            assert_eq!(journal.active_run("demo").unwrap().unwrap().id, first.id);
            // Once the first run ended, the cluster takes a new one; the old one cannot become
            // active again while the new one is.
            let lease = journal
                .acquire_lease(&first.id, &owner("a"), t(3), TTL, Takeover::IfFree)
                .unwrap();
            journal
                .finish_run(&lease, RunStatus::Failed, Some("boom"), t(4))
                .unwrap();
            assert_eq!(journal.active_run("demo").unwrap(), None);
            journal.create_run(&second, t(5)).unwrap();
            let err = journal
                .acquire_lease(&first.id, &owner("a"), t(6), TTL, Takeover::IfFree)
                .unwrap_err();
            assert!(
                matches!(&err, JournalError::ClusterBusy { active, .. } if *active == second.id),
                "{err:?}"
            );
            // The active run itself is resumed as before.
            journal
                .acquire_lease(&second.id, &owner("a"), t(7), TTL, Takeover::IfFree)
                .unwrap();
        });
    }

    #[test]
    fn a_dead_holders_run_is_superseded_only_while_that_holder_has_it() {
        each_backend(|journal| {
            let run = new_run("cluster.create", "demo");
            journal.create_run(&run, t(0)).unwrap();
            journal
                .acquire_lease(&run.id, &owner("a"), t(0), TTL, Takeover::IfFree)
                .unwrap();
            assert!(
                !journal
                    .supersede_dead_run(&run.id, &owner("b"), "gone", t(1))
                    .unwrap()
            );
            assert!(
                journal
                    .supersede_dead_run(&run.id, &owner("a"), "gone", t(1))
                    .unwrap()
            );
            let record = journal.load_run(&run.id).unwrap().run;
            assert_eq!((record.status, record.owner), (RunStatus::Failed, None));
            assert_eq!(record.error.as_deref(), Some("gone"));
            journal
                .create_run(&new_run("cluster.destroy", "demo"), t(2))
                .unwrap();
        });
    }

    #[test]
    fn enqueueing_with_a_dedup_key_twice_gives_one_run() {
        each_backend(|journal| {
            let a = new_run("cluster.upgrade", "demo");
            let b = new_run("cluster.upgrade", "demo");
            let key = Some("upgrade/demo/v1.11.0");
            let first = journal.enqueue_run(&a, key, t(0)).unwrap();
            assert_eq!(
                first,
                Enqueued {
                    run: a.id,
                    created: true
                }
            );
            let again = journal.enqueue_run(&b, key, t(1)).unwrap();
            assert_eq!(
                again,
                Enqueued {
                    run: a.id,
                    created: false
                }
            );
            let run = journal.load_run(&a.id).unwrap().run;
            assert_eq!(run.status, RunStatus::Queued);
            assert_eq!(run.dedup_key.as_deref(), key);
            assert!(journal.load_run(&b.id).is_err());
            // Another key for the same cluster is a second active run: refused.
            let err = journal
                .enqueue_run(&b, Some("upgrade/demo/v1.12.0"), t(2))
                .unwrap_err();
            assert!(matches!(err, JournalError::ClusterBusy { .. }), "{err:?}");
            // Once the run finished, the same key makes a new run.
            let run = claimed(journal.claim_run(&owner("w"), t(3), TTL).unwrap());
            let lease = journal
                .acquire_lease(&run, &owner("w"), t(3), TTL, Takeover::IfFree)
                .unwrap();
            journal
                .finish_run(&lease, RunStatus::Succeeded, None, t(4))
                .unwrap();
            let later = journal.enqueue_run(&b, key, t(5)).unwrap();
            assert_eq!(
                later,
                Enqueued {
                    run: b.id,
                    created: true
                }
            );
        });
    }

    #[test]
    fn workers_claim_queued_runs_oldest_first_and_expired_ones_after_expiry() {
        each_backend(|journal| {
            let old = new_run("cluster.create", "one");
            let young = new_run("cluster.create", "two");
            journal.enqueue_run(&old, None, t(0)).unwrap();
            journal.enqueue_run(&young, None, t(1)).unwrap();
            let interrupted = new_run("cluster.create", "three");
            journal.create_run(&interrupted, t(2)).unwrap();
            let lease = journal
                .acquire_lease(&interrupted.id, &owner("h"), t(2), TTL, Takeover::IfFree)
                .unwrap();
            journal
                .finish_run(&lease, RunStatus::Interrupted, Some("Ctrl-C"), t(3))
                .unwrap();

            assert_eq!(
                claimed(journal.claim_run(&owner("a"), t(10), TTL).unwrap()),
                old.id
            );
            let run = journal.load_run(&old.id).unwrap().run;
            assert_eq!(run.status, RunStatus::Running);
            assert_eq!(run.owner, Some(owner("a")));
            assert_eq!(run.lease_expires_at, Some(t(30_010)));
            assert_eq!(run.stalled_claims, 1);
            assert_eq!(
                claimed(journal.claim_run(&owner("b"), t(11), TTL).unwrap()),
                young.id
            );
            // Both held, the interrupted run is a person's: nothing to claim.
            assert_eq!(journal.claim_run(&owner("c"), t(12), TTL).unwrap(), None);
            // The claimer's own lease acquisition fences its claim anew, without a resume.
            let lease = journal
                .acquire_lease(&old.id, &owner("a"), t(13), TTL, Takeover::IfFree)
                .unwrap();
            let stale = journal.load_run(&old.id).unwrap().run;
            assert_eq!((stale.fence, stale.resume_count), (1, 0));
            // `a` and `b` die; once a lease expired, `c` claims that run (`b`'s expired
            // first) and the dead holder's lease is fenced.
            assert_eq!(
                journal.claim_run(&owner("c"), t(30_010), TTL).unwrap(),
                None
            );
            assert_eq!(
                claimed(journal.claim_run(&owner("c"), t(30_012), TTL).unwrap()),
                young.id
            );
            assert_eq!(
                claimed(journal.claim_run(&owner("c"), t(30_013), TTL).unwrap()),
                old.id
            );
            let err = journal
                .complete_step(
                    &lease,
                    &start("k", 1, 30_014),
                    &serde_json::json!(1),
                    t(30_014),
                )
                .unwrap_err();
            assert!(matches!(err, JournalError::Fenced { .. }), "{err:?}");
            assert_eq!(journal.load_run(&old.id).unwrap().run.stalled_claims, 2);
        });
    }

    #[test]
    fn a_run_claimed_five_times_without_progress_is_given_up_and_progress_resets_the_count() {
        each_backend(|journal| {
            let run = new_run("cluster.create", "demo");
            journal.enqueue_run(&run, Some("k"), t(0)).unwrap();
            let mut at = 0;
            // One completed step after the second claim resets the count.
            for claim in 1..=MAX_STALLED_CLAIMS + 2 {
                at += 60_000;
                let id = claimed(journal.claim_run(&owner("w"), t(at), TTL).unwrap());
                if claim == 2 {
                    let lease = journal
                        .acquire_lease(&id, &owner("w"), t(at), TTL, Takeover::IfFree)
                        .unwrap();
                    journal
                        .complete_step(&lease, &start("s", 1, at), &serde_json::json!(1), t(at))
                        .unwrap();
                    assert_eq!(journal.load_run(&id).unwrap().run.stalled_claims, 0);
                }
            }
            // Claims 3..=7 were five without progress: the next claim gives up.
            at += 60_000;
            let gave_up = journal.claim_run(&owner("w"), t(at), TTL).unwrap();
            assert_eq!(
                gave_up,
                Some(Claim::GaveUp {
                    run: run.id,
                    claims: MAX_STALLED_CLAIMS
                })
            );
            let record = journal.load_run(&run.id).unwrap().run;
            assert_eq!(record.status, RunStatus::Failed);
            assert_eq!(record.error.as_deref(), Some(gave_up_message(5).as_str()));
            assert_eq!((record.owner, record.finished_at), (None, Some(t(at))));
            assert_eq!(
                journal.claim_run(&owner("w"), t(at + 1), TTL).unwrap(),
                None
            );
            // The cluster is free again.
            assert_eq!(journal.active_run("demo").unwrap(), None);
        });
    }

    #[test]
    fn a_worker_that_shuts_down_puts_its_run_back_without_counting_a_stall() {
        each_backend(|journal| {
            let run = new_run("cluster.create", "demo");
            journal.enqueue_run(&run, None, t(0)).unwrap();
            let id = claimed(journal.claim_run(&owner("w"), t(1), TTL).unwrap());
            let lease = journal
                .acquire_lease(&id, &owner("w"), t(1), TTL, Takeover::IfFree)
                .unwrap();
            journal
                .finish_run(&lease, RunStatus::Queued, Some("worker shut down"), t(2))
                .unwrap();
            let record = journal.load_run(&id).unwrap().run;
            assert_eq!(record.status, RunStatus::Queued);
            assert_eq!((record.owner, record.stalled_claims), (None, 0));
            assert_eq!(record.finished_at, None);
            // Another worker takes it at once.
            assert_eq!(
                claimed(journal.claim_run(&owner("x"), t(3), TTL).unwrap()),
                id
            );
        });
    }

    /// Processes with their own connections: two enqueues with one key make one run, and
    /// racing claims hand each run to exactly one worker.
    #[test]
    fn concurrent_enqueues_and_claims_on_postgres() {
        let Some(server) = hk8s_testkit::postgres() else {
            return;
        };
        let location = Location::Postgres(server.fresh_database());
        let open = || Journal::open_location(&location, OpenOptions::default()).unwrap();
        let journals: Vec<Journal> = (0..4).map(|_| open()).collect();
        for round in 0..5 {
            let key = format!("upgrade/demo/{round}");
            let barrier = std::sync::Barrier::new(journals.len());
            let results: Vec<_> = std::thread::scope(|s| {
                let handles: Vec<_> = journals
                    .iter()
                    .map(|journal| {
                        let (barrier, key) = (&barrier, &key);
                        s.spawn(move || {
                            barrier.wait();
                            let run = new_run("cluster.upgrade", "demo");
                            journal.enqueue_run(&run, Some(key), t(0)).unwrap()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let created = results.iter().filter(|e| e.created).count();
            assert_eq!(created, 1, "round {round}: {results:?}");
            assert!(
                results.iter().all(|e| e.run == results[0].run),
                "{results:?}"
            );
            // Racing claims: one worker gets it, the others find nothing.
            let barrier = std::sync::Barrier::new(journals.len());
            let claims: Vec<_> = std::thread::scope(|s| {
                let handles: Vec<_> = journals
                    .iter()
                    .zip(["a", "b", "c", "d"])
                    .map(|(journal, name)| {
                        let barrier = &barrier;
                        s.spawn(move || {
                            barrier.wait();
                            journal.claim_run(&owner(name), t(0), TTL).unwrap()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let won: Vec<_> = claims.iter().flatten().collect();
            assert_eq!(won.len(), 1, "round {round}: {claims:?}");
            let run = claimed(won[0].clone().into());
            let holder = journals[0].load_run(&run).unwrap().run.owner.unwrap();
            let lease = journals[0]
                .acquire_lease(&run, &holder, t(0), TTL, Takeover::IfFree)
                .unwrap();
            journals[0]
                .finish_run(&lease, RunStatus::Succeeded, None, t(1))
                .unwrap();
        }
    }
}
