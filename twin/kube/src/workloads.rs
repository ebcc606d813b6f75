//! Workload controllers, the scheduler and the kubelet's pod start: Deployment →
//! ReplicaSet `<name>-<template hash>` → Pods, StatefulSet → Pods `<name>-<ordinal>`,
//! DaemonSet → one Pod per eligible node (with the DaemonSet's automatic tolerations); a
//! template change replaces the pods. The scheduler binds a pod without `nodeName` to the
//! eligible node (not cordoned, NoSchedule/NoExecute taints tolerated, nodeSelector) with the
//! fewest pods, else marks it `PodScheduled=False Unschedulable`; pods of deleted nodes are
//! deleted. A scheduled pod turns Running and Ready after the start delay when its node's
//! kubelet runs and the pod uses the host network or the node is Ready. Workload status
//! fields follow the pods.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::objects::{create, node_ready, owner_uid, pod_running, set_condition, write};
use crate::state::ControllerState;
use crate::state::Kubelet;
use crate::store::{Store, ns_name, timestamp};

/// Base delay in seconds at speed 1 from scheduling to Running.
pub const POD_START: f64 = 8.0;

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

fn owned<'a>(objects: &'a [Arc<Value>], uid: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .map(Arc::as_ref)
        .filter(|p| owner_uid(p) == Some(uid))
        .collect()
}

fn remove_obj(store: &mut Store, group: &str, plural: &str, obj: &Value) {
    let (ns, name) = ns_name(obj);
    store.delete(group, plural, &ns, &name);
}

pub(crate) fn workloads(store: &mut Store) {
    // Deployments → ReplicaSets.
    let replicasets = store.shared("apps", "replicasets", None);
    for d in store.shared("apps", "deployments", None) {
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
    let pods = store.shared("", "pods", None);
    for rs in store.shared("apps", "replicasets", None) {
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
    for s in store.shared("apps", "statefulsets", None) {
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
    let nodes = store.shared("", "nodes", None);
    let pods = store.shared("", "pods", None);
    for ds in store.shared("apps", "daemonsets", None) {
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

pub(crate) fn schedule(store: &mut Store) {
    let nodes = store.shared("", "nodes", None);
    let node_names: HashSet<&str> = nodes
        .iter()
        .filter_map(|n| n["metadata"]["name"].as_str())
        .collect();
    let mut load: HashMap<String, usize> = HashMap::new();
    let pods = store.shared("", "pods", None);
    for p in &pods {
        if let Some(n) = p["spec"]["nodeName"].as_str() {
            *load.entry(n.to_string()).or_default() += 1;
        }
    }
    for before in pods {
        match before["spec"]["nodeName"].as_str() {
            Some(n) if !node_names.contains(n) => {
                // Pod GC: the node is gone.
                remove_obj(store, "", "pods", &before);
                continue;
            }
            Some(_) => continue,
            None => {}
        }
        let choice = nodes
            .iter()
            .filter(|n| fits(&before["spec"], n, &[]))
            .filter_map(|n| n["metadata"]["name"].as_str())
            .min_by_key(|n| (load.get(*n).copied().unwrap_or(0), n.to_string()))
            .map(str::to_string);
        let mut pod = Value::clone(&before);
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
        if pod != *before {
            write(store, "", "pods", pod);
        }
    }
}

pub(crate) fn start_pods(
    store: &mut Store,
    st: &mut ControllerState,
    kubelets: &BTreeMap<String, Kubelet>,
    speed: f64,
) {
    for pod in store.shared("", "pods", None) {
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
        let mut pod = Value::clone(&pod);
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

pub(crate) fn workload_status(store: &mut Store) {
    let pods = store.shared("", "pods", None);
    let nodes = store.shared("", "nodes", None);
    let replicasets = store.shared("apps", "replicasets", None);
    let count = |uid: &str| {
        let mine = owned(&pods, uid);
        let ready = mine.iter().filter(|p| pod_running(p)).count() as i64;
        (mine.len() as i64, ready)
    };
    for rs in &replicasets {
        let uid = rs["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (n, ready) = count(&uid);
        let status = json!({"replicas": n, "fullyLabeledReplicas": n, "readyReplicas": ready,
                            "availableReplicas": ready, "observedGeneration": rs["metadata"]["generation"]});
        if rs["status"] != status {
            let mut rs = Value::clone(rs);
            rs["status"] = status;
            write(store, "apps", "replicasets", rs);
        }
    }
    for d in store.shared("apps", "deployments", None) {
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
            let mut d = Value::clone(&d);
            d["status"] = status;
            write(store, "apps", "deployments", d);
        }
    }
    for s in store.shared("apps", "statefulsets", None) {
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
            let mut s = Value::clone(&s);
            s["status"] = status;
            write(store, "apps", "statefulsets", s);
        }
    }
    for ds in store.shared("apps", "daemonsets", None) {
        let uid = ds["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (n, ready) = count(&uid);
        let template = &ds["spec"]["template"];
        let hash = template_hash(template);
        let extra = daemonset_tolerations(template["spec"]["hostNetwork"] == true);
        let desired = nodes
            .iter()
            .filter(|node| fits(&template["spec"], node, &extra))
            .count() as i64;
        let updated = owned(&pods, &uid)
            .iter()
            .filter(|p| p["metadata"]["labels"]["controller-revision-hash"] == hash.as_str())
            .count() as i64;
        let status = json!({"observedGeneration": ds["metadata"]["generation"], "desiredNumberScheduled": desired,
                            "currentNumberScheduled": n, "updatedNumberScheduled": updated, "numberMisscheduled": 0,
                            "numberReady": ready, "numberAvailable": ready,
                            "numberUnavailable": (desired - ready).max(0)});
        if ds["status"] != status {
            let mut ds = Value::clone(&ds);
            ds["status"] = status;
            write(store, "apps", "daemonsets", ds);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::UNINITIALIZED;

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
