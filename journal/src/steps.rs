//! Writes on `steps` and `attempts`: starting, failing and completing attempts.

use crate::codec::to_ms;
use crate::error::JournalError;
use crate::ids::Lease;
use crate::journal::Journal;
use crate::model::{FailureKind, StepStatus};
use crate::options::Durability;
use crate::runs::check_fence;
use crate::sql::{Tx, TxError, vals};
use chrono::{DateTime, Utc};

/// Message stored on attempts that a previous lease holder left without an outcome.
pub const ABANDONED_MESSAGE: &str = "no outcome recorded: the process running this attempt stopped";

/// One attempt of a step, as the runtime opened it: everything the journal records about its
/// start, whether that start is journaled on its own ([`Journal::start_attempt`]) or together
/// with the attempt's outcome ([`Journal::complete_step`], [`Journal::fail_attempt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptStart<'a> {
    /// The step key.
    pub key: &'a str,
    /// The attempt number: one more than the attempts the journal holds for the step.
    pub attempt: u32,
    /// The activity name, recorded when the step is first journaled.
    pub activity: &'a str,
    /// The input hash, recorded when the step is first journaled (compared on replay).
    pub input_hash: &'a str,
    /// When the attempt started.
    pub started_at: DateTime<Utc>,
}

/// How an attempt failed: what [`Journal::fail_attempt`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptFailure<'a> {
    /// The failure kind.
    pub class: FailureKind,
    /// The (already scrubbed) error message.
    pub message: &'a str,
    /// When the next attempt is due, if the step will be retried.
    pub retry_at: Option<DateTime<Utc>>,
    /// Whether the step failed for good (status `failed`, committed with an fsync).
    pub step_failed: bool,
}

impl Journal {
    /// Journals the start of an attempt before its outcome is known: an *intent record*, so
    /// `history` shows the step running and a resume after a crash finds the attempt open (and
    /// records it as abandoned).
    ///
    /// Inserts the step (status `running`, next `seq`) if it is new, otherwise sets it back to
    /// `running`. `activity` and `input_hash` are recorded when the step is first journaled and
    /// not changed by later attempts: the runtime compares them on replay (from
    /// [`Journal::load_run`]). An attempt of this step left running under an earlier lease is
    /// recorded as `failed`/`interrupted` with [`ABANDONED_MESSAGE`]. The running attempt is kept
    /// on the step row (one page written) until its outcome adds it to `attempts`. Committed
    /// with `synchronous=NORMAL`: survives a killed process, made durable by the next FULL
    /// commit (see the `journal` module).
    ///
    /// Optional: an attempt that ends quickly is journaled once, start and outcome in one
    /// transaction, by [`Journal::complete_step`] or [`Journal::fail_attempt`].
    ///
    /// # Errors
    /// [`JournalError::Fenced`]; [`JournalError::StepSucceeded`] if the step already
    /// succeeded; [`JournalError::AttemptOutOfOrder`] if `start.attempt` is not the next number
    /// or an attempt of the step is still running under this lease; storage errors.
    pub fn start_attempt(
        &self,
        lease: &Lease,
        start: &AttemptStart<'_>,
    ) -> Result<(), JournalError> {
        // `runs.updated_at` is not touched per step: rewriting the run row (and its index)
        // would double the pages each step writes. Step times live on the steps.
        self.with_attempt(
            "start attempt",
            Durability::Intent,
            lease,
            start,
            Opening::New,
            |_, _| Ok(()),
        )
    }

