//! The small controllers of the twin, run as one tokio task per cluster. Every delay is a
//! realistic base duration divided by the speed factor.
//!
//! - **CRDs**: get `Established` and `NamesAccepted` conditions.
//! - **Nodes** (node lifecycle + kubelet): `Ready=True` once the node's pod of a CNI DaemonSet
//!   runs (a DaemonSet in `kube-system` whose name contains cilium, calico, flannel,
//!   kube-router, weave, canal or antrea), `Ready=Unknown` while its kubelet is stopped; taints
//!   `node.kubernetes.io/not-ready`, `…/unreachable` and `…/unschedulable` (cordon) follow.
//! - **CCM, CSI, load balancers**: see `cloud_controllers`.
//! - **Workloads, scheduler, kubelet pod start, pod GC**: see `workloads`.
//! - **CSR signing**: approved CSRs of the kubelet-serving, kube-apiserver-client(-kubelet)
//!   and legacy-unknown signers get `status.certificate` signed by the cluster CA.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::objects::{node_ready, owner_uid, pod_running, set_condition, write};
use crate::registration::register_node;
use crate::state::{ControllerState, Inner, Kubelet, lock};
use crate::store::{PVC_PROTECTION, Store, ns_name, timestamp};

/// Base delays in seconds at speed 1: a registered node with a running CNI pod turns Ready.
pub const NODE_READY: f64 = 5.0;

const CNI_NAMES: [&str; 7] = [
    "cilium",
    "calico",
    "flannel",
    "kube-router",
    "weave",
    "canal",
    "antrea",
];

pub(crate) async fn run(weak: Weak<Inner>, notify: Arc<Notify>) {
    let mut st = ControllerState::default();
    loop {
        let (spent, wait) = {
            let Some(inner) = weak.upgrade() else {
                return;
            };
            st.next = None;
            let started = Instant::now();
            reconcile(&inner, &mut st);
            let now = Instant::now();
            let wait = st
                .next
                .map(|n| n.saturating_duration_since(now))
                .unwrap_or(Duration::from_millis(500))
                .clamp(Duration::from_millis(2), Duration::from_millis(500));
            (now - started, wait)
        };
        // Every API request wakes the controllers, and a pass holds the store: without a pause
        // as long as the pass, a burst of requests (a hundred CSR approvals) got one request in
        // per pass. Requests that arrive meanwhile leave a permit, so the next pass sees them.
        tokio::time::sleep(spent.min(wait)).await;
        let wait = wait.saturating_sub(spent);
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn reconcile(inner: &Inner, st: &mut ControllerState) {
    let speed = inner.speed();
    let kubelets = lock(&inner.kubelets).clone();
    {
        let mut store = inner.store();
        crds(&mut store);
        namespaces(&mut store);
        pvc_protection(&mut store);
        nodes(&mut store, st, &kubelets, speed, inner);
        crate::workloads::workloads(&mut store);
        crate::workloads::schedule(&mut store);
        crate::workloads::start_pods(&mut store, st, &kubelets, speed);
        crate::workloads::workload_status(&mut store);
        sign_csrs(inner, &mut store);
    }
    crate::cloud_controllers::ccm_nodes(inner, st, speed);
    crate::cloud_controllers::volumes(inner, st, speed);
    crate::cloud_controllers::load_balancers(inner, st, speed);
}

fn crds(store: &mut Store) {
    for crd in store.shared("apiextensions.k8s.io", "customresourcedefinitions", None) {
        let established = crd["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
        });
        if established {
            continue;
        }
        let mut crd = Value::clone(&crd);
        let names = crd["spec"]["names"].clone();
        let stored: Vec<Value> = crd["spec"]["versions"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter(|v| v["storage"] == true)
                    .map(|v| v["name"].clone())
                    .collect()
            })
            .unwrap_or_default();
        crd["status"]["acceptedNames"] = names;
        crd["status"]["storedVersions"] = json!(stored);
        set_condition(
            &mut crd["status"]["conditions"],
            "NamesAccepted",
            "True",
            "NoConflicts",
            "no conflicts found",
        );
        set_condition(
            &mut crd["status"]["conditions"],
            "Established",
            "True",
            "InitialNamesAccepted",
            "the initial names have been accepted",
        );
        write(
            store,
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            crd,
        );
    }
}

