//! Records stored in the journal and the statuses they carry.
//!
//! Statuses are stored as lowercase text; `tests::stored_strings_are_pinned` pins them, because
//! changing one would need a migration.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{Owner, RunId};

/// A stored status string that names no known variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?} in the journal")]
pub struct UnknownStatus {
    /// Which kind of status was parsed.
    pub kind: &'static str,
    /// The text that was found.
    pub value: String,
}

macro_rules! stored_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The text stored in the journal.
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(UnknownStatus { kind: $kind, value: other.to_owned() }),
                }
            }
        }
    };
}

stored_enum! {
    /// Lifecycle state of a run.
    RunStatus, "run status" {
        /// Executing, or waiting to be resumed after a crash (check the lease).
        Running => "running",
        /// Stopped on request (Ctrl-C, SIGTERM); resumable.
        Interrupted => "interrupted",
        /// Stopped by a permanent error.
        Failed => "failed",
        /// Finished successfully.
        Succeeded => "succeeded",
        /// Cancelled by the user.
        Cancelled => "cancelled",
        /// Waiting in the queue for a worker (`hk8s run --queue`, or put back by a worker that
        /// shut down).
        Queued => "queued",
    }
}

impl RunStatus {
    /// Whether the run has ended (`finished_at` is set): failed, succeeded or cancelled.
    #[must_use]
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Failed | Self::Succeeded | Self::Cancelled)
    }

    /// Whether a run in this status is its cluster's active run (queued or running): at most
    /// one per cluster in the whole journal.
    #[must_use]
    pub fn is_active(self) -> bool {
        matches!(self, Self::Queued | Self::Running)
    }
}

stored_enum! {
    /// State of one step (all attempts of one step key).
    StepStatus, "step status" {
        /// An attempt is running or will be retried.
        Running => "running",
        /// Completed; its output is journaled and replayed.
        Succeeded => "succeeded",
        /// Gave up after a permanent error or exhausted retries.
        Failed => "failed",
    }
}

stored_enum! {
    /// The recorded kind of a failed attempt (stored as `error_class`): the runtime's retry
    /// class when it failed, or `interrupted`. Not to be confused with `hk8s_runtime::ErrorClass`,
    /// the class an activity gives its error.
    FailureKind, "failure kind" {
        /// Transient; retry under the step's policy.
        Retryable => "retryable",
        /// Retrying cannot help.
        Permanent => "permanent",
        /// The API asked us to wait (`retry_at` holds until when).
        RateLimited => "rate_limited",
        /// The process was asked to stop while the attempt ran.
        Interrupted => "interrupted",
        /// The lease was lost (fenced out) while the attempt ran.
        LeaseLost => "lease_lost",
    }
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The activity returned a result and the step completed.
    Succeeded,
    /// The activity failed with this class of error.
    Failed(FailureKind),
}

/// A run to create.
#[derive(Clone, Debug, PartialEq)]
pub struct NewRun {
    /// Its id (usually `RunId::new()`).
    pub id: RunId,
    /// Workflow name, e.g. `cluster.create`.
    pub workflow: String,
    /// Workflow version; resuming with an incompatible version is refused by the runtime.
    pub workflow_version: u32,
    /// Cluster the run acts on.
    pub cluster: String,
    /// Workflow input, secrets excluded.
    pub input: serde_json::Value,
}

/// One run as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    /// Run id.
    pub id: RunId,
    /// Workflow name.
    pub workflow: String,
    /// Workflow version the run was created with.
    pub workflow_version: u32,
    /// Cluster the run acts on.
    pub cluster: String,
    /// Workflow input.
    pub input: serde_json::Value,
    /// Lifecycle state.
    pub status: RunStatus,
    /// Error that stopped the run, if any.
    pub error: Option<String>,
    /// When the run was created.
    pub created_at: DateTime<Utc>,
    /// Last progress (lease acquisition, attempt, completion, finish).
    pub updated_at: DateTime<Utc>,
    /// When it reached a terminal status.
    pub finished_at: Option<DateTime<Utc>>,
    /// Current lease holder, if any.
    pub owner: Option<Owner>,
    /// Lease expiry, set exactly when `owner` is.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Fencing counter: number of lease acquisitions so far.
    pub fence: i64,
    /// Number of acquisitions after the first one.
    pub resume_count: u32,
    /// The dedup key it was enqueued with (`--dedup`), if any.
    pub dedup_key: Option<String>,
    /// Worker claims since the last completed step (a worker gives up at five).
    pub stalled_claims: u32,
}

