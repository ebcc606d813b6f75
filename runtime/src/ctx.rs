//! [`Ctx`]: what a workflow uses to run steps and durable sleeps.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hk8s_journal::{
    AttemptFailure, AttemptOutcome, AttemptStart, FailureKind, Journal, JournalError, RunId,
    RunState, StepRecord, StepStatus,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::error::{ErrorClass, StepError, WorkflowError};
use crate::event::{Event, Observer};
use crate::key::{activity_of, input_hash, jitter_seed, validate_key};
use crate::lease::{SharedLease, current};
use crate::policy::RetryPolicy;
use crate::secret::Scrubber;

/// The attempt an activity closure is called for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// Attempt number of this step, 1-based, counted across restarts of the run.
    pub number: u32,
}

/// What the journal knew about a step when the run was (re)loaded.
struct Recorded {
    step: StepRecord,
    /// Retryable failures that count against the attempt budget.
    failures: u32,
    /// When the last failed attempt asked to be retried (a retry wait cut short by a crash).
    retry_at: Option<DateTime<Utc>>,
}

/// How one attempt's activity ended.
enum AttemptEnd<T> {
    Returned(Result<T, StepError>),
    GraceExpired,
    LeaseLost,
    /// Journaling the attempt's intent record failed.
    Journal(WorkflowError),
}

/// Everything a [`Ctx`] shares with the runtime that created it.
pub(crate) struct CtxParts {
    pub run_id: RunId,
    pub journal: Arc<Journal>,
    pub lease: SharedLease,
    pub clock: Arc<dyn Clock>,
    pub scrubber: Scrubber,
    pub observer: Option<Observer>,
    pub cancel: CancellationToken,
    pub lease_lost: CancellationToken,
    pub grace: Duration,
    pub intent_delay: Duration,
}

/// The handle a workflow runs its steps with; one per execution of a run.
///
/// `Ctx` is shared by reference, so steps can run concurrently (`futures::join!`,
/// `futures::future::try_join_all`) with correct journaling: each step has its own key and its own
/// journal rows.
pub struct Ctx {
    parts: CtxParts,
    run_text: String,
    recorded: HashMap<String, Recorded>,
    seen: Mutex<HashSet<String>>,
    grace_deadline: OnceLock<DateTime<Utc>>,
    inflight: watch::Sender<usize>,
}

impl Ctx {
    pub(crate) fn new(parts: CtxParts, state: RunState) -> Ctx {
        let mut recorded: HashMap<String, Recorded> = state
            .steps
            .into_iter()
            .map(|step| {
                let key = step.key.clone();
                let r = Recorded {
                    step,
                    failures: 0,
                    retry_at: None,
                };
                (key, r)
            })
            .collect();
        // Attempts come ordered by step and number. An attempt that failed without a retry
        // instant ended a round (the step failed for good); a resumed failed run gives the step a
        // fresh budget, so only the attempts after the last such round count.
        for attempt in state.attempts {
            let Some(r) = recorded.get_mut(&attempt.step_key) else {
                continue;
            };
            match attempt.outcome {
                Some(AttemptOutcome::Failed(
                    FailureKind::Retryable | FailureKind::Permanent | FailureKind::RateLimited,
                )) if attempt.retry_at.is_none() => {
                    r.failures = 0;
                    r.retry_at = None;
                }
                Some(AttemptOutcome::Failed(FailureKind::Retryable)) => {
                    r.failures += 1;
                    r.retry_at = attempt.retry_at;
                }
                Some(AttemptOutcome::Failed(FailureKind::RateLimited)) => {
                    r.retry_at = attempt.retry_at;
                }
                // Crashed, interrupted or fenced attempts say nothing about the operation: they
                // neither count nor delay the next attempt.
                _ => r.retry_at = None,
            }
        }
        let run_text = parts.run_id.to_string();
        Ctx {
            parts,
            run_text,
            recorded,
            seen: Mutex::new(HashSet::new()),
            grace_deadline: OnceLock::new(),
            inflight: watch::Sender::new(0),
        }
    }

