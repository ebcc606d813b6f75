//! [`Runtime`]: creates, executes and resumes runs of a [`Workflow`].

use std::error::Error as _;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hk8s_journal::{Journal, JournalError, NewRun, Owner, RunId, RunStatus};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::ctx::{Ctx, CtxParts};
use crate::error::{RuntimeError, WorkflowError};
use crate::event::Observer;
use crate::lease;
use crate::secret::Scrubber;

/// A durable workflow: ordinary async Rust that calls [`Ctx::step`] and [`Ctx::sleep`].
///
/// The input is journaled with the run (it must hold no secrets: [`Secret`](crate::Secret) is
/// not `Serialize`) and read back on resume. Bump [`Workflow::VERSION`] whenever a change would
/// make old journals replay wrongly (step keys, inputs or output types); runs recorded by another
/// version are refused on resume.
pub trait Workflow: Send + Sync {
    /// Journaled name, e.g. `create-cluster`.
    const NAME: &'static str;
    /// Journaled version; resume requires equality.
    const VERSION: u32;
    /// The run input, journaled at creation.
    type Input: Serialize + DeserializeOwned + Send + Sync;
    /// What a successful run returns (not journaled: a replay recomputes it).
    type Output: Send;

    /// The workflow body.
    fn run(
        &self,
        ctx: &Ctx,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, WorkflowError>> + Send;
}

/// Settings of a [`Runtime`].
#[derive(Clone)]
pub struct RuntimeOptions {
    /// Lease duration; the heartbeat renews it every third of it. Default 30 s.
    pub lease_ttl: Duration,
    /// How long in-flight activities may run on after shutdown is requested. Default 10 s.
    pub grace: Duration,
    /// Source of time and waits. Default [`SystemClock`].
    pub clock: Arc<dyn Clock>,
    /// Cancel to request shutdown (connect it to [`shutdown_signal`](crate::shutdown_signal)).
    pub cancel: CancellationToken,
    /// Secret values cut out of every journaled or returned message.
    pub scrubber: Scrubber,
    /// Receives progress [`Event`](crate::Event)s.
    pub observer: Option<Observer>,
    /// This process as lease owner. Default [`Owner::current`].
    pub owner: Owner,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            lease_ttl: Duration::from_secs(30),
            grace: Duration::from_secs(10),
            clock: Arc::new(SystemClock),
            cancel: CancellationToken::new(),
            scrubber: Scrubber::new(),
            observer: None,
            owner: Owner::current(),
        }
    }
}

impl std::fmt::Debug for RuntimeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeOptions")
            .field("lease_ttl", &self.lease_ttl)
            .field("grace", &self.grace)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// How to take a run that another process may hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResumeOptions {
    /// Take the run over even if its lease is held by a live process.
    pub force: bool,
}

/// How a run ended in this process.
#[derive(Debug)]
pub struct RunOutcome<O> {
    /// The run.
    pub run_id: RunId,
    /// `Succeeded`, `Failed` or `Interrupted` (as journaled).
    pub status: RunStatus,
    /// The workflow output, when `Succeeded`.
    pub output: Option<O>,
    /// The scrubbed error message, when `Failed` or `Interrupted`.
    pub error: Option<String>,
}

/// Message journaled for an interrupted run.
pub const INTERRUPTED_MESSAGE: &str = "interrupted by a shutdown request";

/// Executes workflows against a journal.
///
/// Entry points: [`Runtime::create`] journals a run and returns its id (print it before the work
/// starts), [`Runtime::execute`] runs or resumes it; [`Runtime::start`] does both.
pub struct Runtime {
    journal: Arc<Journal>,
    opts: RuntimeOptions,
}

impl Runtime {
    /// A runtime over `journal`.
    pub fn new(journal: Arc<Journal>, opts: RuntimeOptions) -> Runtime {
        Runtime { journal, opts }
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// The secret registry shared with every run.
    pub fn scrubber(&self) -> &Scrubber {
        &self.opts.scrubber
    }

    /// The token that requests shutdown.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.opts.cancel
    }

