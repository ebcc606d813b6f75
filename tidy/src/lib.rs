//! The repository's invariants, checked from its files (rust-analyzer's "tidy" idea).
//!
//! `ARCHITECTURE.md` states what must stay true of the code; the tests of this crate read the
//! Cargo manifests and the sources and fail, naming file and rule, when a change breaks one:
//!
//! - [`layers`]: which crate may depend on which (product layering, the twin's independence,
//!   which crate owns which system client), every crate on the workspace lints, no unused
//!   workspace dependency;
//! - [`sources`]: a `//!` line opens every file, only `cli/` reads environment variables;
//! - [`modules`]: no cycle between the modules of any crate;
//! - [`architecture`]: every crate has its section in `ARCHITECTURE.md`.
//!
//! Each check is a pure function from what it reads to a list of [`Violation`]s, tested on
//! small broken inputs as well as on the repository itself (`tests/tidy.rs`).
//!
//! ```no_run
//! let root = hk8s_tidy::workspace_root();
//! let workspace = hk8s_tidy::workspace::Workspace::load(&root).expect("manifests");
//! for violation in hk8s_tidy::layers::check(&workspace) {
//!     eprintln!("{violation}");
//! }
//! ```

pub mod architecture;
pub mod layers;
pub mod modules;
pub mod sources;
pub mod workspace;

use std::fmt;
use std::path::{Path, PathBuf};

/// One broken invariant: where, and which rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The file (repository-relative) or crate the violation is in.
    pub place: String,
    /// What is wrong, as a sentence naming the rule.
    pub rule: String,
}

impl Violation {
    /// A violation at `place` of `rule`.
    pub fn new(place: impl Into<String>, rule: impl Into<String>) -> Self {
        Self {
            place: place.into(),
            rule: rule.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.rule)
    }
}

/// The workspace root (this crate lives at `<root>/tidy`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Panics with every violation, one per line, when there is any.
pub fn assert_none(what: &str, violations: &[Violation]) {
    if !violations.is_empty() {
        let lines: Vec<String> = violations.iter().map(Violation::to_string).collect();
        panic!(
            "{what}: {} violation(s)\n  {}",
            lines.len(),
            lines.join("\n  ")
        );
    }
}
