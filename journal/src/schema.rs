//! Schema migrations, versioned with `PRAGMA user_version`.
//!
//! Migration *n* (1-based) is `MIGRATIONS[n - 1]`; `user_version` is the number applied. Pending
//! migrations run in one `BEGIN IMMEDIATE` transaction together with the `user_version` update,
//! so a crash leaves either the old or the new schema. Migrations only go forward.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

/// The numbered migrations, oldest first.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_initial.sql"),
    include_str!("../migrations/0002_steps_without_seq_index.sql"),
    include_str!("../migrations/0003_open_attempt_on_the_step.sql"),
    include_str!("../migrations/0004_owner_machine.sql"),
    include_str!("../migrations/0005_queue.sql"),
    include_str!("../migrations/0006_cluster_files.sql"),
];

/// `PRAGMA application_id` of an hk8s journal ("hk8s" in ASCII).
pub(crate) const APPLICATION_ID: i64 = 0x686b_3873;

/// Highest schema version this build knows.
#[must_use]
pub fn supported_version() -> u32 {
    // The list is a short compile-time constant.
    u32::try_from(MIGRATIONS.len()).unwrap_or(u32::MAX)
}

/// What `migrate` found before touching anything.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// Schema is current or was migrated.
    Ready,
    /// The file's schema is newer than this build.
    TooNew(u32),
    /// A SQLite database of another program.
    Foreign,
}

/// Reads the schema version and applies pending migrations.
pub(crate) fn migrate(conn: &mut Connection) -> rusqlite::Result<Found> {
    apply(conn, MIGRATIONS)
}

/// [`migrate`] with an explicit migration list (tests use their own).
fn apply(conn: &mut Connection, migrations: &[&str]) -> rusqlite::Result<Found> {
    let supported = u32::try_from(migrations.len()).unwrap_or(u32::MAX);
    // One read transaction, so the three reads see one snapshot: read one by one, a process
    // migrating a new file in between shows `application_id` 0 and then `user_version` 6, which
    // looks like another program's database.
    let found = {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let found = inspect(&tx, supported)?;
        tx.commit()?;
        found
    };
    match found {
        Some(Found::Ready) => {}
        Some(other) => return Ok(other),
        None => return Ok(Found::Ready),
    }
    // A migration may rebuild a table others refer to (schema 5 rebuilds `runs`): foreign keys
    // are off while migrations run (the pragma is a no-op inside a transaction) and on again
    // after, whatever happened.
    let fk: i64 = conn.pragma_query_value(None, "foreign_keys", |r| r.get(0))?;
    conn.pragma_update(None, "foreign_keys", false)?;
    let result = apply_pending(conn, migrations, supported);
    conn.pragma_update(None, "foreign_keys", fk != 0)?;
    result
}

fn apply_pending(
    conn: &mut Connection,
    migrations: &[&str],
    supported: u32,
) -> rusqlite::Result<Found> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Another process may have migrated while we waited for the write lock.
    let version = match inspect(&tx, supported)? {
        Some(Found::Ready) => user_version(&tx)?,
        Some(other) => return Ok(other),
        None => return Ok(Found::Ready),
    };
    for (index, sql) in migrations.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
    }
    let broken: Option<String> = tx
        .query_row(
            "SELECT \"table\" FROM pragma_foreign_key_check LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(table) = broken {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "a migration left rows of {table} without their parent"
        )));
    }
    tx.commit()?;
    Ok(Found::Ready)
}

/// `None`: current, nothing to do; `Some(Ready)`: ours (or empty) and needs migrations;
/// `Some(TooNew | Foreign)`: leave the file alone.
fn inspect(conn: &Connection, supported: u32) -> rusqlite::Result<Option<Found>> {
    let app: i64 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let version = user_version(conn)?;
    if app == APPLICATION_ID {
        return Ok(match version.cmp(&supported) {
            std::cmp::Ordering::Greater => Some(Found::TooNew(version)),
            std::cmp::Ordering::Equal => None,
            std::cmp::Ordering::Less => Some(Found::Ready),
        });
    }
    if app != 0 || version != 0 {
        return Ok(Some(Found::Foreign));
    }
    let objects: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'",
        [],
        |r| r.get(0),
    )?;
    Ok(Some(if objects > 0 {
        Found::Foreign
    } else {
        Found::Ready
    }))
}

