//! Writes on `steps` and `attempts`: starting, failing and completing attempts.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use crate::codec::to_ms;
use crate::error::JournalError;
use crate::ids::Lease;
use crate::journal::{Durability, Journal};
use crate::model::{ErrorClass, StepStatus};
use crate::runs::check_fence;

/// Message stored on attempts that a previous lease holder left without an outcome.
pub const ABANDONED_MESSAGE: &str = "no outcome recorded: the process running this attempt stopped";

impl Journal {
    /// Records the start of the next attempt of step `key` and returns its number (1, 2, ...).
    ///
    /// Inserts the step (status `running`, next `seq`) if it is new, otherwise sets it back to
    /// `running`. `activity` and `input_hash` are recorded when the step is first reached and not
    /// changed by later attempts: the runtime compares them on replay (from [`Journal::load_run`]). Attempts of this step left open under an earlier lease are closed as
    /// `failed`/`interrupted` with [`ABANDONED_MESSAGE`]. Committed with `synchronous=NORMAL`:
    /// survives a killed process, made durable by the next FULL commit (see the `journal` module).
    ///
    /// # Errors
    /// [`JournalError::Fenced`]; [`JournalError::StepSucceeded`] if the step already
    /// succeeded; storage errors.
    pub fn start_attempt(
        &self,
        lease: &Lease,
        key: &str,
        activity: &str,
        input_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<u32, JournalError> {
        let run = lease.run_id.to_string();
        self.write("start attempt", Durability::Intent, |tx| {
            check_fence(tx, lease)?;
            let existing = tx
                .prepare_cached(
                    "SELECT status, attempts FROM steps WHERE run_id = ?1 AND key = ?2",
                )?
                .query_row(params![run, key], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?))
                })
                .optional()?;
            let attempt = match existing {
                None => {
                    tx.prepare_cached(
                        "INSERT INTO steps (run_id, key, seq, activity, input_hash, status, \
                         attempts, started_at) VALUES (?1, ?2, \
                         (SELECT COALESCE(MAX(seq), 0) + 1 FROM steps WHERE run_id = ?1), \
                         ?3, ?4, 'running', 1, ?5)",
                    )?
                    .execute(params![
                        run,
                        key,
                        activity,
                        input_hash,
                        to_ms(now)
                    ])?;
                    1
                }
                Some((status, _)) if status == StepStatus::Succeeded.as_str() => {
                    return Err(JournalError::StepSucceeded {
                        run: lease.run_id,
                        key: key.to_owned(),
                    }
                    .into());
                }
                Some((_, attempts)) => {
                    let attempt = attempts.saturating_add(1);
                    tx.prepare_cached(
                        "UPDATE steps SET status = 'running', attempts = ?3, next_retry_at = NULL, \
                         finished_at = NULL WHERE run_id = ?1 AND key = ?2",
                    )?
                    .execute(params![run, key, attempt])?;
                    tx.prepare_cached(
                        "UPDATE attempts SET outcome = 'failed', error_class = 'interrupted', \
                         message = ?4 WHERE run_id = ?1 AND step_key = ?2 AND outcome IS NULL \
                         AND fence < ?3",
                    )?
                    .execute(params![
                        run,
                        key,
                        lease.fence,
                        ABANDONED_MESSAGE
                    ])?;
                    attempt
                }
            };
            tx.prepare_cached(
                "INSERT INTO attempts (run_id, step_key, attempt, fence, started_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![run, key, attempt, lease.fence, to_ms(now)])?;
            // `runs.updated_at` is not touched per step: rewriting the run row (and its
            // index) would double the pages each step writes. Step times live on the steps.
            Ok(attempt)
        })
    }

    /// Closes attempt `attempt` of step `key` as failed with `class` and `message`, and records
    /// the error and `retry_at` on the step; with `step_failed` the step becomes `failed`.
    /// One transaction: FULL when the step fails for good, otherwise an intent record
    /// (`synchronous=NORMAL`).
    ///
    /// # Errors
    /// [`JournalError::Fenced`]; [`JournalError::AttemptNotOpen`]; storage errors.
    #[allow(clippy::too_many_arguments)]
    pub fn fail_attempt(
        &self,
        lease: &Lease,
        key: &str,
        attempt: u32,
        class: ErrorClass,
        message: &str,
        retry_at: Option<DateTime<Utc>>,
        step_failed: bool,
        now: DateTime<Utc>,
    ) -> Result<(), JournalError> {
        let run = lease.run_id.to_string();
        let durability = if step_failed {
            Durability::Full
        } else {
            Durability::Intent
        };
        let retry_ms = retry_at.map(to_ms);
        self.write("fail attempt", durability, |tx| {
            check_fence(tx, lease)?;
            let closed = tx
                .prepare_cached(
                    "UPDATE attempts SET ended_at = ?4, outcome = 'failed', error_class = ?5, \
                     message = ?6, retry_at = ?7 \
                     WHERE run_id = ?1 AND step_key = ?2 AND attempt = ?3 AND outcome IS NULL",
                )?
                .execute(params![
                    run,
                    key,
                    attempt,
                    to_ms(now),
                    class.as_str(),
                    message,
                    retry_ms
                ])?;
            if closed == 0 {
                return Err(not_open(lease, key, attempt).into());
            }
            tx.prepare_cached(
                "UPDATE steps SET error = ?3, next_retry_at = ?4, \
                 status = CASE WHEN ?5 THEN 'failed' ELSE status END, \
                 finished_at = CASE WHEN ?5 THEN ?6 ELSE finished_at END \
                 WHERE run_id = ?1 AND key = ?2",
            )?
            .execute(params![
                run,
                key,
                message,
                retry_ms,
                step_failed,
                to_ms(now)
            ])?;
            touch_run(tx, &run, now)?;
            Ok(())
        })
    }

    /// Closes attempt `attempt` as succeeded and marks step `key` succeeded with `output`.
    /// One transaction, committed with `synchronous=FULL`: exactly one fsync, which also makes
    /// earlier intent records durable.
    ///
    /// # Errors
    /// [`JournalError::Fenced`]; [`JournalError::AttemptNotOpen`]; storage errors.
    pub fn complete_step(
        &self,
        lease: &Lease,
        key: &str,
        attempt: u32,
        output: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), JournalError> {
        let run = lease.run_id.to_string();
        let output = output.to_string();
        self.write("complete step", Durability::Full, |tx| {
            check_fence(tx, lease)?;
            let closed = tx
                .prepare_cached(
                    "UPDATE attempts SET ended_at = ?4, outcome = 'succeeded' \
                     WHERE run_id = ?1 AND step_key = ?2 AND attempt = ?3 AND outcome IS NULL",
                )?
                .execute(params![run, key, attempt, to_ms(now)])?;
            if closed == 0 {
                return Err(not_open(lease, key, attempt).into());
            }
            tx.prepare_cached(
                "UPDATE steps SET status = 'succeeded', output_json = ?3, error = NULL, \
                 next_retry_at = NULL, finished_at = ?4 WHERE run_id = ?1 AND key = ?2",
            )?
            .execute(params![run, key, output, to_ms(now)])?;
            Ok(())
        })
    }
}

