//! The live suite: the same create → idempotent create → destroy scenario against the real
//! Hetzner API. It runs only when `HCLOUD_TOKEN` is set and says so when it is skipped (the
//! spec it would use, one control plane and one worker, is checked either way).
//! It creates billable resources in the token's project and destroys them at the end.

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