    /// Whether step `key` had already succeeded when this execution started, so [`Ctx::step`]
    /// replays its journaled output instead of running the activity.
    ///
    /// Workflows whose activities observe the real world use it to re-check replayed results
    /// (a resource deleted by hand while the run was stopped) without re-running every step.
    pub fn finished_before(&self, key: &str) -> bool {
        self.recorded
            .get(key)
            .is_some_and(|r| r.step.status == hk8s_journal::StepStatus::Succeeded)
    }

    /// The id of the run being executed (label temporary resources with it).
    pub fn run_id(&self) -> RunId {
        self.parts.run_id
    }

    /// Whether shutdown was requested: the next step will return [`WorkflowError::Interrupted`].
    pub fn is_cancelled(&self) -> bool {
        self.parts.cancel.is_cancelled()
    }

    /// The secret registry: register secret values learnt during the run here.
    pub fn scrubber(&self) -> &Scrubber {
        &self.parts.scrubber
    }

    /// Runs one journaled step: returns its journaled output if it already succeeded in this run,
    /// otherwise runs `activity` under `policy` and journals the result.
    ///
    /// `key` names the step (`network`, `server/cp-1`, `talos/apply/cp-1`): a deterministic name,
    /// never a counter, unique within the run. Its first `/`-segment is recorded as the activity
    /// name. `input` is everything the activity depends on; its hash (sha256 of canonical JSON)
    /// is journaled and compared on replay.
    ///
    /// # Flow
    /// 1. The key is checked (valid, not used before in this execution) and the input hashed.
    /// 2. If the journal holds the step: a different input hash stops the run with
    ///    [`WorkflowError::DefinitionChanged`]; a succeeded step returns its journaled output
    ///    without calling `activity`.
    /// 3. Otherwise, per attempt: the lease is checked (a read), `activity(attempt)` runs, and
    ///    its result is journaled: `Ok` completes the step (one transaction, one fsync); a
    ///    [`Retryable`](ErrorClass::Retryable) error records the attempt and its retry instant,
    ///    waits the policy's delay and tries again;
    ///    [`RateLimited`](ErrorClass::RateLimited) waits until the given instant;
    ///    [`Permanent`](ErrorClass::Permanent) or an exhausted budget fails the step. An attempt
    ///    still running after [`RuntimeOptions::intent_delay`](crate::RuntimeOptions) has its
    ///    start journaled on its own (the step shows as running; a crash leaves it abandoned);
    ///    a quicker one is journaled with its outcome, start and end in one transaction.
    ///
    /// # Guarantees
    /// - A step that returned `Ok` never runs again in this run: later calls and resumes replay it.
    /// - The value returned on the first run is the one a replay returns: the output is
    ///   round-tripped through its journaled JSON before it is returned.
    /// - Attempt numbers, retry counts and the pending retry instant survive restarts. (An
    ///   attempt killed with its process before the intent delay left no record: its number is
    ///   used again, and like every crashed attempt it does not count against the budget.)
    /// - After shutdown is requested no new attempt starts; an in-flight activity gets the grace
    ///   period, then is dropped and its attempt recorded as interrupted.
    /// - No message is journaled or returned before it went through the [`Scrubber`].
    ///
    /// # Assumptions
    /// - `activity` is idempotent: a crash after it acted but before its result was journaled
    ///   runs it again (look up by labels, then create).
    /// - Every `.await` in `activity` is a cancellation point: at the end of the grace period, or
    ///   when the lease is lost, the future is dropped.
    ///
    /// # Caveats
    /// - The output is journaled as JSON: never return secrets (a registered secret value in an
    ///   output fails the step with [`WorkflowError::SecretInOutput`]).
    /// - Concurrent steps need distinct keys; if one of them fails inside `try_join_all`, the
    ///   others are dropped and their open attempts recorded as interrupted.
    ///
    /// # Errors
    /// [`WorkflowError::StepFailed`] (permanent error or exhausted budget),
    /// [`WorkflowError::Interrupted`], [`WorkflowError::LeaseLost`],
    /// [`WorkflowError::DefinitionChanged`], [`WorkflowError::OutputDecode`],
    /// [`WorkflowError::OutputEncode`],
    /// [`WorkflowError::DuplicateKey`], [`WorkflowError::InvalidKey`],
    /// [`WorkflowError::InputEncode`], [`WorkflowError::SecretInOutput`],
    /// [`WorkflowError::Journal`].
    ///
    /// # Example
    /// ```no_run
    /// use hk8s_runtime::{Ctx, RetryPolicy, StepError, WorkflowError};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Server { id: u64 }
    ///
    /// async fn create_server(name: &str) -> Result<Server, StepError> {
    ///     // Look up by label first, create only if missing: idempotent.
    ///     # let _ = name;
    ///     Ok(Server { id: 42 })
    /// }
    ///
    /// async fn servers(ctx: &Ctx, names: &[String]) -> Result<Vec<u64>, WorkflowError> {
    ///     let policy = RetryPolicy::default();
    ///     let steps = names.iter().map(|name| {
    ///         let policy = &policy;
    ///         async move {
    ///             let server: Server = ctx
    ///                 .step(&format!("server/{name}"), policy, name, |_attempt| {
    ///                     create_server(name)
    ///                 })
    ///                 .await?;
    ///             Ok::<_, WorkflowError>(server.id)
    ///         }
    ///     });
    ///     futures::future::try_join_all(steps).await
    /// }
    /// ```
    pub async fn step<I, T, F, Fut>(
        &self,
        key: &str,
        policy: &RetryPolicy,
        input: &I,
        activity: F,
    ) -> Result<T, WorkflowError>
    where
        I: Serialize + ?Sized,
        T: Serialize + DeserializeOwned,
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, StepError>>,
    {
        self.run_step(key, activity_of(key), policy, input, activity)
            .await
    }

