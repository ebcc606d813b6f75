//! The PostgreSQL backend: a small pool of tokio-postgres connections (rustls for TLS), forward-only
//! migrations under an advisory lock, and [`Tx`] over a tokio-postgres transaction.
//!
//! # Bounded calls
//!
//! The journal API is synchronous. The backend keeps its own one-thread tokio runtime and blocks
//! on it (from a scoped thread when the caller is itself on a tokio runtime). Every call is
//! bounded: connecting (`connect_timeout`), waiting for a pooled connection, every statement and
//! commit (`OpenOptions::call_timeout` on the client, `statement_timeout` on the server), and a
//! silent peer (TCP keepalives and `TCP_USER_TIMEOUT`). A connection that failed or timed out is
//! dropped from the pool instead of being handed out again, so a restarted server costs one
//! failed call per stale connection, never a hang.
//!
//! # Durability
//!
//! Writes run at READ COMMITTED with `synchronous_commit=on` (one WAL flush per completed
//! step); intent records set `synchronous_commit=off` for their transaction, PostgreSQL's
//! equivalent of SQLite's `synchronous=NORMAL`: a crash of the server may lose the last few
//! hundred milliseconds of them, never leave the journal inconsistent. Reads run in a
//! REPEATABLE READ, READ ONLY transaction: one snapshot, as on SQLite.

use std::future::Future;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::error::JournalError;
use crate::location::redact;
use crate::options::{Durability, LeaseClock, OpenOptions};
use crate::sql::{Row, RowLock, Tx, TxError, Value};

/// The numbered PostgreSQL migrations, oldest first (schema `hk8s`).
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/postgres/0001_initial.sql"),
    include_str!("../migrations/postgres/0002_queue.sql"),
    include_str!("../migrations/postgres/0003_cluster_files.sql"),
];

/// The advisory lock key migrations hold ("hk8s" in ASCII, as SQLite's `application_id`).
const MIGRATION_LOCK: i64 = 0x686b_3873;

/// How many connections one journal handle keeps: steps and heartbeat, plus headroom.
const POOL_SIZE: usize = 4;

/// Highest PostgreSQL schema version this build knows.
pub(crate) fn supported_version() -> u32 {
    u32::try_from(MIGRATIONS.len()).unwrap_or(u32::MAX)
}

/// An open PostgreSQL journal.
pub(crate) struct PgJournal {
    pool: Pool,
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    location: String,
    call_timeout: Duration,
    lease_clock: LeaseClock,
}

impl std::fmt::Debug for PgJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgJournal")
            .field("location", &self.location)
            .field("call_timeout", &self.call_timeout)
            .field("lease_clock", &self.lease_clock)
            .finish_non_exhaustive()
    }
}

impl Drop for PgJournal {
    fn drop(&mut self) {
        // Allowed from any context, async included (a plain drop is not).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl PgJournal {
    /// Connects to `url` and applies pending migrations.
    pub(crate) fn open(url: &str, opts: OpenOptions) -> Result<PgJournal, JournalError> {
        let location = redact(url);
        let bad = |reason: String| JournalError::BadLocation {
            location: location.clone(),
            reason,
        };
        let (url, root_cert) = split_root_cert(url);
        let mut config = tokio_postgres::Config::from_str(&url).map_err(|e| bad(e.to_string()))?;
        let remote = config.get_hosts().iter().any(|host| match host {
            Host::Tcp(name) => !is_loopback(name),
            Host::Unix(_) => false,
        });
        if remote {
            match config.get_ssl_mode() {
                SslMode::Disable => {
                    return Err(bad(
                        "sslmode=disable for a database on another host; the journal needs TLS \
                         there (sslmode=require)"
                            .to_owned(),
                    ));
                }
                _ => {
                    config.ssl_mode(SslMode::Require);
                }
            }
        }
        let statement_ms = opts.call_timeout.as_millis();
        config
            .application_name("hk8s")
            .connect_timeout(opts.call_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3)
            .tcp_user_timeout(opts.call_timeout)
            .options(format!(
                "-c search_path=hk8s -c statement_timeout={statement_ms} \
                 -c idle_in_transaction_session_timeout={}",
                statement_ms * 3
            ));
        let tls = tls(root_cert.as_deref()).map_err(bad)?;
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("hk8s-journal-pg")
            .enable_all()
            .build()
            .map_err(|e| JournalError::Unreachable {
                location: location.clone(),
                operation: "open",
                reason: format!("cannot start the client runtime: {e}"),
            })?;
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(opts.call_timeout))
            .create_timeout(Some(opts.call_timeout))
            .recycle_timeout(Some(opts.call_timeout))
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let journal = PgJournal {
            pool,
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            location,
            call_timeout: opts.call_timeout,
            lease_clock: opts.lease_clock,
        };
        journal.migrate()?;
        Ok(journal)
    }

