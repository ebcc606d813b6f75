//! The controllers that act on the cloud through [`CloudBridge`](crate::CloudBridge): the
//! hcloud cloud-controller-manager (node initialization, load balancers) and the hcloud CSI
//! controller (volumes). Each runs only while its pod runs in `kube-system`.
//!
//! - **CCM nodes**: once a pod whose name starts with `hcloud-cloud-controller-manager` runs
//!   and Secret `kube-system/hcloud` has keys `token` and `network`, every node with the
//!   `node.cloudprovider.kubernetes.io/uninitialized` taint whose server the cloud knows gets
//!   `providerID: hcloud://<id>`, addresses InternalIP (kept), ExternalIP (server's public
//!   IPv4), Hostname, labels `node.kubernetes.io/instance-type`,
//!   `topology.kubernetes.io/region`, `topology.kubernetes.io/zone`,
//!   `instance.hetzner.cloud/provided-by=cloud`, and loses the taint. A node whose server the
//!   cloud does not know stays uninitialized. A node that is not Ready and whose server the
//!   cloud no longer knows is deleted (cloud node lifecycle).
//! - **CCM load balancers**: a Service of type LoadBalancer gets a load balancer named by
//!   `load-balancer.hetzner.cloud/name` or `a<uid without dashes>` (32 chars), labelled
//!   `hcloud-ccm/service-uid=<uid>`, type `load-balancer.hetzner.cloud/type` (default
//!   `lb11`), in the location or network zone of the Service annotations
//!   (`load-balancer.hetzner.cloud/location|network-zone`) or the CCM's
//!   `HCLOUD_LOAD_BALANCERS_LOCATION|NETWORK_ZONE` env; without either the Service stays
//!   pending with a Warning Event `SyncLoadBalancerFailed`, as with the real CCM. Targets are
//!   the initialized nodes, ports the Service's (port, nodePort). `status.loadBalancer.ingress`
//!   gets the IP. The Service carries the finalizer `service.kubernetes.io/load-balancer-cleanup`
//!   from just before the load balancer is created; deleting the Service (or changing its
//!   type) deletes the load balancer and then drops the finalizer — so while the CCM does not
//!   run, a deleted Service stays Terminating and its load balancer stays, as for real.
//! - **CSI** (`csi.hetzner.cloud`): once a pod named `hcloud-csi-controller…` runs, a pending
//!   PVC of a class with that provisioner (or of the default class when it names none) is
//!   provisioned — for `WaitForFirstConsumer` once a scheduled pod uses it, in that node's
//!   region: a volume `pvc-<uid>` of max(10, ⌈GiB⌉) GB labelled `managed-by=csi-driver`,
//!   `pvc-name`, `pvc-namespace`, `pv-name` plus the controller's `HCLOUD_VOLUME_EXTRA_LABELS`,
//!   a bound PV (`csi.volumeHandle` = volume id, node affinity on `csi.hetzner.cloud/location`)
//!   and a bound PVC. A PV whose claim is gone is deleted with its volume (reclaim Delete) or
//!   turns Released (Retain).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::cloud::{LoadBalancerSpec, VolumeSpec};
use crate::objects::{UNINITIALIZED, create, pod_running, write};
use crate::state::ControllerState;
use crate::state::Inner;
use crate::store::{Store, ns_name, timestamp};

/// Base delays in seconds at speed 1.
const CCM_INIT: f64 = 3.0;
const VOLUME_CREATE: f64 = 5.0;
const LB_CREATE: f64 = 10.0;

const CSI_DRIVER: &str = "csi.hetzner.cloud";
const REGION: &str = "topology.kubernetes.io/region";

