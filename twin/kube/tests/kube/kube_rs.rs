//! The twin's Kubernetes API through kube-rs's own client and types, over real TLS.

use std::net::SocketAddr;

use crate::common::{Twin, client_cert, client_for, make_ca};
use futures::StreamExt;
use hk8s_testkit::eventually;
use hk8s_twin_kube::NodeRole;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, Secret,
    Service,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

async fn apply<K>(api: &Api<K>, value: serde_json::Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let name = value["metadata"]["name"].as_str().unwrap().to_string();
    api.patch(
        &name,
        &PatchParams::apply("hk8s").force(),
        &Patch::Apply(&value),
    )
    .await
    .unwrap()
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn has_taint(n: &Node, key: &str) -> bool {
    n.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| t.key == key))
}

/// Cilium DaemonSet, hcloud secret, CCM and CSI controller Deployments, as the product applies
/// them (tolerations as in the upstream manifests).
async fn install_addons(client: &kube::Client) {
    let ks = "kube-system";
    apply(
        &Api::<Secret>::namespaced(client.clone(), ks),
        json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hcloud", "namespace": ks},
        "stringData": {"token": "t", "network": "1"}}),
    )
    .await;
    apply(&Api::<DaemonSet>::namespaced(client.clone(), ks), json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "cilium", "namespace": ks},
        "spec": {"selector": {"matchLabels": {"k8s-app": "cilium"}},
                 "template": {"metadata": {"labels": {"k8s-app": "cilium"}},
                              "spec": {"hostNetwork": true, "tolerations": [{"operator": "Exists"}],
                                       "containers": [{"name": "cilium-agent", "image": "quay.io/cilium/cilium:v1.18.0"}]}}}})).await;
    apply(&Api::<Deployment>::namespaced(client.clone(), ks), json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hcloud-cloud-controller-manager", "namespace": ks},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "hccm"}},
                 "template": {"metadata": {"labels": {"app": "hccm"}},
                              "spec": {"hostNetwork": true, "tolerations": [
                                  {"key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true", "effect": "NoSchedule"},
                                  {"key": "CriticalAddonsOnly", "operator": "Exists"},
                                  {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
                                  {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}],
                                  "containers": [{"name": "hcloud-cloud-controller-manager", "image": "hetznercloud/hcloud-cloud-controller-manager:v1.26.0"}]}}}})).await;
    apply(&Api::<Deployment>::namespaced(client.clone(), ks), json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hcloud-csi-controller", "namespace": ks},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "hcloud-csi-controller"}},
                 "template": {"metadata": {"labels": {"app": "hcloud-csi-controller"}},
                              "spec": {"containers": [{"name": "hcloud-csi-driver", "image": "hetznercloud/hcloud-csi-driver:v2.18.0",
                                                       "env": [{"name": "HCLOUD_VOLUME_EXTRA_LABELS", "value": "cluster=test,managed=hk8s"}]}]}}}})).await;
}

/// A control plane and a worker, registered and initialized, with all addons running.
async fn ready_cluster() -> (Twin, kube::Client) {
    let twin = Twin::start(vec![]).await;
    twin.cloud.add_server("cp-1", 101);
    twin.cloud.add_server("worker-1", 102);
    twin.cluster.kubelet_started(
        "cp-1",
        "127.0.0.11".parse().unwrap(),
        NodeRole::ControlPlane,
    );
    twin.cluster
        .kubelet_started("worker-1", "127.0.0.12".parse().unwrap(), NodeRole::Worker);
    let client = twin.client().await;
    install_addons(&client).await;
    let nodes: Api<Node> = Api::all(client.clone());
    eventually("nodes ready and initialized", || async {
        let list = nodes.list(&ListParams::default()).await.unwrap();
        (list.items.len() == 2
            && list.items.iter().all(|n| {
                node_ready(n) && !has_taint(n, "node.cloudprovider.kubernetes.io/uninitialized")
            }))
        .then_some(())
    })
    .await;
    (twin, client)
}

