//! Benchmark (not a test): journal cost per completed step versus a raw SQLite WAL+FULL insert
//! transaction on the same disk, and resume time of a 1000-step run until the first new activity.
//!
//! Run: `cargo bench -p hk8s-runtime --bench journal`

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hk8s_journal::Journal;
use hk8s_runtime::{
    CancellationToken, Ctx, ResumeOptions, RetryPolicy, RunStatus, Runtime, RuntimeOptions,
    StepError, Workflow, WorkflowError,
};
use serde::{Deserialize, Serialize};

const STEPS: u32 = 60;
const RESUME_STEPS: u32 = 1000;
const ROUNDS: usize = 15;

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

/// `steps` trivial steps, then (if `tail` is set) one more step whose activity reports when it
/// starts and, in the first phase, asks for shutdown and hangs.
struct Steps {
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

fn raw_insert_per_txn(dir: &std::path::Path, n: u32) -> (Duration, f64) {
    let path = dir.join(format!("raw-{}.db", rand::random::<u32>()));
    let conn = rusqlite::Connection::open(&path).expect("open raw db");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("full");
    conn.execute_batch(
        "CREATE TABLE t (run TEXT NOT NULL, key TEXT NOT NULL, output TEXT, PRIMARY KEY (run, key))",
    )
    .expect("create");
    let payload =
        r#"{"id":1,"name":"demo-node-1","labels":[["cluster","demo"],["managed-by","hk8s"]]}"#;
    let start = Instant::now();
    for i in 0..n {
        conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
        conn.execute(
            "INSERT INTO t (run, key, output) VALUES ('r', ?1, ?2)",
            rusqlite::params![format!("server/node-{i}"), payload],
        )
        .expect("insert");
        conn.execute_batch("COMMIT").expect("commit");
    }
    (start.elapsed() / n, wal_pages(&path, n))
}

/// The journal API alone (start_attempt + complete_step per step), without the runtime.
fn journal_api_per_step(dir: &std::path::Path, n: u32) -> (Duration, f64) {
    let path = dir.join(format!("api-{}.db", rand::random::<u32>()));
    let journal = Journal::open(&path).expect("open");
    let id = hk8s_journal::RunId::new();
    let now = chrono::Utc::now();
    journal
        .create_run(
            &hk8s_journal::NewRun {
                id,
                workflow: "bench".into(),
                workflow_version: 1,
                cluster: "bench".into(),
                input: serde_json::json!({}),
            },
            now,
        )
        .expect("create");
    let lease = journal
        .acquire_lease(
            &id,
            &hk8s_journal::Owner::current(),
            now,
            Duration::from_secs(30),
            hk8s_journal::Takeover::IfFree,
        )
        .expect("lease");
    let output = serde_json::json!({"id": 1, "name": "demo-node-1", "labels": [["cluster", "demo"], ["managed-by", "hk8s"]]});
    let start = Instant::now();
    for i in 0..n {
        let key = format!("server/node-{i}");
        let attempt = journal
            .start_attempt(&lease, &key, "server", "0123456789abcdef", now)
            .expect("start");
        journal
            .complete_step(&lease, &key, attempt, &output, now)
            .expect("complete");
    }
    (start.elapsed() / n, wal_pages(&path, n))
}

/// Per completed step through the runtime: from the first attempt's journal commit to the last
/// step's completion commit, so the run's one-off lease and finish commits are not counted.
async fn journal_per_step(dir: &std::path::Path, n: u32) -> Duration {
    let journal = Arc::new(
        Journal::open(&dir.join(format!("journal-{}.db", rand::random::<u32>()))).expect("open"),
    );
    let marks: Arc<Mutex<(Option<Instant>, Option<Instant>)>> = Arc::default();
    let seen = marks.clone();
    let observer: hk8s_runtime::Observer = Arc::new(move |event: &hk8s_runtime::Event| {
        let mut marks = seen.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            hk8s_runtime::Event::AttemptStarted { .. } if marks.0.is_none() => {
                marks.0 = Some(Instant::now());
            }
            hk8s_runtime::Event::StepCompleted { .. } => marks.1 = Some(Instant::now()),
            _ => {}
        }
    });
    let runtime = Runtime::new(
        journal,
        RuntimeOptions {
            observer: Some(observer),
            ..RuntimeOptions::default()
        },
    );
    let workflow = Steps { tail: None };
    let run = runtime
        .create(&workflow, "bench", &Input { steps: n + 1 })
        .expect("create");
    let out = runtime
        .execute(&workflow, &run, ResumeOptions::default())
        .await
        .expect("execute");
    assert_eq!(out.status, RunStatus::Succeeded);
    let marks = marks.lock().unwrap_or_else(|p| p.into_inner());
    let (Some(first), Some(last)) = *marks else {
        panic!("no steps observed");
    };
    // From the first step's start commit to the last step's completion: n whole steps after the
    // first one's intent record.
    (last - first) / n
}