fn running_pod_named(store: &Store, prefix: &str) -> Option<Arc<Value>> {
    store
        .shared("", "pods", Some("kube-system"))
        .into_iter()
        .find(|p| {
            p["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(prefix))
                && pod_running(p)
        })
}

fn workload_named(store: &Store, prefix: &str) -> Option<Arc<Value>> {
    ["deployments", "daemonsets", "statefulsets"]
        .iter()
        .flat_map(|plural| store.shared("apps", plural, Some("kube-system")))
        .find(|d| {
            d["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(prefix))
        })
}

/// The value of env var `name` in any container of a workload's pod template.
fn env_of(workload: &Value, name: &str) -> Option<String> {
    workload["spec"]["template"]["spec"]["containers"]
        .as_array()?
        .iter()
        .flat_map(|c| c["env"].as_array().cloned().unwrap_or_default())
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str().map(str::to_string))
}

fn ccm_ready(store: &Store) -> bool {
    let secret_ok = store
        .get("", "secrets", "kube-system", "hcloud")
        .is_some_and(|s| s["data"].get("token").is_some() && s["data"].get("network").is_some());
    secret_ok && running_pod_named(store, "hcloud-cloud-controller-manager").is_some()
}

/// Records a core/v1 Event about `obj` once per (object, reason) for this controller run.
fn record_event(
    store: &mut Store,
    st: &mut ControllerState,
    obj: &Value,
    kind: &str,
    reason: &str,
    message: &str,
) {
    let uid = obj["metadata"]["uid"].as_str().unwrap_or_default();
    if !st.events.insert(format!("{uid}/{reason}")) {
        return;
    }
    let (ns, name) = ns_name(obj);
    let now = timestamp();
    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{name}.{}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
                     "namespace": if ns.is_empty() { "default".to_string() } else { ns.clone() }},
        "involvedObject": {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": name,
                           "namespace": ns, "uid": uid, "resourceVersion": obj["metadata"]["resourceVersion"]},
        "reason": reason, "message": message, "type": kind, "count": 1,
        "firstTimestamp": now, "lastTimestamp": now,
        "source": {"component": "service-controller"},
        "reportingComponent": "service-controller",
    });
    create(store, "", "events", event);
}

