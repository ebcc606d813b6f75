//! Identity and apply order of manifest objects.

use serde_json::Value;

use crate::error::KubeError;

/// Identity of one manifest object, read from its `apiVersion`, `kind` and `metadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectId {
    /// API group, empty for the core group.
    pub group: String,
    /// API version within the group.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, if the object carries one.
    pub namespace: Option<String>,
}

impl ObjectId {
    /// Reads the identity of `object`; `index` names it in the error when it has no name.
    pub fn of(object: &Value, index: usize) -> Result<ObjectId, KubeError> {
        let invalid = |reason: &str| KubeError::InvalidManifest {
            object: object["metadata"]["name"]
                .as_str()
                .map(|n| format!("{}/{n}", object["kind"].as_str().unwrap_or("?")))
                .unwrap_or_else(|| format!("#{index}")),
            reason: reason.to_owned(),
        };
        if !object.is_object() {
            return Err(invalid("not a mapping"));
        }
        let api_version =
            non_empty(&object["apiVersion"]).ok_or_else(|| invalid("apiVersion missing"))?;
        let kind = non_empty(&object["kind"]).ok_or_else(|| invalid("kind missing"))?;
        let name = non_empty(&object["metadata"]["name"])
            .ok_or_else(|| invalid("metadata.name missing"))?;
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g.to_owned(), v.to_owned()),
            None => (String::new(), api_version.to_owned()),
        };
        if version.is_empty() || version.contains('/') {
            return Err(invalid("apiVersion is not group/version"));
        }
        Ok(ObjectId {
            group,
            version,
            kind: kind.to_owned(),
            name: name.to_owned(),
            namespace: non_empty(&object["metadata"]["namespace"]).map(str::to_owned),
        })
    }

    /// `apiVersion` as written in manifests.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The apply phase of this kind (lower first), see [`apply_order`].
    pub fn phase(&self) -> u8 {
        match (self.group.as_str(), self.kind.as_str()) {
            ("", "Namespace") | ("apiextensions.k8s.io", "CustomResourceDefinition") => 0,
            ("rbac.authorization.k8s.io", "ClusterRole" | "ClusterRoleBinding") => 1,
            ("", "Pod")
            | ("apps", "Deployment" | "DaemonSet" | "StatefulSet" | "ReplicaSet")
            | ("batch", "Job" | "CronJob") => 3,
            _ => 2,
        }
    }
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

fn non_empty(v: &Value) -> Option<&str> {
    v.as_str().filter(|s| !s.is_empty())
}

/// Indices of `objects` in apply order: namespaces and CRDs, then cluster-scoped RBAC
/// (ClusterRoles and bindings), then everything else (service accounts, config, roles, services,
/// storage classes, ...), then workloads, so a pod never starts before its configuration exists.
/// The order within a phase is the input order. Fails on the first object without identity.
pub fn apply_order(objects: &[Value]) -> Result<Vec<(usize, ObjectId)>, KubeError> {
    let mut ids = objects
        .iter()
        .enumerate()
        .map(|(i, o)| ObjectId::of(o, i).map(|id| (i, id)))
        .collect::<Result<Vec<_>, _>>()?;
    ids.sort_by_key(|(i, id)| (id.phase(), *i));
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(api: &str, kind: &str, name: &str) -> Value {
        json!({ "apiVersion": api, "kind": kind, "metadata": { "name": name } })
    }

    #[test]
    fn namespaces_and_crds_first_then_cluster_rbac_then_rest_then_workloads() {
        let objects = vec![
            obj("apps/v1", "Deployment", "d"),
            obj("v1", "ConfigMap", "cm"),
            obj("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "crb"),
            obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", "crd"),
            obj("v1", "ServiceAccount", "sa"),
            obj("rbac.authorization.k8s.io/v1", "ClusterRole", "cr"),
            obj("v1", "Namespace", "ns"),
            obj("apps/v1", "DaemonSet", "ds"),
        ];
        let order: Vec<String> = apply_order(&objects)
            .unwrap_or_default()
            .into_iter()
            .map(|(_, id)| id.name)
            .collect();
        assert_eq!(order, ["crd", "ns", "crb", "cr", "cm", "sa", "d", "ds"]);
    }

    #[test]
    fn addon_set_applies_workloads_after_their_config() {
        let objects = crate::manifests::all(&crate::manifests::tests::inputs());
        let order = apply_order(&objects).unwrap_or_default();
        assert_eq!(order.len(), objects.len());
        let pos = |kind: &str, name: &str| {
            order
                .iter()
                .position(|(_, id)| id.kind == kind && id.name == name)
        };
        assert!(pos("ConfigMap", "cilium-config") < pos("DaemonSet", "cilium"));
        assert!(pos("ClusterRole", "cilium") < pos("ServiceAccount", "cilium"));
        assert!(pos("StorageClass", "hcloud-volumes") < pos("Deployment", "hcloud-csi-controller"));
        let phases: Vec<u8> = order.iter().map(|(_, id)| id.phase()).collect();
        assert!(phases.windows(2).all(|w| w[0] <= w[1]), "{phases:?}");
    }

    #[test]
    fn objects_without_identity_are_rejected() {
        let cases = [
            (
                json!({ "kind": "ConfigMap", "metadata": { "name": "a" } }),
                "apiVersion missing",
            ),
            (
                json!({ "apiVersion": "v1", "metadata": { "name": "a" } }),
                "kind missing",
            ),
            (
                json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": {} }),
                "metadata.name missing",
            ),
            (
                json!({ "apiVersion": "a/b/c", "kind": "X", "metadata": { "name": "a" } }),
                "apiVersion is not group/version",
            ),
            (json!("text"), "not a mapping"),
        ];
        for (o, want) in cases {
            match ObjectId::of(&o, 3) {
                Err(KubeError::InvalidManifest { reason, .. }) => assert_eq!(reason, want),
                other => panic!("{o}: {other:?}"),
            }
        }
    }

    #[test]
    fn identity_reads_group_version_and_namespace() {
        let id = ObjectId::of(&json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "x", "namespace": "kube-system" } }), 0)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((id.group.as_str(), id.version.as_str()), ("apps", "v1"));
        assert_eq!(id.api_version(), "apps/v1");
        assert_eq!(id.to_string(), "Deployment kube-system/x");
        let core = ObjectId::of(&obj("v1", "Namespace", "n"), 0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (core.group.as_str(), core.api_version()),
            ("", "v1".to_owned())
        );
    }
}