    /// A durable sleep: journals the wake-up instant, then waits until it.
    ///
    /// On resume the step replays and only the remainder is slept (nothing if it has passed).
    /// Shutdown interrupts the wait ([`WorkflowError::Interrupted`]); the wake-up instant stays.
    pub async fn sleep(&self, key: &str, duration: Duration) -> Result<(), WorkflowError> {
        #[derive(Serialize)]
        struct SleepInput {
            duration_ms: u128,
        }
        let input = SleepInput {
            duration_ms: duration.as_millis(),
        };
        let clock = &self.parts.clock;
        let wake_at: DateTime<Utc> = self
            .run_step(
                key,
                "sleep",
                &RetryPolicy::no_retry(),
                &input,
                |_| async move {
                    Ok(clock.now()
                        + chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX))
                },
            )
            .await?;
        self.emit(Event::Sleeping {
            key: key.to_string(),
            wake_at,
        });
        self.wait_until(wake_at).await
    }

    /// [`Ctx::step`] with the activity name given: claims the key, replays a finished step, or
    /// runs attempts until one succeeds, the step fails, or the run has to stop.
    async fn run_step<I, T, F, Fut>(
        &self,
        key: &str,
        activity_name: &str,
        policy: &RetryPolicy,
        input: &I,
        mut activity: F,
    ) -> Result<T, WorkflowError>
    where
        I: Serialize + ?Sized,
        T: Serialize + DeserializeOwned,
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, StepError>>,
    {
        self.claim_key(key)?;
        let hash = input_hash(input).map_err(|source| WorkflowError::InputEncode {
            key: key.to_string(),
            source,
        })?;
        let recorded = self.recorded.get(key);
        if let Some(output) = self.replay(key, recorded, &hash)? {
            return Ok(output);
        }
        let mut progress = StepProgress::resumed(recorded);
        let seed = jitter_seed(&self.run_text, key);
        loop {
            let started = self
                .begin_attempt(key, activity_name, &hash, &mut progress)
                .await?;
            let start = started.start;
            let mut guard = AttemptGuard::new(self, start);
            let end = self
                .run_attempt(
                    &start,
                    started.intent_first,
                    activity(Attempt {
                        number: start.attempt,
                    }),
                )
                .await;
            let result = self.settle_attempt_end(end, &mut guard)?;
            self.emit(Event::ActivityReturned {
                key: key.to_string(),
                attempt: start.attempt,
                ok: result.is_ok(),
            });
            let error = match result {
                Ok(output) => {
                    let outcome = self.complete(&start, &output);
                    guard.disarm();
                    return outcome;
                }
                Err(error) => error,
            };
            guard.disarm();
            let retry_at = self.record_failure(
                &start,
                policy,
                seed,
                started.budget_start,
                &mut progress.failures,
                error,
            )?;
            progress.pending_retry = Some(retry_at);
        }
    }

    /// Checks that `key` is valid and not used before in this execution, and marks it used.
    fn claim_key(&self, key: &str) -> Result<(), WorkflowError> {
        validate_key(key).map_err(|reason| WorkflowError::InvalidKey { reason })?;
        if !self
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_string())
        {
            return Err(WorkflowError::DuplicateKey {
                key: key.to_string(),
            });
        }
        Ok(())
    }

    /// Compares the journaled step with the input `hash` and returns the journaled output of a
    /// step that already succeeded; `None` if the step has to run.
    fn replay<T: DeserializeOwned>(
        &self,
        key: &str,
        recorded: Option<&Recorded>,
        hash: &str,
    ) -> Result<Option<T>, WorkflowError> {
        let Some(r) = recorded else {
            return Ok(None);
        };
        if r.step.input_hash != hash {
            return Err(WorkflowError::DefinitionChanged {
                key: key.to_string(),
                recorded: r.step.input_hash.clone(),
                computed: hash.to_string(),
            });
        }
        if r.step.status != StepStatus::Succeeded {
            return Ok(None);
        }
        let value = r.step.output.clone().unwrap_or(serde_json::Value::Null);
        let output =
            serde_json::from_value(value).map_err(|source| WorkflowError::OutputDecode {
                key: key.to_string(),
                source,
            })?;
        self.emit(Event::StepReplayed {
            key: key.to_string(),
        });
        Ok(Some(output))
    }

    /// Waits out a pending retry, checks for a stop, numbers the next attempt and checks the
    /// lease (or journals the intent record right away when the intent delay is zero).
    async fn begin_attempt<'a>(
        &self,
        key: &'a str,
        activity_name: &'a str,
        hash: &'a str,
        progress: &mut StepProgress,
    ) -> Result<StartedAttempt<'a>, WorkflowError> {
        if let Some(at) = progress.pending_retry.take() {
            self.wait_until(at).await?;
        }
        self.check_stop().await?;
        let now = self.parts.clock.now();
        let budget_start = *progress.budget_start.get_or_insert(now);
        progress.attempt += 1;
        let attempt = progress.attempt;
        let start = AttemptStart {
            key,
            attempt,
            activity: activity_name,
            input_hash: hash,
            started_at: now,
        };
        // Never act for a run another process took over. An intent record checks this as
        // it is written; without one yet (it may come later, or never), read the fence.
        let intent_first = self.parts.intent_delay.is_zero();
        if !intent_first {
            self.parts
                .journal
                .check_lease(&self.lease())
                .map_err(|e| self.journal_error(key, e))?;
        }
        self.emit(Event::AttemptStarted {
            key: key.to_string(),
            attempt,
        });
        if intent_first {
            self.record_intent(&start)?;
        }
        Ok(StartedAttempt {
            start,
            intent_first,
            budget_start,
        })
    }

    /// The activity's result, or the error that ends the step when the attempt did not return:
    /// lease loss and journal errors disarm `guard`; an expired grace period leaves it armed, so
    /// dropping it records the attempt as interrupted.
    fn settle_attempt_end<T>(
        &self,
        end: AttemptEnd<T>,
        guard: &mut AttemptGuard<'_>,
    ) -> Result<Result<T, StepError>, WorkflowError> {
        match end {
            AttemptEnd::Returned(result) => Ok(result),
            AttemptEnd::LeaseLost => {
                guard.disarm();
                Err(self.lease_lost_error())
            }
            // The guard, dropped by the caller, records the attempt as interrupted.
            AttemptEnd::GraceExpired => Err(WorkflowError::Interrupted),
            AttemptEnd::Journal(error) => {
                guard.disarm();
                Err(error)
            }
        }
    }

    /// Journals a failed attempt and returns when to retry it, or the error that fails the
    /// step (permanent error, or the budget is spent).
    fn record_failure(
        &self,
        start: &AttemptStart<'_>,
        policy: &RetryPolicy,
        seed: u64,
        budget_start: DateTime<Utc>,
        failures: &mut u32,
        error: StepError,
    ) -> Result<DateTime<Utc>, WorkflowError> {
        let (key, attempt) = (start.key, start.attempt);
        let message = self.parts.scrubber.scrub(&error.message);
        let now = self.parts.clock.now();
        let (class, retry_at) =
            classify_failure(error.class, policy, seed, budget_start, now, failures);
        let step_failed = retry_at.is_none();
        let failure = AttemptFailure {
            class,
            message: &message,
            retry_at,
            step_failed,
        };
        self.parts
            .journal
            .fail_attempt(&self.lease(), start, &failure, now)
            .map_err(|e| self.journal_error(key, e))?;
        let Some(retry_at) = retry_at else {
            self.emit(Event::StepFailed {
                key: key.to_string(),
                attempts: attempt,
            });
            return Err(WorkflowError::StepFailed {
                key: key.to_string(),
                attempts: attempt,
                message,
            });
        };
        self.emit(Event::AttemptFailed {
            key: key.to_string(),
            attempt,
            retry_at: Some(retry_at),
            message,
        });
        Ok(retry_at)
    }

    /// Journals a successful attempt and returns the output as a replay would see it.
    fn complete<T: Serialize + DeserializeOwned>(
        &self,
        start: &AttemptStart<'_>,
        output: &T,
    ) -> Result<T, WorkflowError> {
        let (key, attempt) = (start.key, start.attempt);
        let encoded = serde_json::to_value(output).and_then(|value| {
            let round_trip = serde_json::from_value::<T>(value.clone())?;
            Ok((value, round_trip))
        });
        let problem = match &encoded {
            Err(error) => Some(format!(
                "the output of step `{key}` does not round-trip through JSON: {error}"
            )),
            Ok((value, _)) if self.parts.scrubber.contains_secret(&value.to_string()) => Some(
                format!("the output of step `{key}` contains a secret value; it was not journaled"),
            ),
            Ok(_) => None,
        };
        let now = self.parts.clock.now();
        match (encoded, problem) {
            (Ok((value, round_trip)), None) => {
                self.complete_durably(start, &value, now)
                    .map_err(|e| self.journal_error(key, e))?;
                self.emit(Event::StepCompleted {
                    key: key.to_string(),
                    attempt,
                });
                Ok(round_trip)
            }
            (encoded, problem) => {
                let message = problem.unwrap_or_default();
                let failure = AttemptFailure {
                    class: FailureKind::Permanent,
                    message: &message,
                    retry_at: None,
                    step_failed: true,
                };
                self.parts
                    .journal
                    .fail_attempt(&self.lease(), start, &failure, now)
                    .map_err(|e| self.journal_error(key, e))?;
                self.emit(Event::StepFailed {
                    key: key.to_string(),
                    attempts: attempt,
                });
                Err(match encoded {
                    Err(source) => WorkflowError::OutputEncode {
                        key: key.to_string(),
                        source,
                    },
                    Ok(_) => WorkflowError::SecretInOutput {
                        key: key.to_string(),
                    },
                })
            }
        }
    }

    /// Runs one activity future, honouring shutdown (grace period) and lease loss, and journals
    /// the attempt's start (unless `recorded`) once it has run for the intent delay.
    async fn run_attempt<T>(
        &self,
        start: &AttemptStart<'_>,
        mut recorded: bool,
        activity: impl Future<Output = Result<T, StepError>>,
    ) -> AttemptEnd<T> {
        let mut activity = std::pin::pin!(activity);
        let mut intent_due = self.parts.clock.sleep(self.parts.intent_delay);
        loop {
            tokio::select! {
                biased;
                () = self.parts.lease_lost.cancelled() => return AttemptEnd::LeaseLost,
                result = &mut activity => return AttemptEnd::Returned(result),
                () = self.parts.cancel.cancelled() => break,
                () = &mut intent_due, if !recorded => {
                    recorded = true;
                    if let Err(error) = self.record_intent(start) {
                        return AttemptEnd::Journal(error);
                    }
                }
            }
        }
        let deadline = self.grace_deadline();
        tokio::select! {
            biased;
            () = self.parts.lease_lost.cancelled() => AttemptEnd::LeaseLost,
            result = &mut activity => AttemptEnd::Returned(result),
            () = self.parts.clock.sleep_until(deadline) => AttemptEnd::GraceExpired,
        }
    }

    /// Journals the start of a running attempt (an intent record).
    fn record_intent(&self, start: &AttemptStart<'_>) -> Result<(), WorkflowError> {
        self.parts
            .journal
            .start_attempt(&self.lease(), start)
            .map_err(|e| self.journal_error(start.key, e))?;
        self.emit(Event::AttemptRecorded {
            key: start.key.to_string(),
            attempt: start.attempt,
        });
        Ok(())
    }

    /// Returns the stop error if shutdown was requested or the lease lost; after a shutdown
    /// request it first lets in-flight sibling steps finish within the grace period, so that
    /// `try_join_all` does not drop them early.
    async fn check_stop(&self) -> Result<(), WorkflowError> {
        if self.parts.lease_lost.is_cancelled() {
            return Err(self.lease_lost_error());
        }
        if !self.parts.cancel.is_cancelled() {
            return Ok(());
        }
        let deadline = self.grace_deadline();
        let mut inflight = self.inflight.subscribe();
        tokio::select! {
            biased;
            () = self.parts.lease_lost.cancelled() => return Err(self.lease_lost_error()),
            _ = inflight.wait_for(|n| *n == 0) => {}
            () = self.parts.clock.sleep_until(deadline) => {}
        }
        Err(WorkflowError::Interrupted)
    }

    /// Waits until `at`, unless shutdown is requested or the lease lost first.
    async fn wait_until(&self, at: DateTime<Utc>) -> Result<(), WorkflowError> {
        tokio::select! {
            biased;
            () = self.parts.lease_lost.cancelled() => Err(self.lease_lost_error()),
            () = self.parts.cancel.cancelled() => self.check_stop().await,
            () = self.parts.clock.sleep_until(at) => Ok(()),
        }
    }

    fn grace_deadline(&self) -> DateTime<Utc> {
        *self.grace_deadline.get_or_init(|| {
            self.parts.clock.now()
                + chrono::Duration::from_std(self.parts.grace).unwrap_or(chrono::Duration::MAX)
        })
    }

    fn lease(&self) -> hk8s_journal::Lease {
        current(&self.parts.lease)
    }

    fn lease_lost_error(&self) -> WorkflowError {
        WorkflowError::LeaseLost {
            run: self.parts.run_id,
        }
    }

    /// Journals a completed step, retrying while the journal is unreachable (a database
    /// restart, a dropped connection): the activity's work is done and idempotent, and a retried
    /// commit whose first try had landed is accepted by the journal. Gives up after
    /// [`COMMIT_TRIES`] tries, or at once when the lease is lost.
    fn complete_durably(
        &self,
        start: &AttemptStart<'_>,
        value: &serde_json::Value,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), JournalError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self
                .parts
                .journal
                .complete_step(&self.lease(), start, value, now)
            {
                Err(JournalError::Unreachable { .. })
                    if tries < COMMIT_TRIES && !self.parts.lease_lost.is_cancelled() =>
                {
                    tracing::warn!(
                        key = start.key,
                        tries,
                        "journal unreachable; retrying the commit"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(100 * tries));
                }
                other => return other,
            }
        }
    }

    fn journal_error(&self, key: &str, source: JournalError) -> WorkflowError {
        if matches!(source, JournalError::Fenced { .. }) {
            self.parts.lease_lost.cancel();
            return self.lease_lost_error();
        }
        WorkflowError::Journal {
            key: key.to_string(),
            source,
        }
    }

    fn emit(&self, event: Event) {
        if let Some(observer) = &self.parts.observer {
            observer(&event);
        }
    }
}

