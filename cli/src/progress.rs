//! The progress display of long runs: a spinner naming the steps in flight, and a line per
//! finished step. Off when stderr is not a terminal or with `-o json`.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hk8s_runtime::{Event, Observer};
use indicatif::{ProgressBar, ProgressStyle};

/// A progress display fed by runtime events.
pub struct Progress {
    bar: Option<ProgressBar>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    running: BTreeMap<String, Instant>,
    done: usize,
    replayed: usize,
}

impl Progress {
    /// A display on stderr if `enabled` and stderr is a terminal; otherwise a silent one.
    pub fn new(enabled: bool) -> Arc<Progress> {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Arc::new(Progress {
            bar,
            state: Mutex::new(State::default()),
        })
    }

    /// The runtime observer that feeds this display.
    pub fn observer(self: &Arc<Self>) -> Observer {
        let me = Arc::clone(self);
        Arc::new(move |event: &Event| me.on_event(event))
    }

    fn on_event(&self, event: &Event) {
        let Some(bar) = &self.bar else { return };
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        match event {
            Event::StepReplayed { .. } => st.replayed += 1,
            Event::AttemptStarted { key, attempt } => {
                st.running.entry(key.clone()).or_insert_with(Instant::now);
                if *attempt > 1 {
                    bar.println(format!("  ↻ {key} (attempt {attempt})"));
                }
            }
            Event::AttemptFailed { key, message, .. } => {
                bar.println(format!("  ! {key}: {message}"));
            }
            Event::StepCompleted { key, .. } => {
                let took = st
                    .running
                    .remove(key)
                    .map(|t| t.elapsed())
                    .unwrap_or_default();
                st.done += 1;
                bar.println(format!("  ✓ {key} ({:.1} s)", took.as_secs_f64()));
            }
            Event::StepFailed { key, attempts } => {
                st.running.remove(key);
                bar.println(format!("  ✗ {key} failed after {attempts} attempt(s)"));
            }
            Event::Sleeping { key, wake_at } => {
                bar.println(format!(
                    "  … {key} sleeps until {}",
                    wake_at.format("%H:%M:%S")
                ));
            }
            _ => {}
        }
        let running: Vec<&str> = st.running.keys().map(String::as_str).take(4).collect();
        let more = st.running.len().saturating_sub(running.len());
        let mut msg = format!("{} done", st.done);
        if st.replayed > 0 {
            msg.push_str(&format!(", {} replayed", st.replayed));
        }
        if !running.is_empty() {
            msg.push_str(&format!(" · {}", running.join(", ")));
            if more > 0 {
                msg.push_str(&format!(" +{more}"));
            }
        }
        bar.set_message(msg);
    }

    /// Prints a line above the spinner (or to stderr without one).
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Removes the spinner.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
