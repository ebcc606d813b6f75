//! What a rolling upgrade reads from Kubernetes: node facts (Ready, cordon, kubelet version),
//! control-plane static pods per node, the PodDisruptionBudgets that would block a drain, the
//! version the API server reports, and objects still stored at API versions a target removes.
//! Each is one read, no waiting: the caller's step policy owns time.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde::{Deserialize, Serialize};

use crate::client::{KubeClient, Result};
use crate::error::KubeError;

/// The annotation Talos puts on a node it cordoned for an upgrade (and uncordons after it).
pub const TALOS_CORDONED_ANNOTATION: &str = "talos.dev/cordoned";
/// The annotation Talos sets on static pods: the machine config version they were rendered from.
pub const CONFIG_VERSION_ANNOTATION: &str = "talos.dev/config-version";
/// The label of control-plane nodes.
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";

/// One node as an upgrade gate sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFacts {
    /// Node name.
    pub name: String,
    /// Condition Ready=True.
    pub ready: bool,
    /// `spec.unschedulable`.
    pub unschedulable: bool,
    /// Carries [`TALOS_CORDONED_ANNOTATION`] (cordoned by an upgrade, not by a person).
    pub cordoned_by_upgrade: bool,
    /// `status.nodeInfo.kubeletVersion`, e.g. `v1.34.1`.
    pub kubelet_version: String,
    /// Every address of the node (InternalIP, ExternalIP).
    pub addresses: Vec<IpAddr>,
    /// Labelled as a control plane.
    pub control_plane: bool,
}

/// One static pod (mirror pod) of a control-plane component on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticPod {
    /// Pod name.
    pub name: String,
    /// Pod UID (a re-rendered static pod gets a new one).
    pub uid: String,
    /// Image of the first container.
    pub image: String,
    /// Condition Ready=True.
    pub ready: bool,
    /// [`CONFIG_VERSION_ANNOTATION`], when set.
    pub config_version: Option<String>,
}

