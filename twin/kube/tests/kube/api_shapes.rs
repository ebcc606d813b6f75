//! Discovery, CRDs, raw response shapes, status subresources, kubelet restarts and the Talos
//! fixture CA, through kube-rs.

use std::sync::Arc;

use crate::common::{Twin, client_cert, client_for};
use hk8s_testkit::eventually;
use hk8s_twin_kube::{FakeCloud, KubeCluster, KubeClusterOptions, NodeRole};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::{Value, json};

async fn raw(client: &kube::Client, path: &str) -> Value {
    client
        .request::<Value>(http::Request::get(path).body(vec![]).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn aggregated_discovery_parses_with_kube_rs() {
    let twin = Twin::start(vec![]).await;
    let client = twin.client().await;
    let discovery = kube::discovery::Discovery::new(client.clone())
        .run_aggregated()
        .await
        .unwrap();
    let (ar, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"))
        .unwrap();
    assert_eq!(ar.plural, "deployments");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    let (node, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("", "v1", "Node"))
        .unwrap();
    assert_eq!(node.plural, "nodes");
    assert_eq!(caps.scope, kube::discovery::Scope::Cluster);
    assert!(
        caps.subresources
            .iter()
            .any(|(r, _)| r.plural == "nodes/status" || r.plural == "status")
    );
    // The legacy documents are served without the aggregated Accept header.
    let list = raw(&client, "/apis/certificates.k8s.io/v1").await;
    assert_eq!(list["kind"], "APIResourceList");
    assert!(
        list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "certificatesigningrequests/approval")
    );
}

#[tokio::test]
async fn typed_list_items_omit_kind_and_still_parse() {
    let twin = Twin::start(vec![]).await;
    twin.cluster
        .kubelet_started("w", "127.0.0.20".parse().unwrap(), NodeRole::Worker);
    let client = twin.client().await;
    let list = raw(&client, "/api/v1/nodes").await;
    assert_eq!(list["kind"], "NodeList");
    assert_eq!(list["apiVersion"], "v1");
    assert!(
        list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert!(list["items"][0].get("kind").is_none());
    let one = raw(&client, "/api/v1/nodes/w").await;
    assert_eq!(one["kind"], "Node");
    // Pagination.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..5 {
        cms.patch(&format!("cm{i}"), &PatchParams::apply("t"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm{i}")}})))
            .await
            .unwrap();
    }
    let page = cms.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(page.items.len(), 2);
    let token = page.metadata.continue_.clone().unwrap();
    let rest = cms
        .list(&ListParams::default().limit(10).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 3);
    assert!(rest.metadata.continue_.is_none());
    let notin = cms
        .list(&ListParams::default().fields("metadata.name!=cm0"))
        .await
        .unwrap();
    assert_eq!(notin.items.len(), 4);
}

#[tokio::test]
async fn crd_appears_in_discovery_and_serves_custom_resources() {
    let twin = Twin::start(vec![]).await;
    let client = twin.client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
    crds.patch(
        "widgets.example.com",
        &PatchParams::apply("hk8s"),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    let established = kube::runtime::wait::await_condition(
        crds.clone(),
        "widgets.example.com",
        kube::runtime::wait::conditions::is_crd_established(),
    );
    tokio::time::timeout(std::time::Duration::from_secs(30), established)
        .await
        .unwrap()
        .unwrap();
    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap();
    let (ar, _) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"))
        .unwrap();
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let w = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 3}});
    widgets
        .patch("w1", &PatchParams::apply("hk8s"), &Patch::Apply(&w))
        .await
        .unwrap();
    let list = widgets.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].data["spec"]["size"], 3);
    let raw_list = raw(&client, "/apis/example.com/v1/namespaces/default/widgets").await;
    assert_eq!(raw_list["items"][0]["kind"], "Widget");
    // Unknown resources are 404.
    let ghost = ApiResource::from_gvk(&GroupVersionKind::gvk("example.com", "v1", "Gadget"));
    let gadgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ghost);
    let err = gadgets.list(&ListParams::default()).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
}

#[tokio::test]
async fn status_subresource_writes_only_status() {
    let twin = Twin::start(vec![]).await;
    let client = twin.client().await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    // No nodes: nothing runs, so the controllers leave replicas at 0 after the patch below.
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
        "status": {"replicas": 42}});
    let created = deploys
        .patch("d", &PatchParams::apply("hk8s"), &Patch::Apply(&d))
        .await
        .unwrap();
    assert_ne!(
        created.status.and_then(|s| s.replicas),
        Some(42),
        "apply on the main resource ignores status"
    );
    let patched = deploys
        .patch_status(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 9}, "status": {"observedGeneration": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(
        patched.spec.unwrap().replicas,
        Some(1),
        "status writes leave spec alone"
    );
    assert_eq!(patched.status.unwrap().observed_generation, Some(7));
    let got = deploys.get_status("d").await.unwrap();
    assert_eq!(got.metadata.name.as_deref(), Some("d"));
}

