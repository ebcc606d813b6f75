//! Which cloud a run talks to, journaled with the run so a resume talks to the same one.

use serde::{Deserialize, Serialize};

/// The Hetzner API endpoint of a run (never the token: that comes from the environment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudTarget {
    /// Base URL including `/v1`.
    pub endpoint: String,
    /// Whether the endpoint was an in-process sandbox twin, which ends with its process.
    pub sandbox: bool,
}
