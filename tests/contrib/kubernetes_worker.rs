//! `contrib/kubernetes/worker-*.yaml` validate with `kubernetes-validate` in strict mode, and
//! say what the docs promise: two replicas of `hk8s worker`, the token, the journal URL and the
//! files key from the Secret the example defines, one runner identity per pod.
//!
//! A missing validator skips locally and fails under CI (`hk8s_testkit::tool`).

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::path::PathBuf;

use serde_json::Value;

fn contrib(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib/kubernetes")
        .join(file)
}

fn load(file: &str) -> Value {
    let text = std::fs::read_to_string(contrib(file)).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

fn env_var<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {container}"))
}

#[test]
fn worker_manifests_pass_kubernetes_validate_strict() {
    let Some(validator) = hk8s_testkit::KubernetesValidate::find() else {
        return;
    };
    let files = [
        contrib("worker-deployment.yaml"),
        contrib("worker-secret.example.yaml"),
    ];
    if let Err(out) = validator.check(&files) {
        panic!("kubernetes-validate rejected the worker manifests:\n{out}");
    }
    // The validator can fail: a misspelled field of the Deployment is an error.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    std::fs::write(&bad, text.replace("replicas: 2", "replica: 2")).unwrap();
    assert!(
        validator.check(&[&bad]).is_err(),
        "kubernetes-validate accepted `replica`"
    );
}

#[test]
fn the_deployment_runs_two_workers_with_secrets_from_the_example_secret() {
    let deployment = load("worker-deployment.yaml");
    let secret = load("worker-secret.example.yaml");
    assert_eq!(deployment["kind"], "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["args"][0], "worker");
    let secret_name = secret["metadata"]["name"].as_str().unwrap();
    for (var, key) in [
        ("HCLOUD_TOKEN", "hcloud-token"),
        ("HK8S_JOURNAL", "journal-url"),
    ] {
        let from = &env_var(container, var)["valueFrom"]["secretKeyRef"];
        assert_eq!(from["name"], secret_name, "{var}");
        assert_eq!(from["key"], key, "{var}");
        assert!(
            secret["stringData"][key].is_string(),
            "the example Secret lacks {key}"
        );
    }
    assert!(
        secret["stringData"]["journal-url"]
            .as_str()
            .unwrap()
            .contains("sslmode=require"),
        "a remote journal needs TLS"
    );
    // One runner identity per pod, so no replica judges another's pid.
    assert_eq!(
        env_var(container, "HK8S_HOST_ID")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(
        env_var(container, "HK8S_MACHINE_ID")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.uid"
    );
    // SIGTERM needs the runtime's 10 s grace plus the re-queue before SIGKILL.
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() > 10);
}
