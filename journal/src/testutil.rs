//! Helpers shared by the unit tests.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tempfile::TempDir;

use crate::{Journal, Lease, NewRun, Owner, RunId, Takeover};

/// A fixed instant `ms` milliseconds after 2023-11-14T22:13:20Z.
pub(crate) fn t(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_700_000_000_000 + ms).unwrap()
}

pub(crate) const TTL: Duration = Duration::from_secs(30);

pub(crate) fn owner(name: &str) -> Owner {
    Owner {
        host: format!("{name}-host"),
        pid: 100 + name.len() as u32,
        id: format!("{name}-id"),
    }
}

pub(crate) fn open_temp() -> (TempDir, Journal) {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("journal.db")).unwrap();
    (dir, journal)
}

pub(crate) fn new_run(workflow: &str, cluster: &str) -> NewRun {
    NewRun {
        id: RunId::new(),
        workflow: workflow.to_owned(),
        workflow_version: 3,
        cluster: cluster.to_owned(),
        input: serde_json::json!({ "cluster": cluster, "nodes": [1, 2, 3] }),
    }
}

/// Creates a run at `t(at)` and leases it to owner `a` at the same instant.
pub(crate) fn leased_run(journal: &Journal, at: i64) -> Lease {
    let run = new_run("cluster.create", "demo");
    journal.create_run(&run, t(at)).unwrap();
    journal
        .acquire_lease(&run.id, &owner("a"), t(at), TTL, Takeover::IfFree)
        .unwrap()
}

/// Attempt `attempt` of step `key` (activity `x`, input hash `h`) started at `t(at)`.
pub(crate) fn start(key: &str, attempt: u32, at: i64) -> crate::AttemptStart<'_> {
    crate::AttemptStart {
        key,
        attempt,
        activity: "x",
        input_hash: "h",
        started_at: t(at),
    }
}

/// A failure of class `class` with `message`, retried at `retry_at` unless `step_failed`.
pub(crate) fn failure(
    class: crate::FailureKind,
    message: &str,
    retry_at: Option<DateTime<Utc>>,
    step_failed: bool,
) -> crate::AttemptFailure<'_> {
    crate::AttemptFailure {
        class,
        message,
        retry_at,
        step_failed,
    }
}
