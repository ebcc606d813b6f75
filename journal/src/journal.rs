//! The [`Journal`] handle: opening the file, connection settings and the transaction helpers
//! the other modules build on.
//!
//! # Durability and fsyncs
//!
//! The file is in WAL mode with `synchronous=FULL`: a FULL commit appends its frames to the WAL
//! and fsyncs the WAL once. Writes that only record *intent* (`start_attempt`, `renew_lease`, a
//! retryable `fail_attempt`) switch the connection to `synchronous=NORMAL` for their transaction:
//! the frames are written to the WAL (so they survive a killed process, because the OS holds them)
//! but not fsynced. The next FULL commit — normally `complete_step` — fsyncs the WAL file, which
//! makes the earlier frames durable too. So one completed step costs one fsync. On power loss an
//! intent record may be lost; that only makes the runtime retry an idempotent activity earlier.
//! The level is set before every write transaction (SQLite does not allow changing it inside one),
//! so no write ever inherits a weaker level by accident.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};

use crate::error::JournalError;
use crate::paths;
use crate::schema::{self, Found};

/// Settings for [`Journal::open_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenOptions {
    /// How long a statement waits for another process's write lock before failing with
    /// [`JournalError::Locked`].
    pub busy_timeout: Duration,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// An open journal file. `Send + Sync`: one connection behind a mutex, used by short
/// synchronous calls (call from async code directly or via `spawn_blocking`).
#[derive(Debug)]
pub struct Journal {
    conn: Mutex<Connection>,
    path: PathBuf,
    busy_timeout: Duration,
}

/// How durable a write transaction's commit must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durability {
    /// `synchronous=FULL`: fsync the WAL at commit.
    Full,
    /// `synchronous=NORMAL`: survive a process kill; made durable by the next FULL commit.
    Intent,
}

/// Failure inside a transaction body: a SQLite error (classified later) or a journal rule.
#[derive(Debug)]
pub(crate) enum TxError {
    Sql(rusqlite::Error),
    Journal(JournalError),
}

impl From<rusqlite::Error> for TxError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sql(e)
    }
}

impl From<JournalError> for TxError {
    fn from(e: JournalError) -> Self {
        Self::Journal(e)
    }
}

impl Journal {
    /// Opens (creating if needed) the journal at `path` with default options.
    ///
    /// # Errors
    /// See [`Journal::open_with`].
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        Self::open_with(path, OpenOptions::default())
    }

    /// Opens (creating if needed) the journal at `path`: creates missing parent directories
    /// (mode 0700) and the file (mode 0600), sets WAL, `synchronous=FULL`, `foreign_keys=ON` and
    /// the busy timeout, and applies pending migrations.
    ///
    /// # Errors
    /// [`JournalError::NotADatabase`], [`JournalError::ForeignDatabase`],
    /// [`JournalError::Corrupt`], [`JournalError::SchemaTooNew`], [`JournalError::Locked`],
    /// [`JournalError::Io`] or [`JournalError::Storage`].
    pub fn open_with(path: &Path, opts: OpenOptions) -> Result<Journal, JournalError> {
        create_file(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let fail = |e| classify(path, opts.busy_timeout, "open", e);
        let mut conn = Connection::open_with_flags(path, flags).map_err(fail)?;
        conn.busy_timeout(opts.busy_timeout).map_err(fail)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(fail)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(JournalError::Storage {
                operation: "switch to WAL mode",
                source: rusqlite::Error::InvalidParameterName(format!("journal_mode is {mode}")),
            });
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(fail)?;
        match schema::migrate(&mut conn).map_err(fail)? {
            Found::Ready => {}
            Found::TooNew(found) => {
                return Err(JournalError::SchemaTooNew {
                    path: path.to_owned(),
                    found,
                    supported: schema::supported_version(),
                });
            }
            Found::Foreign => {
                return Err(JournalError::ForeignDatabase {
                    path: path.to_owned(),
                });
            }
        }
        Ok(Journal {
            conn: Mutex::new(conn),
            path: path.to_owned(),
            busy_timeout: opts.busy_timeout,
        })
    }

    /// `$HK8S_HOME/journal.db`, else `$XDG_STATE_HOME/hk8s/journal.db`, else
    /// `~/.local/state/hk8s/journal.db` (reads the process environment; see
    /// [`crate::default_path_from`] for the pure version).
    ///
    /// # Errors
    /// [`JournalError::NoStateDir`] when none of those variables is set.
    pub fn default_path() -> Result<PathBuf, JournalError> {
        Self::state_dir().map(|dir| dir.join(paths::JOURNAL_FILE))
    }

    /// The directory of [`Journal::default_path`] (also holds per-cluster files).
    ///
    /// # Errors
    /// [`JournalError::NoStateDir`] when none of `HK8S_HOME`, `XDG_STATE_HOME`, `HOME` is set.
    pub fn state_dir() -> Result<PathBuf, JournalError> {
        paths::state_dir_from_env()
    }

    /// The file this journal was opened from.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `body` in a `BEGIN IMMEDIATE` transaction committed with the given durability.
    /// Any error rolls the transaction back: nothing is written.
    pub(crate) fn write<T>(
        &self,
        operation: &'static str,
        durability: Durability,
        body: impl FnOnce(&Transaction<'_>) -> Result<T, TxError>,
    ) -> Result<T, JournalError> {
        let mut conn = self.lock();
        let level = match durability {
            Durability::Full => "FULL",
            Durability::Intent => "NORMAL",
        };
        let result = (|| {
            conn.pragma_update(None, "synchronous", level)?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = body(&tx)?;
            tx.commit()?;
            Ok(value)
        })();
        result.map_err(|e| self.tx_error(operation, e))
    }

    /// Runs `body` in a read transaction, so several SELECTs see one snapshot.
    pub(crate) fn read<T>(
        &self,
        operation: &'static str,
        body: impl FnOnce(&Transaction<'_>) -> Result<T, TxError>,
    ) -> Result<T, JournalError> {
        let mut conn = self.lock();
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let value = body(&tx)?;
            tx.commit()?;
            Ok(value)
        })();
        result.map_err(|e| self.tx_error(operation, e))
    }

    fn tx_error(&self, operation: &'static str, e: TxError) -> JournalError {
        match e {
            TxError::Sql(e) => classify(&self.path, self.busy_timeout, operation, e),
            TxError::Journal(e) => e,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held dropped its transaction, which rolled back; the
        // connection itself is still usable.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Maps a SQLite error to the journal error that tells the user what is wrong with the file.
pub(crate) fn classify(
    path: &Path,
    busy_timeout: Duration,
    operation: &'static str,
    e: rusqlite::Error,
) -> JournalError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => JournalError::NotADatabase {
            path: path.to_owned(),
        },
        Some(ErrorCode::DatabaseCorrupt) => JournalError::Corrupt {
            path: path.to_owned(),
            source: e,
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => JournalError::Locked {
            path: path.to_owned(),
            waited: busy_timeout,
        },
        _ => JournalError::Storage {
            operation,
            source: e,
        },
    }
}

/// Creates the parent directories (0700) and an empty journal file (0600) if missing.
fn create_file(path: &Path) -> Result<(), JournalError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(parent).map_err(|source| JournalError::Io {
            operation: "create the journal directory",
            path: parent.to_owned(),
            source,
        })?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|source| JournalError::Io {
        operation: "open the journal file",
        path: path.to_owned(),
        source,
    })?;
    Ok(())
}
