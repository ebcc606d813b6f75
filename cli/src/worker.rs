//! `hk8s worker`: claims runs from the journal's queue (and runs whose holder stopped renewing
//! its lease) and drives each like `hk8s resume`, until SIGTERM; also this process's identity
//! as a runner (`HK8S_HOST_ID`, `HK8S_MACHINE_ID`, `HK8S_LEASE_TTL_SECS`).
//!
//! A SIGTERM stops the current run's steps within the grace period and puts the run back in the
//! queue (lease released, status `queued`), so another worker continues it at once; a second
//! signal exits at once (the run's lease then expires and another worker claims it). A run that
//! was claimed five times without a completed step is failed by the next claim
//! (`hk8s_journal::MAX_STALLED_CLAIMS`), and the worker says so.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use hk8s_journal::Claim;
use tokio_util::sync::CancellationToken;

use crate::args::{LogFormat, OutputFormat, WorkerArgs};
use crate::exit::{self, Failure, usage};
use crate::history::open_journal;
use crate::runner::{WorkerSettings, runner_env};

/// Runs `hk8s worker`.
pub async fn work(
    journal_arg: &Option<PathBuf>,
    output: OutputFormat,
    log_format: Option<LogFormat>,
    api_timeout: Duration,
    args: &WorkerArgs,
) -> Result<ExitCode, Failure> {
    if !(args.poll.is_finite() && (0.05..=3600.0).contains(&args.poll)) {
        return Err(usage(anyhow!(
            "--poll: {} is not a number of seconds between 0.05 and 3600",
            args.poll
        )));
    }
    let poll = Duration::from_secs_f64(args.poll);
    let runner = runner_env()?;
    let settings = WorkerSettings {
        owner: runner.owner,
        lease_ttl: runner
            .lease_ttl
            .unwrap_or(hk8s_runtime::RuntimeOptions::default().lease_ttl),
        cancel: CancellationToken::new(),
    };
    let journal = open_journal(journal_arg)?;
    let cancel = settings.cancel.clone();
    tokio::spawn(async move {
        hk8s_runtime::shutdown_signal().await;
        cancel.cancel();
        hk8s_runtime::shutdown_signal().await;
        std::process::exit(i32::from(exit::INTERRUPTED));
    });
    let me = &settings.owner;
    eprintln!(
        "worker pid {} on {} (machine {}) claims runs from {}",
        me.pid,
        me.host,
        me.machine,
        journal.location()
    );
    let mut done = 0_u32;
    while !settings.cancel.is_cancelled() {
        if args.max_runs.is_some_and(|max| done >= max) {
            break;
        }
        let claim = journal.claim_run(me, chrono::Utc::now(), settings.lease_ttl);
        match claim {
            Ok(Some(Claim::Run {
                run,
                workflow,
                cluster,
            })) => {
                eprintln!("worker: claimed run {run} ({workflow} {cluster})");
                let result = crate::run::resume(
                    journal_arg,
                    output,
                    log_format,
                    api_timeout,
                    &run.to_string(),
                    false,
                    Some(&settings),
                )
                .await;
                done += 1;
                match result {
                    Ok(code) => eprintln!("worker: run {run} ended ({code:?})"),
                    Err(failure) => {
                        // The run could not start here (the cloud lock is still held by a
                        // holder that died, the token was refused…): the claim lapses, the
                        // next claim tries again, and five in a row give the run up.
                        let why = match &failure {
                            Failure::Usage(e) | Failure::Held(e) | Failure::Other(e) => {
                                format!("{e:#}")
                            }
                        };
                        eprintln!("worker: run {run} did not run here: {why}");
                        let stalled = !matches!(failure, Failure::Held(_));
                        if let Err(e) = journal.release_claim(&run, me, chrono::Utc::now(), stalled)
                        {
                            eprintln!("worker: cannot release the claim on {run}: {e}");
                        }
                        wait(&settings.cancel, poll).await;
                    }
                }
            }
            Ok(Some(Claim::GaveUp { run, claims })) => {
                eprintln!(
                    "worker: gave up on run {run}: claimed {claims} times without progress; \
                     it is failed (hk8s history {run}; hk8s resume {run} tries again)"
                );
            }
            Ok(None) => {
                if args.exit_when_idle {
                    break;
                }
                wait(&settings.cancel, poll).await;
            }
            Err(e) => {
                eprintln!("worker: cannot claim a run: {e}; trying again");
                wait(&settings.cancel, poll).await;
            }
        }
    }
    eprintln!("worker: stopping after {done} run(s)");
    Ok(ExitCode::SUCCESS)
}

/// Sleeps `poll` plus up to a tenth more (so workers started together spread out), or until
/// shutdown.
async fn wait(cancel: &CancellationToken, poll: Duration) {
    let jitter = poll.mul_f64(rand::random::<f64>() / 10.0);
    tokio::select! {
        () = tokio::time::sleep(poll + jitter) => {}
        () = cancel.cancelled() => {}
    }
}