/// How often a completed step's commit is tried while the journal is unreachable.
const COMMIT_TRIES: u64 = 3;

/// Where a step's attempts stand, carried from the journal and across attempts.
struct StepProgress {
    /// The number of the last attempt (0 before the first).
    attempt: u32,
    /// Retryable failures that count against the attempt budget.
    failures: u32,
    /// When the next attempt may start, if it has to wait.
    pending_retry: Option<DateTime<Utc>>,
    /// When this execution's first attempt of the step started (the elapsed budget's origin).
    budget_start: Option<DateTime<Utc>>,
}

impl StepProgress {
    /// The progress the journal recorded for the step, or a fresh one.
    fn resumed(recorded: Option<&Recorded>) -> StepProgress {
        StepProgress {
            attempt: recorded.map_or(0, |r| r.step.attempts),
            failures: recorded.map_or(0, |r| r.failures),
            pending_retry: recorded.and_then(|r| r.retry_at),
            budget_start: None,
        }
    }
}

/// An attempt that has been numbered and may run.
struct StartedAttempt<'a> {
    /// Its journal identity.
    start: AttemptStart<'a>,
    /// Whether its intent record was journaled before the activity runs.
    intent_first: bool,
    /// The elapsed budget's origin.
    budget_start: DateTime<Utc>,
}

