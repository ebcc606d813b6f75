//! Exit codes and how a failed command is reported.

use std::process::ExitCode;

/// The run failed; the journal says why.
pub const FAILED: u8 = 1;
/// Usage or config error: nothing was called.
pub const USAGE: u8 = 2;
/// The run is held by another live process (EX_TEMPFAIL).
pub const HELD: u8 = 75;
/// Interrupted by Ctrl-C / SIGTERM; resumable.
pub const INTERRUPTED: u8 = 130;

/// A command that could not do its job, with the exit code it maps to.
#[derive(Debug)]
pub enum Failure {
    /// Bad arguments or config (exit 2).
    Usage(anyhow::Error),
    /// Another process holds the run (exit 75).
    Held(anyhow::Error),
    /// Anything else (exit 1).
    Other(anyhow::Error),
}

impl Failure {
    /// Prints the error chain to stderr and returns the exit code.
    pub fn report(self) -> ExitCode {
        let (code, error) = match self {
            Failure::Usage(e) => (USAGE, e),
            Failure::Held(e) => (HELD, e),
            Failure::Other(e) => (FAILED, e),
        };
        eprintln!("error: {error:#}");
        ExitCode::from(code)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

/// Marks an error as a usage/config error.
pub fn usage(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Usage(e.into())
}
