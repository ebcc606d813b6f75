//! The small controllers of the twin, run as one tokio task per cluster. Every delay is a
//! realistic base duration divided by the speed factor.
//!
//! - **CRDs**: get `Established` and `NamesAccepted` conditions.
//! - **Nodes** (node lifecycle + kubelet): `Ready=True` once the node's pod of a CNI DaemonSet
//!   runs (a DaemonSet in `kube-system` whose name contains cilium, calico, flannel,
//!   kube-router, weave, canal or antrea), `Ready=Unknown` while its kubelet is stopped; taints
//!   `node.kubernetes.io/not-ready`, `…/unreachable` and `…/unschedulable` (cordon) follow.
//! - **CCM**: once a pod whose name starts with `hcloud-cloud-controller-manager` runs in
//!   `kube-system` and Secret `kube-system/hcloud` has keys `token` and `network`, each node
//!   with the uninitialized taint whose server the cloud knows gets `providerID
//!   hcloud://<id>`, InternalIP/ExternalIP/Hostname addresses, and loses the taint.
//! - **Workloads**: Deployment → ReplicaSet `<name>-<template hash>` → Pods; StatefulSet →
//!   Pods `<name>-<ordinal>`; DaemonSet → one Pod per eligible node (nodeSelector, taints
//!   with the DaemonSet's automatic tolerations); a template change replaces the pods;
//!   workload status (replicas, ready, available, updated, observedGeneration, conditions).
//! - **Scheduler**: a pod without `nodeName` goes to the eligible node (not cordoned, taints
//!   tolerated, nodeSelector) with the fewest pods, else `PodScheduled=False Unschedulable`.
//! - **Kubelet**: a scheduled pod turns Running and Ready after the start delay if its node's
//!   kubelet runs and the pod uses the host network or the node is Ready.
//! - **Pod GC**: pods bound to a node that no longer exists are deleted.
//! - **CSR signing**: approved CSRs of the kubelet-serving, kube-apiserver-client(-kubelet)
//!   and legacy-unknown signers get `status.certificate` signed by the cluster CA.
//! - **CSI** (`csi.hetzner.cloud`): once a pod named `hcloud-csi-controller…` runs in
//!   `kube-system`, a pending PVC of a class with that provisioner (or of the default class
//!   when it names none) is provisioned — for `WaitForFirstConsumer` only once a scheduled pod
//!   uses it: a volume `pvc-<uid>` of max(10, ⌈GiB⌉) GB with labels `managed-by=csi-driver`,
//!   `pvc-name`, `pvc-namespace`, `pv-name` plus `HCLOUD_VOLUME_EXTRA_LABELS` of the
//!   controller's containers, a bound PV and a bound PVC. A PV whose claim is gone is deleted
//!   with its volume (reclaim Delete) or turns Released (Retain).
//! - **CCM load balancers**: a Service of type LoadBalancer gets a load balancer named by
//!   `load-balancer.hetzner.cloud/name` or `a<uid without dashes>` (32 chars) labelled
//!   `hcloud-ccm/service-uid=<uid>`, and `status.loadBalancer.ingress[0].ip`; deleting the
//!   Service (or changing its type) deletes the load balancer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::cluster::{Inner, Kubelet, lock, register_node};
use crate::discovery::ResourceType;
use crate::store::{Store, ns_name, timestamp};

/// Base delays in seconds at speed 1.
const POD_START: f64 = 3.0;
const NODE_READY: f64 = 2.0;
const CCM_INIT: f64 = 2.0;
const VOLUME_CREATE: f64 = 3.0;
const LB_CREATE: f64 = 5.0;

const CNI_NAMES: [&str; 7] = [
    "cilium",
    "calico",
    "flannel",
    "kube-router",
    "weave",
    "canal",
    "antrea",
];
const UNINITIALIZED: &str = "node.cloudprovider.kubernetes.io/uninitialized";
const CSI_DRIVER: &str = "csi.hetzner.cloud";

#[derive(Default)]
struct State {
    first_seen: HashMap<String, Instant>,
    next: Option<Instant>,
    load_balancers: HashMap<String, i64>,
}

impl State {
    /// True once `base` seconds (scaled) passed since `key` was first asked about.
    fn due(&mut self, key: &str, base: f64, speed: f64) -> bool {
        let now = Instant::now();
        let first = *self.first_seen.entry(key.to_string()).or_insert(now);
        let at = first + Duration::from_secs_f64(base / speed);
        if now >= at {
            true
        } else {
            self.next = Some(self.next.map_or(at, |n| n.min(at)));
            false
        }
    }

    fn done(&mut self, key: &str) {
        self.first_seen.remove(key);
    }
}

