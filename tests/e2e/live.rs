//! The live suite: the same create → idempotent create → destroy scenario against the real
//! Hetzner API. It runs only when `HCLOUD_TOKEN` is set and says so when it is skipped.
//! It creates billable resources in the token's project and destroys them at the end.

use std::process::Command;

#[test]
fn live_create_and_destroy_against_hetzner() {
    let Ok(token) = std::env::var("HCLOUD_TOKEN") else {
        println!(
            "live suite skipped: HCLOUD_TOKEN is not set (it would create and destroy a real cluster)"
        );
        return;
    };
    let cidr = std::env::var("HK8S_LIVE_ADMIN_CIDR").unwrap_or_else(|_| "203.0.113.7/32".into());
    let home = tempfile::tempdir().unwrap();
    let name = format!("hk8s-live-{}", std::process::id());
    let spec = hk8s_tests::example_spec()
        .replace("clusterName: demo", &format!("clusterName: {name}"))
        .replace(
            "adminCidrs: [127.0.0.0/8]",
            &format!("adminCidrs: [{cidr}]"),
        )
        .replace("count: 3 ", "count: 1 ")
        .replace("count: 2\n", "count: 1\n");
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
    assert!(
        create.status.success(),
        "{}",
        String::from_utf8_lossy(&create.stderr)
    );
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(
        destroy.status.success(),
        "{}",
        String::from_utf8_lossy(&destroy.stderr)
    );
}
