//! The progress of a run as a person reads it, made from the runtime's events and the step keys
//! the workflows journal (`server/<node>`, `talos/apply/<node>`, `talos/ready/<node>`,
//! `talos/etcd`, `kube/nodes-ready`, ...):
//!
//! - on a terminal, one live line per node with its phase (creating server → booting → config
//!   applied → installing and rebooting → Talos up → etcd member → Ready) and elapsed time, a
//!   line for the steps in flight, and a printed line per finished cluster-wide step, warning
//!   or failure;
//! - without a terminal (CI, cron, journald), plain timestamped lines: each step's start and
//!   end, each node's phase, and "still waiting for … (N s)" at most every 30 s per step;
//! - with `--log-format json`, the same records as one JSON object per line.
//!
//! An attempt that fails on a step that waits for machines (the workflows run those under
//! their wait policy) and will be retried is an expected wait, never a warning; any other
//! failed attempt is a warning (`!`), a failed step an error (`✗`). Durations are wall time,
//! except in "still waiting" lines under `--sandbox`: those count sandbox time (wall time ×
//! the speed factor, the twin's clock), so their rhythm is that of a real cloud.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use hk8s_runtime::{Event, Observer};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use serde::Serialize;

use crate::args::{LogFormat, OutputFormat};

/// At most one "still waiting" line per step per this much (sandbox) time.
pub const WAIT_LINE_INTERVAL: Duration = Duration::from_secs(30);

/// Where a node is on its way to a Ready Kubernetes node. Phases only move forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Nothing has happened to the node yet in this run.
    Waiting,
    /// `server/<node>` runs: the Hetzner server is being created.
    CreatingServer,
    /// The server runs; `talos/apply/<node>` waits for its maintenance API.
    Booting,
    /// `talos/apply/<node>` is done: the machine config is applied.
    ConfigApplied,
    /// `talos/ready/<node>` waits: Talos installs and reboots (its API answers neither while it
    /// does, so the two cannot be told apart from outside).
    Installing,
    /// `talos/ready/<node>` is done: the configured Talos API answers over mTLS.
    TalosUp,
    /// `talos/etcd` is done: this control plane is a voting etcd member.
    EtcdMember,
    /// `kube/nodes-ready` is done: the node is a Ready Kubernetes node.
    Ready,
    /// A step of this node failed for good.
    Failed,
}

impl Phase {
    /// The phase as the display words it.
    pub fn label(self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::CreatingServer => "creating server",
            Phase::Booting => "booting",
            Phase::ConfigApplied => "config applied",
            Phase::Installing => "installing and rebooting",
            Phase::TalosUp => "Talos up",
            Phase::EtcdMember => "etcd member",
            Phase::Ready => "Ready",
            Phase::Failed => "failed",
        }
    }
}

/// The step key without a repeated pass's `@redo-…` suffix or a build's `@<key id>`.
fn base_key(key: &str) -> &str {
    key.split('@').next().unwrap_or(key)
}

/// The node a per-node step key is about, the node's phase while the step runs, and once it
/// is done.
pub fn node_step(key: &str) -> Option<(&str, Phase, Phase)> {
    let key = base_key(key);
    let steps = [
        ("server/", Phase::CreatingServer, Phase::Booting),
        ("talos/apply/", Phase::Booting, Phase::ConfigApplied),
        ("talos/ready/", Phase::Installing, Phase::TalosUp),
    ];
    steps.into_iter().find_map(|(prefix, running, done)| {
        key.strip_prefix(prefix)
            .filter(|n| !n.is_empty() && !n.contains('/'))
            .map(|n| (n, running, done))
    })
}

/// Which nodes a finished cluster-wide step moves on: (control planes only?, phase).
fn cluster_step_done(key: &str) -> Option<(bool, Phase)> {
    match base_key(key) {
        "talos/etcd" => Some((true, Phase::EtcdMember)),
        "kube/nodes-ready" => Some((false, Phase::Ready)),
        _ => None,
    }
}