    /// Runs `body` in one transaction: a write with `durability`, or a read (`None`).
    pub(crate) fn transaction<T: Send>(
        &self,
        operation: &'static str,
        durability: Option<Durability>,
        body: impl FnOnce(&mut dyn Tx) -> Result<T, TxError> + Send,
    ) -> Result<T, JournalError> {
        self.off_runtime(|| {
            let mut client = self.client(operation)?;
            let result = self.run_tx(&mut client, durability, body);
            self.finish(client, operation, result)
        })
    }

    fn run_tx<T>(
        &self,
        client: &mut Object,
        durability: Option<Durability>,
        body: impl FnOnce(&mut dyn Tx) -> Result<T, TxError>,
    ) -> Result<T, TxError> {
        let tx = self.call(client.transaction())?;
        match durability {
            None => self.call(
                tx.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"),
            )?,
            Some(Durability::Intent) => {
                self.call(tx.batch_execute("SET LOCAL synchronous_commit = off"))?;
            }
            Some(Durability::Full) => {}
        }
        let value = body(&mut PgTx { tx: &tx, pg: self })?;
        self.call(tx.commit())?;
        Ok(value)
    }

    /// Returns `client` to the pool unless the call broke it, and maps the error.
    fn finish<T>(
        &self,
        client: Object,
        operation: &'static str,
        result: Result<T, TxError>,
    ) -> Result<T, JournalError> {
        match result {
            Ok(value) => Ok(value),
            Err(TxError::Journal(e)) => Err(e),
            Err(e) => {
                if breaks_connection(&e) || client.is_closed() {
                    // Never hand this connection out again.
                    drop(Object::take(client));
                }
                Err(self.error(operation, e))
            }
        }
    }

    fn client(&self, operation: &'static str) -> Result<Object, JournalError> {
        match self
            .handle
            .block_on(async { tokio::time::timeout(self.call_timeout, self.pool.get()).await })
        {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(self.unreachable(operation, connect_reason(&e))),
            Err(_) => Err(self.unreachable(
                operation,
                format!("no connection within {:?}", self.call_timeout),
            )),
        }
    }

