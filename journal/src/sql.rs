//! The one SQL surface both backends implement: a transaction that runs statements with
//! positional `?N` parameters and returns rows of plain [`Value`]s.
//!
//! The journal's rules (fencing, attempts, reads) are written once against [`Tx`]; the SQLite
//! backend (`sqlite.rs`) runs them on a rusqlite transaction, the PostgreSQL backend
//! (`postgres.rs`) on a tokio-postgres one. Both schemas use the same table and column names and
//! types that map to these values (integers are 64-bit, times epoch milliseconds, text).

use chrono::{DateTime, Utc};

use crate::error::{BadColumn, JournalError};

/// A statement parameter or a column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit integer (`INTEGER` in SQLite, `BIGINT` in PostgreSQL).
    Int(i64),
    /// Text.
    Text(String),
    /// A boolean (an integer 0/1 in SQLite).
    Bool(bool),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// `vals![a, b, c]`: a parameter list.
macro_rules! vals {
    ($($v:expr),* $(,)?) => {
        &[$($crate::sql::Value::from($v)),*][..]
    };
}
pub(crate) use vals;

/// A row read by [`Tx::query`].
#[derive(Debug)]
pub(crate) struct Row(pub(crate) Vec<Value>);

impl Row {
    fn at(&self, index: usize) -> &Value {
        self.0.get(index).unwrap_or(&Value::Null)
    }

    fn bad(&self, index: usize, expected: &'static str) -> TxError {
        TxError::Column(BadColumn {
            index,
            found: format!("{:?}", self.at(index)),
            expected,
        })
    }

    /// The integer in column `index`, or `None` for NULL.
    pub(crate) fn opt_int(&self, index: usize) -> Result<Option<i64>, TxError> {
        match self.at(index) {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            _ => Err(self.bad(index, "an integer")),
        }
    }

    /// The integer in column `index`.
    pub(crate) fn int(&self, index: usize) -> Result<i64, TxError> {
        self.opt_int(index)?
            .ok_or_else(|| self.bad(index, "an integer"))
    }

    /// The integer in column `index` as a `u32`.
    pub(crate) fn u32(&self, index: usize) -> Result<u32, TxError> {
        u32::try_from(self.int(index)?).map_err(|_| self.bad(index, "a 32-bit count"))
    }

    /// The text in column `index`, or `None` for NULL.
    pub(crate) fn opt_text(&self, index: usize) -> Result<Option<String>, TxError> {
        match self.at(index) {
            Value::Null => Ok(None),
            Value::Text(v) => Ok(Some(v.clone())),
            _ => Err(self.bad(index, "text")),
        }
    }

    /// The text in column `index`.
    pub(crate) fn text(&self, index: usize) -> Result<String, TxError> {
        self.opt_text(index)?.ok_or_else(|| self.bad(index, "text"))
    }

    /// The error for a value in column `index` that does not parse.
    pub(crate) fn unparsable(&self, index: usize, expected: &'static str) -> TxError {
        self.bad(index, expected)
    }
}

/// Which rows a read locks until the transaction ends (PostgreSQL only: a SQLite write
/// transaction holds the whole file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RowLock {
    /// No lock (a read-only transaction may not lock rows).
    None,
    /// `FOR UPDATE`: this transaction will change the row.
    Update,
    /// `FOR UPDATE SKIP LOCKED`: a worker's claim; rows another claim holds are passed over.
    Claim,
}

impl RowLock {
    /// The clause appended to a `SELECT … FROM runs WHERE …` on PostgreSQL.
    pub(crate) fn clause(self) -> &'static str {
        match self {
            RowLock::None => "",
            RowLock::Update => " FOR UPDATE",
            RowLock::Claim => " FOR UPDATE SKIP LOCKED",
        }
    }
}

/// One open transaction of either backend.
pub(crate) trait Tx {
    /// Runs `sql` (with `?N` placeholders) and returns every row.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, TxError>;

    /// Runs `sql` and returns how many rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, TxError>;

    /// Appends the row-lock clause for this backend to a `SELECT` on one table.
    fn locking(&self, lock: RowLock) -> &'static str;

    /// The instant that lease decisions use in this transaction: the database's
    /// `clock_timestamp()` on PostgreSQL (after any row lock wait), the caller's `now` on SQLite
    /// (one machine, one clock), or the caller's on PostgreSQL opened with
    /// `LeaseClock::Caller` (tests).
    fn lease_now(&mut self, caller: DateTime<Utc>) -> Result<DateTime<Utc>, TxError>;

    /// The first row of `sql`, if any.
    fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>, TxError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
}

/// Failure inside a transaction body: a backend error (classified later) or a journal rule.
#[derive(Debug)]
pub(crate) enum TxError {
    /// SQLite failed.
    Sqlite(rusqlite::Error),
    /// PostgreSQL failed.
    Postgres(tokio_postgres::Error),
    /// A PostgreSQL call did not finish within the journal's call timeout.
    Timeout,
    /// A column held an unexpected value.
    Column(BadColumn),
    /// A journal rule refused the write.
    Journal(JournalError),
}

impl From<rusqlite::Error> for TxError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

impl From<tokio_postgres::Error> for TxError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Postgres(e)
    }
}

impl From<JournalError> for TxError {
    fn from(e: JournalError) -> Self {
        Self::Journal(e)
    }
}
