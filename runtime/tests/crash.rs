//! Crash suite: the `hk8s-crash-harness` workflow (sequential and concurrent steps, a retrying
//! step, a durable sleep; activities append keyed lines to a ledger file idempotently) is killed
//! with SIGKILL at every step boundary and at seeded random instants, then resumed until it
//! succeeds. Each time: the run ends `succeeded`, every effect is in the ledger exactly once, no
//! activity runs after its step's completion was journaled, and the journal's step list equals
//! that of an uninterrupted run. Plus two resumers at once, and SIGTERM → `interrupted`.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hk8s_journal::{Journal, Location, OpenOptions, RunId, RunStatus, StepStatus};
use rand::{Rng, SeedableRng};

/// `on_both_backends!(name)`: runs `fn name(backend)` as `name::sqlite` and `name::postgres`
/// (which skips locally, and fails under CI, without a PostgreSQL test server).
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(super::Backend::Sqlite);
            }

            #[test]
            fn postgres() {
                if hk8s_testkit::postgres().is_some() {
                    super::$name(super::Backend::Postgres);
                }
            }
        }
    };
}

const HARNESS: &str = env!("CARGO_BIN_EXE_hk8s-crash-harness");
const WAIT: Duration = Duration::from_secs(120);
const EFFECTS: [&str; 9] = [
    "network",
    "server/cp-1",
    "server/cp-2",
    "server/cp-3",
    "flaky",
    "bootstrap",
    "addon/cni",
    "addon/csi",
    "kubeconfig",
];

/// Which journal backend a case runs on: every test runs on both.
#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

/// One journal + ledger pair in a fresh directory (and a fresh database on PostgreSQL).
struct Case {
    _dir: tempfile::TempDir,
    journal: OsString,
    ledger: PathBuf,
}

impl Case {
    fn new(backend: Backend) -> Case {
        let dir = tempfile::tempdir().unwrap();
        let journal = match backend {
            Backend::Sqlite => dir.path().join("journal.db").into_os_string(),
            Backend::Postgres => hk8s_testkit::postgres()
                .expect("checked by the test")
                .fresh_database()
                .into(),
        };
        Case {
            journal,
            ledger: dir.path().join("ledger"),
            _dir: dir,
        }
    }

    fn open_journal(&self) -> Journal {
        Journal::open_location(&Location::parse(&self.journal), OpenOptions::default()).unwrap()
    }

    fn spawn(&self, run: Option<&str>, extra: &[&str]) -> Proc {
        let mut cmd = Command::new(HARNESS);
        cmd.arg("--journal")
            .arg(&self.journal)
            .arg("--ledger")
            .arg(&self.ledger);
        match run {
            None => cmd.arg("start"),
            Some(id) => cmd.arg("resume").arg(id),
        };
        cmd.args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Proc::new(cmd.spawn().unwrap())
    }
}

/// A running harness process whose output is drained by reader threads.
struct Proc {
    child: Child,
    rx: mpsc::Receiver<String>,
    lines: Vec<String>,
    stderr: Option<JoinHandle<String>>,
}

/// How a harness process ended.
#[derive(Debug)]
struct Ended {
    code: Option<i32>,
    killed: bool,
    lines: Vec<String>,
    stderr: String,
}