    /// Journals a new run of `workflow` for `cluster` with `input` and returns its id.
    ///
    /// # Errors
    /// [`RuntimeError::InputEncode`], [`RuntimeError::SecretInInput`], [`RuntimeError::Journal`].
    pub fn create<W: Workflow>(
        &self,
        _workflow: &W,
        cluster: &str,
        input: &W::Input,
    ) -> Result<RunId, RuntimeError> {
        let input = serde_json::to_value(input).map_err(|source| RuntimeError::InputEncode { source })?;
        if self.opts.scrubber.contains_secret(&input.to_string()) {
            return Err(RuntimeError::SecretInInput);
        }
        let id = RunId::new();
        let run = NewRun {
            id,
            workflow: W::NAME.to_string(),
            workflow_version: W::VERSION,
            cluster: cluster.to_string(),
            input,
        };
        self.journal
            .create_run(&run, self.opts.clock.now())
            .map_err(|source| RuntimeError::Journal {
                operation: "create run",
                source,
            })?;
        Ok(id)
    }

    /// Creates a run and executes it.
    ///
    /// # Errors
    /// As [`Runtime::create`] and [`Runtime::execute`].
    pub async fn start<W: Workflow>(
        &self,
        workflow: &W,
        cluster: &str,
        input: &W::Input,
    ) -> Result<RunOutcome<W::Output>, RuntimeError> {
        let run = self.create(workflow, cluster, input)?;
        self.execute(workflow, &run, ResumeOptions::default()).await
    }

    /// Resumes a run: the same as [`Runtime::execute`].
    ///
    /// # Errors
    /// As [`Runtime::execute`].
    pub async fn resume<W: Workflow>(
        &self,
        workflow: &W,
        run: &RunId,
        opts: ResumeOptions,
    ) -> Result<RunOutcome<W::Output>, RuntimeError> {
        self.execute(workflow, run, opts).await
    }