/// The CCM's node lifecycle: a node that is not Ready and whose server the cloud no longer
/// has is deleted.
fn delete_vanished_nodes(inner: &Inner, st: &mut ControllerState, speed: f64) {
    let candidates: Vec<String> = inner
        .store()
        .shared("", "nodes", None)
        .into_iter()
        .filter(|n| {
            n["spec"]["providerID"]
                .as_str()
                .is_some_and(|p| p.starts_with("hcloud://"))
        })
        .filter(|n| {
            !n["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    for name in candidates {
        let key = format!("gone:{name}");
        if inner.cloud.server_info(&name).is_some() {
            st.done(&key);
            continue;
        }
        if !st.due(&key, CCM_INIT, speed) {
            continue;
        }
        st.done(&key);
        inner.store().delete("", "nodes", "", &name);
    }
}

pub(crate) fn ccm_nodes(inner: &Inner, st: &mut ControllerState, speed: f64) {
    if !ccm_ready(&inner.store()) {
        return;
    }
    delete_vanished_nodes(inner, st, speed);
    let pending: Vec<String> = {
        let store = inner.store();
        store
            .shared("", "nodes", None)
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
        let Some(info) = inner.cloud.server_info(&name) else {
            continue;
        };
        st.done(&key);
        let mut store = inner.store();
        let Some(mut node) = store.get("", "nodes", "", &name).cloned() else {
            continue;
        };
        node["spec"]["providerID"] = json!(format!("hcloud://{}", info.id));
        if let Some(t) = node["spec"]["taints"].as_array_mut() {
            t.retain(|t| t["key"] != UNINITIALIZED);
        }
        let internal = node["status"]["addresses"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP").cloned());
        let mut addresses: Vec<Value> = internal.into_iter().collect();
        if let Some(ip) = info.public_ipv4 {
            addresses.push(json!({"type": "ExternalIP", "address": ip.to_string()}));
        }
        addresses.push(json!({"type": "Hostname", "address": name}));
        node["status"]["addresses"] = Value::Array(addresses);
        let labels = &mut node["metadata"]["labels"];
        labels["instance.hetzner.cloud/provided-by"] = json!("cloud");
        if let Some(t) = &info.server_type {
            labels["node.kubernetes.io/instance-type"] = json!(t);
        }
        if let Some(l) = &info.location {
            labels[REGION] = json!(l);
        }
        if let Some(dc) = &info.datacenter {
            labels["topology.kubernetes.io/zone"] = json!(dc);
        }
        write(&mut store, "", "nodes", node);
    }
}

/// A storage quantity → GB as the CSI driver rounds it (GiB, up, at least 10).
pub(crate) fn size_gb(quantity: &str) -> u64 {
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
    env_of(csi, "HCLOUD_VOLUME_EXTRA_LABELS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

struct Provision {
    pvc: Value,
    class: Value,
    spec: VolumeSpec,
    node: Option<String>,
}

fn node_region(store: &Store, node: &str) -> Option<String> {
    store.get("", "nodes", "", node)?["metadata"]["labels"][REGION]
        .as_str()
        .map(str::to_string)
}

pub(crate) fn volumes(inner: &Inner, st: &mut ControllerState, speed: f64) {
    let mut todo = Vec::new();
    let mut released = Vec::new();
    {
        let mut store = inner.store();
        for pv in store.shared("", "persistentvolumes", None) {
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
                    let mut pv = Value::clone(&pv);
                    pv["status"]["phase"] = json!("Released");
                    write(&mut store, "", "persistentvolumes", pv);
                }
            }
        }
        let csi = workload_named(&store, "hcloud-csi-controller");
        let csi_pod = running_pod_named(&store, "hcloud-csi-controller");
        let classes = store.list("storage.k8s.io", "storageclasses", None);
        let default_class = classes
            .iter()
            .find(|c| {
                c["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"]
                    == "true"
            })
            .cloned();
        let pods = store.shared("", "pods", None);
        for pvc in store.shared("", "persistentvolumeclaims", None) {
            if pvc["spec"]["volumeName"].is_string() || pvc["status"]["phase"] == "Bound" {
                continue;
            }
            let mut pvc = Value::clone(&pvc);
            let class = match pvc["spec"]["storageClassName"].as_str() {
                Some(name) => classes
                    .iter()
                    .find(|c| c["metadata"]["name"] == name)
                    .cloned(),
                None => default_class.clone(),
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
            let (Some(csi), Some(csi_pod)) = (&csi, &csi_pod) else {
                continue;
            };
            let (ns, name) = ns_name(&pvc);
            let node = if class["volumeBindingMode"] == "WaitForFirstConsumer" {
                let consumer = pods.iter().find(|p| {
                    p["metadata"]["namespace"] == ns.as_str()
                        && p["spec"]["nodeName"].is_string()
                        && p["spec"]["volumes"].as_array().is_some_and(|vs| {
                            vs.iter()
                                .any(|v| v["persistentVolumeClaim"]["claimName"] == name.as_str())
                        })
                });
                match consumer {
                    Some(p) => p["spec"]["nodeName"].as_str().map(str::to_string),
                    None => continue,
                }
            } else {
                None
            };
            let uid = pvc["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if !st.due(&format!("pvc:{uid}"), VOLUME_CREATE, speed) {
                continue;
            }
            let location = node
                .as_deref()
                .or(csi_pod["spec"]["nodeName"].as_str())
                .and_then(|n| node_region(&store, n));
            let pv_name = format!("pvc-{uid}");
            let mut labels = extra_volume_labels(csi);
            labels.insert("managed-by".into(), "csi-driver".into());
            labels.insert("pvc-name".into(), name.clone());
            labels.insert("pvc-namespace".into(), ns.clone());
            labels.insert("pv-name".into(), pv_name.clone());
            let size_gb = size_gb(
                pvc["spec"]["resources"]["requests"]["storage"]
                    .as_str()
                    .unwrap_or("10Gi"),
            );
            todo.push(Provision {
                pvc,
                class,
                spec: VolumeSpec {
                    name: pv_name,
                    size_gb,
                    labels,
                    location,
                },
                node,
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
        let id = match inner.cloud.create_volume(&p.spec) {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(error = %e, "csi: create volume");
                continue;
            }
        };
        st.done(&format!("pvc:{uid}"));
        let (ns, name) = ns_name(&p.pvc);
        let capacity = format!("{}Gi", p.spec.size_gb);
        let mut store = inner.store();
        let Some(mut pvc) = store.get("", "persistentvolumeclaims", &ns, &name).cloned() else {
            drop(store);
            let _ = inner.cloud.delete_volume(id);
            continue;
        };
        let mut pv = json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": p.spec.name, "annotations": {"pv.kubernetes.io/provisioned-by": CSI_DRIVER}},
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
        if let Some(loc) = &p.spec.location {
            pv["spec"]["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": format!("{CSI_DRIVER}/location"), "operator": "In", "values": [loc]}]}]}});
        }
        create(&mut store, "", "persistentvolumes", pv);
        pvc["spec"]["volumeName"] = json!(p.spec.name);
        let annotations = &mut pvc["metadata"]["annotations"];
        annotations["pv.kubernetes.io/bind-completed"] = json!("yes");
        annotations["pv.kubernetes.io/bound-by-controller"] = json!("yes");
        annotations["volume.kubernetes.io/storage-provisioner"] = json!(CSI_DRIVER);
        annotations["volume.beta.kubernetes.io/storage-provisioner"] = json!(CSI_DRIVER);
        if let Some(n) = &p.node {
            annotations["volume.kubernetes.io/selected-node"] = json!(n);
        }
        pvc["status"] = json!({"phase": "Bound", "accessModes": pvc["spec"]["accessModes"],
                               "capacity": {"storage": capacity}});
        write(&mut store, "", "persistentvolumeclaims", pvc);
    }
}