    /// Records attempt `start.attempt` of step `start.key` as failed and the error and retry
    /// instant on the step; with `failure.step_failed` the step becomes `failed`. If the
    /// attempt's start was not journaled, it is journaled in the same transaction (as
    /// [`Journal::start_attempt`] would). One transaction: FULL when the step fails for good,
    /// otherwise an intent record (`synchronous=NORMAL`).
    ///
    /// # Errors
    /// [`JournalError::Fenced`]; [`JournalError::AttemptNotOpen`] if the attempt already ended;
    /// [`JournalError::StepSucceeded`]; [`JournalError::AttemptOutOfOrder`]; storage errors.
    pub fn fail_attempt(
        &self,
        lease: &Lease,
        start: &AttemptStart<'_>,
        failure: &AttemptFailure<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), JournalError> {
        let run = lease.run_id.to_string();
        let durability = if failure.step_failed {
            Durability::Full
        } else {
            Durability::Intent
        };
        let retry_ms = failure.retry_at.map(to_ms);
        let ended = |tx: &mut dyn Tx, opened: &Opened| {
            let row = AttemptRow {
                ended_at_ms: Some(to_ms(now)),
                outcome: "failed",
                class: Some(failure.class),
                message: Some(failure.message),
                retry_at_ms: retry_ms,
                ..AttemptRow::started(start.attempt, opened.fence, opened.started_at_ms)
            };
            insert_attempt(tx, &run, start.key, &row)?;
            tx.execute(
                "UPDATE steps SET error = ?3, next_retry_at = ?4, \
                 status = CASE WHEN ?5 THEN 'failed' ELSE status END, \
                 finished_at = CASE WHEN ?5 THEN ?6 ELSE finished_at END, \
                 open_fence = NULL, open_started_at = NULL \
                 WHERE run_id = ?1 AND key = ?2",
                vals![
                    &run,
                    start.key,
                    failure.message,
                    retry_ms,
                    failure.step_failed,
                    to_ms(now)
                ],
            )?;
            touch_run(tx, &run, now)?;
            Ok(())
        };
        self.with_attempt(
            "fail attempt",
            durability,
            lease,
            start,
            Opening::IfNeeded,
            ended,
        )
    }

    /// Records attempt `start.attempt` as succeeded and marks step `start.key` succeeded with
    /// `output`. If the attempt's start was not journaled, it is journaled in the same
    /// transaction, so a step that ends before its intent record is due costs one commit in
    /// all. One transaction, committed with `synchronous=FULL`: exactly one fsync, which also
    /// makes earlier intent records durable.
    ///
    /// # Errors
    /// [`JournalError::Fenced`]; [`JournalError::AttemptNotOpen`] if the attempt already ended;
    /// [`JournalError::StepSucceeded`]; [`JournalError::AttemptOutOfOrder`]; storage errors.
    pub fn complete_step(
        &self,
        lease: &Lease,
        start: &AttemptStart<'_>,
        output: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), JournalError> {
        let run = lease.run_id.to_string();
        let output = output.to_string();
        let ended = |tx: &mut dyn Tx, opened: &Opened| {
            let row = AttemptRow {
                ended_at_ms: Some(to_ms(now)),
                outcome: "succeeded",
                ..AttemptRow::started(start.attempt, opened.fence, opened.started_at_ms)
            };
            insert_attempt(tx, &run, start.key, &row)?;
            tx.execute(
                "UPDATE steps SET status = 'succeeded', output_json = ?3, error = NULL, \
                 next_retry_at = NULL, finished_at = ?4, open_fence = NULL, \
                 open_started_at = NULL WHERE run_id = ?1 AND key = ?2",
                vals![&run, start.key, &output, to_ms(now)],
            )?;
            // Progress: a worker's count of claims without progress starts again (a write
            // only when it is not zero, so the common step adds no page).
            tx.execute(
                "UPDATE runs SET stalled_claims = 0 WHERE id = ?1 AND stalled_claims <> 0",
                vals![&run],
            )?;
            Ok(())
        };
        self.with_attempt(
            "complete step",
            Durability::Full,
            lease,
            start,
            Opening::Completing,
            ended,
        )
    }

    /// One write transaction about attempt `start`: checks the fence, makes `start` the step's
    /// running attempt if it is not yet ([`open_attempt`]), then runs `body` with it.
    fn with_attempt(
        &self,
        operation: &'static str,
        durability: Durability,
        lease: &Lease,
        start: &AttemptStart<'_>,
        opening: Opening,
        body: impl FnOnce(&mut dyn Tx, &Opened) -> Result<(), TxError> + Send,
    ) -> Result<(), JournalError> {
        let last_seq = self.last_seq(lease);
        let seq = self.write(operation, durability, |tx| {
            check_fence(tx, lease)?;
            let Some(opened) = open_attempt(tx, lease, start, opening, last_seq)? else {
                return Ok(None);
            };
            body(tx, &opened)?;
            Ok(opened.seq)
        })?;
        self.note_seq(lease, seq);
        Ok(())
    }
}