#[tokio::test]
async fn node_registers_not_ready_with_uninitialized_taint_and_discovery_parses() {
    let twin = Twin::start(vec![]).await;
    twin.cluster.kubelet_started(
        "cp-1",
        "127.0.0.11".parse().unwrap(),
        NodeRole::ControlPlane,
    );
    let client = twin.client().await;

    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.git_version, "v1.34.1");
    let groups = client.list_api_groups().await.unwrap();
    assert!(groups.groups.iter().any(|g| g.name == "apps"));
    let core = client.list_core_api_versions().await.unwrap();
    assert_eq!(core.versions, vec!["v1".to_string()]);
    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap();
    assert!(discovery.has_group("certificates.k8s.io"));

    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let node = &list.items[0];
    assert!(!node_ready(node));
    assert!(has_taint(
        node,
        "node.cloudprovider.kubernetes.io/uninitialized"
    ));
    assert!(has_taint(node, "node.kubernetes.io/not-ready"));
    assert!(
        node.metadata
            .labels
            .as_ref()
            .unwrap()
            .contains_key("node-role.kubernetes.io/control-plane")
    );
    assert!(node.spec.as_ref().unwrap().provider_id.is_none());

    // Selectors.
    let by_label = nodes
        .list(&ListParams::default().labels("node-role.kubernetes.io/control-plane"))
        .await
        .unwrap();
    assert_eq!(by_label.items.len(), 1);
    let none = nodes
        .list(&ListParams::default().fields("metadata.name=other"))
        .await
        .unwrap();
    assert!(none.items.is_empty());
    let err = nodes.get("nope").await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404 && s.reason == "NotFound"),
        "{err:?}"
    );
}

#[tokio::test]
async fn kubelet_serving_csr_is_signed_after_approval() {
    let twin = Twin::start(vec![]).await;
    twin.cluster
        .kubelet_started("worker-1", "127.0.0.12".parse().unwrap(), NodeRole::Worker);
    let client = twin.client().await;
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let list = csrs.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let csr = &list.items[0];
    let name = csr.metadata.name.clone().unwrap();
    assert!(name.starts_with("csr-"));
    assert_eq!(csr.spec.signer_name, "kubernetes.io/kubelet-serving");
    assert_eq!(csr.spec.username.as_deref(), Some("system:node:worker-1"));
    assert!(
        csr.status
            .as_ref()
            .and_then(|s| s.certificate.as_ref())
            .is_none()
    );

    // A kubelet restart files no second CSR.
    twin.cluster
        .kubelet_started("worker-1", "127.0.0.12".parse().unwrap(), NodeRole::Worker);
    assert_eq!(
        csrs.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );

    let approval = json!({"status": {"conditions": [{"type": "Approved", "status": "True",
        "reason": "hk8s", "message": "approved by hk8s"}]}});
    csrs.patch_approval(&name, &PatchParams::default(), &Patch::Merge(&approval))
        .await
        .unwrap();
    let cert = eventually("certificate", || async {
        csrs.get(&name)
            .await
            .unwrap()
            .status
            .and_then(|s| s.certificate)
    })
    .await;
    let pem = String::from_utf8(cert.0).unwrap();
    let (_, der) = hk8s_twin_kube::pki::pem_decode(&pem).unwrap();
    let (cn, groups) = hk8s_twin_kube::pki::subject_of(&der).unwrap();
    assert_eq!(cn, "system:node:worker-1");
    assert_eq!(groups, vec!["system:nodes".to_string()]);
}

