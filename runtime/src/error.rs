//! Errors: what activities return ([`StepError`]), what steps and workflows return
//! ([`WorkflowError`]) and what the runtime returns ([`RuntimeError`]).

use chrono::{DateTime, Utc};
use hk8s_journal::{JournalError, Owner, RunId};

/// How an activity failure should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient: retry under the step's [`RetryPolicy`](crate::RetryPolicy).
    Retryable,
    /// Retrying cannot help: the step fails at once and the run ends `failed`.
    Permanent,
    /// The remote asked us to wait: retry at `until` (not counted against `max_attempts`).
    RateLimited {
        /// When to try again (e.g. from `RateLimit-Reset`).
        until: DateTime<Utc>,
    },
}

/// A failed activity attempt, classified by the activity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    /// How the runtime should react.
    pub class: ErrorClass,
    /// What went wrong, for the journal and the user (scrubbed of secrets before it is stored).
    pub message: String,
}

impl StepError {
    /// A transient failure that the policy may retry.
    pub fn retryable(message: impl Into<String>) -> Self {
        StepError {
            class: ErrorClass::Retryable,
            message: message.into(),
        }
    }

    /// A failure that retrying cannot fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        StepError {
            class: ErrorClass::Permanent,
            message: message.into(),
        }
    }

    /// A rate-limit answer: retry at `until`.
    pub fn rate_limited(until: DateTime<Utc>, message: impl Into<String>) -> Self {
        StepError {
            class: ErrorClass::RateLimited { until },
            message: message.into(),
        }
    }
}

/// Why a step (and so the workflow) stopped; workflows propagate it with `?`.
///
/// [`Runtime`](crate::Runtime) maps it to the run's final status: [`WorkflowError::Interrupted`]
/// → `interrupted`, [`WorkflowError::LeaseLost`] → nothing written (another process owns the run),
/// everything else → `failed` with this message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkflowError {
    /// A step failed for good: permanent error or exhausted retry budget.
    #[error("step `{key}` failed after {attempts} attempt(s): {message}")]
    StepFailed {
        /// The step key.
        key: String,
        /// Attempts made in total (across restarts).
        attempts: u32,
        /// The last error, scrubbed.
        message: String,
    },
    /// Shutdown was requested (Ctrl-C / SIGTERM): the run is resumable.
    #[error("interrupted by a shutdown request")]
    Interrupted,
    /// Another process took the run over; this process must stop without writing.
    #[error("lost the lease on run {run}: another process took the run over")]
    LeaseLost {
        /// The run.
        run: RunId,
    },
    /// A journaled step was recorded with another input than the code computes now.
    #[error(
        "workflow definition changed: step `{key}` was journaled with input hash {recorded}, the code now computes {computed}; revert the change or start a fresh run (it adopts existing resources through their labels)"
    )]
    DefinitionChanged {
        /// The step key.
        key: String,
        /// Hash stored in the journal.
        recorded: String,
        /// Hash computed from the current input.
        computed: String,
    },
    /// The journaled output of a finished step no longer decodes into the step's output type.
    #[error(
        "workflow definition changed: the journaled output of step `{key}` does not decode into the step's output type; start a fresh run"
    )]
    OutputDecode {
        /// The step key.
        key: String,
        /// The decode error.
        #[source]
        source: serde_json::Error,
    },
    /// A step output does not survive its JSON round trip (serialize, then deserialize into the
    /// same type); it was not journaled, since a replay could not return the same value.
    #[error("the output of step `{key}` does not round-trip through JSON")]
    OutputEncode {
        /// The step key.
        key: String,
        /// The serialization or deserialization error.
        #[source]
        source: serde_json::Error,
    },
    /// The same key was used twice in one run.
    #[error("step key `{key}` is used twice in this run; keys must name distinct steps")]
    DuplicateKey {
        /// The step key.
        key: String,
    },
    /// The key is not a valid step name.
    #[error("invalid step key: {reason}")]
    InvalidKey {
        /// What is wrong with it.
        reason: String,
    },
    /// The step input could not be serialized for hashing.
    #[error("cannot serialize the input of step `{key}`")]
    InputEncode {
        /// The step key.
        key: String,
        /// The serialization error.
        #[source]
        source: serde_json::Error,
    },
    /// A step output contains a registered secret value; it was not journaled.
    #[error(
        "the output of step `{key}` contains a secret value; wrap it in Secret<T> and keep it out of step outputs"
    )]
    SecretInOutput {
        /// The step key.
        key: String,
    },
    /// A journal write or read failed.
    #[error("journal write for step `{key}` failed")]
    Journal {
        /// The step key.
        key: String,
        /// The journal error.
        #[source]
        source: JournalError,
    },
    /// A failure decided by the workflow itself (e.g. a check between steps).
    #[error("{0}")]
    Failed(String),
}

