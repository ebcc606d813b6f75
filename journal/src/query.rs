//! Reads: one run with everything a resume needs, run lists, id prefixes.

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params_from_iter};

use crate::codec::{
    ATTEMPT_COLUMNS, RUN_COLUMNS, STEP_COLUMNS, attempt_from_row, run_from_row, step_from_row,
};
use crate::error::JournalError;
use crate::ids::RunId;
use crate::journal::Journal;
use crate::model::{RunFilter, RunRecord, RunState};
use crate::runs::not_found;

/// How many candidates [`JournalError::AmbiguousRun`] lists at most.
const MAX_CANDIDATES: usize = 10;

impl Journal {
    /// The run, its steps (by `seq`) and every attempt: one indexed SELECT per table, in one
    /// read transaction (a consistent snapshot). This is also the step timeline for `show`.
    ///
    /// # Errors
    /// [`JournalError::RunNotFound`]; storage errors.
    pub fn load_run(&self, run: &RunId) -> Result<RunState, JournalError> {
        let id = run.to_string();
        self.read("load run", |tx| {
            let record = tx
                .prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"))?
                .query_row([&id], run_from_row)
                .optional()?;
            let Some(record) = record else {
                return Err(not_found(run).into());
            };
            let steps = tx
                .prepare_cached(&format!(
                    "SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ?1 ORDER BY seq"
                ))?
                .query_map([&id], step_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let attempts = tx
                .prepare_cached(&format!(
                    "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE run_id = ?1 \
                     ORDER BY step_key, attempt"
                ))?
                .query_map([&id], attempt_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(RunState {
                run: record,
                steps,
                attempts,
            })
        })
    }

    /// Runs matching `filter`, newest first.
    ///
    /// # Errors
    /// Storage errors.
    pub fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, JournalError> {
        let mut conditions = Vec::new();
        let mut values = Vec::new();
        if let Some(cluster) = &filter.cluster {
            values.push(Value::Text(cluster.clone()));
            conditions.push(format!("cluster = ?{}", values.len()));
        }
        if let Some(workflow) = &filter.workflow {
            values.push(Value::Text(workflow.clone()));
            conditions.push(format!("workflow = ?{}", values.len()));
        }
        if let Some(status) = filter.status {
            values.push(Value::Text(status.as_str().to_owned()));
            conditions.push(format!("status = ?{}", values.len()));
        }
        let mut sql = format!("SELECT {RUN_COLUMNS} FROM runs");
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(" ORDER BY created_at DESC, id DESC");
        if let Some(limit) = filter.limit {
            values.push(Value::Integer(i64::from(limit)));
            sql.push_str(&format!(" LIMIT ?{}", values.len()));
        }
        self.read("list runs", |tx| {
            Ok(tx
                .prepare_cached(&sql)?
                .query_map(params_from_iter(values), run_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// The run whose id is `id_or_prefix` or starts with it (case-insensitive).
    ///
    /// # Errors
    /// [`JournalError::RunNotFound`], [`JournalError::AmbiguousRun`] listing candidates;
    /// storage errors.
    pub fn resolve_run(&self, id_or_prefix: &str) -> Result<RunId, JournalError> {
        let prefix = id_or_prefix.trim().to_ascii_lowercase();
        let not_found = || JournalError::RunNotFound {
            run: id_or_prefix.to_owned(),
        };
        if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(not_found());
        }
        let ids: Vec<String> = self.read("resolve run", |tx| {
            Ok(tx
                .prepare_cached(
                    "SELECT id FROM runs WHERE substr(id, 1, length(?1)) = ?1 \
                     ORDER BY id DESC LIMIT ?2",
                )?
                .query_map(rusqlite::params![prefix, MAX_CANDIDATES as i64 + 1], |r| {
                    r.get(0)
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })?;
        let mut candidates = ids
            .iter()
            .filter_map(|id| id.parse::<RunId>().ok())
            .collect::<Vec<_>>();
        match candidates.len() {
            0 => Err(not_found()),
            1 => Ok(candidates.remove(0)),
            _ => {
                candidates.truncate(MAX_CANDIDATES);
                Err(JournalError::AmbiguousRun {
                    prefix: id_or_prefix.trim().to_owned(),
                    candidates,
                })
            }
        }
    }
}