#[tokio::test]
async fn addons_make_nodes_ready_and_initialized_and_deployment_pods_run() {
    let (twin, client) = ready_cluster().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let cilium = Api::<DaemonSet>::namespaced(client.clone(), "kube-system");
    let ds_status = eventually("cilium ready on both nodes", || async {
        cilium
            .get("cilium")
            .await
            .unwrap()
            .status
            .filter(|s| s.number_ready == 2)
    })
    .await;
    assert_eq!(ds_status.desired_number_scheduled, 2);
    assert_eq!(ds_status.updated_number_scheduled, Some(2));
    let cp = nodes.get("cp-1").await.unwrap();
    assert_eq!(
        cp.spec.as_ref().unwrap().provider_id.as_deref(),
        Some("hcloud://101")
    );
    assert!(!has_taint(&cp, "node.kubernetes.io/not-ready"));

    // Watch pods in default with kube-runtime's watcher while applying a Deployment.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut events = watcher(pods.clone(), watcher::Config::default().labels("app=web")).boxed();
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d = apply(&deploys, json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}})).await;
    assert_eq!(d.metadata.generation, Some(1));
    let managed = d.metadata.managed_fields.unwrap();
    assert_eq!(managed[0].manager.as_deref(), Some("hk8s"));
    assert_eq!(managed[0].operation.as_deref(), Some("Apply"));

    let mut running = std::collections::BTreeSet::new();
    while running.len() < 2 {
        let ev = tokio::time::timeout(std::time::Duration::from_secs(30), events.next())
            .await
            .expect("watch event")
            .unwrap()
            .unwrap();
        if let watcher::Event::Apply(p) | watcher::Event::InitApply(p) = ev
            && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        {
            // Not on the control plane: it keeps its NoSchedule taint.
            assert_eq!(
                p.spec.as_ref().unwrap().node_name.as_deref(),
                Some("worker-1")
            );
            running.insert(p.metadata.name.unwrap());
        }
    }
    let status = eventually("deployment available", || async {
        let d = deploys.get("web").await.unwrap();
        d.status.filter(|s| s.available_replicas == Some(2))
    })
    .await;
    assert_eq!(status.ready_replicas, Some(2));

    // Scale down via apply; a pod goes.
    apply(&deploys, json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}})).await;
    eventually("one pod left", || async {
        (pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items
            .len()
            == 1)
            .then_some(())
    })
    .await;

    // Eviction deletes the pod; the ReplicaSet replaces it.
    let pod = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .remove(0);
    let pod_name = pod.metadata.name.unwrap();
    pods.evict(&pod_name, &EvictParams::default())
        .await
        .unwrap();
    eventually("replacement pod", || async {
        let list = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .unwrap();
        (list.items.len() == 1 && list.items[0].metadata.name.as_deref() != Some(pod_name.as_str()))
            .then_some(())
    })
    .await;

    // Deleting the Deployment deletes its ReplicaSet and pods.
    deploys
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    eventually("pods gone", || async {
        pods.list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    drop(twin);
}

#[tokio::test]
async fn cordon_by_merge_patch_keeps_new_pods_off_the_node() {
    let (_twin, client) = ready_cluster().await;
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(
            "worker-1",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"unschedulable": true}})),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "lonely"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})).unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let cond = eventually("unschedulable", || async {
        let p = pods.get("lonely").await.unwrap();
        p.status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    })
    .await;
    assert_eq!(cond.reason.as_deref(), Some("Unschedulable"));
    let w = nodes.get("worker-1").await.unwrap();
    assert!(has_taint(&w, "node.kubernetes.io/unschedulable"));
}

#[tokio::test]
async fn server_side_apply_conflict_is_409_unless_forced() {
    let twin = Twin::start(vec![]).await;
    let client = twin.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = |v: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": v}});
    cms.patch("c", &PatchParams::apply("first"), &Patch::Apply(cm("1")))
        .await
        .unwrap();
    let err = cms
        .patch("c", &PatchParams::apply("second"), &Patch::Apply(cm("2")))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert_eq!(s.reason, "Conflict");
            assert!(
                s.message.contains("conflict with \"first\""),
                "{}",
                s.message
            );
            assert!(s.message.contains(".data.k"), "{}", s.message);
        }
        other => panic!("unexpected {other:?}"),
    }
    let forced = cms
        .patch(
            "c",
            &PatchParams::apply("second").force(),
            &Patch::Apply(cm("2")),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["k"], "2");
    // Stale resourceVersion on update: 409.
    let mut stale = cms.get("c").await.unwrap();
    stale.metadata.resource_version = Some("1".into());
    let err = cms
        .replace("c", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err:?}"
    );
    // Create of an existing name: AlreadyExists.
    let err = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(cm("3")).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.reason == "AlreadyExists"),
        "{err:?}"
    );
}