fn node_facts(node: &Node) -> NodeFacts {
    let meta = &node.metadata;
    let status = node.status.as_ref();
    NodeFacts {
        name: meta.name.clone().unwrap_or_default(),
        ready: status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
        unschedulable: node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false),
        cordoned_by_upgrade: meta
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(TALOS_CORDONED_ANNOTATION)),
        kubelet_version: status
            .and_then(|s| s.node_info.as_ref())
            .map(|i| i.kubelet_version.clone())
            .unwrap_or_default(),
        addresses: status
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|a| a.address.parse().ok())
            .collect(),
        control_plane: meta
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(CONTROL_PLANE_LABEL)),
    }
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether `selector` (a label selector's `matchLabels`/`matchExpressions`) selects `labels`.
fn selects(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    let labels_ok = selector
        .match_labels
        .as_ref()
        .is_none_or(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let exprs_ok = selector.match_expressions.as_ref().is_none_or(|exprs| {
        exprs.iter().all(|e| {
            let values = e.values.clone().unwrap_or_default();
            let have = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => have.is_some_and(|v| values.contains(v)),
                "NotIn" => have.is_none_or(|v| !values.contains(v)),
                "Exists" => have.is_some(),
                "DoesNotExist" => have.is_none(),
                _ => false,
            }
        })
    });
    labels_ok && exprs_ok
}

/// Pods a drain evicts: not mirror pods, not DaemonSet pods, not finished, with an owner.
fn evictable(pod: &Pod) -> bool {
    let meta = &pod.metadata;
    let mirror = meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    let daemonset = owners.iter().any(|o| o.kind == "DaemonSet");
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    !mirror && !daemonset && !finished && !owners.is_empty()
}

impl KubeClient {
    /// Every node's [`NodeFacts`], sorted by name.
    pub async fn node_facts(&self) -> Result<Vec<NodeFacts>> {
        let api: Api<Node> = Api::all(self.client().clone());
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|source| KubeError::List {
                what: "nodes".to_owned(),
                source,
            })?;
        let mut facts: Vec<NodeFacts> = list.items.iter().map(node_facts).collect();
        facts.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(facts)
    }

    /// The static pods of `component` (label `k8s-app=<component>` in `kube-system`, e.g.
    /// `kube-apiserver`) whose `status.hostIP` is one of `host_ips`.
    pub async fn static_pods(
        &self,
        component: &str,
        host_ips: &[IpAddr],
    ) -> Result<Vec<StaticPod>> {
        let api: Api<Pod> = Api::namespaced(self.client().clone(), "kube-system");
        let list = api
            .list(&ListParams::default().labels(&format!("k8s-app={component}")))
            .await
            .map_err(|source| KubeError::List {
                what: format!("kube-system pods k8s-app={component}"),
                source,
            })?;
        Ok(list
            .items
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.host_ip.as_deref())
                    .and_then(|ip| ip.parse::<IpAddr>().ok())
                    .is_some_and(|ip| host_ips.contains(&ip))
            })
            .map(|p| StaticPod {
                name: p.metadata.name.clone().unwrap_or_default(),
                uid: p.metadata.uid.clone().unwrap_or_default(),
                image: p
                    .spec
                    .as_ref()
                    .and_then(|s| s.containers.first())
                    .and_then(|c| c.image.clone())
                    .unwrap_or_default(),
                ready: pod_ready(p),
                config_version: p
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(CONFIG_VERSION_ANNOTATION).cloned()),
            })
            .collect())
    }

    /// The PodDisruptionBudgets that would refuse evicting the pods a drain of `node` evicts:
    /// `namespace/name (allows N disruptions, the node holds M of its pods)`.
    pub async fn drain_blockers(&self, node: &str) -> Result<Vec<String>> {
        let pods: Api<Pod> = Api::all(self.client().clone());
        let on_node = pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await
            .map_err(|source| KubeError::List {
                what: format!("pods on {node}"),
                source,
            })?;
        let pdbs: Api<PodDisruptionBudget> = Api::all(self.client().clone());
        let pdbs = pdbs
            .list(&ListParams::default())
            .await
            .map_err(|source| KubeError::List {
                what: "poddisruptionbudgets".to_owned(),
                source,
            })?;
        let mut blockers = Vec::new();
        for pdb in &pdbs.items {
            let namespace = pdb.metadata.namespace.clone().unwrap_or_default();
            let Some(selector) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
                continue;
            };
            let held = on_node
                .items
                .iter()
                .filter(|p| evictable(p))
                .filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()))
                .filter(|p| {
                    selects(
                        selector,
                        p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()),
                    )
                })
                .count();
            let allowed = pdb
                .status
                .as_ref()
                .map(|s| s.disruptions_allowed)
                .unwrap_or(0);
            if held > 0 && (allowed as usize) < held {
                blockers.push(format!(
                    "{namespace}/{} (allows {allowed} disruption(s), {node} holds {held} of its pods)",
                    pdb.metadata.name.clone().unwrap_or_default()
                ));
            }
        }
        Ok(blockers)
    }

    /// `GET /version`: the `gitVersion` of the API server that answered, e.g. `v1.34.1`.
    pub async fn server_version(&self) -> Result<String> {
        self.client()
            .apiserver_version()
            .await
            .map(|info| info.git_version)
            .map_err(|source| KubeError::List {
                what: "/version".to_owned(),
                source,
            })
    }

    /// Uncordons `node` and removes [`TALOS_CORDONED_ANNOTATION`] (a cordon an upgrade left).
    pub async fn uncordon_upgrade_leftover(&self, node: &str) -> Result<()> {
        let api: Api<Node> = Api::all(self.client().clone());
        let patch = serde_json::json!({
            "metadata": {"annotations": {TALOS_CORDONED_ANNOTATION: null}},
            "spec": {"unschedulable": null},
        });
        api.patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|source| KubeError::Create {
                object: format!("uncordon of node {node}"),
                source,
            })
    }

    /// How many objects the cluster still serves at `api_version` (`group/version`) for the
    /// resource `plural`; 0 when that version is not served at all.
    pub async fn objects_at(&self, api_version: &str, plural: &str) -> Result<usize> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, "");
        let resource = kube::api::ApiResource {
            group: group.to_owned(),
            version: version.to_owned(),
            api_version: api_version.to_owned(),
            kind: gvk.kind,
            plural: plural.to_owned(),
        };
        let api: Api<kube::api::DynamicObject> = Api::all_with(self.client().clone(), &resource);
        match api.list(&ListParams::default()).await {
            Ok(list) => Ok(list.items.len()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(0),
            Err(source) => Err(KubeError::List {
                what: format!("{plural}.{api_version}"),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    #[test]
    fn selectors_match_labels_and_expressions() {
        let labels = BTreeMap::from([("app".to_owned(), "web".to_owned())]);
        let by_label = LabelSelector {
            match_labels: Some(labels.clone()),
            ..Default::default()
        };
        assert!(selects(&by_label, &labels));
        assert!(!selects(&by_label, &BTreeMap::new()));
        let by_expr = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "app".into(),
                operator: "In".into(),
                values: Some(vec!["db".into()]),
            }]),
            ..Default::default()
        };
        assert!(!selects(&by_expr, &labels));
    }
}
