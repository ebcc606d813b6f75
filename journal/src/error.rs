//! Errors of the journal. Messages name the journal file where the file is at fault.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::ids::{Owner, RunId};
use crate::model::RunStatus;

/// Everything that can go wrong in the journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The file exists but is not a SQLite database at all.
    #[error("{} is not an hk8s journal (not a SQLite database)", path.display())]
    NotADatabase {
        /// The journal path.
        path: PathBuf,
    },
    /// The file is a SQLite database of some other program.
    #[error("{} is not an hk8s journal (a SQLite database of another program)", path.display())]
    ForeignDatabase {
        /// The journal path.
        path: PathBuf,
    },
    /// The file is a damaged or truncated SQLite database.
    #[error(
        "journal {} is corrupt or truncated; move it aside (the cloud labels remain the truth) or restore a backup",
        path.display()
    )]
    Corrupt {
        /// The journal path.
        path: PathBuf,
        /// What SQLite reported.
        #[source]
        source: rusqlite::Error,
    },
    /// The journal was written by a newer hk8s.
    #[error(
        "journal {path} has schema version {found}, newer than this hk8s supports ({supported}); upgrade hk8s"
    )]
    SchemaTooNew {
        /// The journal path or (password-free) database URL.
        path: String,
        /// Schema version found in the file.
        found: u32,
        /// Highest schema version this build knows.
        supported: u32,
    },
    /// Another process kept the journal locked for longer than the busy timeout.
    #[error(
        "journal {} is locked by another process (waited {waited:?}); retry when it finishes",
        path.display()
    )]
    Locked {
        /// The journal path.
        path: PathBuf,
        /// How long we waited (the busy timeout).
        waited: Duration,
    },
    /// The run's lease is held by another live owner.
    #[error("run {run} is held by {holder} until {expires_at}")]
    LeaseHeld {
        /// The run.
        run: RunId,
        /// Who holds it.
        holder: Box<Owner>,
        /// When the lease expires unless renewed.
        expires_at: DateTime<Utc>,
    },
    /// The lease passed to a write is no longer the run's current lease; nothing was written.
    #[error(
        "lost the lease on run {run}: another process took it over (fenced out); nothing was written"
    )]
    Fenced {
        /// The run.
        run: RunId,
    },
    /// No run has this id (or id prefix).
    #[error("no run matches {run:?}")]
    RunNotFound {
        /// The id or prefix asked for.
        run: String,
    },
    /// An id prefix matches several runs.
    #[error(
        "run id prefix {prefix:?} is ambiguous: it matches {}",
        join(candidates)
    )]
    AmbiguousRun {
        /// The prefix asked for.
        prefix: String,
        /// Some of the matching runs (at most ten).
        candidates: Vec<RunId>,
    },
    /// `create_run` with an id that already exists.
    #[error("run {run} already exists")]
    RunExists {
        /// The run.
        run: RunId,
    },
    /// A run would become its cluster's second active (queued or running) run.
    #[error(
        "cluster {cluster} already has an active run {active} ({workflow}, {status}); one run per \
         cluster at a time: wait for it, or resume it with `hk8s resume {active}`"
    )]
    ClusterBusy {
        /// The cluster.
        cluster: String,
        /// Its active run.
        active: RunId,
        /// That run's workflow.
        workflow: String,
        /// That run's status.
        status: RunStatus,
    },
    /// A lease was requested on a run that already succeeded or was cancelled.
    #[error("run {run} is {status}; it cannot be resumed")]
    RunFinished {
        /// The run.
        run: RunId,
        /// Its terminal status.
        status: RunStatus,
    },
    /// `start_attempt` on a step that already succeeded.
    #[error("step {key:?} of run {run} already succeeded")]
    StepSucceeded {
        /// The run.
        run: RunId,
        /// The step key.
        key: String,
    },
    /// `fail_attempt` / `complete_step` on an attempt that does not exist or already ended.
    #[error("attempt {attempt} of step {key:?} in run {run} is not open")]
    AttemptNotOpen {
        /// The run.
        run: RunId,
        /// The step key.
        key: String,
        /// The attempt number.
        attempt: u32,
    },
    /// An attempt journaled out of turn: not the step's next number, or while another attempt
    /// of the step is open under the same lease.
    #[error("attempt {attempt} of step {key:?} in run {run} cannot be opened: {reason}")]
    AttemptOutOfOrder {
        /// The run.
        run: RunId,
        /// The step key.
        key: String,
        /// The attempt number.
        attempt: u32,
        /// What the journal holds instead.
        reason: String,
    },
    /// Neither `$HK8S_HOME`, `$XDG_STATE_HOME` nor `$HOME` gives a state directory.
    #[error("cannot find a state directory for the journal: set HK8S_HOME or HOME")]
    NoStateDir,
    /// A file-system operation on the journal path failed.
    #[error("cannot {operation} {}", path.display())]
    Io {
        /// What was attempted, e.g. `create the journal directory`.
        operation: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A PostgreSQL journal could not be reached, or a call to it did not finish in time; the
    /// call wrote nothing (or its transaction is rolled back by the server).
    #[error("journal {location} is unreachable ({operation}): {reason}")]
    Unreachable {
        /// The database URL, without password.
        location: String,
        /// The journal operation.
        operation: &'static str,
        /// What happened (timeout, connection refused, connection closed).
        reason: String,
    },
    /// PostgreSQL refused a statement.
    #[error("journal {operation} failed on {location}")]
    Postgres {
        /// The database URL, without password.
        location: String,
        /// The journal operation.
        operation: &'static str,
        /// What PostgreSQL reported.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The location is not a usable PostgreSQL URL, or asks for something hk8s refuses.
    #[error("journal URL {location} is not usable: {reason}")]
    BadLocation {
        /// The URL, without password.
        location: String,
        /// Why.
        reason: String,
    },
    /// A stored value has an unexpected type or shape.
    #[error("journal {operation} read an unexpected value")]
    BadValue {
        /// The journal operation.
        operation: &'static str,
        /// Which column and what it held.
        #[source]
        source: BadColumn,
    },
    /// Any other SQLite failure.
    #[error("journal {operation} failed")]
    Storage {
        /// The journal operation, e.g. `complete step`.
        operation: &'static str,
        /// What SQLite reported.
        #[source]
        source: rusqlite::Error,
    },
}

fn join(ids: &[RunId]) -> String {
    ids.iter()
        .map(RunId::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A column could not be read as the type the journal expects.
#[derive(Debug, thiserror::Error)]
#[error("column {index} holds {found:?}, expected {expected}")]
pub struct BadColumn {
    pub(crate) index: usize,
    pub(crate) found: String,
    pub(crate) expected: &'static str,
}