/// A row of `attempts`: an attempt that ended (or was abandoned).
struct AttemptRow<'a> {
    attempt: u32,
    fence: i64,
    started_at_ms: i64,
    ended_at_ms: Option<i64>,
    outcome: &'static str,
    class: Option<FailureKind>,
    message: Option<&'a str>,
    retry_at_ms: Option<i64>,
}

impl AttemptRow<'_> {
    /// The row of an attempt that started under `fence` at `started_at_ms`; the caller sets how
    /// it ended.
    fn started(attempt: u32, fence: i64, started_at_ms: i64) -> Self {
        AttemptRow {
            attempt,
            fence,
            started_at_ms,
            ended_at_ms: None,
            outcome: "failed",
            class: None,
            message: None,
            retry_at_ms: None,
        }
    }
}

fn insert_attempt(
    tx: &mut dyn Tx,
    run: &str,
    key: &str,
    row: &AttemptRow<'_>,
) -> Result<(), TxError> {
    tx.execute(
        "INSERT INTO attempts (run_id, step_key, attempt, fence, started_at, ended_at, outcome, \
         error_class, message, retry_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        vals![
            run,
            key,
            row.attempt,
            row.fence,
            row.started_at_ms,
            row.ended_at_ms,
            row.outcome,
            row.class.map(FailureKind::as_str),
            row.message,
            row.retry_at_ms
        ],
    )?;
    Ok(())
}

/// Whether [`open_attempt`] may find the attempt already journaled.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Opening {
    /// The attempt must not be journaled yet (`start_attempt`).
    New,
    /// Journal it unless it already is (an outcome, whose attempt may or may not have had an
    /// intent record).
    IfNeeded,
    /// As `IfNeeded`, for a success: if this very attempt already succeeded under this lease
    /// (a retried commit whose first try landed but whose answer was lost), there is nothing
    /// to do.
    Completing,
}

/// The running attempt as the step row records it, after [`open_attempt`].
struct Opened {
    /// The `seq` of a step row inserted by this call.
    seq: Option<i64>,
    /// The fence of the lease it started under.
    fence: i64,
    /// When it started (epoch ms).
    started_at_ms: i64,
}

