//! How a journal is opened ([`OpenOptions`], [`LeaseClock`]) and how durable a write's commit
//! is ([`Durability`]): the settings the handle and both backends share.

use std::time::Duration;

/// Whose clock decides lease expiry on PostgreSQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LeaseClock {
    /// The database's `clock_timestamp()`: one clock for every runner (the default).
    #[default]
    Database,
    /// The `now` the caller passes, as on SQLite: only for tests that script time.
    Caller,
}

/// Settings for [`Journal::open_with`] and [`Journal::open_location`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenOptions {
    /// How long a statement waits for another process's write lock before failing with
    /// [`JournalError::Locked`] (SQLite).
    pub busy_timeout: Duration,
    /// The bound on any one PostgreSQL call: connecting, a statement, a commit. A call that
    /// takes longer fails with [`JournalError::Unreachable`] and its connection is dropped.
    pub call_timeout: Duration,
    /// Whose clock decides lease expiry on PostgreSQL.
    pub lease_clock: LeaseClock,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(10),
            lease_clock: LeaseClock::Database,
        }
    }
}

/// How durable a write transaction's commit must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Durability {
    /// Flushed at commit (`synchronous=FULL`, `synchronous_commit=on`).
    Full = 2,
    /// Survives a process kill; made durable by the next full commit.
    Intent = 1,
}
