//! Test support shared by every crate of the workspace, product and twin alike (a leaf crate: it
//! depends on no workspace crate, so the twin may use it without importing the product).
//!
//! One policy for anything a test needs from outside the repository (the upstream specs under
//! `../shared/spec`, `kubectl`, `kubernetes-validate`, `sshd`, PostgreSQL):
//! - locally, when it is missing, the test prints `skipped: <reason>` and returns;
//! - under CI (`CI` set), a missing input is a failure, so CI can never pass by skipping.
//!
//! ```no_run
//! # async fn demo() {
//! let Some(spec) = hk8s_testkit::spec_dir() else { return };
//! let schema = spec.join("talos-config.schema.json");
//! # let _ = schema;
//! let ready = hk8s_testkit::eventually("the answer", || async { Some(42) }).await;
//! assert_eq!(ready, 42);
//! # }
//! ```

pub mod pki;
pub mod postgres;

pub use postgres::{PgServer, postgres};

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Whether the tests run under CI (`CI` set to anything but empty or `false`).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
}

/// Reports a missing test input: panics under CI, prints `skipped: <reason>` otherwise.
///
/// Callers return right after it (`return` in the test body), so a local run says what it did
/// not check.
pub fn skip(reason: &str) {
    assert!(
        !under_ci(),
        "missing under CI (scripts/test sets it up): {reason}"
    );
    println!("skipped: {reason}");
}

/// The workspace root (this crate lives at `<root>/testkit`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The upstream spec folder: `$HK8S_SPEC_DIR`, else `../shared/spec` next to the workspace.
///
/// `None` after [`skip`] when the folder lacks `hcloud-openapi.json` or
/// `talos-config.schema.json` (so under CI a missing spec fails the test).
pub fn spec_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("HK8S_SPEC_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("../shared/spec"),
    };
    let complete = ["hcloud-openapi.json", "talos-config.schema.json"]
        .iter()
        .all(|file| dir.join(file).is_file());
    if complete {
        Some(dir)
    } else {
        skip(&format!(
            "spec folder {} not found or incomplete (set HK8S_SPEC_DIR)",
            dir.display()
        ));
        None
    }
}

/// Reads `name` from the spec folder; panics naming the file when it cannot.
pub fn spec_file(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read spec file {}: {e}", path.display()))
}

/// An external program the test needs: `$<env>` when set, else `program` looked up on `PATH`.
///
/// `None` after [`skip`] when it does not run (`<program> <version_arg>` fails to start).
pub fn tool(program: &str, env: &str, version_arg: &str) -> Option<PathBuf> {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(program));
    let runs = std::process::Command::new(&path)
        .arg(version_arg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if runs {
        Some(path)
    } else {
        skip(&format!(
            "{program} is not installed (set {env}, or run scripts/test, which installs it)"
        ));
        None
    }
}

/// The Kubernetes version whose schemas [`KubernetesValidate`] checks manifests against: the
/// newest kubernetes-validate 1.37 bundles (x.y.0 only) not newer than hk8s's default line.
pub const KUBERNETES_SCHEMA_VERSION: &str = "1.34.0";

/// `kubernetes-validate` (`$KUBERNETES_VALIDATE`, installed by scripts/test) in strict mode.
#[derive(Debug, Clone)]
pub struct KubernetesValidate(PathBuf);

impl KubernetesValidate {
    /// The validator; `None` after [`skip`] when it is not installed.
    pub fn find() -> Option<Self> {
        tool("kubernetes-validate", "KUBERNETES_VALIDATE", "--version").map(Self)
    }

    /// Validates `files` against the [`KUBERNETES_SCHEMA_VERSION`] schemas with `--strict`
    /// (unknown fields are errors): `Err` holds the validator's output.
    pub fn check<P: AsRef<std::path::Path>>(&self, files: &[P]) -> Result<(), String> {
        let out = std::process::Command::new(&self.0)
            .args([
                "--kubernetes-version",
                KUBERNETES_SCHEMA_VERSION,
                "--strict",
                "--quiet",
            ])
            .args(files.iter().map(AsRef::as_ref))
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.0.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

/// How often [`eventually`] polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How many polls [`eventually`] makes before it gives up (about 60 s of wall time: a generous
/// bound, so a bug fails instead of hanging, and a loaded machine does not fail a correct test).
pub const POLL_TRIES: u32 = 3000;

/// Polls `check` until it returns `Some`, and returns that value.
///
/// Panics naming `what` after [`POLL_TRIES`] polls. Only the number of polls is bounded; no
/// duration is asserted. Prefer waiting on a change notification where the code under test
/// offers one.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..POLL_TRIES {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    panic!("{what} never held after {POLL_TRIES} polls");
}

/// Like [`eventually`] for a check that explains itself: polls until `Ok`, and panics with the
/// last `Err` message.
pub async fn eventually_ok<T, E, F, Fut>(what: &str, mut check: F) -> T
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut last = String::new();
    for _ in 0..POLL_TRIES {
        match check().await {
            Ok(value) => return value,
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    panic!("{what} never held after {POLL_TRIES} polls; last: {last}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml"))
            .expect("workspace Cargo.toml");
        assert!(manifest.contains("[workspace]"));
    }

    #[tokio::test]
    async fn eventually_returns_the_first_value() {
        let mut calls = 0;
        let value = eventually("third call", || {
            calls += 1;
            let ready = calls >= 3;
            async move { ready.then_some(calls) }
        })
        .await;
        assert_eq!(value, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "never held")]
    async fn eventually_gives_up() {
        tokio::time::pause();
        eventually::<(), _, _>("nothing", || async { None }).await;
    }
}
