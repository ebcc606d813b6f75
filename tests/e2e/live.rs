//! The live suite: the same create → idempotent create → destroy scenario against the real
//! Hetzner API. It runs only when `HCLOUD_TOKEN` is set and says so when it is skipped (the
//! spec it would use, one control plane and one worker, is checked either way).
//! It creates billable resources in the token's project and destroys them at the end; a
//! second scenario builds a Talos snapshot with `build-image`, checks its labels and deletes it;
//! a third creates the minimal cluster one Talos patch behind and upgrades it.

use std::process::Command;

#[test]
fn live_create_and_destroy_against_hetzner() {
    let cidr = std::env::var("HK8S_LIVE_ADMIN_CIDR").unwrap_or_else(|_| "203.0.113.7/32".into());
    let home = tempfile::tempdir().unwrap();
    let name = format!("hk8s-live-{}", std::process::id());
    // One control plane and one worker: every replacement must take, or the suite would
    // create the example's five servers in a real project.
    let mut spec = hk8s_tests::example_spec();
    for (from, to) in [
        ("clusterName: demo", format!("clusterName: {name}")),
        ("adminCidrs: [127.0.0.0/8]", format!("adminCidrs: [{cidr}]")),
        ("count: 3 ", "count: 1 ".to_string()),
        ("count: 2\n", "count: 1\n".to_string()),
    ] {
        assert_eq!(
            spec.matches(from).count(),
            1,
            "examples/cluster.yaml no longer holds {from:?} once"
        );
        spec = spec.replace(from, &to);
    }
    let Ok(token) = std::env::var("HCLOUD_TOKEN") else {
        println!(
            "live suite skipped: HCLOUD_TOKEN is not set (it would create and destroy a real cluster)"
        );
        return;
    };
    let path = home.path().join("cluster.yaml");
    std::fs::write(&path, spec).unwrap();
    let hk8s = |args: &[&str]| {
        Command::new(hk8s_tests::bin("hk8s"))
            .args(args)
            .env("HK8S_HOME", home.path())
            .env("HCLOUD_TOKEN", &token)
            .output()
            .unwrap()
    };
    let spec = path.to_str().unwrap();
    let create = hk8s(&["run", "create-cluster", "-f", spec]);
    let again = hk8s(&["run", "create-cluster", "-f", spec]);
    let destroy = hk8s(&["run", "destroy-cluster", "-f", spec]);
    for (what, out) in [
        ("create", create),
        ("create again", again),
        ("destroy", destroy),
    ] {
        assert!(
            out.status.success(),
            "{what}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Builds an x86 Talos snapshot on the real Hetzner API (`--force`, so it is built even if the
/// project has one), checks its labels through the API, and deletes it. The build's own boot
/// check already booted a server from it. Runs only with `HCLOUD_TOKEN`.
#[test]
fn live_build_image_verify_and_delete() {
    let Ok(token) = std::env::var("HCLOUD_TOKEN") else {
        println!(
            "live build-image skipped: HCLOUD_TOKEN is not set (it would build and delete a real snapshot)"
        );
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("cluster.yaml");
    std::fs::write(&path, hk8s_tests::example_spec()).unwrap();
    let out = Command::new(hk8s_tests::bin("hk8s"))
        .args([
            "-o",
            "json",
            "run",
            "build-image",
            "--arch",
            "x86",
            "--force",
            "-f",
        ])
        .arg(&path)
        .env("HK8S_HOME", home.path())
        .env("HCLOUD_TOKEN", &token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build-image: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = report["output"]["images"]["x86"]["id"].as_i64().unwrap();
    let endpoint =
        std::env::var("HCLOUD_ENDPOINT").unwrap_or_else(|_| "https://api.hetzner.cloud/v1".into());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let image: serde_json::Value = http
            .get(format!("{endpoint}/images/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let labels = &image["image"]["labels"];
        assert_eq!(labels["os"], "talos", "{image}");
        assert_eq!(labels["arch"], "amd64", "{image}");
        assert_eq!(labels["managed-by"], "hk8s", "{image}");
        assert_eq!(image["image"]["status"], "available", "{image}");
        let deleted = http
            .delete(format!("{endpoint}/images/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert!(
            deleted.status().is_success(),
            "delete snapshot {id}: {}",
            deleted.status()
        );
    });
}

/// Upgrades the minimal cluster (one control plane, one worker) by one Talos patch version
/// on the real Hetzner API: created at v1.11.5, upgraded to the example's v1.11.6 with
/// `upgrade-cluster`, every node checked through `--plan` (nothing left to do), then destroyed.
/// Runs only with `HCLOUD_TOKEN`. The v1.11.5 snapshot is built by create-cluster when the
/// project has none.
#[test]
fn live_upgrade_by_one_talos_patch() {
    let cidr = std::env::var("HK8S_LIVE_ADMIN_CIDR").unwrap_or_else(|_| "203.0.113.7/32".into());
    let name = format!("hk8s-live-up-{}", std::process::id());
    let mut old = hk8s_tests::example_spec();
    for (from, to) in [
        ("clusterName: demo", format!("clusterName: {name}")),
        ("adminCidrs: [127.0.0.0/8]", format!("adminCidrs: [{cidr}]")),
        ("count: 3 ", "count: 1 ".to_string()),
        ("count: 2\n", "count: 1\n".to_string()),
    ] {
        assert_eq!(
            old.matches(from).count(),
            1,
            "examples/cluster.yaml: {from:?}"
        );
        old = old.replace(from, &to);
    }
    let new = old.clone();
    assert_eq!(old.matches("version: v1.11.6").count(), 1);
    let old = old.replace("version: v1.11.6", "version: v1.11.5");
    let Ok(token) = std::env::var("HCLOUD_TOKEN") else {
        println!(
            "live upgrade skipped: HCLOUD_TOKEN is not set (it would create, upgrade and destroy a real cluster)"
        );
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let old_path = home.path().join("old.yaml");
    let new_path = home.path().join("cluster.yaml");
    std::fs::write(&old_path, old).unwrap();
    std::fs::write(&new_path, new).unwrap();
    let hk8s = |args: &[&str]| {
        Command::new(hk8s_tests::bin("hk8s"))
            .args(args)
            .env("HK8S_HOME", home.path())
            .env("HCLOUD_TOKEN", &token)
            .output()
            .unwrap()
    };
    let (old, new) = (old_path.to_str().unwrap(), new_path.to_str().unwrap());
    let create = hk8s(&["run", "create-cluster", "-f", old]);
    let upgrade = create
        .status
        .success()
        .then(|| hk8s(&["run", "upgrade-cluster", "-f", new, "--pause", "30"]));
    let plan = hk8s(&["run", "upgrade-cluster", "-f", new, "--plan"]);
    let destroy = hk8s(&["run", "destroy-cluster", "-f", new]);
    for (what, out) in [
        ("create", Some(create)),
        ("upgrade", upgrade),
        ("destroy", Some(destroy)),
    ] {
        let out = out.unwrap_or_else(|| panic!("{what} did not run"));
        assert!(
            out.status.success(),
            "{what}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let plan = String::from_utf8_lossy(&plan.stdout);
    assert!(plan.contains("nothing to do"), "after the upgrade: {plan}");
}