#[tokio::test]
async fn stopped_kubelet_turns_node_unknown_and_back() {
    let twin = Twin::start(vec![]).await;
    twin.cluster
        .kubelet_started("w", "127.0.0.20".parse().unwrap(), NodeRole::Worker);
    let client = twin.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let ready_status = |n: Node| {
        n.status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.status)
    };
    assert_eq!(
        ready_status(nodes.get("w").await.unwrap()).as_deref(),
        Some("False")
    );
    twin.cluster.kubelet_stopped("w");
    eventually("Unknown", || async {
        (ready_status(nodes.get("w").await.unwrap()).as_deref() == Some("Unknown")).then_some(())
    })
    .await;
    let n = nodes.get("w").await.unwrap();
    assert!(
        n.spec
            .unwrap()
            .taints
            .unwrap()
            .iter()
            .any(|t| t.key == "node.kubernetes.io/unreachable")
    );
    twin.cluster
        .kubelet_started("w", "127.0.0.20".parse().unwrap(), NodeRole::Worker);
    eventually("False again", || async {
        (ready_status(nodes.get("w").await.unwrap()).as_deref() == Some("False")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn talos_fixture_ca_with_sec1_key_serves_and_authenticates() {
    let Some(dir) = hk8s_testkit::spec_dir() else {
        return;
    };
    let text = hk8s_testkit::spec_file(&dir, "talos-fixtures/v1.11/secrets.yaml");
    let doc: Value = serde_saphyr::from_str(&text).unwrap();
    let decode = |v: &Value| {
        use base64::Engine;
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    let crt = decode(&doc["certs"]["k8s"]["crt"]);
    let key = decode(&doc["certs"]["k8s"]["key"]);
    assert!(key.contains("EC PRIVATE KEY"));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = KubeCluster::new(KubeClusterOptions {
        cluster_name: "fixture".into(),
        ca_cert_pem: crt.clone(),
        ca_key_pem: key.clone(),
        cert_sans: vec![],
        speed: 100.0,
        cloud: Arc::new(FakeCloud::new()),
        kubernetes_version: "v1.34.1".into(),
    })
    .unwrap();
    let server = cluster
        .serve(std::net::SocketAddr::new(crate::common::loopback_ip(), 0))
        .await
        .unwrap();
    // rcgen reads only PKCS#8; the admin cert for the test is signed with the same key.
    let ca_pair = hk8s_twin_kube::pki::load_key(&key).unwrap();
    let admin = client_cert(
        &(crt.clone(), ca_pair.serialize_pem()),
        "admin",
        "system:masters",
    );
    let client = client_for(server.local_addr(), &crt, Some(admin)).await;
    let v = client.apiserver_version().await.unwrap();
    assert_eq!(v.git_version, "v1.34.1");
}

#[tokio::test]
async fn watch_with_selector_sees_objects_enter_and_leave() {
    use futures::StreamExt;
    use kube::api::{WatchEvent, WatchParams};
    let twin = Twin::start(vec![]).await;
    let client = twin.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = |tier: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"tier": tier}}});
    cms.patch("c", &PatchParams::apply("t"), &Patch::Apply(cm("back")))
        .await
        .unwrap();
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = cms
        .watch(
            &WatchParams::default().labels("tier=front").timeout(30),
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    cms.patch("c", &PatchParams::apply("t"), &Patch::Apply(cm("front")))
        .await
        .unwrap();
    cms.patch("c", &PatchParams::apply("t"), &Patch::Apply(cm("back")))
        .await
        .unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        match stream.next().await.unwrap().unwrap() {
            WatchEvent::Added(_) => kinds.push("ADDED"),
            WatchEvent::Modified(_) => kinds.push("MODIFIED"),
            WatchEvent::Deleted(_) => kinds.push("DELETED"),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(kinds, vec!["ADDED", "DELETED"]);
}

#[tokio::test]
async fn ccm_deletes_a_stopped_node_whose_server_is_gone() {
    let twin = Twin::start(vec![]).await;
    twin.cloud.add_server("w", 7);
    twin.cluster
        .kubelet_started("w", "127.0.0.20".parse().unwrap(), NodeRole::Worker);
    let client = twin.client().await;
    let ks = "kube-system";
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), ks)
        .patch(
            "hcloud",
            &PatchParams::apply("t"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "hcloud"}, "stringData": {"token": "t", "network": "n"}})),
        )
        .await
        .unwrap();
    Api::<Deployment>::namespaced(client.clone(), ks)
        .patch("hcloud-cloud-controller-manager", &PatchParams::apply("t"), &Patch::Apply(json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hcloud-cloud-controller-manager"},
            "spec": {"selector": {"matchLabels": {"app": "ccm"}}, "template": {"metadata": {"labels": {"app": "ccm"}},
                "spec": {"hostNetwork": true, "tolerations": [{"operator": "Exists"}], "containers": [{"name": "c", "image": "i"}]}}}})))
        .await
        .unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    eventually("initialized", || async {
        nodes.get("w").await.unwrap().spec?.provider_id
    })
    .await;
    twin.cluster.kubelet_stopped("w");
    twin.cloud.remove_server("w");
    eventually("node deleted", || async {
        matches!(nodes.get("w").await, Err(kube::Error::Api(ref s)) if s.code == 404).then_some(())
    })
    .await;
}

#[tokio::test]
async fn eviction_respects_pod_disruption_budgets() {
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use kube::api::{DeleteParams, EvictParams};
    let twin = Twin::start(vec![]).await;
    // kube-rs retries 429 by default (15 times with exponential backoff, minutes in total),
    // and kube-apiserver answers a PDB-blocked eviction with 429 and no Retry-After: a
    // blocked `evict` through a default client takes minutes before it fails.
    let client = crate::common::client_with(
        twin.server.local_addr(),
        &twin.ca.0,
        Some(twin.admin()),
        false,
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.patch("p", &PatchParams::apply("t"), &Patch::Apply(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}})))
        .await
        .unwrap();
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    pdbs.patch(
        "db",
        &PatchParams::apply("t"),
        &Patch::Apply(json!({"apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget", "metadata": {"name": "db"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}})),
    )
    .await
    .unwrap();
    let err = pods.evict("p", &EvictParams::default()).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 429),
        "{err:?}"
    );
    pdbs.delete("db", &DeleteParams::default()).await.unwrap();
    pods.evict("p", &EvictParams::default()).await.unwrap();
    let err = pods.get("p").await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
}