impl RunRecord {
    /// Whether the run counts as its cluster's active run: queued or running (a run left
    /// running by a crashed process stays active until it is resumed or claimed).
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.status.is_active()
    }
}

/// One step of a run as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StepRecord {
    /// Deterministic step key, e.g. `server/cp-1`.
    pub key: String,
    /// Activity name.
    pub activity: String,
    /// Hash of the step input, compared on replay.
    pub input_hash: String,
    /// State.
    pub status: StepStatus,
    /// Output, once succeeded.
    pub output: Option<serde_json::Value>,
    /// Last error message (cleared on success).
    pub error: Option<String>,
    /// Number of attempts started so far.
    pub attempts: u32,
    /// Order in which the step was first reached, starting at 1.
    pub seq: u32,
    /// When the first attempt started.
    pub started_at: DateTime<Utc>,
    /// When the step succeeded or failed for good.
    pub finished_at: Option<DateTime<Utc>>,
    /// When the next attempt is due, after a retryable failure.
    pub next_retry_at: Option<DateTime<Utc>>,
}

/// One attempt of one step as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptRecord {
    /// Key of the step.
    pub step_key: String,
    /// Attempt number, starting at 1.
    pub attempt: u32,
    /// Fence of the lease the attempt ran under.
    pub fence: i64,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended; `None` while running, or when its process vanished.
    pub ended_at: Option<DateTime<Utc>>,
    /// How it ended; `None` while running.
    pub outcome: Option<AttemptOutcome>,
    /// Error message of a failed attempt.
    pub message: Option<String>,
    /// When a retry was scheduled.
    pub retry_at: Option<DateTime<Utc>>,
}

/// Everything a resume needs: the run, its steps (by `seq`) and all attempts (by step key, attempt).
#[derive(Clone, Debug, PartialEq)]
pub struct RunState {
    /// The run.
    pub run: RunRecord,
    /// Its steps, ordered by `seq`.
    pub steps: Vec<StepRecord>,
    /// All attempts of all steps, ordered by step key then attempt number.
    pub attempts: Vec<AttemptRecord>,
}

impl RunState {
    /// The step with this key.
    #[must_use]
    pub fn step(&self, key: &str) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.key == key)
    }

    /// The attempts of one step, in attempt order.
    pub fn attempts_of<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a AttemptRecord> + 'a {
        self.attempts.iter().filter(move |a| a.step_key == key)
    }
}

/// Which runs `list_runs` returns; every `None` field matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Only runs on this cluster.
    pub cluster: Option<String>,
    /// Only runs of this workflow.
    pub workflow: Option<String>,
    /// Only runs in this status.
    pub status: Option<RunStatus>,
    /// At most this many runs (newest first).
    pub limit: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_strings_are_pinned() {
        let runs: Vec<_> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            runs,
            [
                "running",
                "interrupted",
                "failed",
                "succeeded",
                "cancelled",
                "queued"
            ]
        );
        let steps: Vec<_> = StepStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(steps, ["running", "succeeded", "failed"]);
        let classes: Vec<_> = FailureKind::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            classes,
            [
                "retryable",
                "permanent",
                "rate_limited",
                "interrupted",
                "lease_lost"
            ]
        );
    }

    #[test]
    fn stored_strings_round_trip_and_match_serde() {
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>().unwrap(), *s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for s in StepStatus::ALL {
            assert_eq!(s.as_str().parse::<StepStatus>().unwrap(), *s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for c in FailureKind::ALL {
            assert_eq!(c.as_str().parse::<FailureKind>().unwrap(), *c);
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }

    #[test]
    fn unknown_status_names_kind_and_value() {
        let err = "paused".parse::<RunStatus>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown run status \"paused\" in the journal"
        );
    }

    #[test]
    fn terminal_statuses() {
        let terminal: Vec<_> = RunStatus::ALL.iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(
            terminal,
            [
                &RunStatus::Failed,
                &RunStatus::Succeeded,
                &RunStatus::Cancelled
            ]
        );
    }
}
