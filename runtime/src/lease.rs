//! Lease acquisition with the takeover rules, and the heartbeat that keeps a lease alive.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hk8s_journal::{Journal, JournalError, Lease, Owner, RunId, Takeover};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::error::RuntimeError;

/// Whether process `pid` exists on this host (`kill(pid, 0)`; EPERM means it exists).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    let Some(pid) = rustix::process::Pid::from_raw(raw) else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(errno) => errno != rustix::io::Errno::SRCH,
    }
}

/// Acquires the run's lease under the takeover rules.
///
/// # Flow
/// 1. Try to take a free (or expired, or our own) lease.
/// 2. Held by someone else: with `force`, take it over; if the holder runs on this machine (same
///    host name, boot id and PID namespace: [`Owner::same_machine`]) and its pid is dead, take it
///    over at once (compare-and-swap on the holder's owner id); otherwise refuse with
///    [`RuntimeError::LeaseHeld`] naming the holder's host and pid.
///
/// # Caveats
/// A dead holder's pid reused by an unrelated process looks alive: the run then needs `force`
/// (or waiting for the lease to expire).
pub fn acquire(
    journal: &Journal,
    run: &RunId,
    owner: &Owner,
    clock: &dyn Clock,
    ttl: Duration,
    force: bool,
) -> Result<Lease, RuntimeError> {
    let first = if force {
        Takeover::Force
    } else {
        Takeover::IfFree
    };
    match journal.acquire_lease(run, owner, clock.now(), ttl, first) {
        Ok(lease) => Ok(lease),
        Err(JournalError::LeaseHeld { holder, .. })
            if owner.same_machine(&holder) && !pid_alive(holder.pid) =>
        {
            tracing::info!(run = %run, holder = %holder, "previous holder is dead; taking over");
            journal
                .acquire_lease(run, owner, clock.now(), ttl, Takeover::Steal(*holder))
                .map_err(|e| lease_error(run, e))
        }
        Err(e) => Err(lease_error(run, e)),
    }
}

fn lease_error(run: &RunId, error: JournalError) -> RuntimeError {
    match error {
        JournalError::LeaseHeld {
            run,
            holder,
            expires_at,
        } => RuntimeError::LeaseHeld {
            run,
            holder,
            expires_at,
        },
        JournalError::RunFinished { run, status } => RuntimeError::RunFinished { run, status },
        JournalError::Fenced { .. } => RuntimeError::LeaseLost { run: *run },
        source => RuntimeError::Journal {
            operation: "acquire lease",
            source,
        },
    }
}

/// The lease shared by the step writers and the heartbeat.
pub(crate) type SharedLease = Arc<Mutex<Lease>>;

/// Reads the current lease.
pub(crate) fn current(lease: &SharedLease) -> Lease {
    lease.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// How long after its last successful renewal a holder may keep acting: `ttl` less a margin
/// (a sixth of the TTL, at most 5 s), so it stops before another runner can take the lease over
/// even if its own clock runs a little slow or a renewal's answer was delayed.
pub fn renew_deadline(ttl: Duration) -> Duration {
    ttl.saturating_sub((ttl / 6).min(Duration::from_secs(5)))
}

/// Renews the lease every `ttl / 3` until `stop` is cancelled; cancels `lost` if fenced out, or
/// when no renewal succeeded within [`renew_deadline`] of the last one (the journal is
/// unreachable: another runner may take the run over once the lease expires, so this one stops
/// acting first).
pub(crate) async fn heartbeat(
    journal: Arc<Journal>,
    lease: SharedLease,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    stop: CancellationToken,
    lost: CancellationToken,
) {
    let period = (ttl / 3).max(Duration::from_millis(10));
    let deadline = renew_deadline(ttl);
    // Monotonic: a renewal's success is measured on this process's own clock, whatever the
    // journal's clock says.
    let mut renewed_at = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = clock.sleep(period) => {}
        }
        let mut renewed = current(&lease);
        let journal_call = journal.clone();
        let now = clock.now();
        // Off the runtime's worker: a journal that does not answer must not stall the check.
        let call = tokio::task::spawn_blocking(move || {
            let result = journal_call.renew_lease(&mut renewed, now, ttl);
            (result, renewed)
        });
        let left = deadline.saturating_sub(renewed_at.elapsed());
        let outcome = tokio::select! {
            () = stop.cancelled() => return,
            joined = tokio::time::timeout(left, call) => joined,
        };
        match outcome {
            Ok(Ok((Ok(()), renewed))) => {
                renewed_at = tokio::time::Instant::now();
                *lease.lock().unwrap_or_else(PoisonError::into_inner) = renewed;
            }
            Ok(Ok((Err(JournalError::Fenced { run }), _))) => {
                tracing::warn!(%run, "lease lost: another process took the run over");
                lost.cancel();
                return;
            }
            Ok(Ok((Err(error), _))) => {
                tracing::warn!(%error, "lease renewal failed; retrying");
            }
            Ok(Err(error)) => tracing::warn!(%error, "lease renewal task failed; retrying"),
            Err(_) => {}
        }
        if renewed_at.elapsed() >= deadline {
            let run = current(&lease).run_id;
            tracing::warn!(
                %run,
                "lease lost: no renewal succeeded within {deadline:?}; stopping before the lease can pass to another runner"
            );
            lost.cancel();
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn own_pid_is_alive_and_a_reaped_child_is_dead() {
        assert!(pid_alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!pid_alive(pid));
        assert!(!pid_alive(u32::MAX));
    }
}
