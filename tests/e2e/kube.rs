//! A complete cluster: 3 control planes + 2 workers, Ready nodes, addons, a volume and a
//! LoadBalancer Service; destroy leaves nothing in the twin at all.

use hk8s_testkit::eventually;
use hk8s_tests::{CLUSTER_KINDS, Hk8s, TwinProcess, example_spec};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod, Service};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use crate::SPEED;

async fn client(hk8s: &Hk8s) -> kube::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let text = std::fs::read_to_string(hk8s.cluster_dir().join("kubeconfig")).unwrap();
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&text).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn complete_cluster_then_destroy_leaves_nothing() {
    let twin = TwinProcess::start(SPEED).await;
    let hk8s = Hk8s::new(&twin);
    let spec = hk8s.write_spec("cluster.yaml", &example_spec());
    let spec = spec.to_str().unwrap();
    let out = hk8s.run_ok(&[
        "-o",
        "json",
        "run",
        "create-cluster",
        "-f",
        spec,
        "--verify",
    ]);
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        result["output"]["kube"]["ready_nodes"]
            .as_array()
            .map(Vec::len),
        Some(5),
        "{result}"
    );

    let client = client(&hk8s).await;
    // Every node Ready, initialized by the CCM (providerID, no uninitialized taint).
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(nodes.items.len(), 5);
    for node in &nodes.items {
        let spec = node.spec.clone().unwrap_or_default();
        assert!(
            spec.provider_id.is_some_and(|p| p.starts_with("hcloud://")),
            "{:?}",
            node.metadata.name
        );
        assert!(
            !spec
                .taints
                .unwrap_or_default()
                .iter()
                .any(|t| t.key == "node.cloudprovider.kubernetes.io/uninitialized"),
            "{:?} still uninitialized",
            node.metadata.name
        );
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        assert!(ready, "{:?} not Ready", node.metadata.name);
    }
    // The addons are there.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "kube-system");
    for name in [
        "hcloud-cloud-controller-manager",
        "hcloud-csi-controller",
        "cilium-operator",
    ] {
        deployments
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("deployment {name}: {e}"));
    }
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
    for name in ["cilium", "hcloud-csi-node"] {
        daemonsets
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("daemonset {name}: {e}"));
    }

    // A LoadBalancer Service gets an address (a Hetzner load balancer made by the CCM).
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 80}]}
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    let ip = eventually("a load balancer address", || async {
        let svc = services.get("web").await.ok()?;
        svc.status?.load_balancer?.ingress?.first()?.ip.clone()
    })
    .await;
    let state = twin.state().await;
    assert!(
        state["load_balancers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|lb| lb["public_net"]["ipv4"]["ip"] == ip.as_str()
                && lb["labels"]["hcloud-ccm/service-uid"].is_string()),
        "no CCM load balancer with {ip}: {}",
        state["load_balancers"]
    );

    // A claim binds: the CSI driver makes a Hetzner volume.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}
    }))
    .unwrap();
    claims.create(&PostParams::default(), &pvc).await.unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "data-user"},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                  "volumeMounts": [{"name": "d", "mountPath": "/d"}]}],
                 "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    eventually("the claim to bind", || async {
        let pvc = claims.get("data").await.ok()?;
        (pvc.status?.phase.as_deref() == Some("Bound")).then_some(())
    })
    .await;
    let volumes = twin.state().await["volumes"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    assert_eq!(volumes, 1, "the claim made no Hetzner volume");

    // Destroy: the CCM's load balancer and the CSI volume go too; nothing is left at all.
    let out = hk8s.run_ok(&["-o", "json", "run", "destroy-cluster", "-f", spec]);
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["output"]["warnings"], json!([]), "{result}");
    twin.assert_none_left(&[&CLUSTER_KINDS[..], &["volumes"]].concat())
        .await;
}

/// A cluster whose API no longer answers is still destroyed, with a warning.
#[tokio::test(flavor = "multi_thread")]
async fn destroy_without_an_answering_api_warns() {
    let twin = TwinProcess::start(SPEED).await;
    let hk8s = Hk8s::new(&twin);
    let spec = hk8s.write_spec("cluster.yaml", &example_spec());
    let spec = spec.to_str().unwrap();
    hk8s.run_ok(&["run", "create-cluster", "-f", spec]);
    // The servers vanish behind hk8s's back: the Kubernetes API is gone.
    for server in twin.state().await["servers"].as_array().unwrap() {
        twin.api(
            reqwest::Method::DELETE,
            &format!("/servers/{}", server["id"]),
        )
        .await;
    }
    let out = hk8s.run_ok(&["-o", "json", "run", "destroy-cluster", "-f", spec]);
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let warnings = result["output"]["warnings"].to_string();
    assert!(warnings.contains("did not answer"), "{result}");
    twin.assert_none_left(&CLUSTER_KINDS).await;
}