    /// Executes (or resumes) run `run` of `workflow` until it succeeds, fails, is interrupted,
    /// or the lease is lost.
    ///
    /// # Flow
    /// 1. The run's workflow name and version must equal the code's; a succeeded or cancelled
    ///    run is refused.
    /// 2. The lease is taken: free or expired → taken; held by a dead pid on this host → taken
    ///    over at once; held by a live process → refused naming it, unless `opts.force`.
    /// 3. The journal is read once (run, steps, attempts) and the input decoded; a heartbeat
    ///    renews the lease every `lease_ttl / 3`.
    /// 4. The workflow runs; finished steps replay from the journal.
    /// 5. The run is finished: `succeeded`; `interrupted` if shutdown was requested (never
    ///    `failed`); `failed` with the scrubbed error otherwise. The lease is released.
    ///
    /// # Errors
    /// [`RuntimeError::LeaseHeld`], [`RuntimeError::LeaseLost`] (nothing more was written),
    /// [`RuntimeError::WrongWorkflow`], [`RuntimeError::VersionMismatch`],
    /// [`RuntimeError::RunFinished`], [`RuntimeError::InputDecode`], [`RuntimeError::Journal`].
    /// A failing workflow is not an error: it is `Ok` with status `Failed`.
    pub async fn execute<W: Workflow>(
        &self,
        workflow: &W,
        run: &RunId,
        opts: ResumeOptions,
    ) -> Result<RunOutcome<W::Output>, RuntimeError> {
        let peek = self.load(run)?;
        if peek.run.workflow != W::NAME {
            return Err(RuntimeError::WrongWorkflow {
                run: *run,
                recorded: peek.run.workflow,
                requested: W::NAME.to_string(),
            });
        }
        if peek.run.workflow_version != W::VERSION {
            return Err(RuntimeError::VersionMismatch {
                run: *run,
                workflow: peek.run.workflow,
                recorded: peek.run.workflow_version,
                current: W::VERSION,
            });
        }
        if matches!(peek.run.status, RunStatus::Succeeded | RunStatus::Cancelled) {
            return Err(RuntimeError::RunFinished {
                run: *run,
                status: peek.run.status,
            });
        }
        drop(peek);
        let clock = Arc::clone(&self.opts.clock);
        let acquired = lease::acquire(
            &self.journal,
            run,
            &self.opts.owner,
            clock.as_ref(),
            self.opts.lease_ttl,
            opts.force,
        )?;
        let shared_lease = Arc::new(Mutex::new(acquired));
        // Read after the lease is ours, so no other process changes the run under us.
        let state = self.load(run)?;
        let input: W::Input = match serde_json::from_value(state.run.input.clone()) {
            Ok(input) => input,
            Err(source) => {
                let lease = lease::current(&shared_lease);
                let message = format!("the journaled input does not decode: {source}");
                // Best effort: the run cannot proceed; leave it failed with the reason.
                let _ = self
                    .journal
                    .finish_run(&lease, RunStatus::Failed, Some(&message), clock.now());
                return Err(RuntimeError::InputDecode { run: *run, source });
            }
        };
        let lease_lost = CancellationToken::new();
        let heartbeat_stop = CancellationToken::new();
        let heartbeat = tokio::spawn(lease::heartbeat(
            Arc::clone(&self.journal),
            Arc::clone(&shared_lease),
            Arc::clone(&clock),
            self.opts.lease_ttl,
            heartbeat_stop.clone(),
            lease_lost.clone(),
        ));
        let ctx = Ctx::new(
            CtxParts {
                run_id: *run,
                journal: Arc::clone(&self.journal),
                lease: Arc::clone(&shared_lease),
                clock: Arc::clone(&clock),
                scrubber: self.opts.scrubber.clone(),
                observer: self.opts.observer.clone(),
                cancel: self.opts.cancel.clone(),
                lease_lost: lease_lost.clone(),
                grace: self.opts.grace,
            },
            state,
        );
        let result = {
            let body = workflow.run(&ctx, input);
            // Backstop for workflows that await outside steps: after a shutdown request they get
            // twice the grace period, then they are dropped (open attempts are then recorded as
            // interrupted by their guards).
            let backstop = async {
                self.opts.cancel.cancelled().await;
                clock.sleep(self.opts.grace * 2).await;
            };
            tokio::select! {
                result = body => result,
                () = lease_lost.cancelled() => Err(WorkflowError::LeaseLost { run: *run }),
                () = backstop => Err(WorkflowError::Interrupted),
            }
        };
        drop(ctx);
        heartbeat_stop.cancel();
        let _ = heartbeat.await;
        if lease_lost.is_cancelled() || matches!(result, Err(WorkflowError::LeaseLost { .. })) {
            return Err(RuntimeError::LeaseLost { run: *run });
        }
        let (status, output, error) = match result {
            Ok(output) => (RunStatus::Succeeded, Some(output), None),
            Err(WorkflowError::Interrupted) => {
                (RunStatus::Interrupted, None, Some(INTERRUPTED_MESSAGE.to_string()))
            }
            Err(_) if self.opts.cancel.is_cancelled() => {
                (RunStatus::Interrupted, None, Some(INTERRUPTED_MESSAGE.to_string()))
            }
            Err(error) => (
                RunStatus::Failed,
                None,
                Some(self.opts.scrubber.scrub(&error_chain(&error))),
            ),
        };
        let lease = lease::current(&shared_lease);
        match self
            .journal
            .finish_run(&lease, status, error.as_deref(), clock.now())
        {
            Ok(()) => {}
            Err(JournalError::Fenced { .. }) => return Err(RuntimeError::LeaseLost { run: *run }),
            Err(source) => {
                return Err(RuntimeError::Journal {
                    operation: "finish run",
                    source,
                });
            }
        }
        Ok(RunOutcome {
            run_id: *run,
            status,
            output,
            error,
        })
    }

    fn load(&self, run: &RunId) -> Result<hk8s_journal::RunState, RuntimeError> {
        self.journal
            .load_run(run)
            .map_err(|source| RuntimeError::Journal {
                operation: "load run",
                source,
            })
    }
}

/// The error's message followed by its sources, joined by `: `.
fn error_chain(error: &WorkflowError) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
