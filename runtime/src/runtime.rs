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
    /// How long an attempt runs before its start is journaled on its own (an intent record, no
    /// fsync), so `history` shows it running and a crash leaves it as an abandoned attempt.
    /// An attempt that ends sooner is journaled once, start and outcome in one commit (two WAL
    /// pages instead of three). Zero journals every start before its activity runs. Default
    /// 100 ms.
    pub intent_delay: Duration,
    /// The status a run stopped by a shutdown request is left in: `interrupted` (a person
    /// resumes it; the default) or `queued` (a worker's run, put back for the next worker).
    pub on_shutdown: RunStatus,
}

/// Default [`RuntimeOptions::intent_delay`]: a step quicker than this (a local computation, a
/// fast API read) costs one commit; anything slower is visible as running in the journal.
pub const DEFAULT_INTENT_DELAY: Duration = Duration::from_millis(100);

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
            intent_delay: DEFAULT_INTENT_DELAY,
            on_shutdown: RunStatus::Interrupted,
        }
    }
}

impl std::fmt::Debug for RuntimeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeOptions")
            .field("lease_ttl", &self.lease_ttl)
            .field("grace", &self.grace)
            .field("owner", &self.owner)
            .field("intent_delay", &self.intent_delay)
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
///
/// Journal calls are synchronous and made on the calling task (one fsync per completed step,
/// well under the cost of any cloud call); use a multi-threaded tokio runtime when steps run
/// concurrently.
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
        workflow: &W,
        cluster: &str,
        input: &W::Input,
    ) -> Result<RunId, RuntimeError> {
        self.create_with_id(workflow, RunId::new(), cluster, input)
    }

    /// Journals a new run with an id chosen beforehand (the CLI names the run in the cluster
    /// lock it takes before journaling anything), as [`Runtime::create`].
    ///
    /// # Errors
    /// As [`Runtime::create`].
    pub fn create_with_id<W: Workflow>(
        &self,
        _workflow: &W,
        id: RunId,
        cluster: &str,
        input: &W::Input,
    ) -> Result<RunId, RuntimeError> {
        let input =
            serde_json::to_value(input).map_err(|source| RuntimeError::InputEncode { source })?;
        if self.opts.scrubber.contains_secret(&input.to_string()) {
            return Err(RuntimeError::SecretInInput);
        }
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

    /// Journals a new run of `workflow` in the queue (status `queued`) for a worker to claim.
    /// With `dedup`, an active run with that key is returned instead (`created` false).
    ///
    /// # Errors
    /// As [`Runtime::create`]; [`RuntimeError::Journal`] with
    /// [`JournalError::ClusterBusy`] when the cluster has another active run.
    pub fn enqueue<W: Workflow>(
        &self,
        _workflow: &W,
        cluster: &str,
        input: &W::Input,
        dedup: Option<&str>,
    ) -> Result<hk8s_journal::Enqueued, RuntimeError> {
        let input =
            serde_json::to_value(input).map_err(|source| RuntimeError::InputEncode { source })?;
        if self.opts.scrubber.contains_secret(&input.to_string()) {
            return Err(RuntimeError::SecretInInput);
        }
        let run = NewRun {
            id: RunId::new(),
            workflow: W::NAME.to_string(),
            workflow_version: W::VERSION,
            cluster: cluster.to_string(),
            input,
        };
        self.journal
            .enqueue_run(&run, dedup, self.opts.clock.now())
            .map_err(|source| RuntimeError::Journal {
                operation: "enqueue run",
                source,
            })
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
                let _ =
                    self.journal
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
                intent_delay: self.opts.intent_delay,
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
        // An unreachable journal is no verdict on the run: leave it running under its lease,
        // which expires, so this process (resumed) or another runner takes it on.
        if let Err(WorkflowError::Journal {
            source: source @ JournalError::Unreachable { .. },
            ..
        }) = result
        {
            return Err(RuntimeError::Journal {
                operation: "journal a step",
                source,
            });
        }
        let (status, output, error) = match result {
            Ok(output) => (RunStatus::Succeeded, Some(output), None),
            Err(WorkflowError::Interrupted) => (
                self.opts.on_shutdown,
                None,
                Some(INTERRUPTED_MESSAGE.to_string()),
            ),
            Err(_) if self.opts.cancel.is_cancelled() => (
                self.opts.on_shutdown,
                None,
                Some(INTERRUPTED_MESSAGE.to_string()),
            ),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use chrono::{DateTime, Utc};
    use hk8s_journal::{AttemptOutcome, FailureKind, StepStatus, Takeover};

    use super::*;
    use crate::clock::SimClock;
    use crate::error::StepError;
    use crate::event::Event;
    use crate::policy::RetryPolicy;

    /// What a scripted activity does on a given attempt.
    #[derive(Clone)]
    enum Act {
        Ok(u64),
        Fail(StepError),
        Hang,
        Delay(Duration, u64),
    }

    type Script = Arc<dyn Fn(&str, u32) -> Act + Send + Sync>;

    /// A test workflow: runs `keys` (sequentially or concurrently) through a script that counts
    /// calls, then an optional durable sleep; returns the sum of the outputs.
    #[derive(Clone)]
    struct Flow<const V: u32 = 1> {
        keys: Vec<String>,
        concurrent: bool,
        salt: u64,
        sleep: Option<Duration>,
        policy: RetryPolicy,
        script: Script,
        calls: Arc<Mutex<HashMap<String, u32>>>,
    }

    impl<const V: u32> Flow<V> {
        fn new(keys: &[&str], script: impl Fn(&str, u32) -> Act + Send + Sync + 'static) -> Self {
            Flow {
                keys: keys.iter().map(|k| k.to_string()).collect(),
                concurrent: false,
                salt: 0,
                sleep: None,
                policy: RetryPolicy::new()
                    .with_initial(Duration::from_secs(1))
                    .with_jitter(false)
                    .with_max_attempts(Some(5)),
                script: Arc::new(script),
                calls: Arc::default(),
            }
        }

        fn calls(&self, key: &str) -> u32 {
            self.calls.lock().unwrap().get(key).copied().unwrap_or(0)
        }

        async fn one(&self, ctx: &Ctx, key: &str) -> Result<u64, WorkflowError> {
            ctx.step(key, &self.policy, &(key, self.salt), |attempt| {
                *self
                    .calls
                    .lock()
                    .unwrap()
                    .entry(key.to_string())
                    .or_default() += 1;
                let act = (self.script)(key, attempt.number);
                async move {
                    match act {
                        Act::Ok(v) => Ok(v),
                        Act::Fail(e) => Err(e),
                        Act::Hang => std::future::pending().await,
                        Act::Delay(d, v) => {
                            tokio::time::sleep(d).await;
                            Ok(v)
                        }
                    }
                }
            })
            .await
        }
    }

    impl<const V: u32> Workflow for Flow<V> {
        const NAME: &'static str = "test-flow";
        const VERSION: u32 = V;
        type Input = String;
        type Output = u64;

        async fn run(&self, ctx: &Ctx, _input: String) -> Result<u64, WorkflowError> {
            let total = if self.concurrent {
                let all = self.keys.iter().map(|k| self.one(ctx, k));
                futures::future::try_join_all(all).await?.into_iter().sum()
            } else {
                let mut total = 0;
                for k in &self.keys {
                    total += self.one(ctx, k).await?;
                }
                total
            };
            if let Some(d) = self.sleep {
                ctx.sleep("pause", d).await?;
            }
            Ok(total)
        }
    }

    struct Env {
        _dir: tempfile::TempDir,
        journal: Arc<Journal>,
        clock: Arc<SimClock>,
    }

    /// `both_backends!(name)`: runs `async fn name(env: Env)` as two tests, `name::sqlite` and
    /// `name::postgres` (which skips locally, and fails under CI, without a test server).
    macro_rules! both_backends {
        ($name:ident) => {
            mod $name {
                #[tokio::test(start_paused = true)]
                async fn sqlite() {
                    super::$name(super::Env::new()).await
                }

                #[tokio::test(start_paused = true)]
                async fn postgres() {
                    if let Some(env) = super::Env::postgres() {
                        super::$name(env).await
                    }
                }
            }
        };
    }

    impl Env {
        fn new() -> Env {
            let dir = tempfile::tempdir().unwrap();
            let journal = Arc::new(Journal::open(&dir.path().join("journal.db")).unwrap());
            Env {
                _dir: dir,
                journal,
                clock: Arc::new(SimClock::new()),
            }
        }

        /// A journal on a fresh PostgreSQL database; leases follow the simulated clock (the
        /// database clock is tested in the journal and the e2e tests).
        fn postgres() -> Option<Env> {
            let server = hk8s_testkit::postgres()?;
            let location = hk8s_journal::Location::Postgres(server.fresh_database());
            let opts = hk8s_journal::OpenOptions {
                lease_clock: hk8s_journal::LeaseClock::Caller,
                ..hk8s_journal::OpenOptions::default()
            };
            Some(Env {
                _dir: tempfile::tempdir().unwrap(),
                journal: Arc::new(Journal::open_location(&location, opts).unwrap()),
                clock: Arc::new(SimClock::new()),
            })
        }

        fn opts(&self) -> RuntimeOptions {
            RuntimeOptions {
                clock: self.clock.clone(),
                grace: Duration::from_secs(5),
                ..RuntimeOptions::default()
            }
        }

        fn runtime(&self) -> Runtime {
            Runtime::new(self.journal.clone(), self.opts())
        }

        fn now(&self) -> DateTime<Utc> {
            self.clock.now()
        }
    }

    fn ok(v: u64) -> impl Fn(&str, u32) -> Act + Send + Sync {
        move |_, _| Act::Ok(v)
    }

    both_backends!(a_run_journals_every_step_and_succeeds);
    async fn a_run_journals_every_step_and_succeeds(env: Env) {
        let flow: Flow = Flow::new(&["network", "server/cp-1"], ok(2));
        let out = env
            .runtime()
            .start(&flow, "demo", &"in".to_string())
            .await
            .unwrap();
        assert_eq!(out.status, RunStatus::Succeeded);
        assert_eq!(out.output, Some(4));
        let state = env.journal.load_run(&out.run_id).unwrap();
        assert_eq!(state.run.status, RunStatus::Succeeded);
        assert_eq!(state.run.workflow, "test-flow");
        let keys: Vec<_> = state
            .steps
            .iter()
            .map(|s| (s.key.as_str(), s.activity.as_str(), s.status))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("network", "network", StepStatus::Succeeded),
                ("server/cp-1", "server", StepStatus::Succeeded)
            ]
        );
        assert_eq!(state.steps[1].output, Some(serde_json::json!(2)));
        assert!(state.run.owner.is_none(), "lease released");
    }

    both_backends!(replay_does_not_call_finished_activities);
    async fn replay_does_not_call_finished_activities(env: Env) {
        let fail_b = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = fail_b.clone();
        let flow: Flow = Flow::new(&["a", "b"], move |key, _| {
            if key == "b" && flag.load(std::sync::atomic::Ordering::SeqCst) {
                Act::Fail(StepError::permanent("quota exceeded"))
            } else {
                Act::Ok(1)
            }
        });
        let first = env
            .runtime()
            .start(&flow, "demo", &"in".to_string())
            .await
            .unwrap();
        assert_eq!(first.status, RunStatus::Failed);
        assert_eq!(flow.calls("a"), 1);
        fail_b.store(false, std::sync::atomic::Ordering::SeqCst);
        let second = env
            .runtime()
            .resume(&flow, &first.run_id, ResumeOptions::default())
            .await
            .unwrap();
        assert_eq!(second.status, RunStatus::Succeeded);
        assert_eq!(second.output, Some(2));
        assert_eq!(flow.calls("a"), 1, "finished step replayed, not re-run");
        assert_eq!(flow.calls("b"), 2);
        let again = env
            .runtime()
            .resume(&flow, &first.run_id, ResumeOptions::default())
            .await;
        assert!(
            matches!(again, Err(RuntimeError::RunFinished { .. })),
            "{again:?}"
        );
    }

    both_backends!(changed_input_stops_the_run_naming_the_step);
    async fn changed_input_stops_the_run_naming_the_step(env: Env) {
        let mut flow: Flow = Flow::new(&["a", "b"], |key, _| {
            if key == "b" {
                Act::Fail(StepError::permanent("boom"))
            } else {
                Act::Ok(1)
            }
        });
        let first = env
            .runtime()
            .start(&flow, "demo", &"in".to_string())
            .await
            .unwrap();
        assert_eq!(first.status, RunStatus::Failed);
        flow.salt = 1; // the definition of step `a` changed
        let second = env
            .runtime()
            .resume(&flow, &first.run_id, ResumeOptions::default())
            .await
            .unwrap();
        assert_eq!(second.status, RunStatus::Failed);
        let message = second.error.unwrap();
        assert!(
            message.contains("workflow definition changed: step `a`"),
            "{message}"
        );
        assert_eq!(flow.calls("a"), 1);
        assert_eq!(flow.calls("b"), 1, "the run stopped before step b");
    }

    both_backends!(retries_are_journaled_with_backoff_delays);
    async fn retries_are_journaled_with_backoff_delays(env: Env) {
        let flow: Flow = Flow::new(&["flaky"], |_, attempt| {
            if attempt < 3 {
                Act::Fail(StepError::retryable(format!("try {attempt} locked")))
            } else {
                Act::Ok(9)
            }
        });
        let t0 = env.now();
        let out = env
            .runtime()
            .start(&flow, "demo", &"in".to_string())
            .await
            .unwrap();
        assert_eq!(out.status, RunStatus::Succeeded);
        // 1 s after the first failure, 2 s after the second.
        assert_eq!(env.now() - t0, chrono::Duration::seconds(3));
        let state = env.journal.load_run(&out.run_id).unwrap();
        assert_eq!(state.steps[0].attempts, 3);
        let outcomes: Vec<_> = state
            .attempts
            .iter()
            .map(|a| (a.attempt, a.outcome, a.message.clone()))
            .collect();
        assert_eq!(
            outcomes,
            vec![
                (
                    1,
                    Some(AttemptOutcome::Failed(FailureKind::Retryable)),
                    Some("try 1 locked".into())
                ),
                (
                    2,
                    Some(AttemptOutcome::Failed(FailureKind::Retryable)),
                    Some("try 2 locked".into())
                ),
                (3, Some(AttemptOutcome::Succeeded), None),
            ]
        );
        assert_eq!(
            state.attempts[0].retry_at,
            Some(t0 + chrono::Duration::seconds(1))
        );
    }

    both_backends!(retry_count_survives_a_restart_and_exhaustion_fails_the_run);
    async fn retry_count_survives_a_restart_and_exhaustion_fails_the_run(env: Env) {
        let mut flow: Flow = Flow::new(&["flaky"], |_, _| {
            Act::Fail(StepError::retryable("unavailable"))
        });
        flow.policy = flow.policy.clone().with_max_attempts(Some(3));
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        let mut opts = env.opts();
        opts.cancel = cancel;
        opts.observer = Some(Arc::new(move |e: &Event| {
            if matches!(e, Event::AttemptFailed { attempt: 2, .. }) {
                token.cancel();
            }
        }));
        let runtime = Runtime::new(env.journal.clone(), opts);
        let first = runtime
            .start(&flow, "demo", &"in".to_string())
            .await
            .unwrap();
        assert_eq!(first.status, RunStatus::Interrupted);
        assert_eq!(flow.calls("flaky"), 2);
        let second = env
            .runtime()
            .resume(&flow, &first.run_id, ResumeOptions::default())
            .await
            .unwrap();
        assert_eq!(second.status, RunStatus::Failed);
        assert_eq!(
            flow.calls("flaky"),
            3,
            "only one attempt was left after the restart"
        );
        let message = second.error.unwrap();
        assert!(
            message.contains("step `flaky` failed after 3 attempt(s): unavailable"),
            "{message}"
        );
        let state = env.journal.load_run(&first.run_id).unwrap();
        assert_eq!(state.steps[0].status, StepStatus::Failed);
        assert_eq!(state.run.resume_count, 1);
    }

    both_backends!(permanent_error_fails_the_run_at_once);
    async fn permanent_error_fails_the_run_at_once(env: Env) {
        let flow: Flow = Flow::new(&["a", "b"], |_, _| {
            Act::Fail(StepError::permanent("invalid_input: bad type"))
        });
        let out = env
            .runtime()
            .start(&flow, "demo", &"in".to_string())
            .await
            .unwrap();
        assert_eq!(out.status, RunStatus::Failed);
        assert_eq!(flow.calls("a"), 1);
        assert_eq!(flow.calls("b"), 0);
        let state = env.journal.load_run(&out.run_id).unwrap();
        assert_eq!(state.run.status, RunStatus::Failed);
        assert_eq!(
            state.run.error.as_deref(),
            Some("step `a` failed after 1 attempt(s): invalid_input: bad type")
        );
    }

    both_backends!(rate_limits_wait_until_the_given_instant_and_do_not_count);
    async fn rate_limits_wait_until_the_given_instant_and_do_not_count(env: Env) {
        let until = env.now() + chrono::Duration::seconds(90);
        let mut flow: Flow = Flow::new(&["api"], move |_, attempt| {
            if attempt <= 3 {
                Act::Fail(StepError::rate_limited(until, "rate_limit_exceeded"))
            } else {
                Act::Ok(1)
            }
        });
        flow.policy = flow.policy.clone().with_max_attempts(Some(1));
        let t0 = env.now();
        let out = env
            .runtime()
            .start(&flow, "demo", &"in".to_string())
            .await
            .unwrap();
        assert_eq!(out.status, RunStatus::Succeeded);
        assert_eq!(flow.calls("api"), 4);
        assert_eq!(env.now() - t0, chrono::Duration::seconds(90));
    }

    both_backends!(shutdown_interrupts_never_fails_and_gives_in_flight_work_a_grace_period);
    async fn shutdown_interrupts_never_fails_and_gives_in_flight_work_a_grace_period(env: Env) {
        let cancel = CancellationToken::new();
        let hang = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let hanging = hang.clone();
        let mut flow: Flow = Flow::new(&["quick", "slow", "stuck"], move |key, _| match key {
            "quick" => Act::Delay(Duration::from_secs(2), 1),
            "slow" => Act::Delay(Duration::from_secs(60), 1),
            _ if hanging.load(std::sync::atomic::Ordering::SeqCst) => Act::Hang,
            _ => Act::Ok(1),
        });
        flow.concurrent = true;
        let mut opts = env.opts();
        opts.cancel = cancel.clone();
        let token = cancel.clone();
        let started = Arc::new(Mutex::new(0));
        opts.observer = Some(Arc::new(move |e: &Event| {
            if matches!(e, Event::AttemptStarted { .. }) {
                let mut n = started.lock().unwrap();
                *n += 1;
                if *n == 3 {
                    token.cancel();
                }
            }
        }));
        let t0 = env.now();
        let out = Runtime::new(env.journal.clone(), opts)
            .start(&flow, "demo", &"in".to_string())
            .await
            .unwrap();
        assert_eq!(out.status, RunStatus::Interrupted);
        assert_eq!(
            env.now() - t0,
            chrono::Duration::seconds(5),
            "stopped at the end of the grace period"
        );
        let state = env.journal.load_run(&out.run_id).unwrap();
        assert_eq!(state.run.status, RunStatus::Interrupted);
        let step = |k: &str| state.steps.iter().find(|s| s.key == k).unwrap().clone();
        assert_eq!(
            step("quick").status,
            StepStatus::Succeeded,
            "finished within the grace period"
        );
        assert_eq!(step("slow").status, StepStatus::Running);
        for key in ["slow", "stuck"] {
            let attempt = state.attempts.iter().find(|a| a.step_key == key).unwrap();
            assert_eq!(
                attempt.outcome,
                Some(AttemptOutcome::Failed(FailureKind::Interrupted)),
                "{key}"
            );
        }
        // Resume finishes the work; `quick` is not run again.
        hang.store(false, std::sync::atomic::Ordering::SeqCst);
        let done = env
            .runtime()
            .resume(&flow, &out.run_id, ResumeOptions::default())
            .await
            .unwrap();
        assert_eq!(done.status, RunStatus::Succeeded);
        assert_eq!(done.output, Some(3));
        assert_eq!(
            (flow.calls("quick"), flow.calls("slow"), flow.calls("stuck")),
            (1, 2, 2)
        );
    }

    both_backends!(durable_sleep_sleeps_only_the_remainder_after_a_restart);
    async fn durable_sleep_sleeps_only_the_remainder_after_a_restart(env: Env) {
        let mut flow: Flow = Flow::new(&["a"], ok(1));
        flow.sleep = Some(Duration::from_secs(3600));
        let cancel = CancellationToken::new();
        let mut opts = env.opts();
        opts.cancel = cancel.clone();
        let t0 = env.now();
        let runtime = Runtime::new(env.journal.clone(), opts);
        let run = runtime.create(&flow, "demo", &"in".to_string()).unwrap();
        let killer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1800)).await;
            cancel.cancel();
        });
        let out = runtime
            .execute(&flow, &run, ResumeOptions::default())
            .await
            .unwrap();
        killer.await.unwrap();
        assert_eq!(out.status, RunStatus::Interrupted);
        assert_eq!(env.now() - t0, chrono::Duration::seconds(1800));
        let state = env.journal.load_run(&run).unwrap();
        let pause = state.steps.iter().find(|s| s.key == "pause").unwrap();
        assert_eq!(pause.activity, "sleep");
        assert_eq!(
            pause.output,
            Some(serde_json::to_value(t0 + chrono::Duration::seconds(3600)).unwrap())
        );
        let out = env
            .runtime()
            .resume(&flow, &run, ResumeOptions::default())
            .await
            .unwrap();
        assert_eq!(out.status, RunStatus::Succeeded);
        assert_eq!(
            env.now() - t0,
            chrono::Duration::seconds(3600),
            "slept only the remaining 30 min"
        );
    }

    both_backends!(version_mismatch_and_wrong_workflow_are_refused);
    async fn version_mismatch_and_wrong_workflow_are_refused(env: Env) {
        let v1: Flow<1> = Flow::new(&["a"], |_, _| Act::Fail(StepError::permanent("x")));
        let out = env
            .runtime()
            .start(&v1, "demo", &"in".to_string())
            .await
            .unwrap();
        let v2: Flow<2> = Flow::new(&["a"], ok(1));
        let err = env
            .runtime()
            .resume(&v2, &out.run_id, ResumeOptions::default())
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(
                err,
                RuntimeError::VersionMismatch {
                    recorded: 1,
                    current: 2,
                    ..
                }
            ),
            "{message}"
        );
        assert!(
            message.contains("version 1")
                && message.contains("version 2")
                && message.contains("fresh run")
        );
        assert_eq!(v2.calls("a"), 0);
    }

    both_backends!(concurrent_steps_are_all_journaled);
    async fn concurrent_steps_are_all_journaled(env: Env) {
        let keys: Vec<String> = (1..=6).map(|i| format!("server/cp-{i}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut flow: Flow = Flow::new(&refs, |key, attempt| {
            if key.ends_with('3') && attempt == 1 {
                Act::Fail(StepError::retryable("locked"))
            } else {
                Act::Delay(Duration::from_millis(100), 1)
            }
        });
        flow.concurrent = true;
        let out = env
            .runtime()
            .start(&flow, "demo", &"in".to_string())
            .await
            .unwrap();
        assert_eq!(out.output, Some(6));
        let state = env.journal.load_run(&out.run_id).unwrap();
        assert_eq!(state.steps.len(), 6);
        assert!(
            state
                .steps
                .iter()
                .all(|s| s.status == StepStatus::Succeeded)
        );
        let mut seqs: Vec<_> = state.steps.iter().map(|s| s.seq).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=6).collect::<Vec<_>>());
        assert_eq!(state.attempts.len(), 7);
    }

    both_backends!(a_failing_concurrent_step_records_its_dropped_siblings_as_interrupted);
    async fn a_failing_concurrent_step_records_its_dropped_siblings_as_interrupted(env: Env) {
        let mut flow: Flow = Flow::new(&["slow", "bad"], |key, _| match key {
            "bad" => Act::Fail(StepError::permanent("forbidden")),
            _ => Act::Hang,
        });
        flow.concurrent = true;
        let out = env
            .runtime()
            .start(&flow, "demo", &"in".to_string())
            .await
            .unwrap();
        assert_eq!(out.status, RunStatus::Failed);
        let state = env.journal.load_run(&out.run_id).unwrap();
        let slow = state
            .attempts
            .iter()
            .find(|a| a.step_key == "slow")
            .unwrap();
        assert_eq!(
            slow.outcome,
            Some(AttemptOutcome::Failed(FailureKind::Interrupted))
        );
        assert!(slow.message.as_deref().unwrap().starts_with("abandoned"));
    }

    #[tokio::test]
    async fn execute_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let env = Env::new();
        let flow: Flow = Flow::new(&["a"], ok(1));
        let runtime = env.runtime();
        let run = runtime.create(&flow, "demo", &"in".to_string()).unwrap();
        {
            let fut = runtime.execute(&flow, &run, ResumeOptions::default());
            assert_send(&fut);
        }
        // It can run on another task.
        let out = tokio::spawn(async move {
            runtime
                .execute(&flow, &run, ResumeOptions::default())
                .await
                .map(|o| o.status)
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(out, RunStatus::Succeeded);
    }

    both_backends!(finished_before_tells_replayed_steps_apart);
    async fn finished_before_tells_replayed_steps_apart(env: Env) {
        struct Probe {
            fail_b: std::sync::atomic::AtomicBool,
            seen: Mutex<Vec<(bool, bool)>>,
        }
        impl Workflow for Probe {
            const NAME: &'static str = "probe";
            const VERSION: u32 = 1;
            type Input = ();
            type Output = ();
            async fn run(&self, ctx: &Ctx, _: ()) -> Result<(), WorkflowError> {
                self.seen
                    .lock()
                    .unwrap()
                    .push((ctx.finished_before("a"), ctx.finished_before("b")));
                let policy = RetryPolicy::no_retry();
                ctx.step("a", &policy, &(), |_| async { Ok(()) }).await?;
                let fail = self.fail_b.load(std::sync::atomic::Ordering::SeqCst);
                ctx.step("b", &policy, &(), |_| async move {
                    if fail {
                        Err(StepError::permanent("no"))
                    } else {
                        Ok(())
                    }
                })
                .await
            }
        }
        let probe = Probe {
            fail_b: std::sync::atomic::AtomicBool::new(true),
            seen: Mutex::default(),
        };
        let first = env.runtime().start(&probe, "demo", &()).await.unwrap();
        assert_eq!(first.status, RunStatus::Failed);
        probe
            .fail_b
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let second = env
            .runtime()
            .resume(&probe, &first.run_id, ResumeOptions::default())
            .await
            .unwrap();
        assert_eq!(second.status, RunStatus::Succeeded);
        assert_eq!(
            *probe.seen.lock().unwrap(),
            vec![(false, false), (true, false)]
        );
    }

    both_backends!(duplicate_keys_fail_the_run);
    async fn duplicate_keys_fail_the_run(env: Env) {
        let flow: Flow = Flow::new(&["a", "a"], ok(1));
        let out = env
            .runtime()
            .start(&flow, "demo", &"in".to_string())
            .await
            .unwrap();
        assert_eq!(out.status, RunStatus::Failed);
        assert!(out.error.unwrap().contains("step key `a` is used twice"));
    }

    both_backends!(secrets_are_scrubbed_from_journal_and_errors);
    async fn secrets_are_scrubbed_from_journal_and_errors(env: Env) {
        let runtime = env.runtime();
        let token =
            crate::Secret::registered("hcloud-token-0123456789".to_string(), runtime.scrubber());
        let leaked = token.expose().clone();
        let flow: Flow = Flow::new(&["a"], move |_, attempt| {
            let kind = if attempt == 1 {
                StepError::retryable
            } else {
                StepError::permanent
            };
            Act::Fail(kind(format!("401 unauthorized for Bearer {leaked}")))
        });
        let out = runtime
            .start(&flow, "demo", &"in".to_string())
            .await
            .unwrap();
        assert_eq!(out.status, RunStatus::Failed);
        assert!(out.error.as_deref().unwrap().contains("Bearer ***"));
        let state = env.journal.load_run(&out.run_id).unwrap();
        let dump = format!("{state:?}");
        assert!(!dump.contains(token.expose()), "secret reached the journal");
        assert!(dump.contains("Bearer ***"));
        let err = runtime
            .create(&flow, "demo", &format!("x {}", token.expose()))
            .unwrap_err();
        assert!(matches!(err, RuntimeError::SecretInInput));
    }

    both_backends!(a_secret_in_a_step_output_is_not_journaled);
    async fn a_secret_in_a_step_output_is_not_journaled(env: Env) {
        struct Leaky;
        impl Workflow for Leaky {
            const NAME: &'static str = "leaky";
            const VERSION: u32 = 1;
            type Input = ();
            type Output = String;
            async fn run(&self, ctx: &Ctx, _: ()) -> Result<String, WorkflowError> {
                ctx.step("kubeconfig", &RetryPolicy::no_retry(), &(), |_| async {
                    Ok("client-key: sekrit-material".to_string())
                })
                .await
            }
        }
        let runtime = env.runtime();
        runtime.scrubber().register("sekrit-material");
        let out = runtime.start(&Leaky, "demo", &()).await.unwrap();
        assert_eq!(out.status, RunStatus::Failed);
        assert!(out.error.unwrap().contains("contains a secret value"));
        let state = env.journal.load_run(&out.run_id).unwrap();
        assert!(!format!("{state:?}").contains("sekrit"));
    }

    both_backends!(an_output_that_does_not_round_trip_is_not_journaled);
    async fn an_output_that_does_not_round_trip_is_not_journaled(env: Env) {
        struct Nan;
        impl Workflow for Nan {
            const NAME: &'static str = "nan";
            const VERSION: u32 = 1;
            type Input = ();
            type Output = f64;
            async fn run(&self, ctx: &Ctx, _: ()) -> Result<f64, WorkflowError> {
                // serde_json writes NaN as null, which does not read back as an f64.
                ctx.step("ratio", &RetryPolicy::no_retry(), &(), |_| async {
                    Ok(f64::NAN)
                })
                .await
            }
        }
        let out = env.runtime().start(&Nan, "demo", &()).await.unwrap();
        assert_eq!(out.status, RunStatus::Failed);
        assert!(
            out.error
                .unwrap()
                .contains("does not round-trip through JSON")
        );
        let state = env.journal.load_run(&out.run_id).unwrap();
        assert_eq!(state.steps[0].status, StepStatus::Failed);
        assert_eq!(state.steps[0].output, None);
    }

    both_backends!(takeover_rules);
    async fn takeover_rules(env: Env) {
        let flow: Flow = Flow::new(&["a"], ok(1));
        let runtime = env.runtime();
        let ttl = Duration::from_secs(30);
        let me = Owner::current();

        // A live holder on this host (our own pid, another owner id) is refused, naming it.
        let run = runtime.create(&flow, "demo-1", &"in".to_string()).unwrap();
        let live = Owner {
            id: "other".into(),
            ..me.clone()
        };
        env.journal
            .acquire_lease(&run, &live, env.now(), ttl, Takeover::IfFree)
            .unwrap();
        let err = runtime
            .resume(&flow, &run, ResumeOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(&err, RuntimeError::LeaseHeld { holder, .. } if holder.id == "other"));
        assert!(
            err.to_string()
                .contains(&format!("pid {} on {}", me.pid, me.host)),
            "{err}"
        );
        // ... unless forced.
        let out = runtime
            .resume(&flow, &run, ResumeOptions { force: true })
            .await
            .unwrap();
        assert_eq!(out.status, RunStatus::Succeeded);

        // A dead pid on this host is taken over at once.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let run = runtime.create(&flow, "demo-2", &"in".to_string()).unwrap();
        let dead = Owner {
            id: "dead".into(),
            pid: dead_pid,
            ..me.clone()
        };
        env.journal
            .acquire_lease(&run, &dead, env.now(), ttl, Takeover::IfFree)
            .unwrap();
        let out = runtime
            .resume(&flow, &run, ResumeOptions::default())
            .await
            .unwrap();
        assert_eq!(out.status, RunStatus::Succeeded);
        assert_eq!(env.journal.load_run(&run).unwrap().run.resume_count, 1);

        // A holder with this host name on another machine (containers on two hosts, or another
        // PID namespace): its pid means nothing here.
        let run = runtime.create(&flow, "demo-3", &"in".to_string()).unwrap();
        let twin = Owner {
            id: "same-name".into(),
            pid: dead_pid,
            machine: "another-boot/pid:[4026531836]".into(),
            ..me.clone()
        };
        env.journal
            .acquire_lease(&run, &twin, env.now(), ttl, Takeover::IfFree)
            .unwrap();
        let err = runtime
            .resume(&flow, &run, ResumeOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RuntimeError::LeaseHeld { holder, .. } if holder.id == "same-name"),
            "{err}"
        );
        tokio::time::advance(ttl + Duration::from_secs(1)).await;

        // A holder on another host is never presumed dead.
        let run = runtime.create(&flow, "demo-4", &"in".to_string()).unwrap();
        let remote = Owner {
            host: "elsewhere".into(),
            id: "remote".into(),
            pid: dead_pid,
            machine: "elsewhere-boot/pid:[1]".into(),
        };
        env.journal
            .acquire_lease(&run, &remote, env.now(), ttl, Takeover::IfFree)
            .unwrap();
        let err = runtime
            .resume(&flow, &run, ResumeOptions::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("on elsewhere"), "{err}");
        // An expired lease is free.
        tokio::time::advance(ttl + Duration::from_secs(1)).await;
        let out = runtime
            .resume(&flow, &run, ResumeOptions::default())
            .await
            .unwrap();
        assert_eq!(out.status, RunStatus::Succeeded);
    }

    both_backends!(the_heartbeat_keeps_the_lease_beyond_its_ttl);
    async fn the_heartbeat_keeps_the_lease_beyond_its_ttl(env: Env) {
        let mut flow: Flow = Flow::new(&["a"], ok(1));
        flow.sleep = Some(Duration::from_secs(600)); // 20 lease lifetimes
        let runtime = env.runtime();
        let run = runtime.create(&flow, "demo", &"in".to_string()).unwrap();
        let journal = env.journal.clone();
        let clock = env.clock.clone();
        let intruder = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(300)).await;
            let other = Owner {
                host: "elsewhere".into(),
                pid: 1,
                machine: String::new(),
                id: "intruder".into(),
            };
            journal.acquire_lease(
                &run,
                &other,
                clock.now(),
                Duration::from_secs(30),
                Takeover::IfFree,
            )
        });
        let out = runtime
            .execute(&flow, &run, ResumeOptions::default())
            .await
            .unwrap();
        assert_eq!(out.status, RunStatus::Succeeded);
        let attempt = intruder.await.unwrap();
        assert!(
            matches!(attempt, Err(hk8s_journal::JournalError::LeaseHeld { .. })),
            "the lease was renewed: {attempt:?}"
        );
    }

    /// Another process (owner `thief`) forces its way into `run`.
    fn steal(journal: &Journal, run: &RunId, now: DateTime<Utc>) {
        let thief = Owner {
            id: "thief".into(),
            ..Owner::current()
        };
        journal
            .acquire_lease(run, &thief, now, Duration::from_secs(30), Takeover::Force)
            .unwrap();
    }

    both_backends!(a_fenced_out_process_stops_without_writing);
    async fn a_fenced_out_process_stops_without_writing(env: Env) {
        let journal = env.journal.clone();
        let clock = env.clock.clone();
        let run_cell: Arc<Mutex<Option<RunId>>> = Arc::default();
        let cell = run_cell.clone();
        let flow: Flow = Flow::new(&["a", "b"], move |key, _| {
            if key == "a" {
                // Another process forces its way in while `a` runs.
                steal(&journal, &cell.lock().unwrap().unwrap(), clock.now());
            }
            Act::Ok(1)
        });
        let runtime = env.runtime();
        let run = runtime.create(&flow, "demo", &"in".to_string()).unwrap();
        *run_cell.lock().unwrap() = Some(run);
        let err = runtime
            .execute(&flow, &run, ResumeOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, RuntimeError::LeaseLost { .. }), "{err}");
        assert!(err.to_string().contains("another process took over"));
        assert_eq!(flow.calls("b"), 0);
        let state = env.journal.load_run(&run).unwrap();
        assert_eq!(
            state.run.status,
            RunStatus::Running,
            "the thief owns the status now"
        );
        assert_eq!(state.run.owner.unwrap().id, "thief");
        assert!(
            state.steps.is_empty(),
            "the fenced completion (start and outcome in one commit) was refused: {:?}",
            state.steps
        );
    }

    /// Runs `flow` with `intent_delay`, returning the events seen.
    async fn events_of(env: &Env, flow: &Flow, intent_delay: Duration) -> (RunId, Vec<Event>) {
        let events: Arc<Mutex<Vec<Event>>> = Arc::default();
        let seen = events.clone();
        let mut opts = env.opts();
        opts.intent_delay = intent_delay;
        opts.observer = Some(Arc::new(move |e: &Event| {
            seen.lock().unwrap().push(e.clone())
        }));
        let out = Runtime::new(env.journal.clone(), opts)
            .start(flow, "demo", &"in".to_string())
            .await
            .unwrap();
        assert_eq!(out.status, RunStatus::Succeeded);
        let events = events.lock().unwrap().clone();
        (out.run_id, events)
    }

    fn names(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| format!("{} {}", e.name(), e.key()))
            .collect()
    }

    both_backends!(a_quick_attempt_is_journaled_once_with_its_outcome);
    async fn a_quick_attempt_is_journaled_once_with_its_outcome(env: Env) {
        let flow: Flow = Flow::new(&["a", "b"], ok(1));
        let (run, events) = events_of(&env, &flow, DEFAULT_INTENT_DELAY).await;
        assert_eq!(
            names(&events),
            [
                "attempt-started a",
                "activity-returned a",
                "step-completed a",
                "attempt-started b",
                "activity-returned b",
                "step-completed b"
            ]
        );
        assert_eq!(events.iter().filter(|e| e.is_commit()).count(), 2);
        let state = env.journal.load_run(&run).unwrap();
        let attempts: Vec<_> = state
            .attempts
            .iter()
            .map(|a| (a.step_key.as_str(), a.attempt, a.outcome))
            .collect();
        assert_eq!(
            attempts,
            [
                ("a", 1, Some(AttemptOutcome::Succeeded)),
                ("b", 1, Some(AttemptOutcome::Succeeded))
            ]
        );
    }

    both_backends!(a_slow_attempt_is_journaled_as_running_after_the_intent_delay);
    async fn a_slow_attempt_is_journaled_as_running_after_the_intent_delay(env: Env) {
        let journal = env.journal.clone();
        type Seen = Vec<(StepStatus, Option<AttemptOutcome>)>;
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let record = seen.clone();
        let flow: Flow = Flow::new(&["slow"], move |_, _| Act::Delay(Duration::from_secs(2), 1));
        let probe = {
            let journal = journal.clone();
            tokio::spawn(async move {
                // Half-way through the activity, well past the intent delay.
                tokio::time::sleep(Duration::from_secs(1)).await;
                let runs = journal
                    .list_runs(&hk8s_journal::RunFilter::default())
                    .unwrap();
                let state = journal.load_run(&runs[0].id).unwrap();
                record
                    .lock()
                    .unwrap()
                    .push((state.steps[0].status, state.attempts[0].outcome));
            })
        };
        let (_, events) = events_of(&env, &flow, DEFAULT_INTENT_DELAY).await;
        probe.await.unwrap();
        assert_eq!(
            names(&events),
            [
                "attempt-started slow",
                "attempt-recorded slow",
                "activity-returned slow",
                "step-completed slow"
            ]
        );
        assert_eq!(*seen.lock().unwrap(), [(StepStatus::Running, None)]);
    }

    both_backends!(a_zero_intent_delay_journals_every_start_before_the_activity);
    async fn a_zero_intent_delay_journals_every_start_before_the_activity(env: Env) {
        let journal = env.journal.clone();
        let seen: Arc<Mutex<Vec<usize>>> = Arc::default();
        let record = seen.clone();
        let flow: Flow = Flow::new(&["a", "b"], move |_, _| {
            let runs = journal
                .list_runs(&hk8s_journal::RunFilter::default())
                .unwrap();
            let open = journal
                .load_run(&runs[0].id)
                .unwrap()
                .attempts
                .iter()
                .filter(|a| a.outcome.is_none())
                .count();
            record.lock().unwrap().push(open);
            Act::Ok(1)
        });
        let (_, events) = events_of(&env, &flow, Duration::ZERO).await;
        assert_eq!(
            *seen.lock().unwrap(),
            [1, 1],
            "each activity sees its attempt open"
        );
        assert_eq!(events.iter().filter(|e| e.is_commit()).count(), 4);
        assert_eq!(events.iter().filter(|e| e.is_outcome()).count(), 2);
    }

    both_backends!(no_attempt_starts_once_another_process_holds_the_run);
    async fn no_attempt_starts_once_another_process_holds_the_run(env: Env) {
        let journal = env.journal.clone();
        let clock = env.clock.clone();
        let flow: Flow = Flow::new(&["a", "b"], ok(1));
        let mut opts = env.opts();
        opts.observer = Some(Arc::new(move |e: &Event| {
            // Right after `a` is journaled, another process forces its way in.
            if let Event::StepCompleted { key, .. } = e
                && key == "a"
            {
                let runs = journal
                    .list_runs(&hk8s_journal::RunFilter::default())
                    .unwrap();
                steal(&journal, &runs[0].id, clock.now());
            }
        }));
        let runtime = Runtime::new(env.journal.clone(), opts);
        let run = runtime.create(&flow, "demo", &"in".to_string()).unwrap();
        let err = runtime
            .execute(&flow, &run, ResumeOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, RuntimeError::LeaseLost { .. }), "{err}");
        assert_eq!((flow.calls("a"), flow.calls("b")), (1, 0), "b never ran");
    }
}
