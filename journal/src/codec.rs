//! Conversions between records and SQLite values: times are epoch milliseconds, statuses text,
//! JSON text for inputs and outputs.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::Row;
use rusqlite::types::Type;

use crate::ids::{Owner, RunId};
use crate::model::{AttemptOutcome, AttemptRecord, FailureKind, RunRecord, StepRecord};

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

fn conversion(
    index: usize,
    ty: Type,
    e: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, ty, Box::new(e))
}

#[derive(Debug, thiserror::Error)]
#[error("time {0} ms is out of range")]
struct TimeOutOfRange(i64);

fn time(row: &Row<'_>, index: usize) -> rusqlite::Result<DateTime<Utc>> {
    let ms: i64 = row.get(index)?;
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| conversion(index, Type::Integer, TimeOutOfRange(ms)))
}

fn opt_time(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    match row.get::<_, Option<i64>>(index)? {
        None => Ok(None),
        Some(_) => time(row, index).map(Some),
    }
}

fn parsed<T>(row: &Row<'_>, index: usize) -> rusqlite::Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.get(index)?;
    text.parse().map_err(|e| conversion(index, Type::Text, e))
}

fn json(row: &Row<'_>, index: usize) -> rusqlite::Result<serde_json::Value> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text).map_err(|e| conversion(index, Type::Text, e))
}

fn opt_json(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<serde_json::Value>> {
    match row.get::<_, Option<String>>(index)? {
        None => Ok(None),
        Some(_) => json(row, index).map(Some),
    }
}

/// Columns read by [`run_from_row`], in order.
pub(crate) const RUN_COLUMNS: &str = "id, workflow, workflow_version, cluster, input_json, status, \
     error, created_at, updated_at, finished_at, owner_host, owner_pid, owner_id, \
     lease_expires_at, fence, resume_count";

pub(crate) fn run_from_row(row: &Row<'_>) -> rusqlite::Result<RunRecord> {
    let owner = match row.get::<_, Option<String>>(12)? {
        Some(id) => Some(Owner {
            host: row.get(10)?,
            pid: row.get(11)?,
            id,
        }),
        None => None,
    };
    Ok(RunRecord {
        id: parsed::<RunId>(row, 0)?,
        workflow: row.get(1)?,
        workflow_version: row.get(2)?,
        cluster: row.get(3)?,
        input: json(row, 4)?,
        status: parsed(row, 5)?,
        error: row.get(6)?,
        created_at: time(row, 7)?,
        updated_at: time(row, 8)?,
        finished_at: opt_time(row, 9)?,
        owner,
        lease_expires_at: opt_time(row, 13)?,
        fence: row.get(14)?,
        resume_count: row.get(15)?,
    })
}

/// Columns read by [`step_from_row`] and [`running_attempt`], in order.
pub(crate) const STEP_COLUMNS: &str = "key, activity, input_hash, status, output_json, error, \
     attempts, seq, started_at, finished_at, next_retry_at, open_fence, open_started_at";

pub(crate) fn step_from_row(row: &Row<'_>) -> rusqlite::Result<StepRecord> {
    Ok(StepRecord {
        key: row.get(0)?,
        activity: row.get(1)?,
        input_hash: row.get(2)?,
        status: parsed(row, 3)?,
        output: opt_json(row, 4)?,
        error: row.get(5)?,
        attempts: row.get(6)?,
        seq: row.get(7)?,
        started_at: time(row, 8)?,
        finished_at: opt_time(row, 9)?,
        next_retry_at: opt_time(row, 10)?,
    })
}

/// The attempt a step row records as running (attempt number `attempts`), if any.
pub(crate) fn running_attempt(row: &Row<'_>) -> rusqlite::Result<Option<AttemptRecord>> {
    let Some(fence) = row.get::<_, Option<i64>>(11)? else {
        return Ok(None);
    };
    Ok(Some(AttemptRecord {
        step_key: row.get(0)?,
        attempt: row.get(6)?,
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

#[derive(Debug, thiserror::Error)]
#[error("attempt outcome {0:?} is not 'succeeded' or 'failed'")]
struct BadOutcome(String);

pub(crate) fn attempt_from_row(row: &Row<'_>) -> rusqlite::Result<AttemptRecord> {
    let outcome = match row.get::<_, Option<String>>(5)?.as_deref() {
        None => None,
        Some("succeeded") => Some(AttemptOutcome::Succeeded),
        Some("failed") => Some(AttemptOutcome::Failed(parsed::<FailureKind>(row, 6)?)),
        Some(other) => return Err(conversion(5, Type::Text, BadOutcome(other.to_owned()))),
    };
    Ok(AttemptRecord {
        step_key: row.get(0)?,
        attempt: row.get(1)?,
        fence: row.get(2)?,
        started_at: time(row, 3)?,
        ended_at: opt_time(row, 4)?,
        outcome,
        message: row.get(7)?,
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
