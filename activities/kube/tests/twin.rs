//! The activities against the twin's Kubernetes API (`hk8s-twin-kube`) over real TLS on
//! 127.0.0.1: apply, idempotence, readiness conditions, CSR approval, smoke test, cleanup.

#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use base64::Engine;
use hk8s_kube::{
    AddonInputs, ErrorClass, HcloudToken, KubeClient, KubeError, NodeIdentity, manifests,
};
use hk8s_twin_kube::{FakeCloud, KubeCluster, KubeClusterOptions, NodeRole, ServerHandle};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};
use serde_json::json;

struct Fixture {
    cluster: KubeCluster,
    cloud: Arc<FakeCloud>,
    server: ServerHandle,
    ca_params: CertificateParams,
    ca_key: KeyPair,
    ca_pem: String,
    kube: KubeClient,
}

const NODES: [(&str, [u8; 4], NodeRole, i64); 3] = [
    ("demo-cp-1", [10, 0, 1, 2], NodeRole::ControlPlane, 11),
    ("demo-worker-1", [10, 0, 1, 3], NodeRole::Worker, 12),
    ("demo-worker-2", [10, 0, 1, 4], NodeRole::Worker, 13),
];

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

impl Fixture {
    /// A kubeconfig for a user with a client certificate `CN=<cn>, O=<org>` from the cluster CA.
    fn kubeconfig(&self, cn: &str, org: &str) -> String {
        user_kubeconfig(
            &self.ca_params,
            &self.ca_key,
            &self.ca_pem,
            self.server.local_addr(),
            cn,
            org,
        )
    }
}

fn user_kubeconfig(
    ca_params: &CertificateParams,
    ca_key: &KeyPair,
    ca_pem: &str,
    server: SocketAddr,
    cn: &str,
    org: &str,
) -> String {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, org);
    params.distinguished_name = dn;
    let issuer = Issuer::from_params(ca_params, ca_key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: u@demo\nclusters:\n- name: demo\n  cluster:\n    server: https://{}\n    certificate-authority-data: {}\ncontexts:\n- name: u@demo\n  context:\n    cluster: demo\n    user: u@demo\n    namespace: default\nusers:\n- name: u@demo\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        server,
        b64(ca_pem),
        b64(&cert.pem()),
        b64(&key.serialize_pem()),
    )
}

async fn fixture() -> Fixture {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "kubernetes");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();

    let cloud = Arc::new(FakeCloud::new());
    for (name, _, _, id) in NODES {
        cloud.add_server(name, id);
    }
    let cluster = KubeCluster::new(KubeClusterOptions {
        cluster_name: "demo".into(),
        ca_cert_pem: ca_pem.clone(),
        ca_key_pem: ca_key.serialize_pem(),
        cert_sans: vec![],
        speed: 500.0,
        cloud: cloud.clone(),
        kubernetes_version: "v1.34.1".into(),
    })
    .unwrap();
    let server = cluster
        .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let admin = user_kubeconfig(
        &ca_params,
        &ca_key,
        &ca_pem,
        server.local_addr(),
        "admin",
        "system:masters",
    );
    let kube = KubeClient::from_kubeconfig(admin.as_bytes()).await.unwrap();
    Fixture {
        cluster,
        cloud,
        server,
        ca_params,
        ca_key,
        ca_pem,
        kube,
    }
}

fn start_kubelets(cluster: &KubeCluster) {
    for (name, ip, role, _) in NODES {
        cluster.kubelet_started(name, IpAddr::from(ip), role);
    }
}

fn identities() -> Vec<NodeIdentity> {
    NODES
        .iter()
        .map(|(name, ip, _, _)| NodeIdentity {
            name: (*name).into(),
            addresses: vec![IpAddr::from(*ip)],
        })
        .collect()
}

/// Calls a named condition until it holds, as a step policy would (`hk8s_testkit::eventually_ok`);
/// every error on the way must be retryable, or the step would have failed for good.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, KubeError>>,
{
    hk8s_testkit::eventually_ok(what, || {
        let attempt = check();
        async move {
            attempt.await.inspect_err(|e| {
                assert_eq!(e.class(), ErrorClass::Retryable, "{what}: {e}");
            })
        }
    })
    .await
}

