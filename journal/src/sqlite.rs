//! The SQLite backend: opening the file, connection settings, and [`Tx`] over a rusqlite
//! transaction.
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
//!
//! An attempt's start need not be journaled on its own: `complete_step` and `fail_attempt`
//! journal it in their own transaction when it was not. A step then writes two pages (one of
//! `steps`, one of `attempts`), like a raw insert into a table with one index; an intent record
//! adds one (the step's page, which holds the running attempt). The runtime journals starts on
//! their own only for attempts that outlive its intent delay.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};

use crate::error::JournalError;
use crate::options::{Durability, OpenOptions};
use crate::schema::{self, Found};
use crate::sql::{Row, RowLock, Tx, TxError, Value};

/// An open journal file: one connection behind a mutex.
#[derive(Debug)]
pub(crate) struct SqliteJournal {
    conn: Mutex<Connection>,
    path: PathBuf,
    busy_timeout: Duration,
    /// The connection's `synchronous` level (a [`Durability`] as `u8`, 0 = unknown); changed
    /// only while `conn` is locked, so a write switches it only when it differs.
    sync_level: AtomicU8,
}

impl SqliteJournal {
    /// Opens (creating if needed) the journal at `path` (see `Journal::open_with`).
    pub(crate) fn open(path: &Path, opts: OpenOptions) -> Result<SqliteJournal, JournalError> {
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
                    path: path.display().to_string(),
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
        Ok(SqliteJournal {
            conn: Mutex::new(conn),
            path: path.to_owned(),
            busy_timeout: opts.busy_timeout,
            sync_level: AtomicU8::new(Durability::Full as u8),
        })
    }

    /// Runs `body` in a `BEGIN IMMEDIATE` transaction committed with the given durability.
    /// Any error rolls the transaction back: nothing is written.
    pub(crate) fn write<T>(
        &self,
        operation: &'static str,
        durability: Durability,
        body: impl FnOnce(&mut dyn Tx) -> Result<T, TxError>,
    ) -> Result<T, JournalError> {
        let mut conn = self.lock();
        let level = match durability {
            Durability::Full => "FULL",
            Durability::Intent => "NORMAL",
        };
        let result = (|| {
            // Setting the level is a statement of its own: skip it when nothing changes.
            if self.sync_level.load(Ordering::Relaxed) != durability as u8 {
                self.sync_level.store(0, Ordering::Relaxed);
                conn.pragma_update(None, "synchronous", level)?;
                self.sync_level.store(durability as u8, Ordering::Relaxed);
            }
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = body(&mut SqliteTx(&tx))?;
            tx.commit()?;
            Ok(value)
        })();
        result.map_err(|e| self.tx_error(operation, e))
    }

    /// Runs `body` in a read transaction, so several SELECTs see one snapshot.
    pub(crate) fn read<T>(
        &self,
        operation: &'static str,
        body: impl FnOnce(&mut dyn Tx) -> Result<T, TxError>,
    ) -> Result<T, JournalError> {
        let mut conn = self.lock();
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let value = body(&mut SqliteTx(&tx))?;
            tx.commit()?;
            Ok(value)
        })();
        result.map_err(|e| self.tx_error(operation, e))
    }

    fn tx_error(&self, operation: &'static str, e: TxError) -> JournalError {
        match e {
            TxError::Sqlite(e) => classify(&self.path, self.busy_timeout, operation, e),
            TxError::Journal(e) => e,
            TxError::Column(source) => JournalError::BadValue { operation, source },
            TxError::Postgres(_) | TxError::Timeout => JournalError::Storage {
                operation,
                source: rusqlite::Error::InvalidQuery,
            },
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held dropped its transaction, which rolled back; the
        // connection itself is still usable.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// [`Tx`] over a rusqlite transaction; statements are cached on the connection.
struct SqliteTx<'a>(&'a Transaction<'a>);

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Value::Bool(v) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(*v))),
        })
    }
}

