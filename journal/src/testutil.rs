//! Helpers shared by the unit tests.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tempfile::TempDir;

use crate::{Journal, Lease, LeaseClock, Location, NewRun, OpenOptions, Owner, RunId, Takeover};

/// A fixed instant `ms` milliseconds after 2023-11-14T22:13:20Z.
pub(crate) fn t(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_700_000_000_000 + ms).unwrap()
}

pub(crate) const TTL: Duration = Duration::from_secs(30);

pub(crate) fn owner(name: &str) -> Owner {
    Owner {
        host: format!("{name}-host"),
        pid: 100 + name.len() as u32,
        machine: format!("{name}-machine"),
        id: format!("{name}-id"),
    }
}

pub(crate) fn open_temp() -> (TempDir, Journal) {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("journal.db")).unwrap();
    (dir, journal)
}

/// Runs `test` on a fresh SQLite journal, then on a fresh PostgreSQL database (which skips
/// locally, and fails under CI, when no test server runs). The PostgreSQL journal decides
/// lease expiry by the caller's `now` here, as SQLite does, so one script of instants holds for
/// both; `postgres_leases` tests the database clock.
pub(crate) fn each_backend(mut test: impl FnMut(&Journal)) {
    let (_dir, journal) = open_temp();
    eprintln!("backend: sqlite");
    test(&journal);
    if let Some(journal) = open_postgres(LeaseClock::Caller) {
        eprintln!("backend: postgres");
        test(&journal);
    }
}

/// A journal on a fresh PostgreSQL database, or `None` after `skip`.
pub(crate) fn open_postgres(lease_clock: LeaseClock) -> Option<Journal> {
    let server = hk8s_testkit::postgres()?;
    let location = Location::Postgres(server.fresh_database());
    let opts = OpenOptions {
        lease_clock,
        ..OpenOptions::default()
    };
    Some(Journal::open_location(&location, opts).unwrap())
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
