//! Durable journal of workflow runs, steps, attempts and leases, on SQLite or PostgreSQL.
//!
//! A [`Location`] selects the backend: a SQLite file (default: [`default_path_from`] the CLI's
//! environment) for one user on one machine, or a PostgreSQL database shared by several runners.
//! Both hold the same three tables: `runs` (with the lease:
//! owner, expiry, fencing counter), `steps` (one row per deterministic step key, with its output
//! once succeeded, and the attempt running now) and `attempts` (every try that ended, with
//! outcome, failure kind, message and retry time); [`Journal::load_run`] reports the running
//! attempt with the others.
//! The journal reads no clock for what it records: callers pass `now`, the [`Owner`] and the
//! [`Lease`]. Lease expiry on PostgreSQL is the exception: it is decided by the database's
//! `clock_timestamp()` only, so runners on machines with different clocks agree.
//! Every write that takes a lease is rejected with [`JournalError::Fenced`] once another process
//! has acquired the run. A completed step is one transaction and one fsync; its start may be
//! journaled before (an intent record, not fsynced) or in that same transaction.
//!
//! ```
//! use std::time::Duration;
//! use chrono::{DateTime, Utc};
//! use hk8s_journal::{AttemptStart, Journal, NewRun, Owner, RunId, RunStatus, StepStatus, Takeover};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let journal = Journal::open(&dir.path().join("journal.db"))?;
//! let now = DateTime::<Utc>::from_timestamp_millis(1_700_000_000_000).ok_or("time")?;
//!
//! let id = RunId::new();
//! journal.create_run(&NewRun {
//!     id,
//!     workflow: "cluster.create".into(),
//!     workflow_version: 1,
//!     cluster: "demo".into(),
//!     input: serde_json::json!({ "nodes": 3 }),
//! }, now)?;
//! let lease = journal.acquire_lease(&id, &Owner::current(), now, Duration::from_secs(30), Takeover::IfFree)?;
//! let start = AttemptStart {
//!     key: "network",
//!     attempt: 1,
//!     activity: "hcloud.network.ensure",
//!     input_hash: "h1",
//!     started_at: now,
//! };
//! // Start and outcome in one commit; `start_attempt` journals the start on its own first.
//! journal.complete_step(&lease, &start, &serde_json::json!({ "id": 42 }), now)?;
//! journal.finish_run(&lease, RunStatus::Succeeded, None, now)?;
//!
//! let state = journal.load_run(&id)?;
//! assert_eq!(state.run.status, RunStatus::Succeeded);
//! assert_eq!(state.steps[0].status, StepStatus::Succeeded);
//! # Ok(())
//! # }
//! ```

// Tests may unwrap (the style rule); product code may not.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod codec;
mod error;
mod files;
mod ids;
mod journal;
mod location;
mod model;
mod options;
mod paths;
mod postgres;
mod query;
mod queue;
mod runs;
mod schema;
mod sql;
mod sqlite;
mod steps;

pub use error::{BadColumn, JournalError};
pub use files::ClusterFile;
pub use ids::{Lease, Owner, RunId, machine_id};
pub use journal::Journal;
pub use location::Location;
pub use model::{
    AttemptOutcome, AttemptRecord, FailureKind, NewRun, RunFilter, RunRecord, RunState, RunStatus,
    StepRecord, StepStatus, UnknownStatus,
};
pub use options::{LeaseClock, OpenOptions};
pub use paths::{JOURNAL_FILE, default_path_from, state_dir_from};
pub use queue::{Claim, Enqueued, MAX_STALLED_CLAIMS, gave_up_message};
pub use runs::Takeover;
pub use schema::supported_version;
pub use steps::{ABANDONED_MESSAGE, AttemptFailure, AttemptStart};

#[cfg(test)]
mod testutil;