/// The recorded class of a failed attempt and when to retry it (`None`: the step fails);
/// counts a retryable failure in `failures`.
fn classify_failure(
    class: ErrorClass,
    policy: &RetryPolicy,
    seed: u64,
    budget_start: DateTime<Utc>,
    now: DateTime<Utc>,
    failures: &mut u32,
) -> (FailureKind, Option<DateTime<Utc>>) {
    let within_elapsed = |at: DateTime<Utc>| {
        policy
            .max_elapsed
            .is_none_or(|max| (at - budget_start).to_std().unwrap_or(Duration::ZERO) <= max)
    };
    match class {
        ErrorClass::Permanent => (FailureKind::Permanent, None),
        ErrorClass::Retryable => {
            *failures += 1;
            let at = policy
                .delay(*failures, seed)
                .map(|d| now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX))
                .filter(|at| within_elapsed(*at));
            (FailureKind::Retryable, at)
        }
        ErrorClass::RateLimited { until } => {
            let at = Some(until.max(now)).filter(|at| within_elapsed(*at));
            (FailureKind::RateLimited, at)
        }
    }
}

/// Counts an in-flight attempt; if dropped while armed (the step future was dropped, or the grace
/// period expired) it records the attempt as interrupted.
struct AttemptGuard<'a> {
    ctx: &'a Ctx,
    start: AttemptStart<'a>,
    armed: bool,
}

