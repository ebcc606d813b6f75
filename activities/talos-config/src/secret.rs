//! A string holding key material or a token, kept out of `Debug` output.

use std::fmt;

/// Private text (a PEM private key, a token, an encryption secret).
///
/// `Debug` prints `[redacted]`, so a bundle can be logged with `{:?}` without leaking keys.
/// Read the value with [`SecretString::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a private value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The private value. Call only where it is written to a file or handed to TLS.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = SecretString::new("super-secret");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(s.expose(), "super-secret");
    }
}
