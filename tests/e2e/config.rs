//! Bad cluster configs fail with exit 2 and the field or file named, before any API call and
//! before any run is journaled.

use hk8s_tests::{Hk8s, TwinProcess, example_spec};

use crate::SPEED;

/// Each bad config fails with exit 2, names its field or file, and calls no API at all.
#[tokio::test(flavor = "multi_thread")]
async fn bad_configs_fail_before_any_api_call() {
    let twin = TwinProcess::start(SPEED).await;
    let hk8s = Hk8s::new(&twin);
    let good = example_spec();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "even control planes",
            good.replace("count: 3 ", "count: 2 "),
            "nodes.controlPlane.count",
        ),
        (
            "bad name",
            good.replace("clusterName: demo", "clusterName: Demo_Cluster"),
            "clusterName",
        ),
        (
            "unknown arch",
            good.replacen("arch: x86 ", "arch: sparc ", 1),
            "sparc",
        ),
        (
            "bad cidr",
            good.replace("cidr: 10.0.0.0/16", "cidr: 10.0.0.0/33"),
            "cidr",
        ),
        (
            "unknown field",
            good.replace("clusterName: demo", "clusterName: demo\nclustername: x"),
            "clustername",
        ),
        (
            "talos version",
            good.replace("version: v1.11.6", "version: v2"),
            "talos.version",
        ),
        (
            "region",
            good.replace("region: fsn1 ", "region: mars "),
            "hetzner.region",
        ),
        ("not yaml", "clusterName: [".to_string(), "cluster.yaml"),
    ];
    for (what, yaml, needle) in cases {
        assert_ne!(yaml, good, "{what}: replacement did not apply");
        let path = hk8s.write_spec("cluster.yaml", &yaml);
        println!("case: {what}");
        let out = hk8s.run_err(&["run", "create-cluster", "-f", path.to_str().unwrap()], 2);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(needle),
            "{what}: error does not name {needle:?}: {stderr}"
        );
    }
    let out = hk8s.run_err(
        &["run", "create-cluster", "-f", "/nonexistent/cluster.yaml"],
        2,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/cluster.yaml"));

    let path = hk8s.write_spec("cluster.yaml", &good);
    let out = hk8s
        .command(&["run", "create-cluster", "-f", path.to_str().unwrap()])
        .env_remove("HCLOUD_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HCLOUD_TOKEN"));

    let requests = twin.requests().await;
    assert_eq!(
        requests["total"], 0,
        "bad configs reached the API: {}",
        requests["counts"]
    );
    assert!(hk8s.runs().is_empty(), "a bad config created a run");
}
