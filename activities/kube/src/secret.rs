//! The Hetzner API token, kept out of logs, errors and serialization.

use std::fmt;

/// The Hetzner Cloud API token that the CCM and the CSI controller read from the `hcloud` Secret.
///
/// It implements neither `Serialize` nor `Display`, and its `Debug` prints `HcloudToken(***)`,
/// so it cannot reach the journal or a log line by accident. `HcloudToken::expose` (crate-private) is the only
/// way to the value and is called in one place: building the Secret object.
#[derive(Clone, PartialEq, Eq)]
pub struct HcloudToken(String);

impl HcloudToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        HcloudToken(token.into())
    }

    /// The token itself; only for building the `hcloud` Secret.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for HcloudToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HcloudToken(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_token() {
        let t = HcloudToken::new("very-secret-token-value");
        let shown = format!("{t:?} {:?}", Some(&t));
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("***"));
    }
}