pub(crate) async fn run(weak: Weak<Inner>, notify: Arc<Notify>) {
    let mut st = State::default();
    loop {
        let wait = {
            let Some(inner) = weak.upgrade() else {
                return;
            };
            st.next = None;
            reconcile(&inner, &mut st);
            let now = Instant::now();
            st.next
                .map(|n| n.saturating_duration_since(now))
                .unwrap_or(Duration::from_millis(500))
                .clamp(Duration::from_millis(2), Duration::from_millis(500))
        };
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn reconcile(inner: &Inner, st: &mut State) {
    let speed = inner.speed();
    let kubelets = lock(&inner.kubelets).clone();
    {
        let mut store = inner.store();
        crds(&mut store);
        nodes(&mut store, st, &kubelets, speed, &inner.version());
        workloads(&mut store);
        schedule(&mut store);
        start_pods(&mut store, st, &kubelets, speed);
        workload_status(&mut store);
        sign_csrs(inner, &mut store);
    }
    ccm_nodes(inner, st, speed);
    volumes(inner, st, speed);
    load_balancers(inner, st, speed);
}

fn rt(store: &Store, group: &str, plural: &str) -> Option<ResourceType> {
    store
        .types()
        .iter()
        .find(|t| t.group == group && t.plural == plural)
        .cloned()
}

fn write(store: &mut Store, group: &str, plural: &str, obj: Value) {
    if let Some(t) = rt(store, group, plural)
        && let Err(e) = store.replace(&t, obj)
    {
        tracing::debug!(error = ?e, "controller write");
    }
}

fn create(store: &mut Store, group: &str, plural: &str, obj: Value) {
    if let Some(t) = rt(store, group, plural)
        && let Err(e) = store.create(&t, obj)
    {
        tracing::debug!(error = ?e, "controller create");
    }
}

fn set_condition(conditions: &mut Value, kind: &str, status: &str, reason: &str, message: &str) {
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let Some(list) = conditions.as_array_mut() else {
        return;
    };
    let now = timestamp();
    match list.iter_mut().find(|c| c["type"] == kind) {
        Some(c) => {
            if c["status"] != status {
                c["lastTransitionTime"] = json!(now);
            }
            c["status"] = json!(status);
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
        None => list.push(json!({"type": kind, "status": status, "reason": reason,
                                 "message": message, "lastTransitionTime": now})),
    }
}

fn crds(store: &mut Store) {
    for mut crd in store.list("apiextensions.k8s.io", "customresourcedefinitions", None) {
        let established = crd["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
        });
        if established {
            continue;
        }
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

fn pod_running(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn node_ready(node: &Value) -> bool {
    node["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn owner_uid(obj: &Value) -> Option<&str> {
    obj["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .and_then(|r| r["uid"].as_str())
}

fn is_cni(ds: &Value) -> bool {
    let name = ds["metadata"]["name"].as_str().unwrap_or_default();
    ds["metadata"]["namespace"] == "kube-system" && CNI_NAMES.iter().any(|c| name.contains(c))
}

fn nodes(
    store: &mut Store,
    st: &mut State,
    kubelets: &BTreeMap<String, Kubelet>,
    speed: f64,
    version: &str,
) {
    let cni_uids: HashSet<String> = store
        .list("apps", "daemonsets", Some("kube-system"))
        .iter()
        .filter(|d| is_cni(d))
        .filter_map(|d| d["metadata"]["uid"].as_str().map(str::to_string))
        .collect();
    let pods = store.list("", "pods", None);
    for (name, k) in kubelets {
        let Some(mut node) = store.get("", "nodes", "", name).cloned() else {
            if k.running {
                register_node(store, name, k.ip, k.role, version);
            }
            continue;
        };
        let cni_running = pods.iter().any(|p| {
            p["spec"]["nodeName"] == name.as_str()
                && owner_uid(p).is_some_and(|u| cni_uids.contains(u))
                && pod_running(p)
        });
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

fn tolerates(tolerations: &[Value], taint: &Value) -> bool {
    tolerations.iter().any(|t| {
        let op = t["operator"].as_str().unwrap_or("Equal");
        let key_ok = match t["key"].as_str() {
            None | Some("") => op == "Exists",
            Some(k) => taint["key"] == k,
        };
        let value_ok = op == "Exists"
            || t["value"].as_str().unwrap_or("") == taint["value"].as_str().unwrap_or("");
        let effect_ok = t["effect"]
            .as_str()
            .is_none_or(|e| e.is_empty() || taint["effect"] == e);
        key_ok && value_ok && effect_ok
    })
}

/// Whether a pod spec may run on a node: taints (NoSchedule, NoExecute) tolerated,
/// nodeSelector labels present.
fn fits(pod_spec: &Value, node: &Value, extra_tolerations: &[Value]) -> bool {
    let mut tolerations: Vec<Value> = pod_spec["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    tolerations.extend_from_slice(extra_tolerations);
    let taints = node["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let taints_ok = taints
        .iter()
        .filter(|t| t["effect"] == "NoSchedule" || t["effect"] == "NoExecute")
        .all(|t| tolerates(&tolerations, t));
    let selector_ok = pod_spec["nodeSelector"].as_object().is_none_or(|sel| {
        sel.iter()
            .all(|(k, v)| node["metadata"]["labels"].get(k) == Some(v))
    });
    let cordoned = node["spec"]["unschedulable"] == true
        && !tolerates(
            &tolerations,
            &json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}),
        );
    taints_ok && selector_ok && !cordoned
}

fn daemonset_tolerations(host_network: bool) -> Vec<Value> {
    let mut t = vec![
        json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}),
        json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}),
        json!({"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}),
    ];
    if host_network {
        t.push(json!({"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"}));
    }
    t
}

fn template_hash(template: &Value) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    template.to_string().hash(&mut h);
    let mut n = h.finish();
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn owner_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true,
    })
}

fn new_pod(
    owner: &Value,
    template: &Value,
    name: &str,
    labels: &[(&str, String)],
    node: Option<&str>,
) -> Value {
    let mut meta_labels = template["metadata"]["labels"].clone();
    if !meta_labels.is_object() {
        meta_labels = json!({});
    }
    for (k, v) in labels {
        meta_labels[*k] = json!(v);
    }
    let mut spec = template["spec"].clone();
    for (k, v) in [
        ("restartPolicy", json!("Always")),
        ("schedulerName", json!("default-scheduler")),
        ("dnsPolicy", json!("ClusterFirst")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("serviceAccountName", json!("default")),
    ] {
        if spec[k].is_null() {
            spec[k] = v;
        }
    }
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": owner["metadata"]["namespace"],
            "labels": meta_labels,
            "ownerReferences": [owner_ref(owner)],
        },
        "spec": spec,
        "status": {"phase": "Pending", "qosClass": "BestEffort"},
    });
    if let Some(a) = template["metadata"]["annotations"].as_object() {
        pod["metadata"]["annotations"] = Value::Object(a.clone());
    }
    pod
}

fn owned<'a>(pods: &'a [Value], uid: &str) -> Vec<&'a Value> {
    pods.iter().filter(|p| owner_uid(p) == Some(uid)).collect()
}

