//! Conversions between records and journal values ([`Row`]): times are epoch milliseconds, statuses text,
//! JSON text for inputs and outputs.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::ids::{Owner, RunId};
use crate::model::{AttemptOutcome, AttemptRecord, FailureKind, RunRecord, StepRecord};
use crate::sql::{Row, TxError};

/// Epoch milliseconds of `t`.
pub(crate) fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// `now + ttl`, saturating at the largest representable time.
pub(crate) fn expiry(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(ttl)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn time(row: &Row, index: usize) -> Result<DateTime<Utc>, TxError> {
    let ms = row.int(index)?;
    DateTime::from_timestamp_millis(ms).ok_or_else(|| row.unparsable(index, "a time in range"))
}

fn opt_time(row: &Row, index: usize) -> Result<Option<DateTime<Utc>>, TxError> {
    match row.opt_int(index)? {
        None => Ok(None),
        Some(_) => time(row, index).map(Some),
    }
}

fn parsed<T: FromStr>(row: &Row, index: usize, expected: &'static str) -> Result<T, TxError> {
    row.text(index)?
        .parse()
        .map_err(|_| row.unparsable(index, expected))
}

fn json(row: &Row, index: usize) -> Result<serde_json::Value, TxError> {
    serde_json::from_str(&row.text(index)?).map_err(|_| row.unparsable(index, "JSON"))
}

fn opt_json(row: &Row, index: usize) -> Result<Option<serde_json::Value>, TxError> {
    match row.opt_text(index)? {
        None => Ok(None),
        Some(_) => json(row, index).map(Some),
    }
}

/// Columns read by [`run_from_row`], in order.
pub(crate) const RUN_COLUMNS: &str = "id, workflow, workflow_version, cluster, input_json, status, \
     error, created_at, updated_at, finished_at, owner_host, owner_pid, owner_id, \
     lease_expires_at, fence, resume_count, owner_machine, dedup_key, stalled_claims";

pub(crate) fn run_from_row(row: &Row) -> Result<RunRecord, TxError> {
    let owner = match row.opt_text(12)? {
        Some(id) => Some(owner_from(row, 10, 11, 16, id)?),
        None => None,
    };
    Ok(RunRecord {
        id: parsed::<RunId>(row, 0, "a run id")?,
        workflow: row.text(1)?,
        workflow_version: row.u32(2)?,
        cluster: row.text(3)?,
        input: json(row, 4)?,
        status: parsed(row, 5, "a run status")?,
        error: row.opt_text(6)?,
        created_at: time(row, 7)?,
        updated_at: time(row, 8)?,
        finished_at: opt_time(row, 9)?,
        owner,
        lease_expires_at: opt_time(row, 13)?,
        fence: row.int(14)?,
        resume_count: row.u32(15)?,
        dedup_key: row.opt_text(17)?,
        stalled_claims: row.u32(18)?,
    })
}

/// The lease holder stored in columns `host`, `pid` and `machine` (owner id `id`).
pub(crate) fn owner_from(
    row: &Row,
    host: usize,
    pid: usize,
    machine: usize,
    id: String,
) -> Result<Owner, TxError> {
    Ok(Owner {
        host: row.text(host)?,
        pid: row.u32(pid)?,
        machine: row.opt_text(machine)?.unwrap_or_default(),
        id,
    })
}

/// Columns read by [`step_from_row`] and [`running_attempt`], in order.
pub(crate) const STEP_COLUMNS: &str = "key, activity, input_hash, status, output_json, error, \
     attempts, seq, started_at, finished_at, next_retry_at, open_fence, open_started_at";

pub(crate) fn step_from_row(row: &Row) -> Result<StepRecord, TxError> {
    Ok(StepRecord {
        key: row.text(0)?,
        activity: row.text(1)?,
        input_hash: row.text(2)?,
        status: parsed(row, 3, "a step status")?,
        output: opt_json(row, 4)?,
        error: row.opt_text(5)?,
        attempts: row.u32(6)?,
        seq: row.u32(7)?,
        started_at: time(row, 8)?,
        finished_at: opt_time(row, 9)?,
        next_retry_at: opt_time(row, 10)?,
    })
}

/// The attempt a step row records as running (attempt number `attempts`), if any.
pub(crate) fn running_attempt(row: &Row) -> Result<Option<AttemptRecord>, TxError> {
    let Some(fence) = row.opt_int(11)? else {
        return Ok(None);
    };
    Ok(Some(AttemptRecord {
        step_key: row.text(0)?,
        attempt: row.u32(6)?,
        fence,
        started_at: time(row, 12)?,
        ended_at: None,
        outcome: None,
        message: None,
        retry_at: None,
    }))
}

/// Columns read by [`attempt_from_row`], in order.
pub(crate) const ATTEMPT_COLUMNS: &str =
    "step_key, attempt, fence, started_at, ended_at, outcome, error_class, message, retry_at";

pub(crate) fn attempt_from_row(row: &Row) -> Result<AttemptRecord, TxError> {
    let outcome = match row.opt_text(5)?.as_deref() {
        None => None,
        Some("succeeded") => Some(AttemptOutcome::Succeeded),
        Some("failed") => Some(AttemptOutcome::Failed(parsed::<FailureKind>(
            row,
            6,
            "a failure kind",
        )?)),
        Some(_) => return Err(row.unparsable(5, "'succeeded' or 'failed'")),
    };
    Ok(AttemptRecord {
        step_key: row.text(0)?,
        attempt: row.u32(1)?,
        fence: row.int(2)?,
        started_at: time(row, 3)?,
        ended_at: opt_time(row, 4)?,
        outcome,
        message: row.opt_text(7)?,
        retry_at: opt_time(row, 8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_adds_and_saturates() {
        let now = DateTime::from_timestamp_millis(1_000).unwrap();
        assert_eq!(to_ms(expiry(now, Duration::from_millis(2_500))), 3_500);
        assert_eq!(expiry(now, Duration::MAX), DateTime::<Utc>::MAX_UTC);
    }
}