fn annotation(svc: &Value, key: &str) -> Option<String> {
    svc["metadata"]["annotations"][key]
        .as_str()
        .map(str::to_string)
}

/// The finalizer the CCM's service controller puts on LoadBalancer Services.
const LB_CLEANUP: &str = "service.kubernetes.io/load-balancer-cleanup";

fn has_lb_finalizer(svc: &Value) -> bool {
    svc["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f == LB_CLEANUP))
}

pub(crate) fn load_balancers(inner: &Inner, st: &mut ControllerState, speed: f64) {
    let (services, ccm) = {
        let store = inner.store();
        let ccm = ccm_ready(&store)
            .then(|| workload_named(&store, "hcloud-cloud-controller-manager"))
            .flatten();
        (store.list("", "services", None), ccm)
    };
    // Without a running CCM nothing happens: Services being deleted keep their finalizer.
    let Some(ccm) = ccm else {
        return;
    };
    let live: HashSet<String> = services
        .iter()
        .filter_map(|s| s["metadata"]["uid"].as_str().map(str::to_string))
        .collect();
    // Load balancers whose Service vanished without the finalizer being honoured.
    let orphans: Vec<(String, i64)> = st
        .load_balancers
        .iter()
        .filter(|(uid, _)| !live.contains(*uid))
        .map(|(u, i)| (u.clone(), *i))
        .collect();
    for (uid, id) in orphans {
        match inner.cloud.delete_load_balancer(id) {
            Ok(()) => {
                st.load_balancers.remove(&uid);
            }
            Err(e) => tracing::warn!(error = %e, "ccm: delete load balancer"),
        }
    }
    for svc in services {
        let uid = svc["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let deleting = !svc["metadata"]["deletionTimestamp"].is_null();
        let is_lb = svc["spec"]["type"] == "LoadBalancer";
        if deleting || !is_lb {
            if !has_lb_finalizer(&svc) {
                continue;
            }
            if let Some(id) = st.load_balancers.get(&uid).copied() {
                if let Err(e) = inner.cloud.delete_load_balancer(id) {
                    tracing::warn!(error = %e, "ccm: delete load balancer");
                    continue;
                }
                st.load_balancers.remove(&uid);
            }
            let (ns, name) = ns_name(&svc);
            let mut store = inner.store();
            if let Some(mut current) = store.get("", "services", &ns, &name).cloned() {
                if let Some(f) = current["metadata"]["finalizers"].as_array_mut() {
                    f.retain(|f| f != LB_CLEANUP);
                }
                if !is_lb && let Some(status) = current["status"].as_object_mut() {
                    status.remove("loadBalancer");
                }
                write(&mut store, "", "services", current);
            }
            continue;
        }
        if st.load_balancers.contains_key(&uid)
            || svc["status"]["loadBalancer"]["ingress"].is_array()
        {
            continue;
        }
        let location = annotation(&svc, "load-balancer.hetzner.cloud/location")
            .or_else(|| env_of(&ccm, "HCLOUD_LOAD_BALANCERS_LOCATION"));
        let network_zone = annotation(&svc, "load-balancer.hetzner.cloud/network-zone")
            .or_else(|| env_of(&ccm, "HCLOUD_LOAD_BALANCERS_NETWORK_ZONE"));
        if location.is_none() && network_zone.is_none() {
            let msg = "Error syncing load balancer: failed to ensure load balancer: hcloud/loadBalancers.EnsureLoadBalancer: hcops/LoadBalancerOps.Create: neither load-balancer.hetzner.cloud/location nor load-balancer.hetzner.cloud/network-zone set";
            record_event(
                &mut inner.store(),
                st,
                &svc,
                "Warning",
                "SyncLoadBalancerFailed",
                msg,
            );
            continue;
        }
        let key = format!("lb:{uid}");
        if !st.due(&key, LB_CREATE, speed) {
            continue;
        }
        let (ns, svc_name) = ns_name(&svc);
        {
            // The finalizer goes on before the load balancer is created.
            let mut store = inner.store();
            let Some(mut current) = store.get("", "services", &ns, &svc_name).cloned() else {
                continue;
            };
            if !has_lb_finalizer(&current) {
                let finalizers = &mut current["metadata"]["finalizers"];
                if !finalizers.is_array() {
                    *finalizers = json!([]);
                }
                if let Some(f) = finalizers.as_array_mut() {
                    f.push(json!(LB_CLEANUP));
                }
                write(&mut store, "", "services", current);
            }
        }
        let name = annotation(&svc, "load-balancer.hetzner.cloud/name").unwrap_or_else(|| {
            let mut n = format!("a{}", uid.replace('-', ""));
            n.truncate(32);
            n
        });
        let target_server_ids: Vec<i64> = inner
            .store()
            .shared("", "nodes", None)
            .iter()
            .filter(|n| {
                n["metadata"]["labels"]
                    .get("node.kubernetes.io/exclude-from-external-load-balancers")
                    .is_none()
            })
            .filter_map(|n| {
                n["spec"]["providerID"]
                    .as_str()?
                    .strip_prefix("hcloud://")?
                    .parse()
                    .ok()
            })
            .collect();
        let ports: Vec<(u16, u16)> = svc["spec"]["ports"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| {
                        Some((
                            u16::try_from(p["port"].as_u64()?).ok()?,
                            u16::try_from(p["nodePort"].as_u64().unwrap_or(0)).ok()?,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let spec = LoadBalancerSpec {
            name,
            labels: BTreeMap::from([("hcloud-ccm/service-uid".to_string(), uid.clone())]),
            lb_type: annotation(&svc, "load-balancer.hetzner.cloud/type")
                .unwrap_or_else(|| "lb11".into()),
            location,
            network_zone,
            target_server_ids,
            ports,
        };
        let (id, ip) = match inner.cloud.create_load_balancer(&spec) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "ccm: create load balancer");
                continue;
            }
        };
        st.done(&key);
        st.load_balancers.insert(uid.clone(), id);
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
    fn extra_labels_come_from_the_controller_env() {
        let d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a"}, {"name": "b", "env": [{"name": "HCLOUD_VOLUME_EXTRA_LABELS", "value": "cluster=x, env=prod"}]}]}}}});
        let labels = extra_volume_labels(&d);
        assert_eq!(labels.get("cluster").map(String::as_str), Some("x"));
        assert_eq!(labels.get("env").map(String::as_str), Some("prod"));
    }
}
