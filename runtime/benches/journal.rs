//! Benchmark (not a test): journal cost per completed step versus a raw SQLite WAL+FULL insert
//! transaction on the same disk, and resume time of a 1000-step run until the first new activity.
//!
//! Method: the disk is shared and its latency drifts by 2× within seconds, so every journaled
//! step is paired with a raw insert transaction right after it (same process, same disk, same
//! moment); figures are medians (p50) and p90 of the per-step samples, and ratios compare them.
//! Two step shapes run through the runtime:
//! - a step that ends within the intent delay: its start and outcome are one commit;
//! - a step that outlives it: an intent record (no fsync), then the completion (forced here with
//!   a zero delay, so the activity itself stays instant and only the journal is measured).
//!
//! Run: `cargo bench -p hk8s-runtime --bench journal`

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hk8s_journal::{AttemptStart, Journal, NewRun, Owner, RunId, Takeover};
use hk8s_runtime::{
    CancellationToken, Ctx, DEFAULT_INTENT_DELAY, ResumeOptions, RetryPolicy, RunStatus, Runtime,
    RuntimeOptions, StepError, Workflow, WorkflowError,
};
use serde::{Deserialize, Serialize};

/// Steps per run; the WAL stays below SQLite's 1000-page auto-checkpoint.
const STEPS: u32 = 60;
/// Runs per step shape, interleaved.
const ROUNDS: usize = 12;
const RESUME_STEPS: u32 = 1000;

#[derive(Serialize, Deserialize)]
struct Input {
    steps: u32,
}

#[derive(Serialize, Deserialize)]
struct Output {
    id: u64,
    name: String,
    labels: Vec<(String, String)>,
}

/// Time of each journaled step and of the raw insert paired with it.
#[derive(Default)]
struct Samples {
    journal: Vec<Duration>,
    raw: Vec<Duration>,
}

/// A raw SQLite table written with one WAL+FULL insert transaction per call: the baseline.
struct RawTable {
    conn: rusqlite::Connection,
    next: u32,
}

impl RawTable {
    fn open(path: &Path) -> RawTable {
        let conn = rusqlite::Connection::open(path).expect("open raw db");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        conn.pragma_update(None, "synchronous", "FULL")
            .expect("full");
        conn.execute_batch(
            "CREATE TABLE t (run TEXT NOT NULL, key TEXT NOT NULL, output TEXT, \
             PRIMARY KEY (run, key))",
        )
        .expect("create");
        RawTable { conn, next: 0 }
    }

    /// One insert transaction, timed.
    fn insert(&mut self) -> Duration {
        let payload =
            r#"{"id":1,"name":"demo-node-1","labels":[["cluster","demo"],["managed-by","hk8s"]]}"#;
        let key = format!("server/node-{}", self.next);
        self.next += 1;
        let start = Instant::now();
        self.conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
        self.conn
            .execute(
                "INSERT INTO t (run, key, output) VALUES ('r', ?1, ?2)",
                rusqlite::params![key, payload],
            )
            .expect("insert");
        self.conn.execute_batch("COMMIT").expect("commit");
        start.elapsed()
    }
}

/// `steps` trivial steps, each timed from the `ctx.step` call to its return and followed by a
/// paired raw insert (if `paired` is set); then (if `tail` is set) one more step whose activity
/// reports when it starts and, in the first phase, asks for shutdown and hangs.
struct Steps {
    paired: Option<Mutex<(RawTable, Samples)>>,
    tail: Option<Tail>,
}

struct Tail {
    cancel: CancellationToken,
    interrupt: bool,
    started_at: Arc<Mutex<Option<Instant>>>,
}

impl Workflow for Steps {
    const NAME: &'static str = "bench";
    const VERSION: u32 = 1;
    type Input = Input;
    type Output = u64;

