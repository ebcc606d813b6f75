//! `hk8s history`: the runs in the journal, or one run's steps and every attempt.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use hk8s_journal::{Journal, RunFilter, RunRecord, RunState, RunStatus};

use crate::args::{HistoryArgs, OutputFormat};
use crate::exit::{Failure, usage};

/// Opens the journal named by `--journal`/`HK8S_JOURNAL` (a file, or a `postgres://` URL), or
/// the default one.
pub fn open_journal(path: &Option<PathBuf>) -> Result<Journal, Failure> {
    let location = match path {
        Some(p) => hk8s_journal::Location::parse(p.as_os_str()),
        None => hk8s_journal::Location::Sqlite(
            crate::state::default_journal_path()
                .context("cannot locate the journal")
                .map_err(usage)?,
        ),
    };
    Journal::open_location(&location, hk8s_journal::OpenOptions::default())
        .map_err(|e| Failure::Other(anyhow::Error::new(e)))
}

/// Runs `hk8s history`.
pub fn history(
    journal: &Option<PathBuf>,
    output: OutputFormat,
    args: &HistoryArgs,
) -> Result<ExitCode, Failure> {
    let journal = open_journal(journal)?;
    match &args.id {
        Some(id) => {
            let run = journal
                .resolve_run(id)
                .map_err(|e| usage(anyhow::Error::new(e)))?;
            let state = journal.load_run(&run).context("cannot read the run")?;
            match output {
                OutputFormat::Json => println!("{}", run_json(&state)),
                OutputFormat::Text => print_run(&state),
            }
        }
        None => {
            let status = match &args.status {
                Some(s) => Some(parse_status(s).map_err(usage)?),
                None => None,
            };
            let filter = RunFilter {
                cluster: args.cluster.clone(),
                workflow: args.workflow.clone(),
                status,
                limit: Some(args.limit),
            };
            let runs = journal.list_runs(&filter).context("cannot list runs")?;
            match output {
                OutputFormat::Json => {
                    let list: Vec<_> = runs.iter().map(run_summary_json).collect();
                    println!("{}", serde_json::Value::Array(list));
                }
                OutputFormat::Text => print_runs(&runs),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_status(s: &str) -> anyhow::Result<RunStatus> {
    RunStatus::ALL
        .iter()
        .copied()
        .find(|st| st.as_str() == s)
        .with_context(|| {
            let known: Vec<_> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
            format!(
                "--status: unknown status {s:?} (known: {})",
                known.join(", ")
            )
        })
}

fn duration(from: DateTime<Utc>, to: Option<DateTime<Utc>>) -> String {
    let Some(to) = to else { return String::new() };
    let ms = (to - from).num_milliseconds().max(0);
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 120_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

fn print_runs(runs: &[RunRecord]) {
    if runs.is_empty() {
        println!("no runs");
        return;
    }
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY);
    table.set_header([
        "RUN", "WORKFLOW", "CLUSTER", "STATUS", "STARTED", "DURATION", "RESUMES", "HELD BY",
    ]);
    for run in runs {
        let held = match (&run.owner, run.status) {
            (Some(o), RunStatus::Running) => holder(o, run.lease_expires_at),
            _ => String::new(),
        };
        table.add_row([
            run.id.to_string(),
            run.workflow.clone(),
            run.cluster.clone(),
            run.status.as_str().to_string(),
            run.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            duration(run.created_at, run.finished_at.or(Some(run.updated_at))),
            run.resume_count.to_string(),
            held,
        ]);
    }
    println!("{table}");
}

fn print_run(state: &RunState) {
    let run = &state.run;
    println!("run       {}", run.id);
    println!(
        "workflow  {} (version {})",
        run.workflow, run.workflow_version
    );
    println!("cluster   {}", run.cluster);
    println!("status    {}", run.status.as_str());
    println!(
        "started   {}",
        run.created_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    if let Some(f) = run.finished_at {
        println!(
            "finished  {} ({})",
            f.format("%Y-%m-%d %H:%M:%S UTC"),
            duration(run.created_at, Some(f))
        );
    }
    println!("resumes   {}", run.resume_count);
    if let Some(e) = &run.error {
        println!("error     {e}");
    }
    if matches!(run.status, RunStatus::Interrupted | RunStatus::Failed) {
        println!("resume    hk8s resume {}", run.id);
    }
    for lock in lock_holders(state) {
        println!("lock      {lock}");
    }
    let mut steps = state.steps.clone();
    steps.sort_by_key(|s| s.seq);
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY);
    table.set_header(["#", "STEP", "STATUS", "ATTEMPTS", "DURATION", "LAST ERROR"]);
    for step in &steps {
        table.add_row([
            step.seq.to_string(),
            step.key.clone(),
            step.status.as_str().to_string(),
            step.attempts.to_string(),
            duration(step.started_at, step.finished_at),
            step.error.clone().unwrap_or_default(),
        ]);
    }
    println!("{table}");
    let retried: Vec<_> = state
        .attempts
        .iter()
        .filter(|a| a.message.is_some())
        .collect();
    if !retried.is_empty() {
        println!("failed attempts:");
        for a in retried {
            let retry = a
                .retry_at
                .map(|t| format!(", retry at {}", t.format("%H:%M:%S%.3f")))
                .unwrap_or_default();
            println!(
                "  {} #{}: {}{retry}",
                a.step_key,
                a.attempt,
                a.message.as_deref().unwrap_or_default()
            );
        }
    }
}

/// Who held the cluster lock in each execution of the run (the `cloud-lock/…` steps).
fn lock_holders(state: &RunState) -> Vec<String> {
    let mut steps: Vec<_> = state
        .steps
        .iter()
        .filter(|s| s.key.starts_with("cloud-lock/"))
        .collect();
    steps.sort_by_key(|s| s.seq);
    steps
        .into_iter()
        .filter_map(|s| {
            let r: hk8s_workflows::cluster_lock::LockRecord =
                serde_json::from_value(s.output.clone()?).ok()?;
            let took_over = r
                .took_over
                .map(|t| format!(", taken over from {t}"))
                .unwrap_or_default();
            Some(format!(
                "{} (placement group {}) held by run {} on host {} from {}{took_over}",
                r.name,
                r.id,
                r.run,
                r.host,
                s.started_at.format("%Y-%m-%d %H:%M:%S UTC")
            ))
        })
        .collect()
}

fn run_summary_json(run: &RunRecord) -> serde_json::Value {
    serde_json::json!({
        "run_id": run.id.to_string(),
        "workflow": run.workflow,
        "workflow_version": run.workflow_version,
        "cluster": run.cluster,
        "status": run.status.as_str(),
        "error": run.error,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "resume_count": run.resume_count,
        "dedup_key": run.dedup_key,
        "stalled_claims": run.stalled_claims,
        "holder": run.owner.as_ref().map(|o| serde_json::json!({
            "host": o.host,
            "pid": o.pid,
            "machine": o.machine,
            "owner_id": o.id,
            "lease_expires_at": run.lease_expires_at,
        })),
    })
}

/// Which runner holds a run: "pid 42 on ops-2 (machine <boot id>/pidns:…), lease until …"
/// (an expired lease says so: a worker may claim the run).
fn holder(owner: &hk8s_journal::Owner, expires: Option<DateTime<Utc>>) -> String {
    let mut out = format!("pid {} on {}", owner.pid, owner.host);
    if !owner.machine.is_empty() {
        let short: String = owner.machine.chars().take(8).collect();
        out.push_str(&format!(" (machine {short}…)"));
    }
    if let Some(at) = expires {
        if at <= Utc::now() {
            out.push_str(", lease expired");
        } else {
            out.push_str(&format!(", lease until {}", at.format("%H:%M:%S")));
        }
    }
    out
}

fn run_json(state: &RunState) -> serde_json::Value {
    let mut value = run_summary_json(&state.run);
    let steps: Vec<_> = state
        .steps
        .iter()
        .map(|s| {
            let attempts: Vec<_> = state
                .attempts_of(&s.key)
                .map(|a| {
                    serde_json::json!({
                        "attempt": a.attempt,
                        "started_at": a.started_at,
                        "ended_at": a.ended_at,
                        "outcome": a.outcome.map(|o| match o {
                            hk8s_journal::AttemptOutcome::Succeeded => "succeeded".to_string(),
                            hk8s_journal::AttemptOutcome::Failed(class) => class.as_str().to_string(),
                        }),
                        "message": a.message,
                        "retry_at": a.retry_at,
                    })
                })
                .collect();
            serde_json::json!({
                "seq": s.seq,
                "key": s.key,
                "status": s.status.as_str(),
                "attempts": attempts,
                "error": s.error,
                "started_at": s.started_at,
                "finished_at": s.finished_at,
            })
        })
        .collect();
    value["steps"] = serde_json::Value::Array(steps);
    value["locks"] = serde_json::Value::Array(
        state
            .steps
            .iter()
            .filter(|s| s.key.starts_with("cloud-lock/"))
            .filter_map(|s| s.output.clone())
            .collect(),
    );
    value
}