/// Makes `start` the running attempt on its step row inside `tx`, unless it already is and
/// `opening` allows that: the step row is inserted, or set back to `running` after recording an
/// attempt an earlier lease left running as abandoned.
///
/// `last_seq` is the highest `seq` this process committed for the run under this lease, if
/// known: only the lease holder inserts steps, so it saves scanning the run's steps for the
/// maximum (a query SQLite also re-prepares on every execution).
fn open_attempt(
    tx: &mut dyn Tx,
    lease: &Lease,
    start: &AttemptStart<'_>,
    opening: Opening,
    last_seq: Option<i64>,
) -> Result<Option<Opened>, TxError> {
    let run = lease.run_id.to_string();
    let out_of_order = |reason: String| JournalError::AttemptOutOfOrder {
        run: lease.run_id,
        key: start.key.to_owned(),
        attempt: start.attempt,
        reason,
    };
    let existing = match tx.query_opt(
        "SELECT status, attempts, open_fence, open_started_at FROM steps \
         WHERE run_id = ?1 AND key = ?2",
        vals![&run, start.key],
    )? {
        Some(r) => {
            let open = match (r.opt_int(2)?, r.opt_int(3)?) {
                (Some(fence), Some(started)) => Some((fence, started)),
                _ => None,
            };
            Some((r.text(0)?, r.u32(1)?, open))
        }
        None => None,
    };
    let (journaled, open) = match &existing {
        Some((status, attempts, _)) if status == StepStatus::Succeeded.as_str() => {
            if opening == Opening::Completing && *attempts == start.attempt {
                let mine = tx.query_opt(
                    "SELECT 1 FROM attempts WHERE run_id = ?1 AND step_key = ?2 AND attempt = ?3 \
                     AND fence = ?4 AND outcome = 'succeeded'",
                    vals![&run, start.key, start.attempt, lease.fence],
                )?;
                if mine.is_some() {
                    return Ok(None);
                }
            }
            return Err(JournalError::StepSucceeded {
                run: lease.run_id,
                key: start.key.to_owned(),
            }
            .into());
        }
        Some((_, attempts, open)) => (*attempts, *open),
        None => (0, None),
    };
    if start.attempt == journaled && opening != Opening::New {
        // Its intent record exists, unless the attempt has ended already.
        return match open {
            Some((fence, started_at_ms)) => Ok(Some(Opened {
                seq: None,
                fence,
                started_at_ms,
            })),
            None => Err(not_open(lease, start).into()),
        };
    }
    if start.attempt != journaled.saturating_add(1) {
        return Err(out_of_order(format!("the journal holds {journaled} attempt(s)")).into());
    }
    let started_at_ms = to_ms(start.started_at);
    let mut seq = None;
    if existing.is_none() {
        let last = match last_seq {
            Some(last) => last,
            None => tx
                .query_opt(
                    "SELECT COALESCE(MAX(seq), 0) FROM steps WHERE run_id = ?1",
                    vals![&run],
                )?
                .map_or(Ok(0), |r| r.int(0))?,
        };
        seq = Some(last + 1);
        tx.execute(
            "INSERT INTO steps (run_id, key, seq, activity, input_hash, status, attempts, \
             started_at, open_fence, open_started_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7, ?8, ?7)",
            vals![
                &run,
                start.key,
                last + 1,
                start.activity,
                start.input_hash,
                start.attempt,
                started_at_ms,
                lease.fence
            ],
        )?;
    } else {
        if let Some((fence, started)) = open {
            if fence >= lease.fence {
                return Err(out_of_order(format!("attempt {journaled} is still open")).into());
            }
            let abandoned = AttemptRow {
                class: Some(FailureKind::Interrupted),
                message: Some(ABANDONED_MESSAGE),
                ..AttemptRow::started(journaled, fence, started)
            };
            insert_attempt(tx, &run, start.key, &abandoned)?;
        }
        tx.execute(
            "UPDATE steps SET status = 'running', attempts = ?3, next_retry_at = NULL, \
             finished_at = NULL, open_fence = ?4, open_started_at = ?5 \
             WHERE run_id = ?1 AND key = ?2",
            vals![&run, start.key, start.attempt, lease.fence, started_at_ms],
        )?;
    }
    Ok(Some(Opened {
        seq,
        fence: lease.fence,
        started_at_ms,
    }))
}

fn not_open(lease: &Lease, start: &AttemptStart<'_>) -> JournalError {
    JournalError::AttemptNotOpen {
        run: lease.run_id,
        key: start.key.to_owned(),
        attempt: start.attempt,
    }
}