    async fn run(&self, ctx: &Ctx, input: Input) -> Result<u64, WorkflowError> {
        let policy = RetryPolicy::no_retry();
        let mut sum = 0;
        for i in 0..input.steps {
            let key = format!("server/node-{i}");
            let started = Instant::now();
            let out: Output = ctx
                .step(&key, &policy, &(i, "cx22", "fsn1"), |_| async move {
                    Ok::<_, StepError>(Output {
                        id: u64::from(i),
                        name: format!("demo-node-{i}"),
                        labels: vec![
                            ("cluster".into(), "demo".into()),
                            ("managed-by".into(), "hk8s".into()),
                        ],
                    })
                })
                .await?;
            let took = started.elapsed();
            if let Some(paired) = &self.paired {
                let mut paired = paired.lock().unwrap_or_else(|p| p.into_inner());
                let (raw, samples) = &mut *paired;
                samples.journal.push(took);
                samples.raw.push(raw.insert());
            }
            sum += out.id;
        }
        if let Some(tail) = &self.tail {
            ctx.step("tail/new", &policy, &(), |_| async move {
                {
                    let mut started = tail.started_at.lock().unwrap_or_else(|p| p.into_inner());
                    started.get_or_insert_with(Instant::now);
                }
                if tail.interrupt {
                    tail.cancel.cancel();
                    std::future::pending::<()>().await;
                }
                Ok::<_, StepError>(0u64)
            })
            .await?;
        }
        Ok(sum)
    }
}

/// `n` steps through the runtime with `intent_delay`, each paired with a raw insert.
async fn runtime_steps(dir: &Path, n: u32, intent_delay: Duration) -> Samples {
    let tag = rand::random::<u32>();
    let journal = Arc::new(Journal::open(&dir.join(format!("rt-{tag}.db"))).expect("open"));
    let runtime = Runtime::new(
        journal,
        RuntimeOptions {
            intent_delay,
            ..RuntimeOptions::default()
        },
    );
    let workflow = Steps {
        paired: Some(Mutex::new((
            RawTable::open(&dir.join(format!("raw-{tag}.db"))),
            Samples::default(),
        ))),
        tail: None,
    };
    let run = runtime
        .create(&workflow, "bench", &Input { steps: n })
        .expect("create");
    let out = runtime
        .execute(&workflow, &run, ResumeOptions::default())
        .await
        .expect("execute");
    assert_eq!(out.status, RunStatus::Succeeded);
    let paired = workflow.paired.expect("paired");
    paired.into_inner().unwrap_or_else(|p| p.into_inner()).1
}

/// `n` steps through the journal API alone (`complete_step`, after `start_attempt` if
/// `intent`), each paired with a raw insert; and the WAL pages each step wrote.
fn api_steps(dir: &Path, n: u32, intent: bool) -> (Samples, f64) {
    let tag = rand::random::<u32>();
    let path = dir.join(format!("api-{tag}.db"));
    let journal = Journal::open(&path).expect("open");
    let mut raw = RawTable::open(&dir.join(format!("raw-{tag}.db")));
    let id = RunId::new();
    let now = chrono::Utc::now();
    let run = NewRun {
        id,
        workflow: "bench".into(),
        workflow_version: 1,
        cluster: "bench".into(),
        input: serde_json::json!({}),
    };
    journal.create_run(&run, now).expect("create");
    let lease = journal
        .acquire_lease(
            &id,
            &Owner::current(),
            now,
            Duration::from_secs(30),
            Takeover::IfFree,
        )
        .expect("lease");
    let output = serde_json::json!({"id": 1, "name": "demo-node-1", "labels": [["cluster", "demo"], ["managed-by", "hk8s"]]});
    let before = wal_frames(&path);
    let mut samples = Samples::default();
    for i in 0..n {
        let started = Instant::now();
        let key = format!("server/node-{i}");
        let start = AttemptStart {
            key: &key,
            attempt: 1,
            activity: "server",
            input_hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            started_at: now,
        };
        if intent {
            journal.start_attempt(&lease, &start).expect("start");
        }
        journal
            .complete_step(&lease, &start, &output, now)
            .expect("complete");
        samples.journal.push(started.elapsed());
        samples.raw.push(raw.insert());
    }
    let pages = (wal_frames(&path) - before) as f64 / f64::from(n);
    (samples, pages)
}

/// WAL frames next to `db` (valid below the auto-checkpoint's 1000 pages, before the last
/// connection closes).
fn wal_frames(db: &Path) -> u64 {
    let wal = std::path::PathBuf::from(format!("{}-wal", db.display()));
    let bytes = std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0);
    bytes.saturating_sub(32) / (24 + 4096)
}

