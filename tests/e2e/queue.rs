//! The queue and its workers, with the real binary and the twin: two `--queue --dedup K` from
//! two processes make one run, which a worker then runs to success (SQLite and PostgreSQL);
//! two workers on two "machines" sharing a PostgreSQL journal, the holder killed inside an
//! activity: the other takes over after the lease expired and finishes, with exactly one
//! resource per name in the cloud and the killed attempt journaled as abandoned; and
//! `pg_ctl restart -m immediate` under a running worker strands no run; and no token, database
//! password, secrets-bundle or client-key byte reaches any PostgreSQL journal table or the
//! worker's logs; a run killed on one machine resumes on another (its own state folder) from
//! the cluster files sealed in the journal.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hk8s_tests::{Hk8s, TwinProcess, example_spec, output_ok, wait_timeout};
use serde_json::Value;

use crate::SPEED;

/// The journal location for `backend`, or `None` (skipped) when PostgreSQL is not there.
fn journal(backend: &str) -> Option<Option<String>> {
    match backend {
        "sqlite" => Some(None),
        _ => hk8s_testkit::postgres().map(|server| Some(server.fresh_database())),
    }
}

/// The operator's key for cluster files in a PostgreSQL journal (32 bytes, base64).
const FILES_KEY: &str = "c2VudGluZWwta2V5LWZvci1jbHVzdGVyLWZpbGVzISE=";

fn with_journal(mut cmd: Command, journal: &Option<String>) -> Command {
    if let Some(url) = journal {
        cmd.env("HK8S_JOURNAL", url)
            .env("HK8S_FILES_KEY", FILES_KEY);
    }
    cmd
}

fn runs(hk8s: &Hk8s, journal: &Option<String>) -> Vec<Value> {
    let out = output_ok(&mut with_journal(
        hk8s.command(&["-o", "json", "history"]),
        journal,
    ));
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap()
}

/// Every server, network, firewall, load balancer, placement group exists once per name.
async fn one_resource_per_name(twin: &TwinProcess) {
    let state = twin.state().await;
    let mut names: BTreeMap<String, u32> = BTreeMap::new();
    for kind in [
        "servers",
        "networks",
        "firewalls",
        "load_balancers",
        "placement_groups",
    ] {
        for resource in state[kind].as_array().cloned().unwrap_or_default() {
            let name = resource["name"].as_str().unwrap_or_default().to_string();
            *names.entry(format!("{kind}/{name}")).or_default() += 1;
        }
    }
    assert!(
        names.keys().any(|k| k.starts_with("servers/")),
        "no servers in the twin: {state}"
    );
    let doubles: Vec<_> = names.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubles.is_empty(), "made twice: {doubles:?}");
}

