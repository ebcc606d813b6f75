//! The official Hetzner Cloud Python client (`hcloud` from PyPI, the newest release that
//! `scripts/test` installed into `target/hcloud-py`) against the twin on loopback: every endpoint
//! hk8s uses must parse into the client's models (`../hcloud_python/drive.py`).
//!
//! `HK8S_HCLOUD_PYTHON` names the venv's interpreter (`scripts/test` exports it); without it the
//! test looks for `target/hcloud-py/bin/python`, and skips locally (fails under `CI`) when the
//! client is not installed.

use std::path::PathBuf;
use std::process::Command;

use hk8s_twin::{Twin, TwinOptions};

/// The interpreter that has `hcloud` installed, and the client's version; `None` after
/// [`hk8s_testkit::skip`].
fn python() -> Option<(PathBuf, String)> {
    let python = std::env::var_os("HK8S_HCLOUD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| hk8s_testkit::workspace_root().join("target/hcloud-py/bin/python"));
    let version = Command::new(&python)
        .args(["-c", "import hcloud; print(hcloud.__version__)"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match version {
        Some(v) => Some((python, v)),
        None => {
            hk8s_testkit::skip(&format!(
                "hcloud-python is not installed at {} (set HK8S_HCLOUD_PYTHON, or run scripts/test, which installs it)",
                python.display()
            ));
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_python_client_parses_every_endpoint_hk8s_uses() {
    let Some((python, version)) = python() else {
        return;
    };
    let twin = Twin::start(TwinOptions {
        speed: 1000.0,
        token: Some("py-token".into()),
        seed_talos_snapshots: vec![("x86".into(), "v1.11.6".into())],
        rescue_ssh_port: 0,
        ..Default::default()
    })
    .await
    .unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/hcloud_python/drive.py");
    let endpoint = twin.api_url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(&script)
            .env("HCLOUD_ENDPOINT", endpoint)
            .env("HCLOUD_TOKEN", "py-token")
            .env("NO_PROXY", "127.0.0.1")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("hcloud-python {version}\n{stdout}");
    assert!(
        out.status.success(),
        "drive.py with hcloud-python {version} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("ok ") && last[3..].parse::<u32>().is_ok_and(|n| n >= 50),
        "drive.py did not finish its calls: {last}"
    );
    // Everything it created, it deleted.
    let state: serde_json::Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/state", twin.control_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for kind in [
        "servers",
        "networks",
        "firewalls",
        "load_balancers",
        "placement_groups",
    ] {
        assert_eq!(
            state[kind].as_array().map(Vec::len),
            Some(0),
            "{kind}: {}",
            state[kind]
        );
    }
}