/// Terminating namespaces: objects created before the deletion started are deleted, and
/// the namespace goes once empty.
fn namespaces(store: &mut Store) {
    for ns in store.shared("", "namespaces", None) {
        if ns["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let (_, name) = ns_name(&ns);
        store.delete_namespace(&name);
    }
}

/// The pvc-protection controller: a deleted PVC keeps its finalizer while a pod that has not
/// finished uses it.
fn pvc_protection(store: &mut Store) {
    let pods = store.shared("", "pods", None);
    for pvc in store.shared("", "persistentvolumeclaims", None) {
        if pvc["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let mut pvc = Value::clone(&pvc);
        let (ns, name) = ns_name(&pvc);
        let in_use = pods.iter().any(|p| {
            p["metadata"]["namespace"] == ns.as_str()
                && !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
                && p["spec"]["volumes"].as_array().is_some_and(|vs| {
                    vs.iter()
                        .any(|v| v["persistentVolumeClaim"]["claimName"] == name.as_str())
                })
        });
        if in_use {
            continue;
        }
        if let Some(f) = pvc["metadata"]["finalizers"].as_array_mut() {
            f.retain(|f| f != PVC_PROTECTION);
        }
        write(store, "", "persistentvolumeclaims", pvc);
    }
}

fn is_cni(ds: &Value) -> bool {
    let name = ds["metadata"]["name"].as_str().unwrap_or_default();
    ds["metadata"]["namespace"] == "kube-system" && CNI_NAMES.iter().any(|c| name.contains(c))
}

fn nodes(
    store: &mut Store,
    st: &mut ControllerState,
    kubelets: &BTreeMap<String, Kubelet>,
    speed: f64,
    inner: &Inner,
) {
    let cni_uids: HashSet<String> = store
        .shared("apps", "daemonsets", Some("kube-system"))
        .iter()
        .filter(|d| is_cni(d))
        .filter_map(|d| d["metadata"]["uid"].as_str().map(str::to_string))
        .collect();
    // Nodes with a running CNI pod, found in one walk over the pods.
    let cni_nodes: HashSet<String> = store
        .shared("", "pods", None)
        .iter()
        .filter(|p| owner_uid(p).is_some_and(|u| cni_uids.contains(u)) && pod_running(p))
        .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
        .collect();
    for (name, k) in kubelets {
        let Some(mut node) = store.get("", "nodes", "", name).cloned() else {
            if k.running {
                register_node(store, name, k.ip, k.role, &inner.kubelet_version(name));
            }
            continue;
        };
        let cni_running = cni_nodes.contains(name);
        let key = format!("ready:{name}");
        let status = if !k.running {
            st.done(&key);
            "Unknown"
        } else if cni_running && (node_ready(&node) || st.due(&key, NODE_READY, speed)) {
            "True"
        } else {
            if !cni_running {
                st.done(&key);
            }
            "False"
        };
        let (reason, message) = match status {
            "True" => ("KubeletReady", "kubelet is posting ready status"),
            "Unknown" => ("NodeStatusUnknown", "Kubelet stopped posting node status."),
            _ => (
                "KubeletNotReady",
                "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized",
            ),
        };
        let before = node.clone();
        set_condition(
            &mut node["status"]["conditions"],
            "Ready",
            status,
            reason,
            message,
        );
        // lastHeartbeatTime would change every pass; keep the condition stable when unchanged.
        let mut taints: Vec<Value> = node["spec"]["taints"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let want = [
            ("node.kubernetes.io/not-ready", status == "False"),
            ("node.kubernetes.io/unreachable", status == "Unknown"),
            (
                "node.kubernetes.io/unschedulable",
                node["spec"]["unschedulable"] == true,
            ),
        ];
        for (key, present) in want {
            let has = taints.iter().any(|t| t["key"] == key);
            if present && !has {
                taints.push(json!({"key": key, "effect": "NoSchedule", "timeAdded": timestamp()}));
            } else if !present && has {
                taints.retain(|t| t["key"] != key);
            }
        }
        if taints.is_empty() {
            if let Some(spec) = node["spec"].as_object_mut() {
                spec.remove("taints");
            }
        } else {
            node["spec"]["taints"] = Value::Array(taints);
        }
        if node != before {
            write(store, "", "nodes", node);
        }
    }
}

fn has_condition(obj: &Value, kind: &str) -> bool {
    obj["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == kind && c["status"] != "False")
    })
}

fn sign_csrs(inner: &Inner, store: &mut Store) {
    for csr in store.shared("certificates.k8s.io", "certificatesigningrequests", None) {
        if !has_condition(&csr, "Approved")
            || has_condition(&csr, "Denied")
            || has_condition(&csr, "Failed")
            || csr["status"]["certificate"].is_string()
        {
            continue;
        }
        let signer = csr["spec"]["signerName"].as_str().unwrap_or_default();
        let server = match signer {
            "kubernetes.io/kubelet-serving" => true,
            "kubernetes.io/kube-apiserver-client"
            | "kubernetes.io/kube-apiserver-client-kubelet"
            | "kubernetes.io/legacy-unknown" => false,
            _ => continue,
        };
        let mut csr = Value::clone(&csr);
        let pem = csr["spec"]["request"]
            .as_str()
            .and_then(|r| base64::engine::general_purpose::STANDARD.decode(r).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        match inner.ca.sign_csr(&pem, server) {
            Ok(cert) => {
                csr["status"]["certificate"] =
                    json!(base64::engine::general_purpose::STANDARD.encode(cert));
            }
            Err(e) => {
                set_condition(
                    &mut csr["status"]["conditions"],
                    "Failed",
                    "True",
                    "SigningError",
                    &e.to_string(),
                );
            }
        }
        write(
            store,
            "certificates.k8s.io",
            "certificatesigningrequests",
            csr,
        );
    }
}