/// Whether `key` is a step that waits for machines or controllers (the workflows run these under
/// their wait policy): its retried failures are expected waits, not warnings.
pub fn is_wait_step(key: &str) -> bool {
    let key = base_key(key);
    if key.starts_with("talos/apply/") || key.starts_with("talos/ready/") {
        return true;
    }
    if matches!(
        key,
        "talos/bootstrap"
            | "talos/etcd"
            | "talos/kubeconfig"
            | "kube/nodes-ready"
            | "kube/addons-ready"
            | "kube/verify-volume"
            | "kube/inventory"
    ) {
        return true;
    }
    // build/<arch>/ssh, build/<arch>/check, build/<arch>/snapshot
    matches!(
        key.split('/').collect::<Vec<_>>().as_slice(),
        ["build", _, "ssh" | "check" | "snapshot"]
    )
}

/// What a waiting step waits for, in words.
pub fn waiting_for(key: &str) -> String {
    if let Some((node, running, _)) = node_step(key) {
        return match running {
            Phase::Booting => format!("{node} to boot into Talos maintenance mode"),
            Phase::Installing => format!("{node} to install Talos and reboot"),
            _ => format!("server {node}"),
        };
    }
    let key = base_key(key);
    match key {
        "talos/bootstrap" => "etcd to bootstrap".to_string(),
        "talos/etcd" => "every control plane to join etcd".to_string(),
        "talos/kubeconfig" => "the kubeconfig".to_string(),
        "kube/nodes-ready" => "every node to be Ready".to_string(),
        "kube/addons-ready" => "the addons to be ready".to_string(),
        "kube/verify-volume" => "the test volume claim to bind".to_string(),
        _ => match key.split('/').collect::<Vec<_>>().as_slice() {
            ["build", arch, "ssh"] => format!("the {arch} rescue system's SSH"),
            ["build", arch, "check"] => format!("the {arch} image's boot check"),
            ["build", arch, "snapshot"] => format!("the {arch} snapshot"),
            _ => key.to_string(),
        },
    }
}

/// How bad a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Progress.
    Info,
    /// A failed attempt that is not an expected wait.
    Warn,
    /// A failed step.
    Error,
}

/// One thing worth telling: a line in plain mode, an object in JSON mode.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// How bad.
    pub level: Level,
    /// `step-started`, `step-completed`, `still-waiting`, `attempt-failed`, `step-failed`,
    /// `step-replayed`, `sleeping`, `phase` or `note`.
    pub event: &'static str,
    /// The step key.
    pub step: Option<String>,
    /// The node, for per-node steps and phases.
    pub node: Option<String>,
    /// The node's phase after this record.
    pub phase: Option<Phase>,
    /// The attempt number.
    pub attempt: Option<u32>,
    /// What happened, in words.
    pub message: String,
}

impl Record {
    fn new(timestamp: DateTime<Utc>, level: Level, event: &'static str, message: String) -> Self {
        Record {
            timestamp,
            level,
            event,
            step: None,
            node: None,
            phase: None,
            attempt: None,
            message,
        }
    }

    fn step(mut self, key: &str) -> Self {
        self.step = Some(key.to_string());
        if let Some((node, _, _)) = node_step(key) {
            self.node = Some(node.to_string());
        }
        self
    }

    /// The plain-text line (`<timestamp> <mark> <step>: <message>`).
    pub fn plain(&self) -> String {
        let mark = match (self.level, self.event) {
            (Level::Error, _) => "✗",
            (Level::Warn, _) => "!",
            (_, "step-started") => "→",
            (_, "step-completed") => "✓",
            (_, "step-replayed") => "↺",
            (_, "still-waiting" | "sleeping") => "…",
            (_, "phase") => "●",
            _ => "·",
        };
        let ts = self.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true);
        let subject = match (self.event, &self.node, &self.step) {
            ("phase", Some(node), _) => format!("{node}: "),
            (_, _, Some(step)) => format!("{step}: "),
            _ => String::new(),
        };
        format!("{ts} {mark} {subject}{}", self.message)
    }

    /// The JSON line.
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A duration as people read it: `850 ms`, `12 s`, `3m05s`.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else if d.as_millis() < 10_000 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{secs} s")
    }
}

struct StepState {
    started: DateTime<Utc>,
    last_wait_line: DateTime<Utc>,
}

struct NodeState {
    phase: Phase,
    control_plane: Option<bool>,
}

/// Turns runtime events into records. Pure: the caller passes the time of each event.
pub struct Tracker {
    scale: f64,
    steps: HashMap<String, StepState>,
    nodes: BTreeMap<String, NodeState>,
    order: Vec<String>,
    done: usize,
}

