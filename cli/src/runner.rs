//! This process as a runner: its lease owner identity (`HK8S_HOST_ID`, `HK8S_MACHINE_ID`),
//! lease TTL (`HK8S_LEASE_TTL_SECS`) and, for a worker's runs, what they share.

use std::time::Duration;

use anyhow::anyhow;
use hk8s_journal::Owner;
use tokio_util::sync::CancellationToken;

use crate::exit::{Failure, usage};

/// What a worker's runs share: its identity as lease owner, its lease TTL, its shutdown.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// The lease owner every run of this worker holds.
    pub owner: Owner,
    /// Lease duration.
    pub lease_ttl: Duration,
    /// Cancelled by the first SIGTERM / Ctrl-C.
    pub cancel: CancellationToken,
}

/// This process as a runner: lease owner and lease TTL, from the environment.
pub struct RunnerEnv {
    /// The lease owner (`HK8S_HOST_ID` and `HK8S_MACHINE_ID` override the host name and the
    /// machine identity, for containers whose host name says nothing).
    pub owner: Owner,
    /// `HK8S_LEASE_TTL_SECS`, when set.
    pub lease_ttl: Option<Duration>,
    /// `HK8S_DEBUG_INTENT_DELAY_MS` (tests: `0` journals every attempt's start before its
    /// activity runs, so a kill inside any activity leaves an abandoned attempt).
    pub intent_delay: Option<Duration>,
}

/// Reads `HK8S_HOST_ID`, `HK8S_MACHINE_ID` and `HK8S_LEASE_TTL_SECS` (2…3600).
///
/// # Errors
/// A TTL that is not a whole number of seconds in range (exit 2).
pub fn runner_env() -> Result<RunnerEnv, Failure> {
    let mut owner = Owner::current();
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if let Some(host) = set("HK8S_HOST_ID") {
        owner.host = host.trim().to_owned();
    }
    if let Some(machine) = set("HK8S_MACHINE_ID") {
        owner.machine = machine.trim().to_owned();
    }
    let lease_ttl = match set("HK8S_LEASE_TTL_SECS") {
        Some(v) => Some(
            v.trim()
                .parse::<u64>()
                .ok()
                .filter(|s| (2..=3600).contains(s))
                .map(Duration::from_secs)
                .ok_or_else(|| {
                    usage(anyhow!(
                        "HK8S_LEASE_TTL_SECS: {v:?} is not a whole number of seconds between 2 and 3600"
                    ))
                })?,
        ),
        None => None,
    };
    let intent_delay = set("HK8S_DEBUG_INTENT_DELAY_MS")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis);
    Ok(RunnerEnv {
        owner,
        lease_ttl,
        intent_delay,
    })
}
