//! The [`Journal`] handle: one of two backends behind the same API, and the transaction helpers
//! the other modules build on.
//!
//! The journal's rules are written once against [`Tx`] (`sql.rs`). A SQLite file (`sqlite.rs`)
//! serves one user on one machine; a PostgreSQL database (`postgres.rs`) serves several runners
//! on several machines. Both commit a completed step once, durably, and record intents (an
//! attempt's start, a lease renewal, a retryable failure) without waiting for a flush.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use crate::error::JournalError;
use crate::ids::{Lease, RunId};
use crate::location::Location;
use crate::options::{Durability, OpenOptions};
use crate::postgres::PgJournal;
use crate::sql::{Tx, TxError};
use crate::sqlite::SqliteJournal;

/// An open journal. `Send + Sync`; its calls are short and synchronous (call from async code
/// directly or via `spawn_blocking`).
#[derive(Debug)]
pub struct Journal {
    backend: Backend,
    location: Location,
    /// The last step `seq` this handle journaled per run, with the lease fence it held: valid
    /// while that lease holds, as only the lease holder inserts steps (through one handle).
    last_seq: Mutex<HashMap<RunId, (i64, i64)>>,
}

#[derive(Debug)]
enum Backend {
    Sqlite(SqliteJournal),
    Postgres(PgJournal),
}

impl Journal {
    /// Opens (creating if needed) the SQLite journal at `path` with default options.
    ///
    /// # Errors
    /// See [`Journal::open_with`].
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        Self::open_with(path, OpenOptions::default())
    }

    /// Opens (creating if needed) the SQLite journal at `path`: creates missing parent
    /// directories (mode 0700) and the file (mode 0600), sets WAL, `synchronous=FULL`,
    /// `foreign_keys=ON` and the busy timeout, and applies pending migrations.
    ///
    /// # Errors
    /// [`JournalError::NotADatabase`], [`JournalError::ForeignDatabase`],
    /// [`JournalError::Corrupt`], [`JournalError::SchemaTooNew`], [`JournalError::Locked`],
    /// [`JournalError::Io`] or [`JournalError::Storage`].
    pub fn open_with(path: &Path, opts: OpenOptions) -> Result<Journal, JournalError> {
        Ok(Self::new(
            Backend::Sqlite(SqliteJournal::open(path, opts)?),
            Location::Sqlite(path.to_owned()),
        ))
    }

    /// Opens the journal at `location`: a SQLite file, or a PostgreSQL database (connecting,
    /// then applying pending migrations under an advisory lock).
    ///
    /// # Errors
    /// As [`Journal::open_with`] for a file; for PostgreSQL [`JournalError::Unreachable`],
    /// [`JournalError::Postgres`] or [`JournalError::SchemaTooNew`].
    pub fn open_location(location: &Location, opts: OpenOptions) -> Result<Journal, JournalError> {
        match location {
            Location::Sqlite(path) => Self::open_with(path, opts),
            Location::Postgres(url) => Ok(Self::new(
                Backend::Postgres(PgJournal::open(url, opts)?),
                location.clone(),
            )),
        }
    }

    fn new(backend: Backend, location: Location) -> Journal {
        Journal {
            backend,
            location,
            last_seq: Mutex::new(HashMap::new()),
        }
    }

    /// Where this journal lives (printable: a PostgreSQL password is never shown).
    #[must_use]
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The file this journal was opened from, for a SQLite journal.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        match &self.location {
            Location::Sqlite(path) => Some(path),
            Location::Postgres(_) => None,
        }
    }

    /// Runs `body` in one write transaction committed with the given durability. Any error
    /// rolls the transaction back: nothing is written.
    pub(crate) fn write<T: Send>(
        &self,
        operation: &'static str,
        durability: Durability,
        body: impl FnOnce(&mut dyn Tx) -> Result<T, TxError> + Send,
    ) -> Result<T, JournalError> {
        match &self.backend {
            Backend::Sqlite(db) => db.write(operation, durability, body),
            Backend::Postgres(db) => db.transaction(operation, Some(durability), body),
        }
    }

    /// Runs `body` in a read transaction, so several SELECTs see one snapshot.
    pub(crate) fn read<T: Send>(
        &self,
        operation: &'static str,
        body: impl FnOnce(&mut dyn Tx) -> Result<T, TxError> + Send,
    ) -> Result<T, JournalError> {
        match &self.backend {
            Backend::Sqlite(db) => db.read(operation, body),
            Backend::Postgres(db) => db.transaction(operation, None, body),
        }
    }

    /// The last step `seq` this journal wrote for `lease`'s run under `lease`'s fence.
    pub(crate) fn last_seq(&self, lease: &Lease) -> Option<i64> {
        let seqs = self.last_seq.lock().unwrap_or_else(PoisonError::into_inner);
        match seqs.get(&lease.run_id) {
            Some(&(fence, seq)) if fence == lease.fence => Some(seq),
            _ => None,
        }
    }

    /// Notes that `seq` was committed for `lease`'s run (after the commit, never before).
    pub(crate) fn note_seq(&self, lease: &Lease, seq: Option<i64>) {
        if let Some(seq) = seq {
            let mut seqs = self.last_seq.lock().unwrap_or_else(PoisonError::into_inner);
            seqs.insert(lease.run_id, (lease.fence, seq));
        }
    }

    /// The SQLite connection (tests that inspect the file).
    #[cfg(test)]
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        match &self.backend {
            Backend::Sqlite(db) => db.lock(),
            Backend::Postgres(_) => panic!("not a SQLite journal"),
        }
    }

    /// Whether this journal is on PostgreSQL.
    #[must_use]
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Journal>();
    }
}
