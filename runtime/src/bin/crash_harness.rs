//! Crash-test harness: runs a small multi-step workflow whose activities append keyed lines to an
//! external ledger file idempotently (as a cloud API with labels would be).
//!
//! ```text
//! hk8s-crash-harness --journal <db or postgres:// URL> --ledger <file> start|resume <run-id> [--stop-at <n>] [--force]
//!                    [--intent-delay-ms <ms>] [--machine <name>] [--ttl-ms <ms>] [--wait-for-lease]
//!                    [--call-timeout-ms <ms>]
//! ```
//! `--machine <name>` runs as another machine (host name and machine identity `<name>`), so the
//! dead-pid shortcut cannot apply between two harnesses; `--wait-for-lease` polls a run held
//! by another runner until its lease expires, as a worker does, printing `waiting` once.
//! Prints `run <id>`, `call <key> <attempt>` for every activity invocation, `boundary <n> <event>
//! <key> <attempt>` after every journal commit and after every activity return, and
//! `outcome <status>`. With `--stop-at <n>` it freezes right after printing boundary `n`, so the
//! test can SIGKILL it exactly there. Exit codes: 0 succeeded, 3 interrupted, 4 lease held by a
//! live process, 5 lease lost, 1 failed or other error, 2 usage.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use hk8s_journal::Journal;
use hk8s_runtime::{
    CancellationToken, Ctx, Event, ResumeOptions, RetryPolicy, RunId, RunStatus, Runtime,
    RuntimeError, RuntimeOptions, StepError, Workflow, WorkflowError,
};
use serde::{Deserialize, Serialize};

/// The workflow under test: sequential and concurrent steps, a retrying step, a durable sleep.
struct CrashDemo {
    ledger: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Input {
    nodes: Vec<String>,
    sleep_ms: u64,
}

impl CrashDemo {
    /// One idempotent activity: look the key up in the ledger, append it if absent.
    async fn ensure(
        &self,
        ctx: &Ctx,
        key: &str,
        policy: &RetryPolicy,
        fail_first: u32,
    ) -> Result<String, WorkflowError> {
        ctx.step(key, policy, &key, |attempt| async move {
            say(&format!("call {key} {}", attempt.number));
            tokio::time::sleep(Duration::from_millis(2)).await;
            if attempt.number <= fail_first {
                return Err(StepError::retryable(format!(
                    "{key}: locked (attempt {})",
                    attempt.number
                )));
            }
            ensure_line(&self.ledger, key)
                .map_err(|e| StepError::retryable(format!("ledger: {e}")))?;
            tokio::time::sleep(Duration::from_millis(2)).await;
            Ok(format!("id-of-{key}"))
        })
        .await
    }
}

impl Workflow for CrashDemo {
    const NAME: &'static str = "crash-demo";
    const VERSION: u32 = 1;
    type Input = Input;
    type Output = usize;

