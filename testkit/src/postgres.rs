//! The throwaway PostgreSQL server `scripts/test` starts (`setup_postgres`), and a fresh
//! database per test.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The test server: `$HK8S_TEST_POSTGRES` (a URL of its `postgres` database) and the binaries
/// in `$HK8S_PG_BINDIR`, data in `$HK8S_PG_DATA`.
#[derive(Debug, Clone)]
pub struct PgServer {
    /// URL of the server's maintenance database.
    pub url: String,
    /// Folder of `psql`, `pg_ctl` (`pg_config --bindir`).
    pub bindir: PathBuf,
    /// The cluster's data folder, when known (for `pg_ctl restart`).
    pub data: Option<PathBuf>,
}

/// The test server, or `None` after [`crate::skip`] when `scripts/test` did not start one
/// (so under CI a missing PostgreSQL fails the test).
pub fn postgres() -> Option<PgServer> {
    let Some(url) = std::env::var("HK8S_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        crate::skip(
            "no PostgreSQL test server (HK8S_TEST_POSTGRES unset; scripts/test starts one)",
        );
        return None;
    };
    let bindir = std::env::var_os("HK8S_PG_BINDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
    let data = std::env::var_os("HK8S_PG_DATA").map(PathBuf::from);
    Some(PgServer { url, bindir, data })
}

static DATABASES: AtomicU32 = AtomicU32::new(0);

impl PgServer {
    /// Runs one SQL command on the maintenance database with `psql`; panics with its output
    /// when it fails.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.bindir.join("psql"))
            .args([
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.url,
                "-c",
                sql,
            ])
            .output()
            .unwrap_or_else(|e| panic!("cannot run psql in {}: {e}", self.bindir.display()));
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Creates an empty database with a name unique to this process and call, and returns
    /// its URL.
    pub fn fresh_database(&self) -> String {
        let n = DATABASES.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("hk8s_test_{}_{n}_{nanos}", std::process::id());
        self.psql(&format!("CREATE DATABASE {name}"));
        self.database_url(&name)
    }

    /// The URL of database `name` on this server.
    pub fn database_url(&self, name: &str) -> String {
        let (base, _) = self.url.rsplit_once('/').unwrap_or((&self.url, ""));
        format!("{base}/{name}")
    }

    /// `pg_ctl restart -m immediate`: every connection is cut and the server recovers from its
    /// WAL, as after a crash. Run as the `postgres` user when this process is root.
    pub fn restart_immediate(&self) {
        let Some(data) = &self.data else {
            panic!("HK8S_PG_DATA is unset: cannot restart the test server");
        };
        let pg_ctl = self.bindir.join("pg_ctl");
        let data = data.display().to_string();
        let mut command = if rustix_is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&pg_ctl);
            c
        } else {
            Command::new(&pg_ctl)
        };
        // The server's output goes to its log file: a pipe it inherited would keep `output()`
        // waiting for as long as the server runs.
        let log = format!("{data}/server.log");
        let out = command
            .args(["-D", &data, "-l", &log, "-m", "immediate", "-w", "restart"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", pg_ctl.display()));
        assert!(
            out.status.success(),
            "pg_ctl restart failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn rustix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
