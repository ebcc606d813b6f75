//! Shared test fixtures: one generated bundle per test binary (RSA-4096 keygen is slow in
//! unoptimised builds), the spec folder, YAML → JSON.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use crate::{Contract, SecretsBundle, SecretsStore};

/// A fixed "now" so certificate validity can be asserted exactly: 2026-01-02T03:04:05Z.
pub(crate) fn test_now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_323_045)
}

/// A bundle made by the production path (`SecretsStore::create_new` → `SecretsBundle::generate`
/// with RSA-4096), once per test binary, plus the YAML file it wrote.
pub(crate) fn shared() -> &'static (SecretsBundle, String, u32) {
    static SHARED: OnceLock<(SecretsBundle, String, u32)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("clusters/demo");
        let bundle = SecretsStore::create_new(&dir, Contract::V1_11, test_now()).unwrap();
        let path = SecretsStore::path(&dir);
        let text = std::fs::read_to_string(&path).unwrap();
        #[cfg(unix)]
        let mode = {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777
        };
        #[cfg(not(unix))]
        let mode = 0o600;
        (bundle, text, mode)
    })
}

/// The generated bundle.
pub(crate) fn bundle() -> &'static SecretsBundle {
    &shared().0
}

/// The spec folder and its files, with the workspace's one policy: a missing spec skips the
/// test locally (printing why) and fails it under CI.
pub(crate) use hk8s_testkit::{spec_dir, spec_file};

/// Parses YAML text into JSON values (for schema validation and structural comparison).
pub(crate) fn yaml_to_json(text: &str) -> serde_json::Value {
    serde_saphyr::from_str(text).unwrap()
}