impl Proc {
    fn new(mut child: Child) -> Proc {
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Proc {
            child,
            rx,
            lines: Vec::new(),
            stderr: Some(stderr),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads lines until one satisfies `pred`; `None` if the process closed its output first.
    fn wait_line(&mut self, pred: impl Fn(&str) -> bool) -> Option<String> {
        loop {
            match self.rx.recv_timeout(WAIT) {
                Ok(line) => {
                    self.lines.push(line.clone());
                    if pred(&line) {
                        return Some(line);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "harness silent for {WAIT:?}; output so far: {:#?}",
                        self.lines
                    )
                }
            }
        }
    }

    fn kill(self) -> Ended {
        self.finish(true)
    }

    fn wait(self) -> Ended {
        self.finish(false)
    }

    fn finish(mut self, kill: bool) -> Ended {
        let mut killed = false;
        if kill && self.child.try_wait().unwrap().is_none() {
            self.child.kill().unwrap(); // SIGKILL
            killed = true;
        }
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.rx.recv_timeout(WAIT) {
            self.lines.push(line);
        }
        let stderr = self.stderr.take().unwrap().join().unwrap();
        Ended {
            code: status.code(),
            killed,
            lines: self.lines,
            stderr,
        }
    }
}

fn run_id_of(lines: &[String]) -> String {
    lines
        .iter()
        .find_map(|l| l.strip_prefix("run ").map(str::to_string))
        .unwrap_or_else(|| panic!("no run id in {lines:#?}"))
}

fn boundary_number(line: &str) -> Option<u32> {
    line.strip_prefix("boundary ")?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

/// The journal's step list, comparable across runs (ordered by key: concurrent steps may be
/// reached in any order).
type StepList = Vec<(
    String,
    String,
    String,
    StepStatus,
    Option<serde_json::Value>,
)>;

fn journal_state(case: &Case, run: &str) -> (RunStatus, StepList) {
    let journal = case.open_journal();
    let state = journal.load_run(&run.parse::<RunId>().unwrap()).unwrap();
    let mut steps: StepList = state
        .steps
        .into_iter()
        .map(|s| {
            // A durable sleep journals its wall-clock wake-up instant: compare only that it is one.
            let output = if s.activity == "sleep" {
                let wake: chrono::DateTime<chrono::Utc> =
                    serde_json::from_value(s.output.clone().unwrap()).unwrap();
                assert!(wake.timestamp() > 0);
                Some(serde_json::json!("<wake-up instant>"))
            } else {
                s.output
            };
            (s.key, s.activity, s.input_hash, s.status, output)
        })
        .collect();
    steps.sort_by(|a, b| a.0.cmp(&b.0));
    (state.run.status, steps)
}

/// Resumes the run once, without interference: it must succeed.
fn resume_to_end(case: &Case, run: &str, history: &mut Vec<Vec<String>>) {
    let ended = case.spawn(Some(run), &[]).wait();
    history.push(ended.lines.clone());
    assert_eq!(ended.code, Some(0), "resume failed: {ended:#?}");
}

/// Checks the end state of one case against the uninterrupted reference.
fn check(case: &Case, run: &str, reference: &StepList, history: &[Vec<String>], what: &str) {
    let (status, steps) = journal_state(case, run);
    assert_eq!(status, RunStatus::Succeeded, "{what}: run status");
    assert_eq!(
        &steps, reference,
        "{what}: step list differs from the uninterrupted run"
    );
    let ledger = std::fs::read_to_string(&case.ledger).unwrap();
    let mut lines: Vec<&str> = ledger.lines().collect();
    lines.sort_unstable();
    let mut expected = EFFECTS.to_vec();
    expected.sort_unstable();
    assert_eq!(lines, expected, "{what}: every effect exactly once");
    // No activity is called again once its completion was journaled (the line is printed
    // after the commit, so a printed completion is a committed one).
    let mut completed = HashSet::new();
    for (process, lines) in history.iter().enumerate() {
        for line in lines {
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["boundary", _, "step-completed", key, ..] => {
                    completed.insert(key.to_string());
                }
                ["call", key, _] => assert!(
                    !completed.contains(*key),
                    "{what}: process {process} called `{key}` after its step completed"
                ),
                _ => {}
            }
        }
    }
}

/// The uninterrupted run with harness arguments `extra`: its step list, boundary count and wall
/// time.
fn reference(backend: Backend, extra: &[&str]) -> (StepList, u32, Duration) {
    let case = Case::new(backend);
    let start = Instant::now();
    let ended = case.spawn(None, extra).wait();
    let wall = start.elapsed();
    assert_eq!(ended.code, Some(0), "{ended:#?}");
    let run = run_id_of(&ended.lines);
    let boundaries = ended
        .lines
        .iter()
        .filter_map(|l| boundary_number(l))
        .max()
        .unwrap();
    let (status, steps) = journal_state(&case, &run);
    assert_eq!(status, RunStatus::Succeeded);
    assert_eq!(
        steps.len(),
        EFFECTS.len() + 1,
        "9 activities and the durable sleep"
    );
    check(&case, &run, &steps, &[ended.lines], "uninterrupted run");
    (steps, boundaries, wall)
}

/// Intent delays whose boundaries do not depend on timing: every attempt's start journaled
/// before its activity runs (an intent commit per attempt), or never on its own (the 4 ms
/// activities end long before a minute; one commit per attempt).
const DETERMINISTIC_INTENT_DELAYS: [&str; 2] = ["0", "60000"];

on_both_backends!(sigkill_at_every_step_boundary_then_resume);
fn sigkill_at_every_step_boundary_then_resume(backend: Backend) {
    let started = Instant::now();
    let mut counts = Vec::new();
    std::thread::scope(|scope| {
        let lanes: Vec<_> = DETERMINISTIC_INTENT_DELAYS
            .iter()
            .map(|delay| {
                scope.spawn(move || {
                    let mode = ["--intent-delay-ms", delay];
                    let (reference, boundaries) = {
                        let (steps, n, _) = reference(backend, &mode);
                        (steps, n)
                    };
                    assert!(
                        boundaries >= 20,
                        "expected every step to have boundaries, got {boundaries}"
                    );
                    kill_at_every_boundary(backend, &mode, &reference, boundaries);
                    (*delay, boundaries)
                })
            })
            .collect();
        for lane in lanes {
            counts.push(lane.join().unwrap());
        }
    });
    assert!(
        counts[0].1 > counts[1].1,
        "intent records add boundaries: {counts:?}"
    );
    eprintln!(
        "killed at every boundary (intent delay ms, boundaries): {counts:?} in {:?}",
        started.elapsed()
    );
}

/// Kills a fresh run at each boundary `1..=boundaries`, resumes it and checks the end state.
fn kill_at_every_boundary(backend: Backend, mode: &[&str], reference: &StepList, boundaries: u32) {
    for n in 1..=boundaries {
        let case = Case::new(backend);
        let stop = n.to_string();
        let mut args = vec!["--stop-at", &stop];
        args.extend_from_slice(mode);
        let mut proc = case.spawn(None, &args);
        let hit = proc.wait_line(|l| boundary_number(l) == Some(n));
        assert!(
            hit.is_some(),
            "boundary {n} never reached: {:#?}",
            proc.lines
        );
        let ended = proc.kill();
        assert!(ended.killed, "boundary {n}: process had exited");
        let last = ended.lines.iter().filter_map(|l| boundary_number(l)).max();
        assert_eq!(last, Some(n), "killed exactly at boundary {n}");
        let run = run_id_of(&ended.lines);
        let mut history = vec![ended.lines];
        resume_to_end(&case, &run, &mut history);
        check(
            &case,
            &run,
            reference,
            &history,
            &format!("kill at boundary {n} ({mode:?})"),
        );
    }
}

on_both_backends!(sigkill_at_seeded_random_instants_then_resume);
fn sigkill_at_seeded_random_instants_then_resume(backend: Backend) {
    let started = Instant::now();
    let (reference, _, wall) = reference(backend, &[]);
    let max_delay_ms = u64::try_from(wall.as_millis()).unwrap().clamp(50, 2000);
    let mut kills = 0;
    let mut seeds = 0;
    for seed in 0..40u64 {
        if kills >= 24 {
            break;
        }
        seeds += 1;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let case = Case::new(backend);
        let mut run: Option<String> = None;
        let mut history = Vec::new();
        for round in 0.. {
            let mut proc = case.spawn(run.as_deref(), &[]);
            let ended = if round < 6 {
                std::thread::sleep(Duration::from_millis(rng.random_range(0..=max_delay_ms)));
                proc.kill()
            } else {
                proc.wait_line(|_| false);
                proc.wait()
            };
            if run.is_none() {
                // Killed before it even printed its run id: nothing was created yet, or the
                // run exists without our knowing its id; start over in a fresh case then.
                match ended.lines.iter().find_map(|l| l.strip_prefix("run ")) {
                    Some(id) => run = Some(id.to_string()),
                    None => {
                        kills += u32::from(ended.killed);
                        break;
                    }
                }
            }
            history.push(ended.lines.clone());
            if ended.killed {
                kills += 1;
                continue;
            }
            assert_eq!(ended.code, Some(0), "seed {seed} round {round}: {ended:#?}");
            let run = run.as_deref().unwrap();
            check(&case, run, &reference, &history, &format!("seed {seed}"));
            break;
        }
    }
    assert!(kills >= 20, "only {kills} random kills in {seeds} seeds");
    eprintln!(
        "{kills} random kills over {seeds} seeds in {:?}",
        started.elapsed()
    );
}

on_both_backends!(two_resumers_at_once_exactly_one_proceeds);
fn two_resumers_at_once_exactly_one_proceeds(backend: Backend) {
    let case = Case::new(backend);
    let (reference, _, _) = reference(backend, &[]);
    // Leave the run with a dead holder.
    let mut first = case.spawn(None, &["--stop-at", "1"]);
    first.wait_line(|l| boundary_number(l) == Some(1)).unwrap();
    let first = first.kill();
    let run = run_id_of(&first.lines);
    let mut history = vec![first.lines];

    // Both find the dead holder; the one that wins freezes at its first boundary, holding the
    // lease, so the other must see a live holder.
    let mut a = case.spawn(Some(&run), &["--stop-at", "1"]);
    let mut b = case.spawn(Some(&run), &["--stop-at", "1"]);
    let deadline = Instant::now() + WAIT;
    let (loser_is_a, loser_code) = loop {
        if let Some(status) = a.child.try_wait().unwrap() {
            break (true, status.code());
        }
        if let Some(status) = b.child.try_wait().unwrap() {
            break (false, status.code());
        }
        assert!(Instant::now() < deadline, "neither resumer stopped");
        std::thread::sleep(Duration::from_millis(5));
    };
    let (loser, mut winner) = if loser_is_a { (a, b) } else { (b, a) };
    let winner_pid = winner.pid();
    let loser = loser.wait();
    assert_eq!(
        loser_code,
        Some(4),
        "the loser exits with the lease-held code: {loser:#?}"
    );
    assert!(
        loser
            .stderr
            .contains(&format!("is being executed by pid {winner_pid} on ")),
        "the message names the holder: {}",
        loser.stderr
    );
    assert!(
        !loser
            .lines
            .iter()
            .any(|l| l.starts_with("call ") || l.starts_with("boundary ")),
        "the loser ran nothing: {loser:#?}"
    );
    assert!(
        winner
            .wait_line(|l| boundary_number(l) == Some(1))
            .is_some(),
        "the winner proceeds"
    );
    history.push(winner.kill().lines);
    resume_to_end(&case, &run, &mut history);
    check(&case, &run, &reference, &history, "two resumers");
}

on_both_backends!(sigterm_marks_the_run_interrupted_never_failed);
fn sigterm_marks_the_run_interrupted_never_failed(backend: Backend) {
    let case = Case::new(backend);
    let (reference, _, _) = reference(backend, &[]);
    let mut proc = case.spawn(None, &[]);
    proc.wait_line(|l| l == "call server/cp-1 1").unwrap();
    let pid = rustix::process::Pid::from_raw(i32::try_from(proc.pid()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let ended = proc.wait();
    assert_eq!(ended.code, Some(3), "interrupted exit code: {ended:#?}");
    assert!(ended.lines.iter().any(|l| l == "outcome interrupted"));
    let run = run_id_of(&ended.lines);
    let (status, steps) = journal_state(&case, &run);
    assert_eq!(status, RunStatus::Interrupted);
    assert!(
        steps.iter().all(|s| s.3 != StepStatus::Failed),
        "{steps:#?}"
    );
    let mut history = vec![ended.lines];
    resume_to_end(&case, &run, &mut history);
    check(&case, &run, &reference, &history, "sigterm");
}