async fn resume_time(dir: &std::path::Path) -> Duration {
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
        tail: Some(Tail {
            cancel,
            interrupt: true,
            started_at: Arc::default(),
        }),
    };
    let run = first
        .create(
            &phase1,
            "bench",
            &Input {
                steps: RESUME_STEPS,
            },
        )
        .expect("create");
    let out = first
        .execute(&phase1, &run, ResumeOptions::default())
        .await
        .expect("phase 1");
    assert_eq!(out.status, RunStatus::Interrupted);
    drop(first);

    let started_at = Arc::new(Mutex::new(None));
    let phase2 = Steps {
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

/// WAL pages per step, from the size of the WAL next to `db` (valid while fewer than the
/// auto-checkpoint's 1000 pages were written, and before the last connection closes).
fn wal_pages(db: &std::path::Path, n: u32) -> f64 {
    let wal = std::path::PathBuf::from(format!("{}-wal", db.display()));
    let bytes = std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0);
    bytes.saturating_sub(32) as f64 / (24.0 + 4096.0) / f64::from(n)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
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
        "measuring in {} ({} steps, median of {ROUNDS} rounds)",
        dir.path().display(),
        STEPS
    );
    // Short, interleaved rounds: the disk is shared, so each round's three figures see the same
    // conditions; the ratio is the median of the per-round ratios.
    let (mut raw, mut journal, mut api, mut ratios) = (vec![], vec![], vec![], vec![]);
    let mut pages = (0.0, 0.0);
    for _ in 0..ROUNDS {
        let (r, r_pages) = raw_insert_per_txn(dir.path(), STEPS);
        let j = rt.block_on(journal_per_step(dir.path(), STEPS));
        let (a, a_pages) = journal_api_per_step(dir.path(), STEPS);
        pages = (a_pages, r_pages);
        ratios.push(j.as_secs_f64() / r.as_secs_f64());
        raw.push(r);
        journal.push(j);
        api.push(a);
    }
    let micros = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.0}", d.as_secs_f64() * 1e6))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "rounds, µs per step: runtime+journal [{}]; journal API alone [{}]; raw [{}]",
        micros(&journal),
        micros(&api),
        micros(&raw)
    );
    ratios.sort_by(f64::total_cmp);
    let ratio = ratios[ratios.len() / 2];
    let (raw, journal, api) = (median(raw), median(journal), median(api));
    println!(
        "journal cost per completed step: {:.1} µs (journal API alone {:.1} µs); raw SQLite WAL+FULL insert transaction: {:.1} µs; ratio: {:.2} (target ≤ 1.5)",
        journal.as_secs_f64() * 1e6,
        api.as_secs_f64() * 1e6,
        raw.as_secs_f64() * 1e6,
        ratio
    );
    let (api_frames, raw_frames) = pages;
    println!(
        "WAL pages written per step: journal {api_frames:.1}, raw insert {raw_frames:.1} (one fsync each)"
    );
    let resume = median(
        (0..5)
            .map(|_| rt.block_on(resume_time(dir.path())))
            .collect(),
    );
    println!(
        "resume of a {RESUME_STEPS}-step run to the first new activity: {:.1} ms (target ≤ 100 ms)",
        resume.as_secs_f64() * 1e3
    );
}
