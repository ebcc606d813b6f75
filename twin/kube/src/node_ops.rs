//! What a node's own agents do to the API outside the controllers: Talos cordoning, draining
//! and uncordoning a node during an upgrade, the kubelet's mirror pods of the control-plane
//! static pods, the version its kubelet reports, and each API server's own version.

use std::net::IpAddr;

use serde_json::{Value, json};

use crate::cluster::KubeCluster;
use crate::objects::{rt, write};
use crate::state::lock;

/// The annotation Talos puts on a node it cordoned (and only such nodes are uncordoned).
pub const CORDONED_ANNOTATION: &str = "talos.dev/cordoned";
/// The annotation carrying a static pod's config version on its mirror pod.
pub const CONFIG_VERSION_ANNOTATION: &str = "talos.dev/config-version";

/// Why an eviction did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvictError {
    /// 429: a PodDisruptionBudget does not allow it (message and the budget cause).
    Blocked(String),
    /// Another API error (code, message).
    Other(u16, String),
}

/// A control-plane static pod as the kubelet mirrors it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticPod {
    /// `kube-apiserver`, `kube-controller-manager` or `kube-scheduler` (the `k8s-app` label).
    pub component: String,
    /// Container image.
    pub image: String,
    /// `talos.dev/config-version`.
    pub config_version: u64,
}

impl KubeCluster {
    /// Cordons `node` as Talos does: `Some(true)` when it was schedulable (now `unschedulable`
    /// with `talos.dev/cordoned=true`), `Some(false)` when it was already unschedulable (left
    /// alone), `None` when there is no such Node.
    pub fn cordon_node(&self, node: &str) -> Option<bool> {
        let mut store = self.inner.store();
        let mut obj = store.get("", "nodes", "", node).cloned()?;
        if obj["spec"]["unschedulable"] == true {
            return Some(false);
        }
        obj["spec"]["unschedulable"] = json!(true);
        obj["metadata"]["annotations"][CORDONED_ANNOTATION] = json!("true");
        write(&mut store, "", "nodes", obj);
        drop(store);
        self.inner.notify.notify_one();
        Some(true)
    }

    /// Uncordons `node` if Talos cordoned it (the annotation is present); true if it did.
    pub fn uncordon_node(&self, node: &str) -> bool {
        let mut store = self.inner.store();
        let Some(mut obj) = store.get("", "nodes", "", node).cloned() else {
            return false;
        };
        let Some(annotations) = obj["metadata"]["annotations"].as_object_mut() else {
            return false;
        };
        if annotations.remove(CORDONED_ANNOTATION).is_none() {
            return false;
        }
        if let Some(spec) = obj["spec"].as_object_mut() {
            spec.remove("unschedulable");
        }
        write(&mut store, "", "nodes", obj);
        drop(store);
        self.inner.notify.notify_one();
        true
    }