    async fn run(&self, ctx: &Ctx, input: Input) -> Result<usize, WorkflowError> {
        let policy = RetryPolicy::new()
            .with_initial(Duration::from_millis(10))
            .with_max_interval(Duration::from_millis(40))
            .with_max_attempts(Some(10));
        let mut ids = vec![self.ensure(ctx, "network", &policy, 0).await?];
        let servers = input.nodes.iter().map(|node| {
            let key = format!("server/{node}");
            let policy = &policy;
            async move { self.ensure(ctx, &key, policy, 0).await }
        });
        ids.extend(futures::future::try_join_all(servers).await?);
        ids.push(self.ensure(ctx, "flaky", &policy, 2).await?);
        ctx.sleep("pause", Duration::from_millis(input.sleep_ms))
            .await?;
        ids.push(self.ensure(ctx, "bootstrap", &policy, 0).await?);
        let (cni, csi) = futures::join!(
            self.ensure(ctx, "addon/cni", &policy, 0),
            self.ensure(ctx, "addon/csi", &policy, 0)
        );
        ids.push(cni?);
        ids.push(csi?);
        ids.push(self.ensure(ctx, "kubeconfig", &policy, 0).await?);
        Ok(ids.len())
    }
}

/// Appends `key` to the ledger unless a line equal to it exists.
fn ensure_line(path: &Path, key: &str) -> std::io::Result<()> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    if existing.lines().any(|line| line == key) {
        return Ok(());
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(format!("{key}\n").as_bytes())
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

struct Args {
    journal: PathBuf,
    ledger: PathBuf,
    resume: Option<RunId>,
    stop_at: Option<u32>,
    force: bool,
    sleep_ms: u64,
    intent_delay: Option<Duration>,
    machine: Option<String>,
    ttl: Option<Duration>,
    wait_for_lease: bool,
    call_timeout: Option<Duration>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut journal, mut ledger, mut resume, mut stop_at, mut force, mut sleep_ms) =
        (None, None, None, None, false, 200);
    let mut intent_delay = None;
    let (mut machine, mut ttl, mut wait_for_lease, mut call_timeout) = (None, None, false, None);
    let mut command = None;
    let ms = |value: Option<String>, flag: &str| {
        value
            .and_then(|n| n.parse().ok())
            .map(Duration::from_millis)
            .ok_or(format!("{flag} needs ms"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--journal" => journal = args.next().map(PathBuf::from),
            "--ledger" => ledger = args.next().map(PathBuf::from),
            "--stop-at" => stop_at = args.next().and_then(|n| n.parse().ok()),
            "--sleep-ms" => sleep_ms = args.next().and_then(|n| n.parse().ok()).unwrap_or(200),
            "--force" => force = true,
            "--intent-delay-ms" => {
                let ms = args.next().and_then(|n| n.parse().ok());
                intent_delay = Some(Duration::from_millis(
                    ms.ok_or("--intent-delay-ms needs ms")?,
                ));
            }
            "--machine" => machine = args.next(),
            "--ttl-ms" => ttl = Some(ms(args.next(), "--ttl-ms")?),
            "--call-timeout-ms" => call_timeout = Some(ms(args.next(), "--call-timeout-ms")?),
            "--wait-for-lease" => wait_for_lease = true,
            "start" => command = Some("start"),
            "resume" => {
                command = Some("resume");
                let id = args.next().ok_or("resume needs a run id")?;
                resume = Some(id.parse().map_err(|e| format!("bad run id {id}: {e}"))?);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if command.is_none() {
        return Err("expected start or resume <run-id>".into());
    }
    Ok(Args {
        journal: journal.ok_or("--journal is required")?,
        ledger: ledger.ok_or("--ledger is required")?,
        resume,
        stop_at,
        force,
        sleep_ms,
        intent_delay,
        machine,
        ttl,
        wait_for_lease,
        call_timeout,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("usage error: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start tokio: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let location = hk8s_journal::Location::parse(args.journal.as_os_str());
    let mut opts = hk8s_journal::OpenOptions::default();
    if let Some(timeout) = args.call_timeout {
        opts.call_timeout = timeout;
    }
    let journal = match Journal::open_location(&location, opts) {
        Ok(j) => Arc::new(j),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let cancel = CancellationToken::new();
    let signal_token = cancel.clone();
    tokio::spawn(async move {
        hk8s_runtime::shutdown_signal().await;
        signal_token.cancel();
    });
    let boundaries = Arc::new(AtomicU32::new(0));
    let stop_at = args.stop_at;
    let observer = Arc::new(move |event: &Event| {
        let detail = match event {
            Event::AttemptRecorded { attempt, .. }
            | Event::AttemptFailed { attempt, .. }
            | Event::StepCompleted { attempt, .. } => attempt.to_string(),
            Event::ActivityReturned { attempt, ok, .. } => format!("{attempt} {ok}"),
            Event::StepFailed { attempts, .. } => attempts.to_string(),
            _ => return,
        };
        let n = boundaries.fetch_add(1, Ordering::SeqCst) + 1;
        say(&format!(
            "boundary {n} {} {} {detail}",
            event.name(),
            event.key()
        ));
        if stop_at == Some(n) {
            // Freeze the (single-threaded) runtime right here until the test kills us.
            loop {
                std::thread::park();
            }
        }
    });
    let mut owner = hk8s_journal::Owner::current();
    if let Some(machine) = &args.machine {
        owner.host.clone_from(machine);
        owner.machine.clone_from(machine);
    }
    let lease_ttl = args.ttl.unwrap_or(RuntimeOptions::default().lease_ttl);
    let runtime = Runtime::new(
        journal,
        RuntimeOptions {
            cancel,
            owner,
            lease_ttl,
            observer: Some(observer),
            grace: Duration::from_secs(2),
            intent_delay: args
                .intent_delay
                .unwrap_or(hk8s_runtime::DEFAULT_INTENT_DELAY),
            ..RuntimeOptions::default()
        },
    );
    let workflow = CrashDemo {
        ledger: args.ledger.clone(),
    };
    let run_id = match args.resume {
        Some(id) => id,
        None => {
            let input = Input {
                nodes: vec!["cp-1".into(), "cp-2".into(), "cp-3".into()],
                sleep_ms: args.sleep_ms,
            };
            match runtime.create(&workflow, "crash", &input) {
                Ok(id) => id,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(1);
                }
            }
        }
    };
    say(&format!("run {run_id}"));
    let mut waiting = false;
    let outcome = loop {
        let outcome = runtime
            .execute(&workflow, &run_id, ResumeOptions { force: args.force })
            .await;
        match outcome {
            Err(RuntimeError::LeaseHeld { .. }) if args.wait_for_lease => {
                if !waiting {
                    say("waiting");
                    waiting = true;
                }
                tokio::time::sleep(lease_ttl / 20).await;
            }
            other => break other,
        }
    };
    match outcome {
        Ok(outcome) => {
            say(&format!("outcome {}", outcome.status.as_str()));
            match outcome.status {
                RunStatus::Succeeded => ExitCode::SUCCESS,
                RunStatus::Interrupted => ExitCode::from(3),
                _ => {
                    eprintln!("error: {}", outcome.error.unwrap_or_default());
                    ExitCode::from(1)
                }
            }
        }
        Err(RuntimeError::RunFinished {
            status: RunStatus::Succeeded,
            ..
        }) => {
            // A previous process finished the run and was killed before it could exit.
            say("outcome succeeded");
            ExitCode::SUCCESS
        }
        Err(e @ RuntimeError::LeaseHeld { .. }) => {
            eprintln!("error: {e}");
            ExitCode::from(4)
        }
        Err(e @ RuntimeError::LeaseLost { .. }) => {
            eprintln!("error: {e}");
            ExitCode::from(5)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