fn value_of(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Value> {
    Ok(match row.get_ref(index)? {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(v) => Value::Int(v),
        ValueRef::Text(_) => Value::Text(row.get(index)?),
        ValueRef::Real(_) | ValueRef::Blob(_) => {
            return Err(rusqlite::Error::InvalidColumnType(
                index,
                "real or blob".to_owned(),
                rusqlite::types::Type::Blob,
            ));
        }
    })
}

impl Tx for SqliteTx<'_> {
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, TxError> {
        let mut stmt = self.0.prepare_cached(sql)?;
        let columns = stmt.column_count();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params), |r| {
                (0..columns)
                    .map(|i| value_of(r, i))
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map(Row)
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, TxError> {
        let changed = self
            .0
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(params))?;
        Ok(changed as u64)
    }

    fn locking(&self, _lock: RowLock) -> &'static str {
        // `BEGIN IMMEDIATE` already holds the file's write lock.
        ""
    }

    fn lease_now(&mut self, caller: DateTime<Utc>) -> Result<DateTime<Utc>, TxError> {
        Ok(caller)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Journal;
    use crate::testutil::{leased_run, new_run, open_temp, t};

    fn short(ms: u64) -> OpenOptions {
        OpenOptions {
            busy_timeout: Duration::from_millis(ms),
            ..OpenOptions::default()
        }
    }

    #[test]
    fn opening_a_file_that_is_not_sqlite_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let garbage = "this is a text file, not a journal\n".repeat(200);
        std::fs::write(&path, &garbage).unwrap();
        let err = Journal::open(&path).unwrap_err();
        assert!(matches!(err, JournalError::NotADatabase { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "{} is not an hk8s journal (not a SQLite database)",
                path.display()
            )
        );
        // The file is left as it was.
        assert_eq!(std::fs::read_to_string(&path).unwrap(), garbage);
    }

    #[test]
    fn opening_a_tiny_garbage_file_is_not_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        std::fs::write(&path, b"oops").unwrap();
        let err = Journal::open(&path).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("is not an hk8s journal (not a SQLite database)"),
            "{err}"
        );
    }

    #[test]
    fn opening_a_truncated_journal_reports_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        {
            let journal = Journal::open(&path).unwrap();
            for i in 0..300 {
                let mut run = new_run("cluster.create", &format!("cluster-{i}"));
                run.input = serde_json::json!({ "padding": "x".repeat(200) });
                journal.create_run(&run, t(i)).unwrap();
            }
        }
        // Closing the last connection checkpointed the WAL into the main file.
        let wal = dir.path().join("journal.db-wal");
        assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0);
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len > 16 * 4096, "journal too small to truncate: {len}");
        // Cut in the middle of a page, losing the second half of the file.
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len((len / 2 / 4096) * 4096 + 2048).unwrap();
        drop(file);

        let err = Journal::open(&path).unwrap_err();
        assert!(matches!(err, JournalError::Corrupt { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "journal {} is corrupt or truncated; move it aside (the cloud labels remain the truth) or restore a backup",
                path.display()
            )
        );
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert!(source.contains("malformed"), "{source}");
    }

    #[test]
    fn corruption_found_after_open_is_reported_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        {
            let journal = Journal::open(&path).unwrap();
            for i in 0..300 {
                let mut run = new_run("cluster.create", &format!("cluster-{i}"));
                run.input = serde_json::json!({ "padding": "y".repeat(200) });
                journal.create_run(&run, t(i)).unwrap();
            }
        }
        // Overwrite interior pages (not page 1, so the header and schema stay readable).
        let mut bytes = std::fs::read(&path).unwrap();
        let len = bytes.len();
        for b in &mut bytes[len / 2..len / 2 + 4 * 4096] {
            *b = 0xA5;
        }
        std::fs::write(&path, &bytes).unwrap();
        let journal = Journal::open(&path).unwrap();
        let err = journal.list_runs(&crate::RunFilter::default()).unwrap_err();
        assert!(matches!(err, JournalError::Corrupt { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with(&format!(
                "journal {} is corrupt or truncated",
                path.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn a_schema_newer_than_the_binary_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        drop(Journal::open(&path).unwrap());
        let raw = Connection::open(&path).unwrap();
        raw.pragma_update(None, "user_version", 999).unwrap();
        drop(raw);

        let err = Journal::open(&path).unwrap_err();
        assert!(
            matches!(
                err,
                JournalError::SchemaTooNew {
                    found: 999,
                    supported: 6,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "journal {} has schema version 999, newer than this hk8s supports (6); upgrade hk8s",
                path.display()
            )
        );
        // Not downgraded.
        let raw = Connection::open(&path).unwrap();
        assert_eq!(schema::user_version(&raw).unwrap(), 999);
    }

    #[test]
    fn another_programs_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("photos.db");
        let raw = Connection::open(&path).unwrap();
        raw.execute_batch("CREATE TABLE photos (id INTEGER PRIMARY KEY)")
            .unwrap();
        drop(raw);
        let err = Journal::open(&path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} is not an hk8s journal (a SQLite database of another program)",
                path.display()
            )
        );
        // Our tables were not added to it.
        let raw = Connection::open(&path).unwrap();
        let tables: i64 = raw
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 1);
    }

    #[test]
    fn a_write_locked_past_the_busy_timeout_names_path_and_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let journal = Journal::open_with(&path, short(50)).unwrap();
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();

        let run = new_run("cluster.create", "demo");
        let err = journal.create_run(&run, t(0)).unwrap_err();
        assert!(matches!(err, JournalError::Locked { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "journal {} is locked by another process (waited 50ms); retry when it finishes",
                path.display()
            )
        );
        // Reads still work in WAL mode while another process writes.
        assert!(
            journal
                .list_runs(&crate::RunFilter::default())
                .unwrap()
                .is_empty()
        );

        other.execute_batch("COMMIT").unwrap();
        journal.create_run(&run, t(0)).unwrap();
    }

    #[test]
    fn opening_a_journal_locked_past_the_busy_timeout_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        // A fresh (rollback-journal) database held exclusively by another connection: switching
        // it to WAL needs the lock.
        let other = Connection::open(&path).unwrap();
        other
            .execute_batch("CREATE TABLE t (x); BEGIN EXCLUSIVE; INSERT INTO t VALUES (1);")
            .unwrap();
        let err = Journal::open_with(&path, short(30)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "journal {} is locked by another process (waited 30ms); retry when it finishes",
                path.display()
            )
        );
    }

    #[test]
    fn open_creates_private_directories_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("hk8s").join("journal.db");
        let journal = Journal::open(&path).unwrap();
        leased_run(&journal, 0);
        assert_eq!(journal.path(), Some(path.as_path()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&dir.path().join("state/hk8s/journal.db-wal")), 0o600);
            assert_eq!(mode(&dir.path().join("state/hk8s")), 0o700);
            assert_eq!(mode(&dir.path().join("state")), 0o700);
        }
    }

    #[test]
    fn open_sets_wal_full_sync_and_foreign_keys() {
        let (_dir, journal) = open_temp();
        let conn = journal.lock();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "FULL");
        let fk: i64 = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        assert_eq!(
            schema::user_version(&conn).unwrap(),
            schema::supported_version()
        );
    }

    #[test]
    fn a_path_under_a_regular_file_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        let err = Journal::open(&file.join("journal.db")).unwrap_err();
        assert!(matches!(err, JournalError::Io { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("cannot create the journal directory {}", file.display())
        );
    }

    #[test]
    fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let lease = {
            let journal = Journal::open(&path).unwrap();
            leased_run(&journal, 0)
        };
        let journal = Journal::open(&path).unwrap();
        let state = journal.load_run(&lease.run_id).unwrap();
        assert_eq!(state.run.fence, 1);
        assert_eq!(state.run.owner.as_ref(), Some(&lease.owner));
    }
}