fn touch_run(tx: &mut dyn Tx, run: &str, now: DateTime<Utc>) -> Result<(), TxError> {
    tx.execute(
        "UPDATE runs SET updated_at = ?2 WHERE id = ?1",
        vals![run, to_ms(now)],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AttemptOutcome, RunStatus};
    use crate::testutil::{TTL, each_backend, failure, leased_run, open_temp, owner, start, t};
    use crate::{Journal, Takeover};
    use serde_json::json;

    fn sync_level(journal: &Journal) -> i64 {
        journal
            .lock()
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap()
    }

    /// WAL frames written so far (the WAL is not checkpointed below 1000 pages).
    fn wal_frames(journal: &Journal) -> u64 {
        let wal = format!("{}-wal", journal.path().unwrap().display());
        let bytes = std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0);
        bytes.saturating_sub(32) / (24 + 4096)
    }

    #[test]
    fn a_step_fails_retries_and_completes() {
        each_backend(|journal| {
            let lease = leased_run(journal, 0);
            let run = lease.run_id;

            let first = AttemptStart {
                activity: "net.ensure",
                input_hash: "h1",
                ..start("network", 1, 10)
            };
            journal.start_attempt(&lease, &first).unwrap();
            let state = journal.load_run(&run).unwrap();
            let step = state.step("network").unwrap();
            assert_eq!(
                (step.status, step.seq, step.attempts),
                (StepStatus::Running, 1, 1)
            );
            assert_eq!(
                (step.activity.as_str(), step.input_hash.as_str()),
                ("net.ensure", "h1")
            );
            assert_eq!(
                (step.started_at, step.finished_at, step.output.as_ref()),
                (t(10), None, None)
            );
            assert!(
                state.run.updated_at < t(10),
                "a started attempt does not rewrite the run row"
            );

            let limited = failure(
                FailureKind::RateLimited,
                "429 rate_limit_exceeded",
                Some(t(8_000)),
                false,
            );
            journal
                .fail_attempt(&lease, &first, &limited, t(20))
                .unwrap();
            let state = journal.load_run(&run).unwrap();
            let step = state.step("network").unwrap();
            assert_eq!(step.status, StepStatus::Running);
            assert_eq!(step.error.as_deref(), Some("429 rate_limit_exceeded"));
            assert_eq!(step.next_retry_at, Some(t(8_000)));
            let a1 = &state.attempts[0];
            assert_eq!(
                (a1.attempt, a1.fence, a1.started_at, a1.ended_at),
                (1, 1, t(10), Some(t(20)))
            );
            assert_eq!(
                a1.outcome,
                Some(AttemptOutcome::Failed(FailureKind::RateLimited))
            );
            assert_eq!(
                (a1.message.as_deref(), a1.retry_at),
                (Some("429 rate_limit_exceeded"), Some(t(8_000)))
            );

            let second = AttemptStart {
                attempt: 2,
                started_at: t(8_000),
                ..first
            };
            journal.start_attempt(&lease, &second).unwrap();
            let step = journal.load_run(&run).unwrap().steps[0].clone();
            assert_eq!((step.attempts, step.next_retry_at), (2, None));
            assert_eq!(
                step.error.as_deref(),
                Some("429 rate_limit_exceeded"),
                "last error kept while retrying"
            );

            journal
                .complete_step(&lease, &second, &json!({ "id": 7 }), t(8_100))
                .unwrap();
            let state = journal.load_run(&run).unwrap();
            let step = state.step("network").unwrap();
            assert_eq!(step.status, StepStatus::Succeeded);
            assert_eq!(step.output, Some(json!({ "id": 7 })));
            assert_eq!(
                (step.error.as_ref(), step.finished_at, step.attempts),
                (None, Some(t(8_100)), 2)
            );
            let attempts: Vec<_> = state.attempts_of("network").collect();
            assert_eq!(attempts.len(), 2, "every attempt is kept");
            assert_eq!(attempts[1].outcome, Some(AttemptOutcome::Succeeded));
            assert_eq!(
                (attempts[1].ended_at, attempts[1].message.as_ref()),
                (Some(t(8_100)), None)
            );
            assert!(
                state.run.updated_at < t(8_100),
                "a completed step does not rewrite the run row"
            );
        });
    }

    #[test]
    fn an_attempt_without_an_intent_record_is_journaled_with_its_outcome() {
        each_backend(|journal| {
            let lease = leased_run(journal, 0);
            let run = lease.run_id;

            // A retryable failure, then a success, neither started on its own.
            let first = start("network", 1, 10);
            let retry = failure(FailureKind::Retryable, "503", Some(t(1_000)), false);
            journal.fail_attempt(&lease, &first, &retry, t(20)).unwrap();
            let state = journal.load_run(&run).unwrap();
            let step = state.step("network").unwrap();
            assert_eq!(
                (step.status, step.seq, step.attempts, step.started_at),
                (StepStatus::Running, 1, 1, t(10))
            );
            assert_eq!(step.next_retry_at, Some(t(1_000)));
            assert_eq!(
                (state.attempts[0].started_at, state.attempts[0].ended_at),
                (t(10), Some(t(20)))
            );

            let second = start("network", 2, 1_000);
            journal
                .complete_step(&lease, &second, &json!({ "id": 7 }), t(1_010))
                .unwrap();
            let state = journal.load_run(&run).unwrap();
            let step = state.step("network").unwrap();
            assert_eq!(
                (
                    step.status,
                    step.attempts,
                    step.started_at,
                    step.finished_at
                ),
                (StepStatus::Succeeded, 2, t(10), Some(t(1_010)))
            );
            let attempts: Vec<_> = state
                .attempts_of("network")
                .map(|a| (a.attempt, a.started_at, a.ended_at, a.outcome))
                .collect();
            assert_eq!(
                attempts,
                [
                    (
                        1,
                        t(10),
                        Some(t(20)),
                        Some(AttemptOutcome::Failed(FailureKind::Retryable))
                    ),
                    (2, t(1_000), Some(t(1_010)), Some(AttemptOutcome::Succeeded)),
                ]
            );
        });
    }

    #[test]
    fn a_step_writes_two_pages_and_an_intent_record_one_more() {
        let (_dir, journal) = open_temp();
        let lease = leased_run(&journal, 0);
        let before = wal_frames(&journal);
        journal
            .complete_step(&lease, &start("a", 1, 1), &json!(1), t(2))
            .unwrap();
        let one_commit = wal_frames(&journal) - before;

        let before = wal_frames(&journal);
        journal.start_attempt(&lease, &start("b", 1, 3)).unwrap();
        let intent = wal_frames(&journal) - before;
        journal
            .complete_step(&lease, &start("b", 1, 3), &json!(1), t(4))
            .unwrap();
        let with_intent = wal_frames(&journal) - before;
        // One page of `steps` and one of `attempts`; an intent record rewrites the step's page.
        assert_eq!((one_commit, intent, with_intent), (2, 1, 3));
    }

    #[test]
    fn a_running_attempt_is_reported_with_the_others() {
        each_backend(|journal| {
            let lease = leased_run(journal, 0);
            let retry = failure(FailureKind::Retryable, "503", None, false);
            journal
                .fail_attempt(&lease, &start("b", 1, 1), &retry, t(2))
                .unwrap();
            journal.start_attempt(&lease, &start("b", 2, 3)).unwrap();
            journal.start_attempt(&lease, &start("a", 1, 4)).unwrap();
            let state = journal.load_run(&lease.run_id).unwrap();
            let attempts: Vec<_> = state
                .attempts
                .iter()
                .map(|a| {
                    (
                        a.step_key.as_str(),
                        a.attempt,
                        a.fence,
                        a.started_at,
                        a.outcome,
                    )
                })
                .collect();
            assert_eq!(
                attempts,
                [
                    ("a", 1, 1, t(4), None),
                    (
                        "b",
                        1,
                        1,
                        t(1),
                        Some(AttemptOutcome::Failed(FailureKind::Retryable))
                    ),
                    ("b", 2, 1, t(3), None),
                ],
                "ordered by step key and attempt"
            );
        });
    }

    #[test]
    fn steps_are_numbered_in_the_order_first_journaled() {
        each_backend(|journal| {
            let lease = leased_run(journal, 0);
            for (i, key) in ["network", "server/cp-1", "server/cp-2"].iter().enumerate() {
                let at = i as i64;
                if i == 1 {
                    journal.start_attempt(&lease, &start(key, 1, at)).unwrap();
                } else {
                    journal
                        .complete_step(&lease, &start(key, 1, at), &json!(i), t(at))
                        .unwrap();
                }
            }
            // Retrying an earlier step keeps its seq.
            let retry = failure(FailureKind::Retryable, "e", None, false);
            journal
                .fail_attempt(&lease, &start("server/cp-1", 1, 1), &retry, t(9))
                .unwrap();
            journal
                .start_attempt(&lease, &start("server/cp-1", 2, 10))
                .unwrap();
            let steps = journal.load_run(&lease.run_id).unwrap().steps;
            let order: Vec<_> = steps.iter().map(|s| (s.seq, s.key.as_str())).collect();
            assert_eq!(
                order,
                [(1, "network"), (2, "server/cp-1"), (3, "server/cp-2")]
            );
        });
    }

    #[test]
    fn a_permanently_failed_step_can_be_retried_on_resume() {
        each_backend(|journal| {
            let lease = leased_run(journal, 0);
            let bad = failure(FailureKind::Permanent, "invalid_input", None, true);
            journal
                .fail_attempt(&lease, &start("image", 1, 1), &bad, t(2))
                .unwrap();
            let step = journal.load_run(&lease.run_id).unwrap().steps[0].clone();
            assert_eq!(
                (step.status, step.finished_at),
                (StepStatus::Failed, Some(t(2)))
            );
            journal
                .finish_run(&lease, RunStatus::Failed, Some("invalid_input"), t(3))
                .unwrap();

            let b = journal
                .acquire_lease(&lease.run_id, &owner("b"), t(4), TTL, Takeover::IfFree)
                .unwrap();
            journal.start_attempt(&b, &start("image", 2, 5)).unwrap();
            let step = journal.load_run(&lease.run_id).unwrap().steps[0].clone();
            assert_eq!(
                (step.status, step.finished_at, step.attempts),
                (StepStatus::Running, None, 2)
            );
        });
    }

    #[test]
    fn a_succeeded_step_is_not_started_again() {
        each_backend(|journal| {
            let lease = leased_run(journal, 0);
            journal
                .complete_step(&lease, &start("network", 1, 1), &json!(null), t(2))
                .unwrap();
            let expected = format!("step \"network\" of run {} already succeeded", lease.run_id);
            let err = journal
                .start_attempt(&lease, &start("network", 2, 3))
                .unwrap_err();
            assert_eq!(err.to_string(), expected);
            let err = journal
                .complete_step(&lease, &start("network", 2, 3), &json!(1), t(4))
                .unwrap_err();
            assert_eq!(err.to_string(), expected);
            assert_eq!(journal.load_run(&lease.run_id).unwrap().attempts.len(), 1);
        });
    }

    #[test]
    fn a_retried_commit_whose_first_try_landed_is_a_success() {
        each_backend(|journal| {
            let lease = leased_run(journal, 0);
            let first = start("network", 1, 1);
            journal
                .complete_step(&lease, &first, &json!({"id": 7}), t(2))
                .unwrap();
            let before = journal.load_run(&lease.run_id).unwrap();
            // The answer to the first commit was lost; the runtime commits again.
            journal
                .complete_step(&lease, &first, &json!({"id": 7}), t(3))
                .unwrap();
            assert_eq!(journal.load_run(&lease.run_id).unwrap(), before);
            // Not for another lease: that is a second execution, refused.
            let b = journal
                .acquire_lease(&lease.run_id, &owner("b"), t(4), TTL, Takeover::Force)
                .unwrap();
            let err = journal
                .complete_step(&b, &first, &json!({"id": 8}), t(5))
                .unwrap_err();
            assert!(matches!(err, JournalError::StepSucceeded { .. }), "{err:?}");
        });
    }

    #[test]
    fn attempts_out_of_turn_are_refused() {
        each_backend(|journal| {
            let lease = leased_run(journal, 0);
            let run = lease.run_id;
            journal
                .start_attempt(&lease, &start("network", 1, 1))
                .unwrap();
            let before = journal.load_run(&run).unwrap();

            let err = journal
                .start_attempt(&lease, &start("network", 1, 2))
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "attempt 1 of step \"network\" in run {run} cannot be opened: the journal holds 1 attempt(s)"
                )
            );
            let err = journal
                .complete_step(&lease, &start("network", 3, 2), &json!(1), t(3))
                .unwrap_err();
            assert!(
                matches!(err, JournalError::AttemptOutOfOrder { attempt: 3, .. }),
                "{err:?}"
            );
            // Attempt 2 while attempt 1 is open under the same lease.
            let err = journal
                .complete_step(&lease, &start("network", 2, 2), &json!(1), t(3))
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "attempt 2 of step \"network\" in run {run} cannot be opened: attempt 1 is still open"
                )
            );
            let err = journal
                .start_attempt(&lease, &start("fresh", 2, 2))
                .unwrap_err();
            assert!(
                matches!(err, JournalError::AttemptOutOfOrder { attempt: 2, .. }),
                "{err:?}"
            );
            assert_eq!(journal.load_run(&run).unwrap(), before, "nothing written");
        });
    }

    #[test]
    fn closing_an_attempt_that_is_not_open_is_refused() {
        each_backend(|journal| {
            let lease = leased_run(journal, 0);
            let first = start("network", 1, 1);
            let retry = failure(FailureKind::Retryable, "e", None, false);
            journal.fail_attempt(&lease, &first, &retry, t(3)).unwrap();
            let before = journal.load_run(&lease.run_id).unwrap();
            let err = journal
                .complete_step(&lease, &first, &json!(1), t(4))
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "attempt 1 of step \"network\" in run {} is not open",
                    lease.run_id
                )
            );
            let again = failure(FailureKind::Retryable, "again", None, false);
            let err = journal
                .fail_attempt(&lease, &first, &again, t(4))
                .unwrap_err();
            assert!(
                matches!(err, JournalError::AttemptNotOpen { attempt: 1, .. }),
                "{err:?}"
            );
            assert_eq!(
                journal.load_run(&lease.run_id).unwrap(),
                before,
                "nothing written"
            );
        });
    }

    #[test]
    fn attempts_abandoned_by_a_dead_holder_are_closed_as_interrupted() {
        each_backend(|journal| {
            let a = leased_run(journal, 0);
            journal
                .start_attempt(&a, &start("server/cp-1", 1, 1))
                .unwrap();
            journal
                .start_attempt(&a, &start("server/cp-2", 1, 1))
                .unwrap();
            // A is killed; B takes over after expiry and re-runs both steps: one with an intent
            // record, one journaled only when it ends.
            let b = journal
                .acquire_lease(&a.run_id, &owner("b"), t(30_000), TTL, Takeover::IfFree)
                .unwrap();
            journal
                .start_attempt(&b, &start("server/cp-1", 2, 30_001))
                .unwrap();
            journal
                .complete_step(&b, &start("server/cp-2", 2, 30_001), &json!(2), t(30_002))
                .unwrap();
            let state = journal.load_run(&a.run_id).unwrap();
            for key in ["server/cp-1", "server/cp-2"] {
                let attempts: Vec<_> = state.attempts_of(key).collect();
                assert_eq!(
                    attempts[0].outcome,
                    Some(AttemptOutcome::Failed(FailureKind::Interrupted))
                );
                assert_eq!(attempts[0].message.as_deref(), Some(ABANDONED_MESSAGE));
                assert_eq!((attempts[0].fence, attempts[0].ended_at), (1, None));
                assert_eq!(attempts[1].fence, 2);
            }
            assert_eq!(
                state.attempts_of("server/cp-1").nth(1).unwrap().outcome,
                None
            );
            assert_eq!(
                state.attempts_of("server/cp-2").nth(1).unwrap().outcome,
                Some(AttemptOutcome::Succeeded)
            );
        });
    }

    #[test]
    fn intent_records_skip_the_fsync_and_completions_do_not() {
        let (_dir, journal) = open_temp();
        let mut lease = leased_run(&journal, 0);
        assert_eq!(sync_level(&journal), 2, "acquire is FULL");
        journal.start_attempt(&lease, &start("s", 1, 1)).unwrap();
        assert_eq!(sync_level(&journal), 1, "start_attempt is NORMAL");
        journal
            .complete_step(&lease, &start("s", 1, 1), &json!(1), t(2))
            .unwrap();
        assert_eq!(sync_level(&journal), 2, "complete_step is FULL");
        journal.renew_lease(&mut lease, t(3), TTL).unwrap();
        assert_eq!(sync_level(&journal), 1, "renew is NORMAL");
        let retry = failure(FailureKind::Retryable, "e", None, false);
        journal
            .fail_attempt(&lease, &start("u", 1, 4), &retry, t(5))
            .unwrap();
        assert_eq!(sync_level(&journal), 1, "retryable failure is NORMAL");
        let fatal = failure(FailureKind::Permanent, "e", None, true);
        journal
            .fail_attempt(&lease, &start("u", 2, 6), &fatal, t(7))
            .unwrap();
        assert_eq!(sync_level(&journal), 2, "final failure is FULL");
        journal.check_lease(&lease).unwrap();
        journal
            .finish_run(&lease, RunStatus::Failed, Some("e"), t(8))
            .unwrap();
        assert_eq!(sync_level(&journal), 2, "finish is FULL");
    }

    #[test]
    fn a_failed_write_leaves_the_connection_usable() {
        each_backend(|journal| {
            let lease = leased_run(journal, 0);
            assert!(
                journal
                    .complete_step(&lease, &start("missing", 2, 1), &json!(1), t(1))
                    .is_err()
            );
            journal.start_attempt(&lease, &start("s", 1, 2)).unwrap();
        });
    }
}
