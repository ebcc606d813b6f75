//! What an ensure or delete activity did.

use serde::{Deserialize, Serialize};

/// What an `ensure_*` call did to the resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnsureOutcome {
    /// It did not exist and was created.
    Created,
    /// It existed and drift was fixed (labels, rules, services, targets, attachments).
    Updated,
    /// It existed as wanted; only lookups were sent.
    Unchanged,
}

/// What a delete call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeleteOutcome {
    /// It existed and was deleted.
    Deleted,
    /// It was already gone (`not_found` or no match): success.
    AlreadyGone,
}
