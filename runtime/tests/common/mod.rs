//! Shared by the multi-runner tests on PostgreSQL: harness processes whose output lines are
//! stamped on arrival, a cuttable TCP path to the database, and journal checks.

#![allow(dead_code, clippy::unwrap_used)] // Each test binary uses part of it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hk8s_journal::{Journal, Location, OpenOptions, RunId, RunState, RunStatus, StepStatus};

pub const HARNESS: &str = env!("CARGO_BIN_EXE_hk8s-crash-harness");
const WAIT: Duration = Duration::from_secs(120);

/// The activities' keys, each of which must be in the ledger exactly once at the end.
pub const EFFECTS: [&str; 9] = [
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

/// A fresh database and ledger.
pub struct Case {
    _dir: tempfile::TempDir,
    pub url: String,
    pub ledger: PathBuf,
}

impl Case {
    /// `None` after `skip` without a PostgreSQL test server.
    pub fn new() -> Option<Case> {
        let server = hk8s_testkit::postgres()?;
        let dir = tempfile::tempdir().unwrap();
        Some(Case {
            url: server.fresh_database(),
            ledger: dir.path().join("ledger"),
            _dir: dir,
        })
    }

    pub fn journal(&self) -> Journal {
        Journal::open_location(
            &Location::Postgres(self.url.clone()),
            OpenOptions::default(),
        )
        .unwrap()
    }

    /// Starts a harness on `journal_url` (the case's, or a proxy's).
    pub fn spawn(&self, journal_url: &str, run: Option<&str>, extra: &[&str]) -> Proc {
        let mut cmd = Command::new(HARNESS);
        cmd.arg("--journal")
            .arg(journal_url)
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

    pub fn state(&self, run: &str) -> RunState {
        self.journal()
            .load_run(&run.parse::<RunId>().unwrap())
            .unwrap()
    }

    /// Every effect in the ledger exactly once.
    pub fn assert_ledger_exactly_once(&self) {
        let text = std::fs::read_to_string(&self.ledger).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        let mut expected = EFFECTS.to_vec();
        expected.sort_unstable();
        assert_eq!(lines, expected, "ledger");
    }

    /// The run succeeded with every step succeeded.
    pub fn assert_succeeded(&self, run: &str) -> RunState {
        let state = self.state(run);
        assert_eq!(state.run.status, RunStatus::Succeeded, "{state:#?}");
        assert_eq!(state.steps.len(), EFFECTS.len() + 1, "{state:#?}");
        assert!(
            state
                .steps
                .iter()
                .all(|s| s.status == StepStatus::Succeeded),
            "{state:#?}"
        );
        state
    }
}

/// A harness process; its stdout lines are stamped with their arrival instant.
pub struct Proc {
    pub child: Child,
    rx: mpsc::Receiver<(Instant, String)>,
    pub lines: Vec<(Instant, String)>,
    stderr: Option<JoinHandle<String>>,
}

/// How a harness process ended.
#[derive(Debug)]
pub struct Ended {
    pub code: Option<i32>,
    pub lines: Vec<(Instant, String)>,
    pub stderr: String,
}

impl Proc {
    fn new(mut child: Child) -> Proc {
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
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

    pub fn pid(&self) -> rustix::process::Pid {
        rustix::process::Pid::from_raw(i32::try_from(self.child.id()).unwrap()).unwrap()
    }

    pub fn signal(&self, signal: rustix::process::Signal) {
        rustix::process::kill_process(self.pid(), signal).unwrap();
    }

    /// Reads lines until one satisfies `pred`; panics if the process closes its output first.
    pub fn wait_line(&mut self, pred: impl Fn(&str) -> bool) -> (Instant, String) {
        loop {
            match self.rx.recv_timeout(WAIT) {
                Ok(line) => {
                    self.lines.push(line.clone());
                    if pred(&line.1) {
                        return line;
                    }
                }
                Err(e) => panic!("no matching line ({e:?}); output so far: {:#?}", self.lines),
            }
        }
    }

    /// The run id the harness printed.
    pub fn run_id(&mut self) -> String {
        let (_, line) = self.wait_line(|l| l.starts_with("run "));
        line.trim_start_matches("run ").to_owned()
    }

    pub fn wait(mut self) -> Ended {
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.rx.recv_timeout(WAIT) {
            self.lines.push(line);
        }
        Ended {
            code: status.code(),
            lines: self.lines,
            stderr: self.stderr.take().unwrap().join().unwrap(),
        }
    }

    pub fn kill(mut self) -> Ended {
        let _ = self.child.kill();
        self.wait()
    }
}

/// A TCP path to the database that the test can cut: after [`Proxy::cut`] nothing more is
/// forwarded either way and new connections are accepted but never answered (a silent network,
/// the worst case for a client: no reset, no error, just nothing).
pub struct Proxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
}

impl Proxy {
    pub fn new(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_owned();
        let flag = cut.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                if flag.load(Ordering::SeqCst) {
                    held.push(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                pump(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    flag.clone(),
                );
                pump(server, client, flag.clone());
            }
        });
        Proxy { port, cut }
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// `url` with its host and port replaced by this proxy's.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap();
        let (authority, path) = rest.split_once('/').unwrap();
        let user = authority
            .rsplit_once('@')
            .map(|(u, _)| format!("{u}@"))
            .unwrap_or_default();
        format!("{scheme}://{user}127.0.0.1:{}/{path}", self.port)
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, cut: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        from.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut buf = [0_u8; 16 * 1024];
        loop {
            if cut.load(Ordering::SeqCst) {
                // Hold both sockets open and silent until the test process ends.
                loop {
                    std::thread::park();
                }
            }
            match from.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if cut.load(Ordering::SeqCst) {
                        continue;
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        }
    });
}

/// The host:port of a `postgres://user@host:port/db` URL.
pub fn host_port(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let authority = rest.split_once('/').unwrap().0;
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, h)| h)
        .to_owned()
}

/// Reads the ledger path (debugging aid).
pub fn ledger_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