impl Tracker {
    /// A tracker whose waits are counted in wall time × `scale` (1 on a real cloud, the speed
    /// factor of a sandbox).
    pub fn new(scale: f64) -> Tracker {
        Tracker {
            scale: if scale.is_finite() && scale > 0.0 {
                scale
            } else {
                1.0
            },
            steps: HashMap::new(),
            nodes: BTreeMap::new(),
            order: Vec::new(),
            done: 0,
        }
    }

    /// Declares the run's nodes and their roles up front (from the spec's plan), so every node
    /// has its line from the start and `talos/etcd` moves the control planes only.
    pub fn plan(&mut self, nodes: &[(String, bool)]) {
        for (name, control_plane) in nodes {
            self.node(name).control_plane = Some(*control_plane);
        }
    }

    fn node(&mut self, name: &str) -> &mut NodeState {
        if !self.nodes.contains_key(name) {
            self.order.push(name.to_string());
        }
        self.nodes.entry(name.to_string()).or_insert(NodeState {
            phase: Phase::Waiting,
            control_plane: None,
        })
    }

    fn scaled(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
        let wall = (to - from).to_std().unwrap_or_default();
        Duration::from_secs_f64(wall.as_secs_f64() * self.scale)
    }

    /// Moves `node` to `phase` if that is forward; returns the phase record if it moved.
    fn advance(&mut self, node: &str, phase: Phase, now: DateTime<Utc>) -> Option<Record> {
        let state = self.node(node);
        if phase <= state.phase || state.phase == Phase::Failed {
            return None;
        }
        state.phase = phase;
        let mut r = Record::new(now, Level::Info, "phase", phase.label().to_string());
        r.node = Some(node.to_string());
        r.phase = Some(phase);
        Some(r)
    }

    fn step_done(&mut self, key: &str, now: DateTime<Utc>, out: &mut Vec<Record>) {
        if let Some((node, _, done)) = node_step(key) {
            let node = node.to_string();
            out.extend(self.advance(&node, done, now));
        }
        if let Some((control_planes_only, phase)) = cluster_step_done(key) {
            let names: Vec<String> = self
                .order
                .iter()
                .filter(|n| !control_planes_only || self.nodes[*n].control_plane == Some(true))
                .cloned()
                .collect();
            for n in names {
                out.extend(self.advance(&n, phase, now));
            }
        }
    }

    /// The records `event`, observed at `now`, gives.
    pub fn on_event(&mut self, event: &Event, now: DateTime<Utc>) -> Vec<Record> {
        let mut out = Vec::new();
        match event {
            Event::StepReplayed { key } => {
                self.done += 1;
                out.push(
                    Record::new(
                        now,
                        Level::Info,
                        "step-replayed",
                        "done earlier (replayed from the journal)".into(),
                    )
                    .step(key),
                );
                self.step_done(key, now, &mut out);
            }
            Event::AttemptStarted { key, attempt } if !self.steps.contains_key(key) => {
                self.steps.insert(
                    key.clone(),
                    StepState {
                        started: now,
                        last_wait_line: now,
                    },
                );
                let mut r =
                    Record::new(now, Level::Info, "step-started", "started".into()).step(key);
                r.attempt = Some(*attempt);
                out.push(r);
                if let Some((node, running, _)) = node_step(key) {
                    let node = node.to_string();
                    out.extend(self.advance(&node, running, now));
                }
            }
            Event::AttemptFailed {
                key,
                attempt,
                retry_at,
                message,
            } => {
                if retry_at.is_some() && is_wait_step(key) {
                    let state = self.steps.entry(key.clone()).or_insert(StepState {
                        started: now,
                        last_wait_line: now,
                    });
                    let (started, last) = (state.started, state.last_wait_line);
                    if self.scaled(last, now) >= WAIT_LINE_INTERVAL {
                        let waited = self.scaled(started, now);
                        if let Some(s) = self.steps.get_mut(key) {
                            s.last_wait_line = now;
                        }
                        let mut r = Record::new(
                            now,
                            Level::Info,
                            "still-waiting",
                            format!(
                                "still waiting for {} ({} s{}): {message}",
                                waiting_for(key),
                                waited.as_secs(),
                                if self.scale == 1.0 {
                                    ""
                                } else {
                                    " sandbox time"
                                }
                            ),
                        )
                        .step(key);
                        r.attempt = Some(*attempt);
                        out.push(r);
                    }
                } else {
                    let retry = match retry_at {
                        Some(at) => format!("; retrying at {}", at.format("%H:%M:%S")),
                        None => String::new(),
                    };
                    let mut r = Record::new(
                        now,
                        Level::Warn,
                        "attempt-failed",
                        format!("attempt {attempt} failed: {message}{retry}"),
                    )
                    .step(key);
                    r.attempt = Some(*attempt);
                    out.push(r);
                }
            }
            Event::StepCompleted { key, attempt } => {
                self.done += 1;
                let took = self
                    .steps
                    .remove(key)
                    .map(|s| (now - s.started).to_std().unwrap_or_default())
                    .unwrap_or_default();
                let mut r = Record::new(
                    now,
                    Level::Info,
                    "step-completed",
                    format!("done in {}", human(took)),
                )
                .step(key);
                r.attempt = Some(*attempt);
                out.push(r);
                self.step_done(key, now, &mut out);
            }
            Event::StepFailed { key, attempts } => {
                self.steps.remove(key);
                let mut r = Record::new(
                    now,
                    Level::Error,
                    "step-failed",
                    format!("failed after {attempts} attempt(s)"),
                )
                .step(key);
                r.attempt = Some(*attempts);
                out.push(r);
                if let Some((node, _, _)) = node_step(key) {
                    let node = node.to_string();
                    out.extend(self.advance(&node, Phase::Failed, now));
                }
            }
            Event::Sleeping { key, wake_at } => {
                out.push(
                    Record::new(
                        now,
                        Level::Info,
                        "sleeping",
                        format!("sleeps until {}", wake_at.format("%H:%M:%S")),
                    )
                    .step(key),
                );
            }
            _ => {}
        }
        for r in &mut out {
            if r.phase.is_none()
                && let Some(node) = &r.node
                && let Some(state) = self.nodes.get(node)
            {
                r.phase = Some(state.phase);
            }
        }
        out
    }

