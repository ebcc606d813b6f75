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

const STEPS: u32 = 300;
const RESUME_STEPS: u32 = 1000;
const ROUNDS: usize = 5;

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

fn raw_insert_per_txn(dir: &std::path::Path, n: u32) -> Duration {
    let conn = rusqlite::Connection::open(dir.join(format!("raw-{}.db", rand::random::<u32>())))
        .expect("open raw db");
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
    start.elapsed() / n
}

async fn journal_per_step(dir: &std::path::Path, n: u32) -> Duration {
    let journal = Arc::new(
        Journal::open(&dir.join(format!("journal-{}.db", rand::random::<u32>()))).expect("open"),
    );
    let runtime = Runtime::new(journal, RuntimeOptions::default());
    let workflow = Steps { tail: None };
    let run = runtime
        .create(&workflow, "bench", &Input { steps: n })
        .expect("create");
    let start = Instant::now();
    let out = runtime
        .execute(&workflow, &run, ResumeOptions::default())
        .await
        .expect("execute");
    let elapsed = start.elapsed();
    assert_eq!(out.status, RunStatus::Succeeded);
    elapsed / n
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
    let (mut raw, mut journal) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        raw.push(raw_insert_per_txn(dir.path(), STEPS));
        journal.push(rt.block_on(journal_per_step(dir.path(), STEPS)));
    }
    let micros = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.0}", d.as_secs_f64() * 1e6))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "rounds, µs per step: journal [{}], raw [{}]",
        micros(&journal),
        micros(&raw)
    );
    let (raw, journal) = (median(raw), median(journal));
    let ratio = journal.as_secs_f64() / raw.as_secs_f64();
    println!(
        "journal cost per completed step: {:.1} µs; raw SQLite WAL+FULL insert transaction: {:.1} µs; ratio: {:.2} (target ≤ 1.5)",
        journal.as_secs_f64() * 1e6,
        raw.as_secs_f64() * 1e6,
        ratio
    );
    let resume = median(
        (0..ROUNDS)
            .map(|_| rt.block_on(resume_time(dir.path())))
            .collect(),
    );
    println!(
        "resume of a {RESUME_STEPS}-step run to the first new activity: {:.1} ms (target ≤ 100 ms)",
        resume.as_secs_f64() * 1e3
    );
}