fn remove_obj(store: &mut Store, group: &str, plural: &str, obj: &Value) {
    let (ns, name) = ns_name(obj);
    store.remove(group, plural, &ns, &name);
}

fn workloads(store: &mut Store) {
    // Deployments → ReplicaSets.
    let replicasets = store.list("apps", "replicasets", None);
    for d in store.list("apps", "deployments", None) {
        let Some(uid) = d["metadata"]["uid"].as_str() else {
            continue;
        };
        let hash = template_hash(&d["spec"]["template"]);
        let (ns, name) = ns_name(&d);
        let rs_name = format!("{name}-{hash}");
        let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
        for old in owned(&replicasets, uid) {
            if old["metadata"]["name"] != rs_name.as_str() && old["spec"]["replicas"] != 0 {
                let mut old = old.clone();
                old["spec"]["replicas"] = json!(0);
                write(store, "apps", "replicasets", old);
            }
        }
        let mut template = d["spec"]["template"].clone();
        template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
        let mut selector = d["spec"]["selector"].clone();
        selector["matchLabels"]["pod-template-hash"] = json!(hash);
        match store.get("apps", "replicasets", &ns, &rs_name).cloned() {
            Some(mut rs) => {
                if rs["spec"]["replicas"] != replicas {
                    rs["spec"]["replicas"] = json!(replicas);
                    write(store, "apps", "replicasets", rs);
                }
            }
            None => {
                let rs = json!({
                    "apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {"name": rs_name, "namespace": ns, "labels": template["metadata"]["labels"],
                                 "ownerReferences": [owner_ref(&d)]},
                    "spec": {"replicas": replicas, "selector": selector, "template": template},
                });
                create(store, "apps", "replicasets", rs);
            }
        }
    }
    // ReplicaSets → Pods.
    let pods = store.list("", "pods", None);
    for rs in store.list("apps", "replicasets", None) {
        let Some(uid) = rs["metadata"]["uid"].as_str() else {
            continue;
        };
        let mine = owned(&pods, uid);
        let want = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
        let (_, name) = ns_name(&rs);
        for _ in mine.len()..want {
            let pod = new_pod(
                &rs,
                &rs["spec"]["template"],
                &format!("{name}-{}", random_suffix()),
                &[],
                None,
            );
            create(store, "", "pods", pod);
        }
        for extra in mine.iter().skip(want) {
            remove_obj(store, "", "pods", extra);
        }
    }
    // StatefulSets → Pods.
    for s in store.list("apps", "statefulsets", None) {
        let Some(uid) = s["metadata"]["uid"].as_str() else {
            continue;
        };
        let hash = template_hash(&s["spec"]["template"]);
        let (ns, name) = ns_name(&s);
        let want = s["spec"]["replicas"].as_i64().unwrap_or(1).max(0);
        let rev = format!("{name}-{hash}");
        for pod in owned(&pods, uid) {
            let ordinal = pod["metadata"]["name"]
                .as_str()
                .and_then(|n| n.rsplit('-').next())
                .and_then(|o| o.parse::<i64>().ok())
                .unwrap_or(i64::MAX);
            if ordinal >= want
                || pod["metadata"]["labels"]["controller-revision-hash"] != rev.as_str()
            {
                remove_obj(store, "", "pods", pod);
            }
        }
        for i in 0..want {
            let pod_name = format!("{name}-{i}");
            if store.get("", "pods", &ns, &pod_name).is_none() {
                let pod = new_pod(
                    &s,
                    &s["spec"]["template"],
                    &pod_name,
                    &[
                        ("controller-revision-hash", rev.clone()),
                        ("statefulset.kubernetes.io/pod-name", pod_name.clone()),
                    ],
                    None,
                );
                create(store, "", "pods", pod);
            }
        }
    }
    // DaemonSets → one Pod per eligible node.
    let nodes = store.list("", "nodes", None);
    let pods = store.list("", "pods", None);
    for ds in store.list("apps", "daemonsets", None) {
        let Some(uid) = ds["metadata"]["uid"].as_str() else {
            continue;
        };
        let template = &ds["spec"]["template"];
        let hash = template_hash(template);
        let extra = daemonset_tolerations(template["spec"]["hostNetwork"] == true);
        let eligible: HashSet<String> = nodes
            .iter()
            .filter(|n| fits(&template["spec"], n, &extra))
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        let mut covered = HashSet::new();
        for pod in owned(&pods, uid) {
            let node = pod["spec"]["nodeName"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if !eligible.contains(&node)
                || pod["metadata"]["labels"]["controller-revision-hash"] != hash.as_str()
            {
                remove_obj(store, "", "pods", pod);
            } else {
                covered.insert(node);
            }
        }
        let (_, name) = ns_name(&ds);
        let mut todo: Vec<&String> = eligible.difference(&covered).collect();
        todo.sort();
        for node in todo {
            let mut pod = new_pod(
                &ds,
                template,
                &format!("{name}-{}", random_suffix()),
                &[("controller-revision-hash", hash.clone())],
                Some(node),
            );
            let mut tolerations = pod["spec"]["tolerations"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            tolerations.extend(extra.iter().cloned());
            pod["spec"]["tolerations"] = Value::Array(tolerations);
            create(store, "", "pods", pod);
        }
    }
}

fn schedule(store: &mut Store) {
    let nodes = store.list("", "nodes", None);
    let node_names: HashSet<&str> = nodes
        .iter()
        .filter_map(|n| n["metadata"]["name"].as_str())
        .collect();
    let mut load: HashMap<String, usize> = HashMap::new();
    let pods = store.list("", "pods", None);
    for p in &pods {
        if let Some(n) = p["spec"]["nodeName"].as_str() {
            *load.entry(n.to_string()).or_default() += 1;
        }
    }
    for mut pod in pods {
        match pod["spec"]["nodeName"].as_str() {
            Some(n) if !node_names.contains(n) => {
                // Pod GC: the node is gone.
                remove_obj(store, "", "pods", &pod);
                continue;
            }
            Some(_) => continue,
            None => {}
        }
        let choice = nodes
            .iter()
            .filter(|n| fits(&pod["spec"], n, &[]))
            .filter_map(|n| n["metadata"]["name"].as_str())
            .min_by_key(|n| (load.get(*n).copied().unwrap_or(0), n.to_string()))
            .map(str::to_string);
        let before = pod.clone();
        match choice {
            Some(node) => {
                *load.entry(node.clone()).or_default() += 1;
                pod["spec"]["nodeName"] = json!(node);
                set_condition(
                    &mut pod["status"]["conditions"],
                    "PodScheduled",
                    "True",
                    "",
                    "",
                );
            }
            None => {
                let msg = format!(
                    "0/{} nodes are available: no node matches the pod's tolerations and node selector.",
                    nodes.len()
                );
                set_condition(
                    &mut pod["status"]["conditions"],
                    "PodScheduled",
                    "False",
                    "Unschedulable",
                    &msg,
                );
            }
        }
        if pod != before {
            write(store, "", "pods", pod);
        }
    }
}

fn start_pods(store: &mut Store, st: &mut State, kubelets: &BTreeMap<String, Kubelet>, speed: f64) {
    for mut pod in store.list("", "pods", None) {
        if pod["status"]["phase"] != "Pending" {
            continue;
        }
        let Some(node_name) = pod["spec"]["nodeName"].as_str().map(str::to_string) else {
            continue;
        };
        let Some(k) = kubelets.get(&node_name).filter(|k| k.running) else {
            continue;
        };
        let Some(node) = store.get("", "nodes", "", &node_name) else {
            continue;
        };
        let host_network = pod["spec"]["hostNetwork"] == true;
        if !host_network && !node_ready(node) {
            continue;
        }
        let key = format!(
            "start:{}",
            pod["metadata"]["uid"].as_str().unwrap_or_default()
        );
        if !st.due(&key, POD_START, speed) {
            continue;
        }
        st.done(&key);
        let now = timestamp();
        let ip = if host_network {
            k.ip.to_string()
        } else {
            format!(
                "10.244.{}.{}",
                rand::random_range(0..=255u8),
                rand::random_range(2..=254u8)
            )
        };
        let containers: Vec<Value> = pod["spec"]["containers"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .map(|c| {
                        json!({"name": c["name"], "image": c["image"], "imageID": "",
                               "containerID": format!("containerd://{}", uuid::Uuid::new_v4().simple()),
                               "ready": true, "started": true, "restartCount": 0,
                               "state": {"running": {"startedAt": now}}})
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut conditions = pod["status"]["conditions"].clone();
        for c in [
            "PodReadyToStartContainers",
            "Initialized",
            "ContainersReady",
            "Ready",
            "PodScheduled",
        ] {
            set_condition(&mut conditions, c, "True", "", "");
        }
        pod["status"] = json!({
            "phase": "Running", "conditions": conditions, "hostIP": k.ip.to_string(),
            "hostIPs": [{"ip": k.ip.to_string()}], "podIP": ip, "podIPs": [{"ip": ip}],
            "startTime": now, "qosClass": "BestEffort", "containerStatuses": containers,
        });
        write(store, "", "pods", pod);
    }
}

fn workload_status(store: &mut Store) {
    let pods = store.list("", "pods", None);
    let replicasets = store.list("apps", "replicasets", None);
    let count = |uid: &str| {
        let mine = owned(&pods, uid);
        let ready = mine.iter().filter(|p| pod_running(p)).count() as i64;
        (mine.len() as i64, ready)
    };
    for mut rs in replicasets.clone() {
        let uid = rs["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (n, ready) = count(&uid);
        let status = json!({"replicas": n, "fullyLabeledReplicas": n, "readyReplicas": ready,
                            "availableReplicas": ready, "observedGeneration": rs["metadata"]["generation"]});
        if rs["status"] != status {
            rs["status"] = status;
            write(store, "apps", "replicasets", rs);
        }
    }
    for mut d in store.list("apps", "deployments", None) {
        let uid = d["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let hash = template_hash(&d["spec"]["template"]);
        let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
        let (mut total, mut ready, mut updated) = (0, 0, 0);
        for rs in owned(&replicasets, &uid) {
            let (n, r) = count(rs["metadata"]["uid"].as_str().unwrap_or_default());
            total += n;
            ready += r;
            if rs["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with(&hash))
            {
                updated += n;
            }
        }
        let before = d["status"].clone();
        let mut status = json!({"observedGeneration": d["metadata"]["generation"], "replicas": total,
                                "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": ready,
                                "unavailableReplicas": (total - ready).max(want - ready).max(0)});
        let mut conditions = before["conditions"].clone();
        if ready >= want {
            set_condition(
                &mut conditions,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            );
        } else {
            set_condition(
                &mut conditions,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            );
        }
        if updated == want && ready >= want && total == want {
            set_condition(
                &mut conditions,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                "ReplicaSet has successfully progressed.",
            );
        } else {
            set_condition(
                &mut conditions,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                "ReplicaSet is progressing.",
            );
        }
        status["conditions"] = conditions;
        if before != status {
            d["status"] = status;
            write(store, "apps", "deployments", d);
        }
    }
    for mut s in store.list("apps", "statefulsets", None) {
        let uid = s["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (n, ready) = count(&uid);
        let (_, name) = ns_name(&s);
        let rev = format!("{name}-{}", template_hash(&s["spec"]["template"]));
        let status = json!({"observedGeneration": s["metadata"]["generation"], "replicas": n, "readyReplicas": ready,
                            "currentReplicas": n, "updatedReplicas": n, "availableReplicas": ready,
                            "currentRevision": rev, "updateRevision": rev, "collisionCount": 0});
        if s["status"] != status {
            s["status"] = status;
            write(store, "apps", "statefulsets", s);
        }
    }
    for mut ds in store.list("apps", "daemonsets", None) {
        let uid = ds["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (n, ready) = count(&uid);
        let status = json!({"observedGeneration": ds["metadata"]["generation"], "desiredNumberScheduled": n,
                            "currentNumberScheduled": n, "updatedNumberScheduled": n, "numberMisscheduled": 0,
                            "numberReady": ready, "numberAvailable": ready, "numberUnavailable": n - ready});
        if ds["status"] != status {
            ds["status"] = status;
            write(store, "apps", "daemonsets", ds);
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
    for mut csr in store.list("certificates.k8s.io", "certificatesigningrequests", None) {
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

fn running_pod_named(store: &Store, prefix: &str) -> Option<Value> {
    store
        .list("", "pods", Some("kube-system"))
        .into_iter()
        .find(|p| {
            p["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(prefix))
                && pod_running(p)
        })
}

fn secret_has(secret: &Value, key: &str) -> bool {
    secret["data"].get(key).is_some() || secret["stringData"].get(key).is_some()
}

fn ccm_ready(store: &Store) -> bool {
    let secret_ok = store
        .get("", "secrets", "kube-system", "hcloud")
        .is_some_and(|s| secret_has(s, "token") && secret_has(s, "network"));
    secret_ok && running_pod_named(store, "hcloud-cloud-controller-manager").is_some()
}

fn ccm_nodes(inner: &Inner, st: &mut State, speed: f64) {
    let pending: Vec<String> = {
        let store = inner.store();
        if !ccm_ready(&store) {
            return;
        }
        store
            .list("", "nodes", None)
            .into_iter()
            .filter(|n| {
                n["spec"]["taints"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t["key"] == UNINITIALIZED))
            })
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
            .collect()
    };
    for name in pending {
        let key = format!("ccm:{name}");
        if !st.due(&key, CCM_INIT, speed) {
            continue;
        }
        let Some(id) = inner.cloud.server_id_by_name(&name) else {
            continue;
        };
        let public = inner.cloud.server_public_ipv4(&name);
        st.done(&key);
        let mut store = inner.store();
        let Some(mut node) = store.get("", "nodes", "", &name).cloned() else {
            continue;
        };
        node["spec"]["providerID"] = json!(format!("hcloud://{id}"));
        if let Some(t) = node["spec"]["taints"].as_array_mut() {
            t.retain(|t| t["key"] != UNINITIALIZED);
        }
        let internal = node["status"]["addresses"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP").cloned());
        let mut addresses = Vec::new();
        if let Some(i) = internal {
            addresses.push(i);
        }
        if let Some(ip) = public {
            addresses.push(json!({"type": "ExternalIP", "address": ip.to_string()}));
        }
        addresses.push(json!({"type": "Hostname", "address": name}));
        node["status"]["addresses"] = Value::Array(addresses);
        node["metadata"]["labels"]["instance.hetzner.cloud/provided-by"] = json!("cloud");
        write(&mut store, "", "nodes", node);
    }
}

/// GiB quantity → GB as the CSI driver rounds (up, at least 10).
fn size_gb(quantity: &str) -> u64 {
    let q = quantity.trim();
    let (num, unit) = q.split_at(q.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(q.len()));
    let n: f64 = num.parse().unwrap_or(0.0);
    let bytes = n * match unit {
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        _ => 1.0,
    };
    ((bytes / 1024.0 / 1024.0 / 1024.0).ceil() as u64).max(10)
}

fn extra_volume_labels(csi: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for c in csi["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for e in c["env"].as_array().into_iter().flatten() {
            if e["name"] == "HCLOUD_VOLUME_EXTRA_LABELS" {
                for pair in e["value"].as_str().unwrap_or_default().split(',') {
                    if let Some((k, v)) = pair.split_once('=') {
                        out.insert(k.trim().to_string(), v.trim().to_string());
                    }
                }
            }
        }
    }
    out
}

struct Provision {
    pvc: Value,
    class: Value,
    labels: BTreeMap<String, String>,
    size: u64,
    pv_name: String,
}

fn volumes(inner: &Inner, st: &mut State, speed: f64) {
    let mut todo = Vec::new();
    let mut released = Vec::new();
    {
        let mut store = inner.store();
        // Release: PVs whose claim is gone.
        for pv in store.list("", "persistentvolumes", None) {
            let claim = &pv["spec"]["claimRef"];
            let Some(claim_name) = claim["name"].as_str() else {
                continue;
            };
            let ns = claim["namespace"].as_str().unwrap_or_default();
            let gone = store
                .get("", "persistentvolumeclaims", ns, claim_name)
                .is_none_or(|c| c["metadata"]["uid"] != claim["uid"]);
            if gone && pv["status"]["phase"] != "Released" {
                if pv["spec"]["persistentVolumeReclaimPolicy"]
                    .as_str()
                    .unwrap_or("Delete")
                    == "Delete"
                {
                    released.push(pv);
                } else {
                    let mut pv = pv;
                    pv["status"]["phase"] = json!("Released");
                    write(&mut store, "", "persistentvolumes", pv);
                }
            }
        }
        let csi = store
            .list("apps", "deployments", Some("kube-system"))
            .into_iter()
            .find(|d| {
                d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("hcloud-csi-controller"))
            });
        let csi_running = running_pod_named(&store, "hcloud-csi-controller").is_some();
        let classes = store.list("storage.k8s.io", "storageclasses", None);
        let default_class = classes.iter().find(|c| {
            c["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
        });
        let pods = store.list("", "pods", None);
        for mut pvc in store.list("", "persistentvolumeclaims", None) {
            if pvc["spec"]["volumeName"].is_string() || pvc["status"]["phase"] == "Bound" {
                continue;
            }
            let class = match pvc["spec"]["storageClassName"].as_str() {
                Some(name) => classes
                    .iter()
                    .find(|c| c["metadata"]["name"] == name)
                    .cloned(),
                None => default_class.cloned(),
            };
            if pvc["status"]["phase"].is_null() {
                pvc["status"]["phase"] = json!("Pending");
                if let (None, Some(c)) = (pvc["spec"]["storageClassName"].as_str(), &class) {
                    pvc["spec"]["storageClassName"] = c["metadata"]["name"].clone();
                }
                write(&mut store, "", "persistentvolumeclaims", pvc.clone());
            }
            let Some(class) = class.filter(|c| c["provisioner"] == CSI_DRIVER) else {
                continue;
            };
            let (Some(csi), true) = (&csi, csi_running) else {
                continue;
            };
            let (ns, name) = ns_name(&pvc);
            if class["volumeBindingMode"] == "WaitForFirstConsumer" {
                let consumer = pods.iter().any(|p| {
                    p["metadata"]["namespace"] == ns.as_str()
                        && p["spec"]["nodeName"].is_string()
                        && p["spec"]["volumes"].as_array().is_some_and(|vs| {
                            vs.iter()
                                .any(|v| v["persistentVolumeClaim"]["claimName"] == name.as_str())
                        })
                });
                if !consumer {
                    continue;
                }
            }
            let uid = pvc["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if !st.due(&format!("pvc:{uid}"), VOLUME_CREATE, speed) {
                continue;
            }
            let pv_name = format!("pvc-{uid}");
            let mut labels = extra_volume_labels(csi);
            labels.insert("managed-by".into(), "csi-driver".into());
            labels.insert("pvc-name".into(), name.clone());
            labels.insert("pvc-namespace".into(), ns.clone());
            labels.insert("pv-name".into(), pv_name.clone());
            let size = size_gb(
                pvc["spec"]["resources"]["requests"]["storage"]
                    .as_str()
                    .unwrap_or("10Gi"),
            );
            todo.push(Provision {
                pvc,
                class,
                labels,
                size,
                pv_name,
            });
        }
    }
    for pv in released {
        if let Some(id) = pv["spec"]["csi"]["volumeHandle"]
            .as_str()
            .and_then(|h| h.parse::<i64>().ok())
            && let Err(e) = inner.cloud.delete_volume(id)
        {
            tracing::warn!(error = %e, "csi: delete volume");
            continue;
        }
        let (_, name) = ns_name(&pv);
        inner.store().remove("", "persistentvolumes", "", &name);
    }
    for p in todo {
        let uid = p.pvc["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let id = match inner.cloud.create_volume(&p.pv_name, p.size, &p.labels) {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(error = %e, "csi: create volume");
                continue;
            }
        };
        st.done(&format!("pvc:{uid}"));
        let (ns, name) = ns_name(&p.pvc);
        let capacity = format!("{}Gi", p.size);
        let mut store = inner.store();
        let Some(mut pvc) = store.get("", "persistentvolumeclaims", &ns, &name).cloned() else {
            drop(store);
            let _ = inner.cloud.delete_volume(id);
            continue;
        };
        let pv = json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": p.pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": CSI_DRIVER}},
            "spec": {
                "capacity": {"storage": capacity},
                "accessModes": pvc["spec"]["accessModes"],
                "persistentVolumeReclaimPolicy": p.class["reclaimPolicy"].as_str().unwrap_or("Delete"),
                "storageClassName": p.class["metadata"]["name"],
                "volumeMode": pvc["spec"]["volumeMode"].as_str().unwrap_or("Filesystem"),
                "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": ns, "name": name,
                             "uid": uid, "resourceVersion": pvc["metadata"]["resourceVersion"]},
                "csi": {"driver": CSI_DRIVER, "volumeHandle": id.to_string(), "fsType": "ext4"},
            },
            "status": {"phase": "Bound"},
        });
        create(&mut store, "", "persistentvolumes", pv);
        pvc["spec"]["volumeName"] = json!(p.pv_name);
        pvc["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] = json!("yes");
        pvc["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] = json!("yes");
        pvc["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"] =
            json!(CSI_DRIVER);
        pvc["status"] = json!({"phase": "Bound", "accessModes": pvc["spec"]["accessModes"], "capacity": {"storage": capacity}});
        write(&mut store, "", "persistentvolumeclaims", pvc);
    }
}

fn load_balancers(inner: &Inner, st: &mut State, speed: f64) {
    let (wanted, ccm) = {
        let store = inner.store();
        let wanted: Vec<Value> = store
            .list("", "services", None)
            .into_iter()
            .filter(|s| s["spec"]["type"] == "LoadBalancer")
            .collect();
        (wanted, ccm_ready(&store))
    };
    let live: HashSet<String> = wanted
        .iter()
        .filter_map(|s| s["metadata"]["uid"].as_str().map(str::to_string))
        .collect();
    let stale: Vec<(String, i64)> = st
        .load_balancers
        .iter()
        .filter(|(uid, _)| !live.contains(*uid))
        .map(|(u, i)| (u.clone(), *i))
        .collect();
    for (uid, id) in stale {
        if ccm {
            match inner.cloud.delete_load_balancer(id) {
                Ok(()) => {
                    st.load_balancers.remove(&uid);
                }
                Err(e) => tracing::warn!(error = %e, "ccm: delete load balancer"),
            }
        }
    }
    if !ccm {
        return;
    }
    for svc in wanted {
        let uid = svc["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if st.load_balancers.contains_key(&uid)
            || svc["status"]["loadBalancer"]["ingress"].is_array()
        {
            continue;
        }
        let key = format!("lb:{uid}");
        if !st.due(&key, LB_CREATE, speed) {
            continue;
        }
        let name = svc["metadata"]["annotations"]["load-balancer.hetzner.cloud/name"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| {
                let mut n = format!("a{}", uid.replace('-', ""));
                n.truncate(32);
                n
            });
        let labels = BTreeMap::from([("hcloud-ccm/service-uid".to_string(), uid.clone())]);
        let (id, ip) = match inner.cloud.create_load_balancer(&name, &labels) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "ccm: create load balancer");
                continue;
            }
        };
        st.done(&key);
        st.load_balancers.insert(uid.clone(), id);
        let (ns, svc_name) = ns_name(&svc);
        let mut store = inner.store();
        if let Some(mut current) = store.get("", "services", &ns, &svc_name).cloned() {
            current["status"]["loadBalancer"] =
                json!({"ingress": [{"ip": ip.to_string(), "ipMode": "VIP"}]});
            write(&mut store, "", "services", current);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_sizes_round_up_to_ten_gb() {
        assert_eq!(size_gb("1Gi"), 10);
        assert_eq!(size_gb("20Gi"), 20);
        assert_eq!(size_gb("10.5Gi"), 11);
        assert_eq!(size_gb("50G"), 47);
    }

    #[test]
    fn tolerations_match_taints() {
        let taint = json!({"key": UNINITIALIZED, "value": "true", "effect": "NoSchedule"});
        assert!(tolerates(
            &[json!({"key": UNINITIALIZED, "value": "true", "effect": "NoSchedule"})],
            &taint
        ));
        assert!(tolerates(&[json!({"operator": "Exists"})], &taint));
        assert!(!tolerates(
            &[json!({"key": UNINITIALIZED, "value": "false"})],
            &taint
        ));
        assert!(!tolerates(
            &[json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists"})],
            &taint
        ));
    }

    #[test]
    fn daemonset_fits_only_tolerated_nodes() {
        let node = json!({"metadata": {"labels": {"a": "b"}},
                          "spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]}});
        let plain = json!({});
        assert!(!fits(&plain, &node, &[]));
        let tolerant = json!({"tolerations": [{"operator": "Exists"}], "nodeSelector": {"a": "b"}});
        assert!(fits(&tolerant, &node, &[]));
        let wrong_selector =
            json!({"tolerations": [{"operator": "Exists"}], "nodeSelector": {"a": "c"}});
        assert!(!fits(&wrong_selector, &node, &[]));
    }

    #[test]
    fn template_hash_is_stable_and_distinct() {
        let a = template_hash(&json!({"spec": {"containers": [{"name": "a"}]}}));
        assert_eq!(
            a,
            template_hash(&json!({"spec": {"containers": [{"name": "a"}]}}))
        );
        assert_ne!(
            a,
            template_hash(&json!({"spec": {"containers": [{"name": "b"}]}}))
        );
        assert_eq!(a.len(), 10);
    }
}
