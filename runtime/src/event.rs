//! Progress events, reported to an optional observer (CLI progress, crash tests).

use std::sync::Arc;

use chrono::{DateTime, Utc};

/// Something the runtime did; delivered synchronously, in order, right after it happened.
///
/// Events marked as commits ([`Event::is_commit`]) are reported right after the journal
/// transaction committed: they are the step boundaries a crash test kills at.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A finished step was returned from the journal without running its activity.
    StepReplayed {
        /// The step key.
        key: String,
    },
    /// An attempt's activity is about to start. Not a commit: the attempt is journaled by
    /// [`Event::AttemptRecorded`] if it runs longer than the intent delay (at once with a zero
    /// delay), otherwise together with its outcome.
    AttemptStarted {
        /// The step key.
        key: String,
        /// Attempt number (1-based, across restarts).
        attempt: u32,
    },
    /// The start of a still-running attempt was journaled (an intent record). Commit.
    AttemptRecorded {
        /// The step key.
        key: String,
        /// Attempt number.
        attempt: u32,
    },
    /// The activity returned; its result is not journaled yet (the "did it, not recorded" point).
    ActivityReturned {
        /// The step key.
        key: String,
        /// Attempt number.
        attempt: u32,
        /// Whether it returned `Ok`.
        ok: bool,
    },
    /// A failed attempt was journaled. Commit.
    AttemptFailed {
        /// The step key.
        key: String,
        /// Attempt number.
        attempt: u32,
        /// When the next attempt starts, if any.
        retry_at: Option<DateTime<Utc>>,
        /// The scrubbed message.
        message: String,
    },
    /// The step's output was journaled. Commit.
    StepCompleted {
        /// The step key.
        key: String,
        /// Attempt number that succeeded.
        attempt: u32,
    },
    /// The step failed for good (journaled). Commit.
    StepFailed {
        /// The step key.
        key: String,
        /// Attempts in total.
        attempts: u32,
    },
    /// A durable sleep waits until `wake_at` (the wake-up instant is journaled).
    Sleeping {
        /// The step key.
        key: String,
        /// Wake-up instant.
        wake_at: DateTime<Utc>,
    },
}

impl Event {
    /// Whether the event directly follows a journal commit.
    pub fn is_commit(&self) -> bool {
        self.is_outcome() || matches!(self, Event::AttemptRecorded { .. })
    }

    /// Whether the event follows the commit of an attempt's outcome: every attempt has exactly
    /// one, at a point that does not depend on timing (unlike intent records).
    pub fn is_outcome(&self) -> bool {
        matches!(
            self,
            Event::AttemptFailed { .. } | Event::StepCompleted { .. } | Event::StepFailed { .. }
        )
    }

    /// A short kebab-case name of the event's kind (`attempt-started`, `step-completed`, ...),
    /// for logs and test transcripts.
    pub fn name(&self) -> &'static str {
        match self {
            Event::StepReplayed { .. } => "step-replayed",
            Event::AttemptStarted { .. } => "attempt-started",
            Event::AttemptRecorded { .. } => "attempt-recorded",
            Event::ActivityReturned { .. } => "activity-returned",
            Event::AttemptFailed { .. } => "attempt-failed",
            Event::StepCompleted { .. } => "step-completed",
            Event::StepFailed { .. } => "step-failed",
            Event::Sleeping { .. } => "sleeping",
        }
    }

    /// The step key the event is about.
    pub fn key(&self) -> &str {
        match self {
            Event::StepReplayed { key }
            | Event::AttemptStarted { key, .. }
            | Event::AttemptRecorded { key, .. }
            | Event::ActivityReturned { key, .. }
            | Event::AttemptFailed { key, .. }
            | Event::StepCompleted { key, .. }
            | Event::StepFailed { key, .. }
            | Event::Sleeping { key, .. } => key,
        }
    }
}

/// A callback receiving [`Event`]s; it runs inline, so it must be quick.
pub type Observer = Arc<dyn Fn(&Event) + Send + Sync>;