impl<'a> AttemptGuard<'a> {
    fn new(ctx: &'a Ctx, start: AttemptStart<'a>) -> Self {
        ctx.inflight.send_modify(|n| *n += 1);
        AttemptGuard {
            ctx,
            start,
            armed: true,
        }
    }

    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for AttemptGuard<'_> {
    fn drop(&mut self) {
        if self.armed && !self.ctx.parts.lease_lost.is_cancelled() {
            let message = if self.ctx.parts.cancel.is_cancelled() {
                "interrupted: shutdown requested and the grace period ran out"
            } else {
                "abandoned: the step was dropped (a concurrent step failed or the run stopped)"
            };
            let failure = AttemptFailure {
                class: FailureKind::Interrupted,
                message,
                retry_at: None,
                step_failed: false,
            };
            let result = self.ctx.parts.journal.fail_attempt(
                &self.ctx.lease(),
                &self.start,
                &failure,
                self.ctx.parts.clock.now(),
            );
            match result {
                Ok(()) => self.ctx.emit(Event::AttemptFailed {
                    key: self.start.key.to_string(),
                    attempt: self.start.attempt,
                    retry_at: None,
                    message: message.to_string(),
                }),
                Err(error) => {
                    tracing::warn!(%error, key = self.start.key, "cannot record an interrupted attempt")
                }
            }
        }
        self.ctx.inflight.send_modify(|n| *n = n.saturating_sub(1));
    }
}