    /// Awaits one client call on the backend's runtime, bounded by the call timeout.
    fn call<T>(
        &self,
        future: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, TxError> {
        match self
            .handle
            .block_on(async { tokio::time::timeout(self.call_timeout, future).await })
        {
            Ok(result) => result.map_err(TxError::Postgres),
            Err(_) => Err(TxError::Timeout),
        }
    }

    /// Runs `f` where blocking on the backend's runtime is allowed: directly, or on a scoped
    /// thread when the caller is on a tokio runtime (which forbids nested `block_on`).
    fn off_runtime<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        if tokio::runtime::Handle::try_current().is_err() {
            return f();
        }
        std::thread::scope(|s| match s.spawn(f).join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    }

    fn unreachable(&self, operation: &'static str, reason: String) -> JournalError {
        JournalError::Unreachable {
            location: self.location.clone(),
            operation,
            reason,
        }
    }

    fn error(&self, operation: &'static str, e: TxError) -> JournalError {
        match e {
            TxError::Journal(e) => e,
            TxError::Timeout => self.unreachable(
                operation,
                format!("no answer within {:?}", self.call_timeout),
            ),
            TxError::Postgres(e) if e.as_db_error().is_none() => {
                self.unreachable(operation, pg_reason(&e))
            }
            TxError::Postgres(source) => JournalError::Postgres {
                location: self.location.clone(),
                operation,
                source,
            },
            TxError::Column(source) => JournalError::BadValue { operation, source },
            TxError::Sqlite(source) => JournalError::Storage { operation, source },
        }
    }

    fn migrate(&self) -> Result<(), JournalError> {
        let found = self.off_runtime(|| {
            let mut client = self.client("migrate")?;
            let result = self.migrate_on(&mut client);
            self.finish(client, "migrate", result)
        })?;
        match found {
            Some(found) => Err(JournalError::SchemaTooNew {
                path: self.location.clone(),
                found,
                supported: supported_version(),
            }),
            None => Ok(()),
        }
    }

    /// Applies pending migrations in one transaction under the migration lock; `Some(found)`
    /// when the database's schema is newer than this build (nothing is changed then).
    fn migrate_on(&self, client: &mut Object) -> Result<Option<u32>, TxError> {
        let tx = self.call(client.transaction())?;
        self.call(tx.batch_execute(&format!(
            "SELECT pg_advisory_xact_lock({MIGRATION_LOCK}); \
             CREATE SCHEMA IF NOT EXISTS hk8s; \
             CREATE TABLE IF NOT EXISTS hk8s.schema_version (version BIGINT NOT NULL);"
        )))?;
        let row = self.call(tx.query_one(
            "SELECT COALESCE(MAX(version), 0) FROM hk8s.schema_version",
            &[],
        ))?;
        let version = u32::try_from(row.get::<_, i64>(0)).unwrap_or(u32::MAX);
        if version > supported_version() {
            return Ok(Some(version));
        }
        for sql in MIGRATIONS.iter().skip(version as usize) {
            self.call(tx.batch_execute(sql))?;
        }
        if version < supported_version() {
            self.call(tx.execute("DELETE FROM hk8s.schema_version", &[]))?;
            self.call(tx.execute(
                "INSERT INTO hk8s.schema_version (version) VALUES ($1)",
                &[&i64::from(supported_version())],
            ))?;
        }
        self.call(tx.commit())?;
        Ok(None)
    }
}

/// Whether an error means the connection cannot be trusted for the next call.
fn breaks_connection(e: &TxError) -> bool {
    match e {
        TxError::Timeout => true,
        TxError::Postgres(e) => match e.as_db_error() {
            None => true,
            // Class 08 (connection exception) and 57 (operator intervention: shutdown,
            // statement timeout): start over on a fresh connection.
            Some(db) => matches!(&db.code().code()[..2], "08" | "57"),
        },
        _ => false,
    }
}

fn pg_reason(e: &tokio_postgres::Error) -> String {
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    reason
}

fn connect_reason(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_reason(e),
        other => other.to_string(),
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Removes `sslrootcert=<file>` from the URL's query (tokio-postgres does not know it) and
/// returns it.
fn split_root_cert(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut root = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|part| match part.strip_prefix("sslrootcert=") {
            Some(file) => {
                root = Some(file.to_owned());
                false
            }
            None => true,
        })
        .collect();
    if kept.is_empty() {
        (base.to_owned(), root)
    } else {
        (format!("{base}?{}", kept.join("&")), root)
    }
}

/// rustls (ring) with the web PKI roots, plus the PEM certificates of `root_cert` if given.
fn tls(root_cert: Option<&str>) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(file) = root_cert {
        let certs = CertificateDer::pem_file_iter(Path::new(file))
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read sslrootcert {file}: {e}"))?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("sslrootcert {file}: {e}"))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// `?N` placeholders as PostgreSQL's `$N`.
fn dollar_params(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            Value::Int(v) if *ty == Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
            Value::Int(v) if *ty == Type::INT8 => v.to_sql(ty, out),
            Value::Text(v) if <&str as ToSql>::accepts(ty) => v.as_str().to_sql(ty, out),
            Value::Bool(v) if *ty == Type::BOOL => v.to_sql(ty, out),
            other => Err(format!("{other:?} cannot be sent as {ty}").into()),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        // Checked per value in `to_sql`.
        true
    }

    to_sql_checked!();
}

/// [`Tx`] over a pooled connection's transaction; statements are prepared once per connection.
struct PgTx<'a, 'b> {
    tx: &'a deadpool_postgres::Transaction<'b>,
    pg: &'a PgJournal,
}

impl PgTx<'_, '_> {
    fn statement(&self, sql: &str) -> Result<tokio_postgres::Statement, TxError> {
        self.pg.call(self.tx.prepare_cached(&dollar_params(sql)))
    }
}

fn params(values: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

fn row_values(row: &tokio_postgres::Row) -> Result<Row, TxError> {
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let value = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(i)?.map(Value::Int)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)?
                .map(|v| Value::Int(i64::from(v)))
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(i)?.map(Value::Bool)
        } else {
            row.try_get::<_, Option<String>>(i)?.map(Value::Text)
        };
        values.push(value.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

impl Tx for PgTx<'_, '_> {
    fn query(&mut self, sql: &str, values: &[Value]) -> Result<Vec<Row>, TxError> {
        let statement = self.statement(sql)?;
        let rows = self.pg.call(self.tx.query(&statement, &params(values)))?;
        rows.iter().map(row_values).collect()
    }

    fn execute(&mut self, sql: &str, values: &[Value]) -> Result<u64, TxError> {
        let statement = self.statement(sql)?;
        self.pg.call(self.tx.execute(&statement, &params(values)))
    }

    fn locking(&self, lock: RowLock) -> &'static str {
        lock.clause()
    }

    fn lease_now(&mut self, caller: DateTime<Utc>) -> Result<DateTime<Utc>, TxError> {
        if self.pg.lease_clock == LeaseClock::Caller {
            return Ok(caller);
        }
        let rows = self.query(
            "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
            &[],
        )?;
        let row = rows.first().ok_or(TxError::Timeout)?;
        let ms = row.int(0)?;
        DateTime::from_timestamp_millis(ms).ok_or_else(|| row.unparsable(0, "a time in range"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars() {
        assert_eq!(
            dollar_params("SELECT a FROM t WHERE x = ?1 AND y = ?12 AND z = '?'"),
            "SELECT a FROM t WHERE x = $1 AND y = $12 AND z = '?'"
        );
    }

    #[test]
    fn sslrootcert_is_split_off() {
        assert_eq!(
            split_root_cert("postgres://h/db?sslmode=require&sslrootcert=/ca.pem"),
            (
                "postgres://h/db?sslmode=require".to_owned(),
                Some("/ca.pem".to_owned())
            )
        );
        assert_eq!(
            split_root_cert("postgres://h/db?sslrootcert=/ca.pem"),
            ("postgres://h/db".to_owned(), Some("/ca.pem".to_owned()))
        );
        assert_eq!(
            split_root_cert("postgres://h/db"),
            ("postgres://h/db".to_owned(), None)
        );
    }

    #[test]
    fn a_remote_database_without_tls_is_refused_before_connecting() {
        let err = PgJournal::open(
            "postgres://hk8s:pw@db.example.com/hk8s?sslmode=disable",
            OpenOptions::default(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "journal URL postgres://hk8s:***@db.example.com/hk8s?sslmode=disable is not usable: \
             sslmode=disable for a database on another host; the journal needs TLS there \
             (sslmode=require)"
        );
    }

    #[test]
    fn an_unreachable_server_fails_within_the_call_timeout() {
        // A loopback port nobody listens on: refused at once.
        let err = PgJournal::open(
            "postgres://hk8s@127.0.0.1:1/hk8s",
            OpenOptions {
                call_timeout: Duration::from_secs(2),
                ..OpenOptions::default()
            },
        )
        .unwrap_err();
        assert!(matches!(err, JournalError::Unreachable { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("journal postgres://hk8s@127.0.0.1:1/hk8s is unreachable (migrate)"),
            "{err}"
        );
    }

    /// Lease expiry follows `clock_timestamp()`, whatever instant the caller passes.
    #[test]
    fn lease_expiry_is_decided_by_the_database_clock() {
        use crate::testutil::{new_run, open_postgres, owner, t};
        use crate::{RunId, Takeover};
        let Some(journal) = open_postgres(LeaseClock::Database) else {
            return;
        };
        let run = new_run("cluster.create", "demo");
        journal.create_run(&run, t(0)).unwrap();
        let before = Utc::now() - chrono::TimeDelta::minutes(5);
        // A's caller clock is years behind: the lease still runs from the database's now.
        let a = journal
            .acquire_lease(
                &run.id,
                &owner("a"),
                t(0),
                Duration::from_secs(600),
                Takeover::IfFree,
            )
            .unwrap();
        assert!(
            a.expires_at > before + chrono::TimeDelta::minutes(10),
            "{a:?}"
        );
        // B's clock is a century ahead: to the database the lease is live, so B is refused.
        let far = t(0) + chrono::TimeDelta::days(36_500);
        let err = journal
            .acquire_lease(
                &run.id,
                &owner("b"),
                far,
                Duration::from_secs(30),
                Takeover::IfFree,
            )
            .unwrap_err();
        assert!(matches!(err, JournalError::LeaseHeld { .. }), "{err:?}");
        // A renews with a TTL of zero: the lease is due at the database's now, so the next
        // acquisition (later on the same clock) finds it expired, whatever B's clock says.
        let mut a = a;
        journal.renew_lease(&mut a, far, Duration::ZERO).unwrap();
        assert!(a.expires_at < far);
        let b = journal
            .acquire_lease(
                &run.id,
                &owner("b"),
                t(0),
                Duration::from_secs(30),
                Takeover::IfFree,
            )
            .unwrap();
        assert_eq!(b.fence, a.fence + 1);
        let _: RunId = b.run_id;
    }

    /// Runners with their own connections race for one run: exactly one lease per fence.
    #[test]
    fn runners_racing_for_a_run_get_exactly_one_lease_per_fence() {
        use crate::testutil::{new_run, owner, t};
        use crate::{Journal, Location, Takeover};
        let Some(server) = hk8s_testkit::postgres() else {
            return;
        };
        let location = Location::Postgres(server.fresh_database());
        let open = || Journal::open_location(&location, OpenOptions::default()).unwrap();
        let run = new_run("cluster.create", "demo");
        open().create_run(&run, t(0)).unwrap();
        let journals: Vec<Journal> = (0..4).map(|_| open()).collect();
        let names = ["a", "b", "c", "d"];
        for round in 0..5_i64 {
            let barrier = std::sync::Barrier::new(journals.len());
            let results: Vec<_> = std::thread::scope(|s| {
                let handles: Vec<_> = journals
                    .iter()
                    .zip(names)
                    .map(|(journal, name)| {
                        let (barrier, id) = (&barrier, run.id);
                        s.spawn(move || {
                            barrier.wait();
                            let ttl = Duration::from_secs(600);
                            journal.acquire_lease(&id, &owner(name), t(0), ttl, Takeover::IfFree)
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let won: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
            let held = results
                .iter()
                .filter(|r| matches!(r, Err(JournalError::LeaseHeld { .. })))
                .count();
            assert_eq!((won.len(), held), (1, 3), "round {round}: {results:?}");
            assert_eq!(won[0].fence, round + 1);
            // The winner lets go; the next round races again.
            journals[0].release_lease(won[0], t(1)).unwrap();
        }
        assert_eq!(journals[0].load_run(&run.id).unwrap().run.fence, 5);
    }
}
