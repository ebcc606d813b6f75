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
    /// `running`. Attempts of this step left open under an earlier lease are closed as
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
            touch_run(tx, &run, now)?;
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
            touch_run(tx, &run, now)?;
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