#[tokio::test]
async fn pvc_binds_through_csi_and_deleting_it_deletes_the_volume() {
    let (twin, client) = ready_cluster().await;
    apply(&Api::<StorageClass>::all(client.clone()), json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "hcloud-volumes", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "csi.hetzner.cloud", "volumeBindingMode": "WaitForFirstConsumer", "reclaimPolicy": "Delete"})).await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    apply(&pvcs, json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "12Gi"}}}})).await;
    // WaitForFirstConsumer: nothing until a pod uses it.
    eventually("pvc pending with default class", || async {
        let p = pvcs.get("data").await.unwrap();
        (p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending")
            && p.spec.as_ref().unwrap().storage_class_name.as_deref() == Some("hcloud-volumes"))
        .then_some(())
    })
    .await;
    assert!(twin.cloud.volumes().is_empty());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    apply(
        &pods,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "user"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}],
                 "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}),
    )
    .await;
    let pvc = eventually("pvc bound", || async {
        let p = pvcs.get("data").await.unwrap();
        (p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")).then_some(p)
    })
    .await;
    let uid = pvc.metadata.uid.unwrap();
    let pv_name = pvc.spec.unwrap().volume_name.unwrap();
    assert_eq!(pv_name, format!("pvc-{uid}"));
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get(&pv_name)
        .await
        .unwrap();
    let pv_spec = pv.spec.unwrap();
    let pv_affinity = pv_spec.node_affinity.clone().unwrap();
    let handle = pv_spec.csi.unwrap().volume_handle;
    let vols = twin.cloud.volumes();
    assert_eq!(vols.len(), 1);
    assert_eq!(vols[0].id.to_string(), handle);
    assert_eq!(vols[0].spec.size_gb, 12);
    assert_eq!(vols[0].spec.name, pv_name);
    assert_eq!(vols[0].spec.labels["managed-by"], "csi-driver");
    assert_eq!(vols[0].spec.labels["pvc-name"], "data");
    assert_eq!(vols[0].spec.labels["pvc-namespace"], "default");
    assert_eq!(vols[0].spec.labels["cluster"], "test");
    assert_eq!(
        vols[0].spec.location.as_deref(),
        Some("nbg1"),
        "the consumer's region"
    );
    let affinity = serde_json::to_value(pv_affinity).unwrap();
    assert_eq!(
        affinity["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0],
        "nbg1"
    );

    // pvc-protection: the claim stays Terminating while the pod uses it.
    pvcs.delete("data", &DeleteParams::default()).await.unwrap();
    let held = pvcs.get("data").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    assert_eq!(
        held.metadata.finalizers.unwrap(),
        vec!["kubernetes.io/pvc-protection".to_string()]
    );
    assert_eq!(twin.cloud.volumes().len(), 1);
    pods.delete("user", &DeleteParams::default()).await.unwrap();
    eventually("volume deleted", || async {
        twin.cloud.volumes().is_empty().then_some(())
    })
    .await;
    let err = pvcs.get("data").await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
    eventually("pv deleted", || async {
        Api::<PersistentVolume>::all(client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn load_balancer_service_gets_an_ip_and_a_labelled_lb_that_goes_with_it() {
    let (twin, client) = ready_cluster().await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc = |annotations: serde_json::Value| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ingress", "annotations": annotations},
               "spec": {"type": "LoadBalancer", "selector": {"app": "ingress"}, "ports": [{"port": 80}]}})
    };
    // Without a location or network zone the real CCM refuses; so does the twin.
    let created = apply(&svcs, svc(json!({}))).await;
    let uid = created.metadata.uid.clone().unwrap();
    let node_port = created.spec.unwrap().ports.unwrap()[0].node_port.unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let warning = eventually("SyncLoadBalancerFailed event", || async {
        events
            .list(&ListParams::default().fields(&format!("involvedObject.uid={uid}")))
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("SyncLoadBalancerFailed"))
    })
    .await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    assert!(twin.cloud.load_balancers().is_empty());

    apply(
        &svcs,
        svc(json!({"load-balancer.hetzner.cloud/location": "nbg1"})),
    )
    .await;
    let ip = eventually("ingress ip", || async {
        svcs.get("ingress")
            .await
            .unwrap()
            .status?
            .load_balancer?
            .ingress?
            .first()?
            .ip
            .clone()
    })
    .await;
    let lbs = twin.cloud.load_balancers();
    assert_eq!(lbs.len(), 1);
    assert_eq!(lbs[0].ip.to_string(), ip);
    assert_eq!(lbs[0].spec.labels["hcloud-ccm/service-uid"], uid);
    assert_eq!(lbs[0].spec.name, format!("a{}", uid.replace('-', ""))[..32]);
    assert_eq!(lbs[0].spec.location.as_deref(), Some("nbg1"));
    assert_eq!(lbs[0].spec.lb_type, "lb11");
    assert_eq!(
        lbs[0].spec.ports,
        vec![(80, u16::try_from(node_port).unwrap())]
    );
    let mut targets = lbs[0].spec.target_server_ids.clone();
    targets.sort();
    assert_eq!(targets, vec![101, 102]);
    let with_lb = svcs.get("ingress").await.unwrap();
    assert_eq!(
        with_lb.metadata.finalizers.unwrap(),
        vec!["service.kubernetes.io/load-balancer-cleanup".to_string()]
    );

    // With the CCM gone, a deleted Service stays Terminating and its load balancer stays.
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "kube-system");
    let scale = |n: i32| json!({"spec": {"replicas": n}});
    deploys
        .patch(
            "hcloud-cloud-controller-manager",
            &PatchParams::default(),
            &Patch::Merge(scale(0)),
        )
        .await
        .unwrap();
    let ccm_pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    eventually("ccm pod gone", || async {
        let pods = ccm_pods
            .list(&ListParams::default().labels("app=hccm"))
            .await
            .unwrap();
        pods.items.is_empty().then_some(())
    })
    .await;
    svcs.delete("ingress", &DeleteParams::default())
        .await
        .unwrap();
    let terminating = svcs.get("ingress").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(twin.cloud.load_balancers().len(), 1);

    // The CCM returns: the load balancer goes, then the Service.
    deploys
        .patch(
            "hcloud-cloud-controller-manager",
            &PatchParams::default(),
            &Patch::Merge(scale(1)),
        )
        .await
        .unwrap();
    eventually("service gone", || async {
        matches!(svcs.get("ingress").await, Err(kube::Error::Api(ref s)) if s.code == 404)
            .then_some(())
    })
    .await;
    assert!(twin.cloud.load_balancers().is_empty());
}