    /// The nodes in order of appearance, with their phases.
    pub fn nodes(&self) -> Vec<(String, Phase)> {
        self.order
            .iter()
            .map(|n| (n.clone(), self.nodes[n].phase))
            .collect()
    }

    /// The steps in flight (keys, sorted), and how many finished.
    pub fn running(&self) -> (Vec<String>, usize) {
        let mut keys: Vec<String> = self.steps.keys().cloned().collect();
        keys.sort();
        (keys, self.done)
    }
}

/// Which form the progress takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing (`-o json` without `--log-format`).
    Silent,
    /// Live lines on a terminal.
    Live,
    /// Plain timestamped lines on stderr.
    Plain,
    /// JSON lines on stderr.
    Json,
}

impl Mode {
    /// The mode for these options when stderr is (`terminal`) or is not a terminal.
    pub fn choose(output: OutputFormat, log_format: Option<LogFormat>, terminal: bool) -> Mode {
        match (log_format, output) {
            (Some(LogFormat::Json), _) => Mode::Json,
            (None, OutputFormat::Json) => Mode::Silent,
            _ if terminal => Mode::Live,
            _ => Mode::Plain,
        }
    }
}

struct Live {
    multi: MultiProgress,
    overall: ProgressBar,
    nodes: BTreeMap<String, ProgressBar>,
}