fn inputs() -> AddonInputs {
    AddonInputs::new("1.34.1", "demo", "10.244.0.0/16".parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addons_bring_nodes_ready_and_apply_is_idempotent() {
    let f = fixture().await;
    start_kubelets(&f.cluster);

    let err = f.kube.nodes_ready(3).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable);
    let msg = err.to_string();
    assert!(
        msg.starts_with("nodes_ready: 3 of 3 nodes not Ready: demo-cp-1 (NotReady, uninitialized)"),
        "{msg}"
    );

    let objects = manifests::all(&inputs());
    f.kube
        .apply_hcloud_secret(&HcloudToken::new("twin-token"), 4711)
        .await
        .unwrap();
    let report = f.kube.apply_all(&objects).await.unwrap();
    assert_eq!(report.applied.len(), objects.len());
    assert!(
        report
            .applied
            .contains(&"DaemonSet kube-system/cilium".to_owned()),
        "{:?}",
        report.applied
    );
    // Cluster-scoped RBAC before the ServiceAccounts, workloads last.
    let pos = |s: &str| report.applied.iter().position(|a| a == s).unwrap();
    assert!(pos("ClusterRole cilium") < pos("ServiceAccount kube-system/cilium"));
    assert!(pos("ConfigMap kube-system/cilium-config") < pos("DaemonSet kube-system/cilium"));

    // Controllers keep writing status (and resourceVersion); generation and spec must not move.
    let spec = |c: &KubeCluster| {
        let ds = c
            .object("apps", "daemonsets", "kube-system", "cilium")
            .unwrap();
        (ds["metadata"]["generation"].clone(), ds["spec"].clone())
    };
    let before = spec(&f.cluster);
    f.kube.apply_all(&objects).await.unwrap();
    assert_eq!(
        spec(&f.cluster),
        before,
        "re-applying the same set must change nothing"
    );
    let ds = f
        .cluster
        .object("apps", "daemonsets", "kube-system", "cilium")
        .unwrap();
    let managers: Vec<&str> = ds["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert_eq!(managers, ["hk8s"]);

    let status = eventually("nodes_ready", || f.kube.nodes_ready(3)).await;
    assert_eq!(
        status.ready,
        ["demo-cp-1", "demo-worker-1", "demo-worker-2"]
    );
    eventually("daemonsets_ready", || {
        f.kube
            .daemonsets_ready("kube-system", &["cilium", "hcloud-csi-node"])
    })
    .await;
    eventually("deployments_available", || {
        f.kube.deployments_available(
            "kube-system",
            &[
                "cilium-operator",
                "hcloud-cloud-controller-manager",
                "hcloud-csi-controller",
            ],
        )
    })
    .await;

    let err = f
        .kube
        .deployments_available("kube-system", &["cilium-operator", "nope"])
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "deployments_available: deployments not available: kube-system/nope (not found)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_csrs_matching_the_node_are_approved() {
    let f = fixture().await;
    start_kubelets(&f.cluster);

    // The nodes' real addresses are not what we know: nothing is approved, all reported.
    let mut wrong = identities();
    for n in &mut wrong {
        n.addresses = vec![IpAddr::from(Ipv4Addr::new(10, 0, 9, 9))];
    }
    let report = eventually("csrs filed", || async {
        let r = f.kube.approve_kubelet_serving_csrs(&wrong).await?;
        if r.refused.len() == 3 {
            Ok(r)
        } else {
            Err(KubeError::NotReady(hk8s_kube::NotReady {
                condition: "csrs",
                summary: format!("{r:?}"),
            }))
        }
    })
    .await;
    assert!(report.approved.is_empty());
    assert!(
        report
            .refused
            .iter()
            .all(|(_, why)| why.contains("does not belong to node")),
        "{report:?}"
    );

    // Only two nodes known: the third stays pending.
    let report = f
        .kube
        .approve_kubelet_serving_csrs(&identities()[..2])
        .await
        .unwrap();
    assert_eq!(report.approved.len(), 2, "{report:?}");
    assert_eq!(report.refused.len(), 1);
    assert!(report.refused[0].1.contains("demo-worker-2"), "{report:?}");

    let report = f
        .kube
        .approve_kubelet_serving_csrs(&identities())
        .await
        .unwrap();
    assert_eq!(report.approved.len(), 1);
    let again = f
        .kube
        .approve_kubelet_serving_csrs(&identities())
        .await
        .unwrap();
    assert_eq!(again, Default::default());

    let csrs = f
        .cluster
        .objects("certificates.k8s.io", "certificatesigningrequests");
    let approved = csrs
        .iter()
        .filter(|c| {
            c["status"]["conditions"]
                .as_array()
                .is_some_and(|a| a.iter().any(|c| c["type"] == "Approved"))
        })
        .count();
    assert_eq!(approved, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_test_binds_a_volume_and_cleanup_removes_cloud_resources() {
    let f = fixture().await;
    start_kubelets(&f.cluster);
    f.kube
        .apply_hcloud_secret(&HcloudToken::new("twin-token"), 4711)
        .await
        .unwrap();
    // The CCM needs a location for Services without the location annotation.
    let mut inputs = inputs();
    inputs.load_balancer_location = Some("fsn1".into());
    f.kube.apply_all(&manifests::all(&inputs)).await.unwrap();

    eventually("volume_smoke_test", || f.kube.smoke_test_pvc()).await;
    // Deleted: terminating or already gone.
    let ns = f
        .cluster
        .object("", "namespaces", "", hk8s_kube::SMOKE_NAMESPACE);
    assert!(
        ns.as_ref()
            .is_none_or(|n| n["metadata"]["deletionTimestamp"].is_string()),
        "smoke namespace must be deleted: {ns:?}"
    );
    // Calling the condition again while it terminates is a clear, retryable "not yet".
    if ns.is_some()
        && let Err(e) = f.kube.smoke_test_pvc().await
    {
        assert_eq!(e.class(), ErrorClass::Retryable, "{e}");
    }
    eventually("smoke namespace gone", || async {
        match f
            .cluster
            .object("", "namespaces", "", hk8s_kube::SMOKE_NAMESPACE)
        {
            None => Ok(()),
            Some(_) => Err(KubeError::NotReady(hk8s_kube::NotReady {
                condition: "namespace",
                summary: "terminating".into(),
            })),
        }
    })
    .await;
    eventually("smoke volume deleted", || async {
        let v = f.cloud.volumes();
        if v.is_empty() {
            Ok(())
        } else {
            Err(KubeError::NotReady(hk8s_kube::NotReady {
                condition: "volumes",
                summary: format!("{v:?}"),
            }))
        }
    })
    .await;

    // A user's LoadBalancer Service and claim, made by hand.
    let user = vec![
        json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "shop" } }),
        json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": "web", "namespace": "shop" },
                "spec": { "type": "LoadBalancer", "selector": { "app": "web" }, "ports": [{ "port": 80 }] } }),
        json!({ "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": { "name": "data", "namespace": "shop" },
                "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "10Gi" } } } }),
        json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "db", "namespace": "shop" },
                "spec": { "containers": [{ "name": "db", "image": "registry.k8s.io/pause:3.10" }],
                          "volumes": [{ "name": "d", "persistentVolumeClaim": { "claimName": "data" } }] } }),
    ];
    f.kube.apply_all(&user).await.unwrap();
    eventually("cloud resources exist", || async {
        if f.cloud.load_balancers().len() == 1 && f.cloud.volumes().len() == 1 {
            Ok(())
        } else {
            Err(KubeError::NotReady(hk8s_kube::NotReady {
                condition: "cloud",
                summary: "waiting".into(),
            }))
        }
    })
    .await;

    let remaining = eventually("cloud-backed gone", || async {
        let r = f.kube.delete_cloud_backed().await?;
        if r.is_empty() {
            Ok(r)
        } else {
            Err(KubeError::NotReady(hk8s_kube::NotReady {
                condition: "remaining",
                summary: format!("{r:?}"),
            }))
        }
    })
    .await;
    assert!(remaining.is_empty());
    assert!(f.cloud.load_balancers().is_empty());
    assert!(f.cloud.volumes().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_set_sends_nothing_and_unknown_kind_is_retryable() {
    let f = fixture().await;
    let bad = vec![
        json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "first", "namespace": "default" } }),
        json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": {} }),
    ];
    let err = f.kube.apply_all(&bad).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    assert!(
        f.cluster
            .object("", "configmaps", "default", "first")
            .is_none(),
        "nothing may be applied"
    );

    let with_secret = vec![
        json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "first", "namespace": "default" } }),
        manifests::hcloud_secret(&HcloudToken::new("sneaky-token"), 1),
    ];
    let err = f.kube.apply_all(&with_secret).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    assert!(!format!("{err} {err:?}").contains("sneaky-token"));
    assert!(
        f.cluster
            .object("", "secrets", "kube-system", "hcloud")
            .is_none()
    );
    assert!(
        f.cluster
            .object("", "configmaps", "default", "first")
            .is_none()
    );

    // A user who may not write secrets: the error names status and reason, never the token.
    let viewer = KubeClient::from_kubeconfig(f.kubeconfig("viewer", "viewers").as_bytes())
        .await
        .unwrap();
    let err = viewer
        .apply_hcloud_secret(&HcloudToken::new("sneaky-token"), 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, KubeError::ApplySecret { code: 403, .. }),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(!format!("{err} {err:?}").contains("sneaky-token"));

    let unknown = vec![
        json!({ "apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": { "name": "p", "namespace": "default" } }),
    ];
    let err = f.kube.apply_all(&unknown).await.unwrap_err();
    assert!(matches!(err, KubeError::Discovery { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Retryable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_and_crds_are_applied_before_what_needs_them() {
    let f = fixture().await;
    // Written in the worst order: the custom object first, its namespace and CRD last.
    let set = vec![
        json!({ "apiVersion": "example.hk8s.dev/v1", "kind": "Widget",
                "metadata": { "name": "w", "namespace": "widgets" }, "spec": { "size": 3 } }),
        json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c", "namespace": "widgets" } }),
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": { "name": "widgets.example.hk8s.dev" },
            "spec": {
                "group": "example.hk8s.dev",
                "scope": "Namespaced",
                "names": { "plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList" },
                "versions": [{ "name": "v1", "served": true, "storage": true,
                    "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } } }],
            },
        }),
        json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "widgets" } }),
    ];
    // A CRD may take a moment to be served: the step retries the whole (idempotent) apply.
    let report = eventually("apply with crd", || f.kube.apply_all(&set)).await;
    assert_eq!(
        report.applied,
        [
            "CustomResourceDefinition widgets.example.hk8s.dev",
            "Namespace widgets",
            "Widget widgets/w",
            "ConfigMap widgets/c",
        ]
    );
    let widget = f
        .cluster
        .object("example.hk8s.dev", "widgets", "widgets", "w")
        .unwrap();
    assert_eq!(widget["spec"]["size"], 3);
}