impl WorkflowError {
    /// A workflow-level failure with a message.
    pub fn failed(message: impl Into<String>) -> Self {
        WorkflowError::Failed(message.into())
    }
}

impl From<StepError> for WorkflowError {
    /// A [`StepError`] raised outside a step fails the workflow with its message.
    fn from(error: StepError) -> Self {
        WorkflowError::Failed(error.message)
    }
}

/// Why [`Runtime`](crate::Runtime) could not create, resume or finish a run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// Another live process holds the run.
    #[error(
        "run {run} is being executed by pid {} on {} (lease until {expires_at}); wait for it, or pass --force if that process is gone",
        holder.pid, holder.host
    )]
    LeaseHeld {
        /// The run.
        run: RunId,
        /// The holder.
        holder: Box<Owner>,
        /// Lease expiry.
        expires_at: DateTime<Utc>,
    },
    /// Another process took the run over while this one executed it.
    #[error("another process took over run {run}; this process stopped without writing")]
    LeaseLost {
        /// The run.
        run: RunId,
    },
    /// The run was recorded by another workflow.
    #[error("run {run} belongs to workflow `{recorded}`, not `{requested}`")]
    WrongWorkflow {
        /// The run.
        run: RunId,
        /// Workflow name in the journal.
        recorded: String,
        /// Workflow name of the code.
        requested: String,
    },
    /// The run was recorded by another version of the workflow.
    #[error(
        "run {run} was recorded by workflow `{workflow}` version {recorded}, this hk8s has version {current}; it cannot be resumed: start a fresh run, which adopts the existing resources through their labels"
    )]
    VersionMismatch {
        /// The run.
        run: RunId,
        /// Workflow name.
        workflow: String,
        /// Version in the journal.
        recorded: u32,
        /// Version of the code.
        current: u32,
    },
    /// The run already succeeded or was cancelled.
    #[error("run {run} is already {status}; nothing to resume")]
    RunFinished {
        /// The run.
        run: RunId,
        /// Its status.
        status: hk8s_journal::RunStatus,
    },
    /// The journaled run input does not decode into the workflow's input type.
    #[error("the journaled input of run {run} does not decode into the workflow's input type")]
    InputDecode {
        /// The run.
        run: RunId,
        /// The decode error.
        #[source]
        source: serde_json::Error,
    },
    /// The workflow input could not be serialized.
    #[error("cannot serialize the workflow input")]
    InputEncode {
        /// The serialization error.
        #[source]
        source: serde_json::Error,
    },
    /// The workflow input contains a registered secret value; it was not journaled.
    #[error(
        "the workflow input contains a secret value; wrap it in Secret<T> and pass it outside the input"
    )]
    SecretInInput,
    /// A journal operation failed.
    #[error("journal operation `{operation}` failed")]
    Journal {
        /// What the runtime was doing.
        operation: &'static str,
        /// The journal error.
        #[source]
        source: JournalError,
    },
}