impl Live {
    fn new() -> Live {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new_spinner());
        overall.set_style(style("{spinner} {elapsed_short:>6}  {wide_msg}"));
        overall.enable_steady_tick(Duration::from_millis(120));
        Live {
            multi,
            overall,
            nodes: BTreeMap::new(),
        }
    }

    fn node_bar(&mut self, name: &str) -> &ProgressBar {
        if !self.nodes.contains_key(name) {
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_style(style(
                "  {spinner} {prefix:<24} {msg:<26} {elapsed_short:>6}",
            ));
            bar.set_prefix(name.to_string());
            bar.set_message(Phase::Waiting.label());
            bar.enable_steady_tick(Duration::from_millis(120));
            self.nodes.insert(name.to_string(), bar);
        }
        &self.nodes[name]
    }

    fn show(&mut self, records: &[Record], tracker: &Tracker) {
        for r in records {
            match r.event {
                "phase" => {
                    if let (Some(node), Some(phase)) = (&r.node, r.phase) {
                        let bar = self.node_bar(node).clone();
                        if phase == Phase::Booting || phase == Phase::CreatingServer {
                            // Elapsed counts from the node's first step.
                            if bar.message() == Phase::Waiting.label() {
                                bar.reset_elapsed();
                            }
                        }
                        bar.set_message(phase.label());
                        if matches!(phase, Phase::Ready | Phase::Failed) {
                            let mark = if phase == Phase::Ready { "✓" } else { "✗" };
                            bar.set_style(style(&format!(
                                "  {mark} {{prefix:<24}} {{msg:<26}} {{elapsed_short:>6}}"
                            )));
                            bar.finish();
                        }
                    }
                }
                // Per-node steps show on the node's line; cluster-wide ones get a line.
                "step-completed" if r.node.is_none() => {
                    let _ = self.multi.println(format!(
                        "  ✓ {} ({})",
                        r.step.as_deref().unwrap_or_default(),
                        r.message.trim_start_matches("done in ")
                    ));
                }
                "attempt-failed" | "step-failed" | "sleeping" => {
                    let mark = match r.level {
                        Level::Error => "✗",
                        Level::Warn => "!",
                        Level::Info => "…",
                    };
                    let _ = self.multi.println(format!(
                        "  {mark} {}: {}",
                        r.step.as_deref().unwrap_or_default(),
                        r.message
                    ));
                }
                _ => {}
            }
        }
        let (running, done) = tracker.running();
        let cluster_wide: Vec<String> = running
            .iter()
            .filter(|k| node_step(k).is_none())
            .map(|k| {
                if is_wait_step(k) {
                    format!("waiting for {}", waiting_for(k))
                } else {
                    k.clone()
                }
            })
            .collect();
        let nodes = tracker.nodes();
        let ready = nodes.iter().filter(|(_, p)| *p == Phase::Ready).count();
        let mut msg = format!("{done} steps done");
        if !nodes.is_empty() {
            let _ = write!(msg, " · {ready}/{} nodes Ready", nodes.len());
        }
        if !cluster_wide.is_empty() {
            let _ = write!(msg, " · {}", cluster_wide.join(", "));
        }
        self.overall.set_message(msg);
    }
}

fn style(template: &str) -> ProgressStyle {
    let base =
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner());
    base.with_key(
        "elapsed_short",
        |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let secs = state.elapsed().as_secs();
            let _ = if secs >= 60 {
                write!(w, "{}m{:02}s", secs / 60, secs % 60)
            } else {
                write!(w, "{secs}s")
            };
        },
    )
}

/// A progress display fed by runtime events.
pub struct Progress {
    mode: Mode,
    state: Mutex<(Tracker, Option<Live>)>,
}

impl Progress {
    /// A display in `mode`; durations are scaled by `scale` (the sandbox's speed factor, or 1).
    pub fn new(mode: Mode, scale: f64) -> Arc<Progress> {
        let live = (mode == Mode::Live).then(Live::new);
        Arc::new(Progress {
            mode,
            state: Mutex::new((Tracker::new(scale), live)),
        })
    }

    /// The mode for these options on this process's stderr.
    pub fn mode_for(output: OutputFormat, log_format: Option<LogFormat>) -> Mode {
        Mode::choose(output, log_format, std::io::stderr().is_terminal())
    }

    /// Declares the run's nodes (name, is a control plane) before it starts.
    pub fn plan(&self, nodes: &[(String, bool)]) {
        let Ok(mut guard) = self.state.lock() else {
            return;
        };
        let (tracker, live) = &mut *guard;
        tracker.plan(nodes);
        if let Some(live) = live {
            for (name, _) in nodes {
                live.node_bar(name);
            }
        }
    }

    /// The runtime observer that feeds this display.
    pub fn observer(self: &Arc<Self>) -> Observer {
        let me = Arc::clone(self);
        Arc::new(move |event: &Event| me.on_event(event))
    }

    fn on_event(&self, event: &Event) {
        if self.mode == Mode::Silent {
            return;
        }
        let Ok(mut guard) = self.state.lock() else {
            return;
        };
        let (tracker, live) = &mut *guard;
        let records = tracker.on_event(event, Utc::now());
        match (self.mode, live) {
            (Mode::Live, Some(live)) => live.show(&records, tracker),
            (Mode::Plain, _) => records.iter().for_each(|r| eprintln!("{}", r.plain())),
            (Mode::Json, _) => records.iter().for_each(|r| eprintln!("{}", r.json())),
            _ => {}
        }
    }

