//! Two runners on two "machines" (two harness processes with different host names and machine
//! identities, so the dead-pid shortcut cannot mask lease expiry), one run, a PostgreSQL
//! journal whose clock decides expiry:
//! - the holder is SIGKILLed inside a step: the other takes over only after the lease expired,
//!   the killed attempt is journaled as abandoned, the run succeeds, each effect happens once;
//! - the holder is SIGSTOPped past its TTL, the other takes over and finishes, then SIGCONT:
//!   the stale holder writes nothing more (fenced) and exits with lease lost;
//! - the holder's path to the database is cut: it stops acting before the lease can pass, and
//!   the other finishes the run.
//!
//! The ledger file stands for the cloud: an idempotent activity appends its key once.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use common::{Case, Proxy, host_port};
use hk8s_journal::{ABANDONED_MESSAGE, AttemptOutcome, FailureKind};
use rustix::process::Signal;

/// Lease TTL of both runners: short, so a takeover costs seconds; expiry is still decided by
/// the database clock, and no step of the harness takes longer than a few milliseconds.
const TTL_MS: &str = "3000";

#[test]
fn sigkill_inside_a_step_the_other_runner_takes_over_after_expiry() {
    let Some(case) = Case::new() else { return };
    // Runner A journals every attempt's start before its activity (intent delay 0) and
    // freezes right after the first one: the `network` attempt is open when A is killed.
    let mut a = case.spawn(
        &case.url,
        None,
        &[
            "--machine",
            "runner-a",
            "--ttl-ms",
            TTL_MS,
            "--intent-delay-ms",
            "0",
            "--stop-at",
            "1",
        ],
    );
    let run = a.run_id();
    a.wait_line(|l| l.starts_with("boundary 1 attempt-recorded network 1"));
    let held = case.state(&run);
    let a_expires = held.run.lease_expires_at.unwrap();
    let a_fence = held.run.fence;
    a.signal(Signal::KILL);
    let _ = a.wait();

    // Runner B on another machine: A's pid is dead, but B cannot know that; it waits.
    let b = case.spawn(
        &case.url,
        Some(&run),
        &[
            "--machine",
            "runner-b",
            "--ttl-ms",
            TTL_MS,
            "--wait-for-lease",
        ],
    );
    let ended = b.wait();
    assert_eq!(ended.code, Some(0), "{ended:#?}");
    assert!(
        ended.lines.iter().any(|(_, l)| l == "waiting"),
        "B had to wait: {ended:#?}"
    );

    let state = case.assert_succeeded(&run);
    case.assert_ledger_exactly_once();
    let attempts: Vec<_> = state.attempts_of("network").collect();
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    let killed = attempts[0];
    assert_eq!(
        (killed.fence, killed.outcome, killed.message.as_deref()),
        (
            a_fence,
            Some(AttemptOutcome::Failed(FailureKind::Interrupted)),
            Some(ABANDONED_MESSAGE)
        ),
        "the killed attempt is journaled as abandoned"
    );
    let taken = attempts[1];
    assert_eq!(taken.fence, a_fence + 1);
    assert_eq!(taken.outcome, Some(AttemptOutcome::Succeeded));
    // B's first attempt started only once A's lease had expired (one machine, one clock here).
    assert!(
        taken.started_at >= a_expires,
        "takeover at {} before A's lease expired at {a_expires}",
        taken.started_at
    );
    assert_eq!(state.run.resume_count, 1);
}

#[test]
fn sigstop_past_the_ttl_then_sigcont_the_stale_holder_is_fenced_and_exits() {
    let Some(case) = Case::new() else { return };
    let mut a = case.spawn(
        &case.url,
        None,
        &["--machine", "runner-a", "--ttl-ms", TTL_MS],
    );
    let run = a.run_id();
    a.wait_line(|l| l == "call server/cp-1 1");
    a.signal(Signal::STOP);

    let b = case.spawn(
        &case.url,
        Some(&run),
        &[
            "--machine",
            "runner-b",
            "--ttl-ms",
            TTL_MS,
            "--wait-for-lease",
        ],
    );
    let ended = b.wait();
    assert_eq!(ended.code, Some(0), "{ended:#?}");
    let without_a = case.assert_succeeded(&run);
    case.assert_ledger_exactly_once();

    // A wakes up holding a lease that passed to B long ago.
    a.signal(Signal::CONT);
    let woke = a.wait();
    assert_eq!(woke.code, Some(5), "A exits with lease lost: {woke:#?}");
    assert!(
        woke.stderr.contains("another process took over run"),
        "{woke:#?}"
    );
    assert_eq!(case.state(&run), without_a, "A wrote nothing after waking");
    case.assert_ledger_exactly_once();
}

#[test]
fn a_runner_cut_off_from_the_database_stops_acting_before_its_lease_can_pass() {
    let Some(case) = Case::new() else { return };
    let proxy = Proxy::new(&host_port(&case.url));
    let through_proxy = proxy.url_for(&case.url);
    let mut a = case.spawn(
        &through_proxy,
        None,
        &[
            "--machine",
            "runner-a",
            "--ttl-ms",
            TTL_MS,
            "--call-timeout-ms",
            "500",
        ],
    );
    let run = a.run_id();
    a.wait_line(|l| l == "call server/cp-1 1");
    proxy.cut();

    let mut b = case.spawn(
        &case.url,
        Some(&run),
        &[
            "--machine",
            "runner-b",
            "--ttl-ms",
            TTL_MS,
            "--wait-for-lease",
        ],
    );
    let (b_first_call, _) = b.wait_line(|l| l.starts_with("call "));
    let ended = b.wait();
    assert_eq!(ended.code, Some(0), "{ended:#?}");
    let cut_off = a.wait();
    assert_ne!(cut_off.code, Some(0), "{cut_off:#?}");
    // A made no activity call once B could act: A had stopped before its lease passed.
    let a_last_call = cut_off
        .lines
        .iter()
        .filter(|(_, l)| l.starts_with("call "))
        .map(|(at, _)| *at)
        .max()
        .unwrap();
    assert!(
        a_last_call < b_first_call,
        "A acted after B took over: {cut_off:#?}"
    );
    case.assert_succeeded(&run);
    case.assert_ledger_exactly_once();
}
