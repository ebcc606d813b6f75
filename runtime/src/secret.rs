//! Secrets that cannot reach the journal: [`Secret`] and the [`Scrubber`].

use std::fmt;
use std::sync::{Arc, RwLock};

/// A value that must never be journaled, logged or shown.
///
/// `Secret<T>` deliberately implements neither `Serialize` nor a revealing `Debug`/`Display`, so a
/// secret cannot become part of a workflow input or a step output by accident: such code does not
/// compile. Read the value with [`Secret::expose`] at the point of use (an HTTP header, a file
/// written with mode 0600).
///
/// ```compile_fail
/// let s = hk8s_runtime::Secret::new("token".to_string());
/// serde_json::to_string(&s).unwrap(); // Secret is not Serialize
/// ```
#[derive(Clone, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// Borrows the secret value; call this only where the value is used.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the secret value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: AsRef<str>> Secret<T> {
    /// Wraps a secret string and registers its value with `scrubber`, so the value is replaced by
    /// `***` in every message the runtime journals or returns.
    pub fn registered(value: T, scrubber: &Scrubber) -> Self {
        scrubber.register(value.as_ref());
        Secret(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The text that replaces a registered secret value in scrubbed messages.
pub const REDACTED: &str = "***";

/// A registry of secret values that are cut out of every message before it is journaled or
/// returned as an error.
///
/// Cloning a `Scrubber` shares the registry. The runtime passes every attempt message, step error
/// and run error through [`Scrubber::scrub`], and refuses to journal a run input or step output
/// whose JSON contains a registered value ([`Scrubber::contains_secret`]).
#[derive(Clone, Default)]
pub struct Scrubber {
    values: Arc<RwLock<Vec<String>>>,
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.values.read().map(|v| v.len()).unwrap_or(0);
        f.debug_struct("Scrubber").field("values", &count).finish()
    }
}

/// Values shorter than this are not registered: scrubbing `a` or `1` would mangle every message.
const MIN_SECRET_LEN: usize = 4;

impl Scrubber {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a secret value; values shorter than 4 characters are ignored.
    pub fn register(&self, value: &str) {
        if value.len() < MIN_SECRET_LEN {
            return;
        }
        let mut values = match self.values.write() {
            Ok(v) => v,
            Err(poisoned) => poisoned.into_inner(),
        };
        if !values.iter().any(|v| v == value) {
            values.push(value.to_string());
            // Longest first, so a secret containing another one is replaced whole.
            values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    /// Returns `message` with every registered value replaced by `***`.
    pub fn scrub(&self, message: &str) -> String {
        let values = match self.values.read() {
            Ok(v) => v,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut out = message.to_string();
        for value in values.iter() {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), REDACTED);
            }
        }
        out
    }

    /// Whether `text` contains any registered value.
    pub fn contains_secret(&self, text: &str) -> bool {
        let values = match self.values.read() {
            Ok(v) => v,
            Err(poisoned) => poisoned.into_inner(),
        };
        values.iter().any(|v| text.contains(v.as_str()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let s = Secret::new("hunter2-token".to_string());
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "hunter2-token");
    }

    #[test]
    fn scrub_replaces_every_registered_value() {
        let scrubber = Scrubber::new();
        let token = Secret::registered("tok-abcdef", &scrubber);
        scrubber.register("tok-abcdef-longer");
        scrubber.register("ab"); // too short, ignored
        let msg = format!("401 for token {} and tok-abcdef-longer, ab", token.expose());
        assert_eq!(scrubber.scrub(&msg), "401 for token *** and ***, ab");
        assert!(scrubber.contains_secret("x tok-abcdef y"));
        assert!(!scrubber.contains_secret("nothing here"));
    }

    #[test]
    fn clones_share_the_registry() {
        let a = Scrubber::new();
        let b = a.clone();
        b.register("shared-secret");
        assert_eq!(a.scrub("shared-secret!"), "***!");
    }
}