    /// Prints a line: above the live lines, as a timestamped plain line, or as a JSON `note`.
    pub fn println(&self, line: &str) {
        let Ok(guard) = self.state.lock() else {
            eprintln!("{line}");
            return;
        };
        let note = || Record::new(Utc::now(), Level::Info, "note", line.to_string());
        match (self.mode, &guard.1) {
            (Mode::Live, Some(live)) => {
                let _ = live.multi.println(line);
            }
            (Mode::Json, _) => eprintln!("{}", note().json()),
            (Mode::Plain, _) => {
                for l in line.lines() {
                    eprintln!(
                        "{}",
                        Record::new(Utc::now(), Level::Info, "note", l.to_string()).plain()
                    );
                }
            }
            _ => eprintln!("{line}"),
        }
    }

    /// Stops the live lines (the node lines stay on screen with their last phase).
    pub fn finish(&self) {
        let Ok(mut guard) = self.state.lock() else {
            return;
        };
        // Dropping the live display leaves its last frame on screen; later lines go below it.
        if let Some(live) = guard.1.take() {
            live.overall.finish_and_clear();
            for bar in live.nodes.values() {
                if !bar.is_finished() {
                    bar.finish();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn started(key: &str, attempt: u32) -> Event {
        Event::AttemptStarted {
            key: key.into(),
            attempt,
        }
    }

    fn failed(key: &str, attempt: u32, retry: bool) -> Event {
        Event::AttemptFailed {
            key: key.into(),
            attempt,
            retry_at: retry.then(|| at(1000)),
            message: "connection refused".into(),
        }
    }

    fn completed(key: &str) -> Event {
        Event::StepCompleted {
            key: key.into(),
            attempt: 1,
        }
    }

    #[test]
    fn keys_map_to_nodes_and_phases() {
        assert_eq!(
            node_step("server/demo-cp-1"),
            Some(("demo-cp-1", Phase::CreatingServer, Phase::Booting))
        );
        assert_eq!(
            node_step("server/demo-w-2@redo-17"),
            Some(("demo-w-2", Phase::CreatingServer, Phase::Booting))
        );
        assert_eq!(
            node_step("talos/apply/demo-cp-1"),
            Some(("demo-cp-1", Phase::Booting, Phase::ConfigApplied))
        );
        assert_eq!(
            node_step("talos/ready/demo-w-1"),
            Some(("demo-w-1", Phase::Installing, Phase::TalosUp))
        );
        for other in [
            "network",
            "talos/etcd",
            "talos/secrets",
            "firewall/demo-cp",
            "build/amd64/server/cx23@fsn1",
            "kube/nodes-ready",
        ] {
            assert_eq!(node_step(other), None, "{other}");
        }
        assert!(is_wait_step("talos/apply/demo-cp-1"));
        assert!(is_wait_step("kube/nodes-ready"));
        assert!(is_wait_step("build/arm64/ssh@ab12"));
        assert!(!is_wait_step("server/demo-cp-1"));
        assert!(!is_wait_step("network"));
        assert!(!is_wait_step("kube/addons"));
        assert_eq!(
            waiting_for("talos/apply/demo-cp-1"),
            "demo-cp-1 to boot into Talos maintenance mode"
        );
    }

    #[test]
    fn a_node_walks_through_its_phases_in_order() {
        let mut t = Tracker::new(1.0);
        t.plan(&[("cp".into(), true), ("w".into(), false)]);
        let mut phases = Vec::new();
        let events = [
            started("server/cp", 1),
            started("server/w", 1),
            completed("server/cp"),
            completed("server/w"),
            started("talos/apply/cp", 1),
            completed("talos/apply/cp"),
            started("talos/ready/cp", 1),
            completed("talos/ready/cp"),
            // A replayed or repeated earlier step never moves a node back.
            Event::StepReplayed {
                key: "server/cp".into(),
            },
            started("talos/etcd", 1),
            completed("talos/etcd"),
            started("kube/nodes-ready", 1),
            completed("kube/nodes-ready"),
        ];
        for (i, e) in events.iter().enumerate() {
            for r in t.on_event(e, at(i as i64)) {
                if r.event == "phase" {
                    phases.push((r.node.unwrap(), r.phase.unwrap()));
                }
            }
        }
        let of = |node: &str| -> Vec<Phase> {
            phases
                .iter()
                .filter(|(n, _)| n == node)
                .map(|(_, p)| *p)
                .collect()
        };
        assert_eq!(
            of("cp"),
            vec![
                Phase::CreatingServer,
                Phase::Booting,
                Phase::ConfigApplied,
                Phase::Installing,
                Phase::TalosUp,
                Phase::EtcdMember,
                Phase::Ready
            ]
        );
        // The worker is no etcd member.
        assert_eq!(
            of("w"),
            vec![Phase::CreatingServer, Phase::Booting, Phase::Ready]
        );
    }

    #[test]
    fn expected_waits_are_throttled_and_never_warnings() {
        let mut t = Tracker::new(1.0);
        let key = "talos/apply/cp";
        let mut records = t.on_event(&started(key, 1), at(0));
        // A failed attempt every 5 s for 100 s.
        for i in 1..=20u32 {
            records.extend(t.on_event(&failed(key, i, true), at(i64::from(i) * 5)));
            records.extend(t.on_event(&started(key, i + 1), at(i64::from(i) * 5)));
        }
        records.extend(t.on_event(&completed(key), at(101)));
        assert!(
            records.iter().all(|r| r.level == Level::Info),
            "{records:?}"
        );
        let waits: Vec<&Record> = records
            .iter()
            .filter(|r| r.event == "still-waiting")
            .collect();
        let times: Vec<i64> = waits
            .iter()
            .map(|r| r.timestamp.timestamp() - at(0).timestamp())
            .collect();
        assert_eq!(times, vec![30, 60, 90]);
        assert!(
            waits[0]
                .message
                .starts_with("still waiting for cp to boot into Talos maintenance mode (30 s)"),
            "{}",
            waits[0].message
        );
        assert_eq!(
            records.iter().filter(|r| r.event == "step-started").count(),
            1
        );
        let done = records
            .iter()
            .find(|r| r.event == "step-completed")
            .unwrap();
        assert_eq!(done.message, "done in 1m41s");
        assert!(done.plain().contains(" ✓ talos/apply/cp: done in 1m41s"));
    }

    #[test]
    fn sandbox_time_is_scaled() {
        // At speed 50, 30 s of sandbox time is 0.6 s of wall time.
        let mut t = Tracker::new(50.0);
        let key = "kube/nodes-ready";
        t.on_event(&started(key, 1), at(0));
        assert!(t.on_event(&failed(key, 1, true), at(0)).is_empty());
        let r = t.on_event(&failed(key, 2, true), at(1));
        assert_eq!(r.len(), 1);
        assert!(
            r[0].message.contains("(50 s sandbox time)"),
            "{}",
            r[0].message
        );
    }

    #[test]
    fn real_errors_are_warnings_and_failures_errors() {
        let mut t = Tracker::new(1.0);
        t.on_event(&started("network", 1), at(0));
        let r = t.on_event(&failed("network", 1, true), at(1));
        assert_eq!(r[0].level, Level::Warn);
        assert!(
            r[0].plain()
                .contains(" ! network: attempt 1 failed: connection refused; retrying at ")
        );
        // A wait step that gives up is an error too, not a wait.
        t.on_event(&started("talos/apply/cp", 1), at(0));
        let r = t.on_event(&failed("talos/apply/cp", 9, false), at(2));
        assert_eq!(r[0].level, Level::Warn);
        let r = t.on_event(
            &Event::StepFailed {
                key: "talos/apply/cp".into(),
                attempts: 9,
            },
            at(2),
        );
        assert_eq!(r[0].level, Level::Error);
        assert_eq!(r[1].phase, Some(Phase::Failed));
        let json: serde_json::Value = serde_json::from_str(&r[0].json()).unwrap();
        assert_eq!(json["event"], "step-failed");
        assert_eq!(json["node"], "cp");
        assert_eq!(json["phase"], "failed");
        assert_eq!(json["attempt"], 9);
        assert_eq!(json["level"], "error");
        assert!(json["timestamp"].is_string());
    }

    #[test]
    fn modes() {
        use LogFormat as L;
        use OutputFormat as O;
        assert_eq!(Mode::choose(O::Text, None, true), Mode::Live);
        assert_eq!(Mode::choose(O::Text, None, false), Mode::Plain);
        assert_eq!(Mode::choose(O::Json, None, false), Mode::Silent);
        assert_eq!(Mode::choose(O::Json, Some(L::Json), true), Mode::Json);
        assert_eq!(Mode::choose(O::Text, Some(L::Text), false), Mode::Plain);
    }
}