async fn dedup_then_worker(backend: &str) {
    let Some(journal) = journal(backend) else {
        return;
    };
    let twin = TwinProcess::start(SPEED).await;
    let hk8s = Hk8s::new(&twin);
    let spec = hk8s.write_spec("cluster.yaml", &example_spec());
    let spec = spec.to_str().unwrap();
    let enqueue = || {
        with_journal(
            hk8s.command(&[
                "run",
                "create-cluster",
                "-f",
                spec,
                "--queue",
                "--dedup",
                "create/demo",
            ]),
            &journal,
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    // Two triggers at once, from two processes.
    let (a, b) = (enqueue(), enqueue());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success(), "{a:?}\n{b:?}");
    let id_a = String::from_utf8_lossy(&a.stdout).trim().to_string();
    let id_b = String::from_utf8_lossy(&b.stdout).trim().to_string();
    assert_eq!(id_a, id_b, "two triggers, two runs");
    let listed = runs(&hk8s, &journal);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["status"], "queued");
    assert_eq!(listed[0]["dedup_key"], "create/demo");
    // Nothing was created in the cloud yet (the preflight only reads).
    assert_eq!(
        twin.state().await["servers"].as_array().map_or(0, Vec::len),
        0
    );
    // A direct run of the same cluster is refused while the queued one is active (exit 75).
    let direct = with_journal(
        hk8s.command(&["run", "create-cluster", "-f", spec]),
        &journal,
    )
    .output()
    .unwrap();
    assert_eq!(direct.status.code(), Some(75), "{direct:?}");
    assert!(
        String::from_utf8_lossy(&direct.stderr).contains(&format!("active run {id_a}")),
        "{direct:?}"
    );

    output_ok(&mut with_journal(
        hk8s.command(&["worker", "--exit-when-idle", "--poll", "0.1"]),
        &journal,
    ));
    let listed = runs(&hk8s, &journal);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["status"], "succeeded", "{listed:?}");
    one_resource_per_name(&twin).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_queue_triggers_with_one_dedup_key_give_one_run_sqlite() {
    dedup_then_worker("sqlite").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_queue_triggers_with_one_dedup_key_give_one_run_postgres() {
    dedup_then_worker("postgres").await;
}

/// Worker A (machine a) is killed inside an activity; worker B (machine b) claims the run only
/// after A's lease expired, finishes it, and the cloud holds one resource per name.
#[tokio::test(flavor = "multi_thread")]
async fn two_workers_one_run_kill_9_of_the_holder_inside_an_activity() {
    let Some(Some(journal)) = journal("postgres") else {
        return;
    };
    let twin = TwinProcess::start(SPEED).await;
    let hk8s = Hk8s::new(&twin);
    let spec = hk8s.write_spec("cluster.yaml", &example_spec());
    let enqueued = output_ok(&mut with_journal(
        hk8s.command(&[
            "run",
            "create-cluster",
            "-f",
            spec.to_str().unwrap(),
            "--queue",
        ]),
        &Some(journal.clone()),
    ));
    let id = String::from_utf8_lossy(&enqueued.stdout).trim().to_string();
    let ttl = 3;
    let worker = |name: &str| {
        let mut cmd = with_journal(
            hk8s.command(&["worker", "--max-runs", "1", "--poll", "0.1"]),
            &Some(journal.clone()),
        );
        cmd.env("HK8S_HOST_ID", format!("host-{name}"))
            .env("HK8S_MACHINE_ID", format!("machine-{name}"))
            .env("HK8S_LEASE_TTL_SECS", ttl.to_string())
            .env("HK8S_LOCK_TTL_SECS", ttl.to_string())
            .env("HK8S_DEBUG_INTENT_DELAY_MS", "0");
        cmd
    };
    let a = worker("a")
        .env("HK8S_DEBUG_KILL_AFTER_ACTIVITY", "talos/apply/demo-cp-1")
        .output()
        .unwrap();
    assert!(
        hk8s_tests::killed(a.status),
        "worker a was not killed: {a:?}"
    );
    let killed_at = Instant::now();
    let mut b = worker("b").spawn().unwrap();
    // B takes the run only after A's lease expired (A's last renewal was at most a third of
    // the TTL before the kill).
    let deadline = Instant::now() + Duration::from_secs(60);
    let took_over = loop {
        let listed = runs(&hk8s, &Some(journal.clone()));
        let holder = listed[0]["holder"]["host"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if holder == "host-b" {
            break killed_at.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "worker b never took over: {listed:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let ttl = Duration::from_secs(ttl);
    assert!(
        took_over >= ttl - ttl / 3 - Duration::from_millis(200),
        "taken over {took_over:?} after the kill, before the lease could expire"
    );
    let status = wait_timeout(&mut b, Duration::from_secs(300)).expect("worker b hangs");
    assert!(status.success(), "worker b: {status:?}");
    let listed = runs(&hk8s, &Some(journal.clone()));
    assert_eq!(listed[0]["status"], "succeeded", "{listed:?}");
    eprintln!("takeover {took_over:?} after the kill (lease TTL {ttl:?})");
    let detail = output_ok(&mut with_journal(
        hk8s.command(&["-o", "json", "history", &id]),
        &Some(journal.clone()),
    ));
    let detail: Value = serde_json::from_slice(&detail.stdout).unwrap();
    let attempts: Vec<Value> = detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "talos/apply/demo-cp-1")
        .map(|s| s["attempts"].as_array().cloned().unwrap_or_default())
        .unwrap_or_default();
    assert!(
        attempts.iter().any(|a| a["message"]
            .as_str()
            .is_some_and(|m| m.contains(hk8s_journal_abandoned()))),
        "the killed attempt is not journaled as abandoned: {attempts:?}"
    );
    one_resource_per_name(&twin).await;
}

/// `hk8s_journal::ABANDONED_MESSAGE` (the tests crate does not link the journal).
fn hk8s_journal_abandoned() -> &'static str {
    "no outcome recorded: the process running this attempt stopped"
}

/// A PostgreSQL cluster of this test's own (the shared test server serves other tests and
/// other checkouts; restarting it would cut them off): `initdb` in a temporary folder, started
/// on a free loopback port, as the `postgres` user when this process is root.
struct PrivatePg {
    dir: tempfile::TempDir,
    bindir: std::path::PathBuf,
    port: u16,
}

impl PrivatePg {
    fn start(bindir: std::path::PathBuf) -> PrivatePg {
        let dir = tempfile::tempdir().unwrap();
        if rustix::process::geteuid().is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success(), "cannot give the data folder to postgres");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = PrivatePg { dir, bindir, port };
        let data = pg.data();
        pg.pg(&[
            "initdb",
            "-D",
            &data,
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]);
        let opts = format!("-p {port} -h 127.0.0.1 -k {data}");
        let log = format!("{data}/server.log");
        pg.pg(&[
            "pg_ctl", "-D", &data, "-l", &log, "-w", "-o", &opts, "start",
        ]);
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl restart -m immediate`: every connection cut, recovery from the WAL.
    fn restart_immediate(&self) {
        let (data, log) = (self.data(), format!("{}/server.log", self.data()));
        self.pg(&[
            "pg_ctl",
            "-D",
            &data,
            "-l",
            &log,
            "-m",
            "immediate",
            "-w",
            "restart",
        ]);
    }

    /// Runs a PostgreSQL program (as `postgres` when root), its output to a file, not a pipe
    /// the server would inherit.
    fn pg(&self, args: &[&str]) {
        let program = self.bindir.join(args[0]);
        let mut cmd = if rustix::process::geteuid().is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let status = cmd
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "{args:?} failed (see {}/server.log)",
            self.data()
        );
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.data();
        let _ = std::panic::catch_unwind(|| {
            self.pg(&["pg_ctl", "-D", &data, "-m", "immediate", "stop"])
        });
    }
}

/// The database restarts (every connection cut, recovery from the WAL) while a worker runs a
/// create: the worker's journal calls fail for a while, its run is continued (by itself after
/// its lease lapsed, or under the lease it kept) and succeeds; nothing stays queued or running.
#[tokio::test(flavor = "multi_thread")]
async fn a_database_restart_mid_run_strands_no_run() {
    let Some(shared) = hk8s_testkit::postgres() else {
        return;
    };
    let server = PrivatePg::start(shared.bindir.clone());
    let journal = Some(server.url());
    let twin = TwinProcess::start(SPEED / 4.0).await;
    let hk8s = Hk8s::new(&twin);
    let spec = hk8s.write_spec("cluster.yaml", &example_spec());
    output_ok(&mut with_journal(
        hk8s.command(&[
            "run",
            "create-cluster",
            "-f",
            spec.to_str().unwrap(),
            "--queue",
        ]),
        &journal,
    ));
    let mut worker = with_journal(hk8s.command(&["worker", "--poll", "0.1"]), &journal)
        .env("HK8S_LEASE_TTL_SECS", "4")
        .env("HK8S_LOCK_TTL_SECS", "4")
        .spawn()
        .unwrap();
    let status_of = || -> Option<(String, usize)> {
        let out = with_journal(hk8s.command(&["-o", "json", "history"]), &journal)
            .output()
            .ok()?;
        let runs: Value = serde_json::from_slice(&out.stdout).ok()?;
        let id = runs[0]["run_id"].as_str()?.to_string();
        let out = with_journal(hk8s.command(&["-o", "json", "history", &id]), &journal)
            .output()
            .ok()?;
        let detail: Value = serde_json::from_slice(&out.stdout).ok()?;
        let done = detail["steps"]
            .as_array()?
            .iter()
            .filter(|s| s["status"] == "succeeded")
            .count();
        Some((runs[0]["status"].as_str()?.to_string(), done))
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if status_of().is_some_and(|(status, done)| status == "running" && done >= 4) {
            break;
        }
        assert!(Instant::now() < deadline, "the worker never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.restart_immediate();
    let restarted = Instant::now();
    let finished = loop {
        if let Some((status, _)) = status_of()
            && status != "running"
            && status != "queued"
        {
            break status;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(120),
            "the run is stranded"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(finished, "succeeded");
    eprintln!("run finished {:?} after the restart", restarted.elapsed());
    let pid = rustix::process::Pid::from_raw(i32::try_from(worker.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = wait_timeout(&mut worker, Duration::from_secs(30)).expect("worker hangs");
    assert!(status.success(), "worker: {status:?}");
    let listed = runs(&hk8s, &journal);
    assert_eq!(listed.len(), 1, "{listed:?}");
    one_resource_per_name(&twin).await;
}

/// Sentinel grep on PostgreSQL: a queued create run by a worker logging at debug level, the
/// database password in the journal URL; then every table of schema `hk8s` is dumped and
/// searched for the password, the API token, every secret of the bundle and the client keys
/// of the talosconfig and kubeconfig, as are the outputs of both commands.
#[tokio::test(flavor = "multi_thread")]
async fn no_secret_in_any_postgres_journal_table_or_log() {
    let Some(shared) = hk8s_testkit::postgres() else {
        return;
    };
    let server = PrivatePg::start(shared.bindir.clone());
    let password = "pw-sentinel-7c1f0e5b9a2d";
    let journal = Some(format!(
        "postgres://postgres:{password}@127.0.0.1:{}/postgres",
        server.port
    ));
    let twin = TwinProcess::start(SPEED).await;
    let hk8s = Hk8s::new(&twin);
    let spec = hk8s.write_spec("cluster.yaml", &example_spec());
    let queued = output_ok(
        with_journal(
            hk8s.command(&[
                "run",
                "create-cluster",
                "-f",
                spec.to_str().unwrap(),
                "--queue",
            ]),
            &journal,
        )
        .env("HK8S_LOG", "debug"),
    );
    let worked = output_ok(
        with_journal(
            hk8s.command(&["worker", "--exit-when-idle", "--poll", "0.1"]),
            &journal,
        )
        .env("HK8S_LOG", "debug"),
    );
    assert_eq!(runs(&hk8s, &journal)[0]["status"], "succeeded");
    let dump = Command::new(shared.bindir.join("pg_dump"))
        .args([
            "--data-only",
            "--schema=hk8s",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ])
        .args(["-p", &server.port.to_string(), "postgres"])
        .output()
        .unwrap();
    assert!(dump.status.success(), "pg_dump: {dump:?}");
    let text = String::from_utf8_lossy(&dump.stdout).to_string();
    for table in ["runs", "steps", "attempts"] {
        assert!(
            text.contains(&format!("COPY hk8s.{table} ")),
            "{table} not dumped"
        );
    }
    assert!(
        text.contains("talos/secrets"),
        "the dump holds no steps: {text}"
    );
    let mut secrets = crate::secrets::sentinels(
        &std::fs::read_to_string(hk8s.cluster_dir().join("secrets.yaml")).unwrap(),
    );
    assert!(secrets.len() >= 10, "only {} bundle secrets", secrets.len());
    for file in ["kubeconfig", "talosconfig"] {
        let text = std::fs::read_to_string(hk8s.cluster_dir().join(file)).unwrap();
        for line in text.lines() {
            if let Some((name, value)) = line.trim().split_once(':')
                && (name == "client-key-data" || name == "key")
            {
                secrets.push(value.trim().to_string());
            }
        }
    }
    secrets.push(twin.token.clone());
    secrets.push(password.to_string());
    secrets.push(FILES_KEY.to_string());
    // The cluster files are in the journal, sealed.
    assert!(
        text.contains("COPY hk8s.cluster_files "),
        "cluster_files not dumped"
    );
    for name in ["secrets.yaml", "talosconfig", "kubeconfig"] {
        assert!(
            text.contains(&format!("demo\t{name}\t")),
            "{name} is not stored: {text}"
        );
    }
    for (name, bytes) in [
        ("the journal tables", &dump.stdout),
        ("the enqueue's stdout", &queued.stdout),
        ("the enqueue's stderr", &queued.stderr),
        ("the worker's stdout", &worked.stdout),
        ("the worker's stderr", &worked.stderr),
    ] {
        for secret in &secrets {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "a secret value ({}…) is in {name}", &secret[..8]);
        }
    }
}

/// Machine A creates, killed after etcd's bootstrap (secrets bundle and talosconfig written);
/// machine B (another state folder, nothing in it) resumes from the files sealed in the
/// PostgreSQL journal and finishes; machine C writes the kubeconfig with `hk8s kubeconfig`.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_resumes_on_a_second_machine_from_the_journals_cluster_files() {
    let Some(Some(journal)) = journal("postgres") else {
        return;
    };
    let journal = Some(journal);
    let twin = TwinProcess::start(SPEED).await;
    let (a, b, c) = (Hk8s::new(&twin), Hk8s::new(&twin), Hk8s::new(&twin));
    let spec = a.write_spec("cluster.yaml", &example_spec());
    let killed = with_journal(
        a.command(&["run", "create-cluster", "-f", spec.to_str().unwrap()]),
        &journal,
    )
    .env("HK8S_DEBUG_KILL_AFTER_ACTIVITY", "talos/bootstrap")
    .output()
    .unwrap();
    assert!(hk8s_tests::killed(killed.status), "{killed:?}");
    let id = runs(&a, &journal)[0]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!b.cluster_dir().exists());
    // Without the key, B refuses before touching anything.
    let keyless = with_journal(b.command(&["resume", &id]), &journal)
        .env_remove("HK8S_FILES_KEY")
        .output()
        .unwrap();
    assert_eq!(keyless.status.code(), Some(2), "{keyless:?}");
    assert!(String::from_utf8_lossy(&keyless.stderr).contains("HK8S_FILES_KEY is not set"));
    // With another key, it cannot open them.
    let wrong = with_journal(b.command(&["resume", &id]), &journal)
        .env(
            "HK8S_FILES_KEY",
            "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktISE=",
        )
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("is not the key it was sealed with"),
        "{wrong:?}"
    );
    output_ok(&mut with_journal(b.command(&["resume", &id]), &journal));
    assert_eq!(runs(&b, &journal)[0]["status"], "succeeded");
    let bundle = |h: &Hk8s| std::fs::read(h.cluster_dir().join("secrets.yaml")).unwrap();
    assert_eq!(bundle(&a), bundle(&b), "B used A's bundle");
    let out = output_ok(&mut with_journal(
        c.command(&["kubeconfig", "demo"]),
        &journal,
    ));
    let path = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(path, c.cluster_dir().join("kubeconfig"));
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(b.cluster_dir().join("kubeconfig")).unwrap()
    );
    let out = output_ok(&mut with_journal(
        c.command(&["talosconfig", "demo"]),
        &journal,
    ));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .ends_with("talosconfig")
    );
    one_resource_per_name(&twin).await;
}

/// SIGTERM to a worker in the middle of a run puts the run back in the queue (status queued,
/// no holder, the claim not counted as a stall), and the next worker finishes it.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_puts_a_workers_run_back_in_the_queue() {
    let Some(Some(journal)) = journal("postgres") else {
        return;
    };
    let journal = Some(journal);
    let twin = TwinProcess::start(SPEED / 4.0).await;
    let hk8s = Hk8s::new(&twin);
    let spec = hk8s.write_spec("cluster.yaml", &example_spec());
    output_ok(&mut with_journal(
        hk8s.command(&[
            "run",
            "create-cluster",
            "-f",
            spec.to_str().unwrap(),
            "--queue",
        ]),
        &journal,
    ));
    let mut worker = with_journal(hk8s.command(&["worker", "--poll", "0.1"]), &journal)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let id = loop {
        let listed = runs(&hk8s, &journal);
        let id = listed[0]["run_id"].as_str().unwrap().to_string();
        let detail = output_ok(&mut with_journal(
            hk8s.command(&["-o", "json", "history", &id]),
            &journal,
        ));
        let detail: Value = serde_json::from_slice(&detail.stdout).unwrap();
        let done = detail["steps"].as_array().map_or(0, |s| {
            s.iter().filter(|s| s["status"] == "succeeded").count()
        });
        if listed[0]["status"] == "running" && done >= 3 {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "the worker never got going: {listed:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let pid = rustix::process::Pid::from_raw(i32::try_from(worker.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = wait_timeout(&mut worker, Duration::from_secs(60)).expect("worker hangs");
    assert!(status.success(), "worker: {status:?}");
    let run = runs(&hk8s, &journal)[0].clone();
    assert_eq!(run["run_id"], id.as_str());
    assert_eq!(run["status"], "queued", "{run}");
    assert!(run["holder"].is_null(), "{run}");
    assert_eq!(run["stalled_claims"], 0, "{run}");
    output_ok(&mut with_journal(
        hk8s.command(&["worker", "--exit-when-idle", "--poll", "0.1"]),
        &journal,
    ));
    assert_eq!(runs(&hk8s, &journal)[0]["status"], "succeeded");
    one_resource_per_name(&twin).await;
}