fn not_open(lease: &Lease, key: &str, attempt: u32) -> JournalError {
    JournalError::AttemptNotOpen {
        run: lease.run_id,
        key: key.to_owned(),
        attempt,
    }
}

fn touch_run(
    tx: &rusqlite::Transaction<'_>,
    run: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<()> {
    tx.prepare_cached("UPDATE runs SET updated_at = ?2 WHERE id = ?1")?
        .execute(params![run, to_ms(now)])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AttemptOutcome, RunStatus};
    use crate::testutil::{TTL, leased_run, open_temp, owner, t};
    use crate::{Journal, Takeover};
    use serde_json::json;

    fn sync_level(journal: &Journal) -> i64 {
        journal
            .lock()
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_step_fails_retries_and_completes() {
        let (_dir, journal) = open_temp();
        let lease = leased_run(&journal, 0);
        let run = lease.run_id;

        let first = journal
            .start_attempt(&lease, "network", "net.ensure", "h1", t(10))
            .unwrap();
        assert_eq!(first, 1);
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

        journal
            .fail_attempt(
                &lease,
                "network",
                1,
                ErrorClass::RateLimited,
                "429 rate_limit_exceeded",
                Some(t(8_000)),
                false,
                t(20),
            )
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
            Some(AttemptOutcome::Failed(ErrorClass::RateLimited))
        );
        assert_eq!(
            (a1.message.as_deref(), a1.retry_at),
            (Some("429 rate_limit_exceeded"), Some(t(8_000)))
        );

        let second = journal
            .start_attempt(&lease, "network", "net.ensure", "h1", t(8_000))
            .unwrap();
        assert_eq!(second, 2);
        let step = journal.load_run(&run).unwrap().steps[0].clone();
        assert_eq!((step.attempts, step.next_retry_at), (2, None));
        assert_eq!(
            step.error.as_deref(),
            Some("429 rate_limit_exceeded"),
            "last error kept while retrying"
        );

        journal
            .complete_step(&lease, "network", 2, &json!({ "id": 7 }), t(8_100))
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
    }

    #[test]
    fn steps_are_numbered_in_the_order_first_reached() {
        let (_dir, journal) = open_temp();
        let lease = leased_run(&journal, 0);
        for (i, key) in ["network", "server/cp-1", "server/cp-2"].iter().enumerate() {
            let attempt = journal
                .start_attempt(&lease, key, "x", "h", t(i as i64))
                .unwrap();
            if i != 1 {
                journal
                    .complete_step(&lease, key, attempt, &json!(i), t(i as i64))
                    .unwrap();
            }
        }
        // Retrying an earlier step keeps its seq.
        journal
            .fail_attempt(
                &lease,
                "server/cp-1",
                1,
                ErrorClass::Retryable,
                "e",
                None,
                false,
                t(9),
            )
            .unwrap();
        journal
            .start_attempt(&lease, "server/cp-1", "x", "h", t(10))
            .unwrap();
        let steps = journal.load_run(&lease.run_id).unwrap().steps;
        let order: Vec<_> = steps.iter().map(|s| (s.seq, s.key.as_str())).collect();
        assert_eq!(
            order,
            [(1, "network"), (2, "server/cp-1"), (3, "server/cp-2")]
        );
    }

    #[test]
    fn a_permanently_failed_step_can_be_retried_on_resume() {
        let (_dir, journal) = open_temp();
        let lease = leased_run(&journal, 0);
        journal
            .start_attempt(&lease, "image", "build", "h", t(1))
            .unwrap();
        journal
            .fail_attempt(
                &lease,
                "image",
                1,
                ErrorClass::Permanent,
                "invalid_input",
                None,
                true,
                t(2),
            )
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
        assert_eq!(
            journal
                .start_attempt(&b, "image", "build", "h", t(5))
                .unwrap(),
            2
        );
        let step = journal.load_run(&lease.run_id).unwrap().steps[0].clone();
        assert_eq!((step.status, step.finished_at), (StepStatus::Running, None));
    }

    #[test]
    fn a_succeeded_step_is_not_started_again() {
        let (_dir, journal) = open_temp();
        let lease = leased_run(&journal, 0);
        journal
            .start_attempt(&lease, "network", "x", "h", t(1))
            .unwrap();
        journal
            .complete_step(&lease, "network", 1, &json!(null), t(2))
            .unwrap();
        let err = journal
            .start_attempt(&lease, "network", "x", "h", t(3))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("step \"network\" of run {} already succeeded", lease.run_id)
        );
        assert_eq!(journal.load_run(&lease.run_id).unwrap().attempts.len(), 1);
    }

    #[test]
    fn closing_an_attempt_that_is_not_open_is_refused() {
        let (_dir, journal) = open_temp();
        let lease = leased_run(&journal, 0);
        journal
            .start_attempt(&lease, "network", "x", "h", t(1))
            .unwrap();
        let err = journal
            .complete_step(&lease, "network", 2, &json!(1), t(2))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "attempt 2 of step \"network\" in run {} is not open",
                lease.run_id
            )
        );
        let err = journal
            .complete_step(&lease, "nope", 1, &json!(1), t(2))
            .unwrap_err();
        assert!(
            matches!(err, JournalError::AttemptNotOpen { attempt: 1, .. }),
            "{err:?}"
        );
        journal
            .fail_attempt(
                &lease,
                "network",
                1,
                ErrorClass::Retryable,
                "e",
                None,
                false,
                t(3),
            )
            .unwrap();
        let before = journal.load_run(&lease.run_id).unwrap();
        let err = journal
            .complete_step(&lease, "network", 1, &json!(1), t(4))
            .unwrap_err();
        assert!(
            matches!(err, JournalError::AttemptNotOpen { .. }),
            "{err:?}"
        );
        let err = journal
            .fail_attempt(
                &lease,
                "network",
                1,
                ErrorClass::Retryable,
                "again",
                None,
                false,
                t(4),
            )
            .unwrap_err();
        assert!(
            matches!(err, JournalError::AttemptNotOpen { .. }),
            "{err:?}"
        );
        assert_eq!(
            journal.load_run(&lease.run_id).unwrap(),
            before,
            "nothing written"
        );
    }

    #[test]
    fn attempts_abandoned_by_a_dead_holder_are_closed_as_interrupted() {
        let (_dir, journal) = open_temp();
        let a = leased_run(&journal, 0);
        journal
            .start_attempt(&a, "server/cp-1", "x", "h", t(1))
            .unwrap();
        // A is killed; B takes over after expiry and re-runs the step.
        let b = journal
            .acquire_lease(&a.run_id, &owner("b"), t(30_000), TTL, Takeover::IfFree)
            .unwrap();
        assert_eq!(
            journal
                .start_attempt(&b, "server/cp-1", "x", "h", t(30_001))
                .unwrap(),
            2
        );
        let state = journal.load_run(&a.run_id).unwrap();
        let attempts: Vec<_> = state.attempts_of("server/cp-1").collect();
        assert_eq!(
            attempts[0].outcome,
            Some(AttemptOutcome::Failed(ErrorClass::Interrupted))
        );
        assert_eq!(attempts[0].message.as_deref(), Some(ABANDONED_MESSAGE));
        assert_eq!((attempts[0].fence, attempts[0].ended_at), (1, None));
        assert_eq!((attempts[1].fence, attempts[1].outcome), (2, None));
    }

    #[test]
    fn intent_records_skip_the_fsync_and_completions_do_not() {
        let (_dir, journal) = open_temp();
        let mut lease = leased_run(&journal, 0);
        assert_eq!(sync_level(&journal), 2, "acquire is FULL");
        journal.start_attempt(&lease, "s", "x", "h", t(1)).unwrap();
        assert_eq!(sync_level(&journal), 1, "start_attempt is NORMAL");
        journal
            .complete_step(&lease, "s", 1, &json!(1), t(2))
            .unwrap();
        assert_eq!(sync_level(&journal), 2, "complete_step is FULL");
        journal.renew_lease(&mut lease, t(3), TTL).unwrap();
        assert_eq!(sync_level(&journal), 1, "renew is NORMAL");
        journal.start_attempt(&lease, "u", "x", "h", t(4)).unwrap();
        journal
            .fail_attempt(
                &lease,
                "u",
                1,
                ErrorClass::Retryable,
                "e",
                None,
                false,
                t(5),
            )
            .unwrap();
        assert_eq!(sync_level(&journal), 1, "retryable failure is NORMAL");
        journal.start_attempt(&lease, "u", "x", "h", t(6)).unwrap();
        journal
            .fail_attempt(&lease, "u", 2, ErrorClass::Permanent, "e", None, true, t(7))
            .unwrap();
        assert_eq!(sync_level(&journal), 2, "final failure is FULL");
        journal
            .finish_run(&lease, RunStatus::Failed, Some("e"), t(8))
            .unwrap();
        assert_eq!(sync_level(&journal), 2, "finish is FULL");
    }

    #[test]
    fn a_failed_write_leaves_the_connection_usable() {
        let (_dir, journal) = open_temp();
        let lease = leased_run(&journal, 0);
        assert!(
            journal
                .complete_step(&lease, "missing", 1, &json!(1), t(1))
                .is_err()
        );
        assert_eq!(
            journal.start_attempt(&lease, "s", "x", "h", t(2)).unwrap(),
            1
        );
    }
}
