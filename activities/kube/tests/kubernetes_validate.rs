//! Every addon manifest validates with `kubernetes-validate` (PyPI, written by others from the
//! Kubernetes OpenAPI schemas) in strict mode for the cluster's Kubernetes minor version.
//!
//! `scripts/test` installs the validator; on a machine without it this test says it was skipped,
//! except under CI (`CI` set), where a missing validator is a failure (`hk8s_testkit::tool`).

use hk8s_kube::{AddonInputs, HcloudToken, PodRouting, manifests};

use hk8s_testkit::KUBERNETES_SCHEMA_VERSION as SCHEMA_VERSION;

#[test]
fn addon_manifests_pass_kubernetes_validate_strict() {
    let Some(validator) = hk8s_testkit::KubernetesValidate::find() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tunnel = AddonInputs::new("1.34.1", "demo", "10.244.0.0/16".parse().unwrap());
    let mut native = tunnel.clone();
    native.routing = PodRouting::Native;
    let secret = vec![manifests::hcloud_secret(
        &HcloudToken::new("placeholder-not-a-token"),
        4711,
    )];
    let mut files = Vec::new();
    for (set, objects) in [
        ("tunnel", manifests::all(&tunnel)),
        ("native", manifests::all(&native)),
        ("secret", secret),
    ] {
        for (i, object) in objects.iter().enumerate() {
            let path = dir.path().join(format!("{set}-{i:02}.yaml"));
            std::fs::write(&path, serde_saphyr::to_string(object).unwrap()).unwrap();
            files.push(path);
        }
    }
    assert!(files.len() > 40, "only {} manifests rendered", files.len());
    if let Err(out) = validator.check(&files) {
        panic!("kubernetes-validate rejected manifests:\n{out}");
    }

    // The validator can fail: an unknown field in strict mode is an error.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nunknownField: 1\n",
    )
    .unwrap();
    assert!(
        validator.check(&[&bad]).is_err(),
        "kubernetes-validate accepted an unknown field"
    );
    println!(
        "kubernetes-validate {SCHEMA_VERSION} --strict: {} manifests valid",
        files.len()
    );
}
