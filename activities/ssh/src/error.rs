//! [`SshError`]: one error type for connecting, authenticating and running commands.

use std::fmt;

/// What failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshErrorKind {
    /// TCP connect, SSH handshake or transport (the rescue system may still be booting).
    Connect,
    /// The server's host key is not the pinned one.
    HostKeyMismatch,
    /// The server refused the key (rescue enabled with another key, or not in rescue).
    Auth,
    /// A channel or exec request failed, or the connection broke while a command ran.
    Channel,
    /// The command ran and exited non-zero (or was killed by a signal).
    CommandFailed,
    /// The command succeeded but its output did not pass the checks (e.g. no byte count).
    Check,
    /// The caller's input is unusable (a URL with a quote, an unknown key).
    Config,
    /// A deadline passed.
    Timeout,
}

/// Whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// A later attempt may succeed (the server is booting, the network hiccuped).
    Retryable,
    /// Trying again does the same thing.
    Permanent,
}

/// A failed SSH operation.
#[derive(Debug, thiserror::Error)]
pub struct SshError {
    /// What failed.
    pub kind: SshErrorKind,
    /// The operation, e.g. `connect to 203.0.113.7:22`.
    pub op: String,
    /// What happened.
    pub message: String,
    /// The command's exit status, for [`SshErrorKind::CommandFailed`].
    pub exit_status: Option<u32>,
}

impl fmt::Display for SshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.op, self.message)?;
        if let Some(status) = self.exit_status {
            write!(f, " (exit status {status})")?;
        }
        Ok(())
    }
}

impl SshError {
    /// An error of `kind` in `op`.
    pub fn new(kind: SshErrorKind, op: impl Into<String>, message: impl Into<String>) -> Self {
        SshError {
            kind,
            op: op.into(),
            message: message.into(),
            exit_status: None,
        }
    }

    /// Whether trying again can help. A failed write pipeline is retryable: a download cut
    /// short or a mirror's hiccup fails the pipe, and writing the whole image again is safe.
    pub fn class(&self) -> ErrorClass {
        match self.kind {
            SshErrorKind::Connect
            | SshErrorKind::Channel
            | SshErrorKind::Timeout
            | SshErrorKind::CommandFailed
            | SshErrorKind::Check => ErrorClass::Retryable,
            SshErrorKind::HostKeyMismatch | SshErrorKind::Auth | SshErrorKind::Config => {
                ErrorClass::Permanent
            }
        }
    }
}