    /// The pods a drain of `node` evicts: bound to it and not finished, skipping mirror pods,
    /// DaemonSet pods and pods without a controller (Talos's drain filters), as
    /// `(namespace, name)`.
    pub fn drainable_pods(&self, node: &str) -> Vec<(String, String)> {
        self.inner
            .store()
            .list("", "pods", None)
            .into_iter()
            .filter(|p| p["spec"]["nodeName"] == node)
            .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
            .filter(|p| p["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_null())
            .filter(|p| {
                let controller = p["metadata"]["ownerReferences"]
                    .as_array()
                    .and_then(|refs| refs.iter().find(|r| r["controller"] == true).cloned());
                controller.is_some_and(|c| c["kind"] != "DaemonSet")
            })
            .map(|p| {
                (
                    p["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    p["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect()
    }

    /// Evicts a pod through the same code as `POST …/pods/<name>/eviction` (PDB arithmetic,
    /// 429). A pod that is already gone counts as evicted.
    pub fn evict_pod(&self, namespace: &str, name: &str) -> Result<(), EvictError> {
        let result = crate::delete::evict(&mut self.inner.store(), namespace, name);
        self.inner.notify.notify_one();
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.code == 404 => Ok(()),
            Err(e) if e.code == 429 => {
                let cause = e
                    .details
                    .as_ref()
                    .and_then(|d| d["causes"][0]["message"].as_str())
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default();
                Err(EvictError::Blocked(format!("{}{cause}", e.message)))
            }
            Err(e) => Err(EvictError::Other(e.code, e.message)),
        }
    }

    /// Mirrors the control-plane static pods of `node` (at `host_ip`) as its kubelet does:
    /// `<component>-<node>` in `kube-system`, labels `k8s-app=<component>` and
    /// `tier=control-plane`, annotation `talos.dev/config-version`. A pod whose image or config
    /// version changed is replaced (new UID, Pending, then Running and Ready after the pod
    /// start delay, while the kubelet runs).
    pub fn set_static_pods(&self, node: &str, host_ip: IpAddr, pods: &[StaticPod]) {
        let mut store = self.inner.store();
        let Some(node_obj) = store.get("", "nodes", "", node).cloned() else {
            return;
        };
        let Some(pod_rt) = rt(&store, "", "pods") else {
            return;
        };
        let mut changed = false;
        for sp in pods {
            let name = format!("{}-{node}", sp.component);
            if let Some(existing) = store.get("", "pods", "kube-system", &name) {
                let same_image = existing["spec"]["containers"][0]["image"] == sp.image.as_str();
                let same_version = existing["metadata"]["annotations"][CONFIG_VERSION_ANNOTATION]
                    == sp.config_version.to_string().as_str();
                if same_image && same_version {
                    continue;
                }
                store.delete("", "pods", "kube-system", &name);
            }
            let pod = json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": "kube-system",
                    "labels": {"k8s-app": sp.component, "tier": "control-plane"},
                    "annotations": {
                        CONFIG_VERSION_ANNOTATION: sp.config_version.to_string(),
                        "kubernetes.io/config.mirror": uuid::Uuid::new_v4().simple().to_string(),
                        "kubernetes.io/config.source": "file",
                    },
                    "ownerReferences": [{
                        "apiVersion": "v1", "kind": "Node", "name": node,
                        "uid": node_obj["metadata"]["uid"], "controller": true,
                    }],
                },
                "spec": {
                    "nodeName": node,
                    "hostNetwork": true,
                    "priorityClassName": "system-cluster-critical",
                    "containers": [{"name": sp.component, "image": sp.image}],
                    "tolerations": [{"operator": "Exists"}],
                },
                "status": {"phase": "Pending", "hostIP": host_ip.to_string()},
            });
            if let Err(e) = store.create(&pod_rt, pod) {
                tracing::warn!(error = ?e, node, component = %sp.component, "mirror pod");
            }
            changed = true;
        }
        drop(store);
        if changed {
            self.inner.notify.notify_one();
        }
    }

    /// The version `node`'s kubelet reports (`status.nodeInfo.kubeletVersion`, also after its
    /// next registration).
    pub fn set_kubelet_version(&self, node: &str, version: &str) {
        lock(&self.inner.kubelet_versions).insert(node.to_string(), version.to_string());
        let mut store = self.inner.store();
        if let Some(mut obj) = store.get("", "nodes", "", node).cloned()
            && obj["status"]["nodeInfo"]["kubeletVersion"] != version
        {
            obj["status"]["nodeInfo"]["kubeletVersion"] = json!(version);
            write(&mut store, "", "nodes", obj);
        }
    }

    /// The `Node.status.nodeInfo.osImage` of `node` (Talos reports `Talos (v1.11.6)`).
    pub fn set_os_image(&self, node: &str, os_image: &str) {
        let mut store = self.inner.store();
        if let Some(mut obj) = store.get("", "nodes", "", node).cloned()
            && obj["status"]["nodeInfo"]["osImage"] != os_image
        {
            obj["status"]["nodeInfo"]["osImage"] = json!(os_image);
            write(&mut store, "", "nodes", obj);
        }
    }

    /// The version `/version` reports on the API server listening on `ip` (each control plane
    /// runs its own kube-apiserver); other listeners report the cluster version.
    pub fn set_apiserver_version(&self, ip: IpAddr, version: &str) {
        lock(&self.inner.apiserver_versions).insert(ip, version.to_string());
    }

    /// Creates an object of resource `group`/`plural` (as a controller would; errors are
    /// returned as their Status message).
    pub fn create_object(&self, group: &str, plural: &str, obj: Value) -> Result<Value, String> {
        let mut store = self.inner.store();
        let t = rt(&store, group, plural).ok_or_else(|| format!("unknown resource {plural}"))?;
        let created = store.create(&t, obj).map_err(|e| e.message)?;
        drop(store);
        self.inner.notify.notify_one();
        Ok(created)
    }

    /// Deletes one object; true if it existed.
    pub fn delete_object(&self, group: &str, plural: &str, namespace: &str, name: &str) -> bool {
        let gone = self
            .inner
            .store()
            .delete(group, plural, namespace, name)
            .is_some();
        self.inner.notify.notify_one();
        gone
    }

    /// The mirror pod of one static pod, if the kubelet made it.
    pub fn static_pod(&self, component: &str, node: &str) -> Option<Value> {
        self.object("", "pods", "kube-system", &format!("{component}-{node}"))
    }
}