#[tokio::test]
async fn namespace_deletion_removes_its_objects() {
    let twin = Twin::start(vec![]).await;
    let client = twin.client().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    apply(
        &nss,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}),
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "apps");
    apply(&cms, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "apps"}})).await;
    nss.delete("apps", &DeleteParams::default()).await.unwrap();
    assert!(twin.cluster.object("", "configmaps", "apps", "x").is_none());
    let err = cms.get("x").await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
    let err = nss
        .delete("kube-system", &DeleteParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 403),
        "{err:?}"
    );
}

#[tokio::test]
async fn client_cert_from_another_ca_or_none_is_401() {
    let twin = Twin::start(vec![]).await;
    let other = make_ca("kubernetes");
    let foreign = client_for(
        twin.server.local_addr(),
        &twin.ca.0,
        Some(client_cert(&other, "admin", "system:masters")),
    )
    .await;
    let err = Api::<Node>::all(foreign)
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 401 && s.reason == "Unauthorized"),
        "{err:?}"
    );
    let anonymous = client_for(twin.server.local_addr(), &twin.ca.0, None).await;
    let err = Api::<Node>::all(anonymous)
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 401),
        "{err:?}"
    );
    // A cluster-CA cert outside system:masters is authenticated but not authorized.
    let user = client_for(
        twin.server.local_addr(),
        &twin.ca.0,
        Some(client_cert(&twin.ca, "bob", "dev")),
    )
    .await;
    let err = Api::<Node>::all(user)
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 403),
        "{err:?}"
    );
}

#[tokio::test]
async fn load_balancer_address_must_be_in_cert_sans() {
    // Without the LB IP in certSANs, a client of the LB address fails TLS verification.
    let twin = Twin::start(vec![]).await;
    let lb_ip = crate::common::loopback_ip();
    let lb = twin
        .cluster
        .serve_forwarded(SocketAddr::new(lb_ip, 0), twin.ip)
        .await
        .unwrap();
    let client = client_for(lb.local_addr(), &twin.ca.0, Some(twin.admin())).await;
    let err = client.apiserver_version().await.unwrap_err();
    let text = format!("{err:?}");
    eprintln!("client of the LB address without certSAN: {text}");
    assert!(!matches!(err, kube::Error::Api(_)), "{text}");
    assert_not_valid_for_name(&err, lb_ip);
    // The control plane's own address works.
    twin.client().await.apiserver_version().await.unwrap();

    // With the LB IP in certSANs, the same path works.
    let lb_ip2 = crate::common::loopback_ip();
    let twin2 = Twin::start(vec![lb_ip2.to_string()]).await;
    let lb2 = twin2
        .cluster
        .serve_forwarded(SocketAddr::new(lb_ip2, 0), twin2.ip)
        .await
        .unwrap();
    let client2 = client_for(lb2.local_addr(), &twin2.ca.0, Some(twin2.admin())).await;
    client2.apiserver_version().await.unwrap();
}

/// The `rustls::Error` in `err`'s source chain, looking inside `std::io::Error`s too (their
/// `source()` skips the error they wrap, which is where the TLS stack puts rustls's).
fn rustls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// Asserts `err` is rustls refusing the server certificate because it does not name `expected`.
fn assert_not_valid_for_name(err: &(dyn std::error::Error + 'static), expected: std::net::IpAddr) {
    let tls = rustls_error(err).unwrap_or_else(|| panic!("no rustls error in {err:?}"));
    match tls {
        rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext {
            expected: name,
            presented,
        }) => {
            assert_eq!(
                *name,
                rustls::pki_types::ServerName::from(expected),
                "{tls:?}"
            );
            // rustls lists the names as `IpAddress(<ip>)` / `DnsName("<name>")`.
            assert!(
                !presented.contains(&format!("IpAddress({expected})")),
                "{tls:?}"
            );
        }
        other => panic!("expected a certificate not valid for {expected}, got {other:?}"),
    }
}