pub(crate) fn user_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
        .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_database_gets_every_migration() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), Found::Ready);
        assert_eq!(user_version(&conn).unwrap(), supported_version());
        let app: i64 = conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .unwrap();
        assert_eq!(app, APPLICATION_ID);
        // Idempotent: a second open changes nothing.
        assert_eq!(migrate(&mut conn).unwrap(), Found::Ready);
    }

    #[test]
    fn schema_3_moves_running_attempts_onto_their_steps() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn, &MIGRATIONS[..2]).unwrap();
        conn.execute_batch(
            "INSERT INTO runs (id, workflow, workflow_version, cluster, input_json, status, \
               created_at, updated_at) VALUES ('r', 'w', 1, 'c', '{}', 'running', 0, 0);
             INSERT INTO steps (run_id, key, seq, activity, input_hash, status, attempts, \
               started_at) VALUES ('r', 'a', 1, 'x', 'h', 'running', 2, 10);
             INSERT INTO attempts (run_id, step_key, attempt, fence, started_at) \
               VALUES ('r', 'a', 1, 1, 10), ('r', 'a', 2, 2, 20);",
        )
        .unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), Found::Ready);
        let open: (i64, i64) = conn
            .query_row(
                "SELECT open_fence, open_started_at FROM steps WHERE key = 'a'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(open, (2, 20), "the latest attempt runs on the step row");
        let rows: Vec<(u32, String, String)> = conn
            .prepare("SELECT attempt, outcome, error_class FROM attempts ORDER BY attempt")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [(1, "failed".to_string(), "interrupted".to_string())],
            "an older attempt without an outcome was abandoned"
        );
    }

    #[test]
    fn schema_5_keeps_steps_and_leaves_one_active_run_per_cluster() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        apply(&mut conn, &MIGRATIONS[..4]).unwrap();
        conn.execute_batch(
            "INSERT INTO runs (id, workflow, workflow_version, cluster, input_json, status, \
               created_at, updated_at, owner_host, owner_pid, owner_id, lease_expires_at) VALUES \
               ('old', 'w', 1, 'c', '{}', 'running', 1, 1, 'h', 1, 'o', 5), \
               ('new', 'w', 1, 'c', '{}', 'running', 2, 2, NULL, NULL, NULL, NULL), \
               ('done', 'w', 1, 'c', '{}', 'failed', 0, 0, NULL, NULL, NULL, NULL);
             INSERT INTO steps (run_id, key, seq, activity, input_hash, status, attempts, \
               started_at) VALUES ('old', 'a', 1, 'x', 'h', 'succeeded', 1, 10);",
        )
        .unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), Found::Ready);
        let statuses: Vec<(String, String)> = conn
            .prepare("SELECT id, status FROM runs ORDER BY created_at")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected = [
            ("done", "failed"),
            ("old", "interrupted"),
            ("new", "running"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(a, b)| ((*a).into(), (*b).into()))
            .collect();
        assert_eq!(statuses, expected);
        let steps: i64 = conn
            .query_row("SELECT count(*) FROM steps WHERE run_id = 'old'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(steps, 1, "the rebuild of runs kept its steps");
        let fk: i64 = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1, "foreign keys are on again");
        // The index holds: a second running run of the cluster is refused.
        let err = conn
            .execute("UPDATE runs SET status = 'running' WHERE id = 'old'", [])
            .unwrap_err();
        assert!(err.to_string().contains("UNIQUE"), "{err}");
        // Deleting a run still cascades to its steps (the foreign key points at the new table).
        conn.execute("DELETE FROM runs WHERE id = 'old'", [])
            .unwrap();
        let steps: i64 = conn
            .query_row("SELECT count(*) FROM steps", [], |r| r.get(0))
            .unwrap();
        assert_eq!(steps, 0);
    }

    #[test]
    fn newer_schema_is_reported_not_touched() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), Found::TooNew(999));
        assert_eq!(user_version(&conn).unwrap(), 999);
    }

    #[test]
    fn other_programs_database_is_foreign() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE photos (id INTEGER)")
            .unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), Found::Foreign);
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "application_id", 42).unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), Found::Foreign);
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 3).unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), Found::Foreign);
    }

    const APP: &str = "PRAGMA application_id = 1751857267;";

    #[test]
    fn migrations_run_forward_from_the_stored_version() {
        let m1 = format!("{APP} CREATE TABLE a (x);");
        let m2 = "CREATE TABLE b (x); INSERT INTO b VALUES (2);";
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(apply(&mut conn, &[&m1]).unwrap(), Found::Ready);
        assert_eq!(user_version(&conn).unwrap(), 1);
        conn.execute("INSERT INTO a VALUES (1)", []).unwrap();
        // A newer build adds migration 2; migration 1 is not re-run (it would fail: table exists).
        assert_eq!(apply(&mut conn, &[&m1, m2]).unwrap(), Found::Ready);
        assert_eq!(user_version(&conn).unwrap(), 2);
        let rows: i64 = conn
            .query_row(
                "SELECT (SELECT count(*) FROM a) + (SELECT count(*) FROM b)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rows, 2);
        // The older build now refuses the file.
        assert_eq!(apply(&mut conn, &[&m1]).unwrap(), Found::TooNew(2));
    }

    #[test]
    fn a_failing_migration_leaves_the_old_schema() {
        let m1 = format!("{APP} CREATE TABLE a (x);");
        let mut conn = Connection::open_in_memory().unwrap();
        let err = apply(&mut conn, &[&m1, "CREATE TABLE b (x); NOT SQL AT ALL;"]).unwrap_err();
        assert!(err.to_string().contains("syntax error"), "{err}");
        assert_eq!(user_version(&conn).unwrap(), 0);
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tables, 0, "all migrations roll back together");
    }
}