async fn resume_time(dir: &Path) -> Duration {
    let journal = Arc::new(
        Journal::open(&dir.join(format!("resume-{}.db", rand::random::<u32>()))).expect("open"),
    );
    let cancel = CancellationToken::new();
    let first = Runtime::new(
        journal.clone(),
        RuntimeOptions {
            cancel: cancel.clone(),
            grace: Duration::ZERO,
            ..RuntimeOptions::default()
        },
    );
    let phase1 = Steps {
        paired: None,
        tail: Some(Tail {
            cancel,
            interrupt: true,
            started_at: Arc::default(),
        }),
    };
    let input = Input {
        steps: RESUME_STEPS,
    };
    let run = first.create(&phase1, "bench", &input).expect("create");
    let out = first
        .execute(&phase1, &run, ResumeOptions::default())
        .await
        .expect("phase 1");
    assert_eq!(out.status, RunStatus::Interrupted);
    drop(first);

    let started_at = Arc::new(Mutex::new(None));
    let phase2 = Steps {
        paired: None,
        tail: Some(Tail {
            cancel: CancellationToken::new(),
            interrupt: false,
            started_at: started_at.clone(),
        }),
    };
    let second = Runtime::new(journal, RuntimeOptions::default());
    let start = Instant::now();
    let out = second
        .execute(&phase2, &run, ResumeOptions::default())
        .await
        .expect("phase 2");
    assert_eq!(out.status, RunStatus::Succeeded);
    let first_new = started_at
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .expect("the new activity ran");
    first_new - start
}

/// The `q`-quantile (0.0 ..= 1.0) of `v`.
fn quantile(v: &[Duration], q: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Prints one step shape's figures against its paired raw inserts.
fn report(what: &str, runtime: &Samples, api: &Samples, pages: f64) {
    let (p50, p90) = (
        quantile(&runtime.journal, 0.5),
        quantile(&runtime.journal, 0.9),
    );
    let (raw50, raw90) = (quantile(&runtime.raw, 0.5), quantile(&runtime.raw, 0.9));
    let api50 = quantile(&api.journal, 0.5);
    let api_raw50 = quantile(&api.raw, 0.5);
    println!("{what}:");
    println!(
        "  runtime step p50 {:.0} µs, p90 {:.0} µs; paired raw insert p50 {:.0} µs, p90 {:.0} µs; ratio p50 {:.2} (target ≤ 1.5), p90 {:.2}",
        micros(p50),
        micros(p90),
        micros(raw50),
        micros(raw90),
        p50.as_secs_f64() / raw50.as_secs_f64(),
        p90.as_secs_f64() / raw90.as_secs_f64(),
    );
    println!(
        "  journal API alone p50 {:.0} µs vs raw {:.0} µs: ratio {:.2}; {pages:.1} WAL pages per step",
        micros(api50),
        micros(api_raw50),
        api50.as_secs_f64() / api_raw50.as_secs_f64(),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let base = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).expect("target tmpdir");
    let dir = tempfile::tempdir_in(&base).expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    println!(
        "measuring in {} ({ROUNDS} rounds of {STEPS} steps per shape, each step paired with a raw insert)",
        dir.path().display()
    );
    let extend = |into: &mut Samples, from: Samples| {
        into.journal.extend(from.journal);
        into.raw.extend(from.raw);
    };
    let (mut quick, mut slow, mut quick_api, mut slow_api) = Default::default();
    let mut pages = (0.0, 0.0);
    for _ in 0..ROUNDS {
        extend(
            &mut quick,
            rt.block_on(runtime_steps(dir.path(), STEPS, DEFAULT_INTENT_DELAY)),
        );
        extend(
            &mut slow,
            rt.block_on(runtime_steps(dir.path(), STEPS, Duration::ZERO)),
        );
        let (samples, one) = api_steps(dir.path(), STEPS, false);
        extend(&mut quick_api, samples);
        let (samples, two) = api_steps(dir.path(), STEPS, true);
        extend(&mut slow_api, samples);
        pages = (one, two);
    }
    report(
        "step that ends within the intent delay (start and outcome in one commit)",
        &quick,
        &quick_api,
        pages.0,
    );
    report(
        "step that outlives the intent delay (intent record without fsync, then the completion)",
        &slow,
        &slow_api,
        pages.1,
    );
    let extra = quantile(&slow.journal, 0.5).saturating_sub(quantile(&slow.raw, 0.5));
    println!(
        "  its journal cost beyond one raw commit, as a share of the {} ms intent delay it outlived: {:.2} %",
        DEFAULT_INTENT_DELAY.as_millis(),
        extra.as_secs_f64() / DEFAULT_INTENT_DELAY.as_secs_f64() * 100.0
    );
    let resume = quantile(
        &(0..5)
            .map(|_| rt.block_on(resume_time(dir.path())))
            .collect::<Vec<_>>(),
        0.5,
    );
    println!(
        "resume of a {RESUME_STEPS}-step run to the first new activity: {:.1} ms (target ≤ 100 ms)",
        resume.as_secs_f64() * 1e3
    );
}
