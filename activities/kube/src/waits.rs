//! Named wait conditions: one check each, no timeout. The caller's step policy owns time and
//! calls them again while they return [`KubeError::NotReady`] (retryable).

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};

use crate::client::{KubeClient, Result};
use crate::error::{KubeError, NotReady};

/// Taint the kubelet sets with an external cloud provider until the CCM initialized the node.
pub const UNINITIALIZED_TAINT: &str = "node.cloudprovider.kubernetes.io/uninitialized";

/// Why one node is not usable yet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeProblem {
    /// Node name.
    pub name: String,
    /// `NotReady`, `uninitialized`, or both joined by `, `.
    pub reason: String,
}

/// Readiness of the registered nodes.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct NodesStatus {
    /// Nodes that are Ready and initialized by the cloud controller manager.
    pub ready: Vec<String>,
    /// Registered nodes that are not yet usable.
    pub not_ready: Vec<NodeProblem>,
}

impl NodesStatus {
    /// Judges a node list.
    pub fn from_nodes(nodes: &[Node]) -> Self {
        let mut status = NodesStatus::default();
        for node in nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            let ready = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let uninitialized = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|t| t.iter().any(|t| t.key == UNINITIALIZED_TAINT));
            let mut reasons = Vec::new();
            if !ready {
                reasons.push("NotReady");
            }
            if uninitialized {
                reasons.push("uninitialized");
            }
            if reasons.is_empty() {
                status.ready.push(name);
            } else {
                status.not_ready.push(NodeProblem {
                    name,
                    reason: reasons.join(", "),
                });
            }
        }
        status.ready.sort();
        status.not_ready.sort_by(|a, b| a.name.cmp(&b.name));
        status
    }

    /// `None` when at least `expected` nodes are usable and none is unusable; otherwise a summary
    /// such as `2 of 5 nodes not Ready: demo-worker-1 (NotReady), demo-worker-2 (uninitialized)`.
    pub fn shortfall(&self, expected: usize) -> Option<String> {
        let registered = self.ready.len() + self.not_ready.len();
        if self.ready.len() >= expected && self.not_ready.is_empty() {
            return None;
        }
        let total = expected.max(registered);
        let missing = total.saturating_sub(self.ready.len());
        let mut parts: Vec<String> = self
            .not_ready
            .iter()
            .map(|p| format!("{} ({})", p.name, p.reason))
            .collect();
        if registered < expected {
            parts.push(format!("{} not registered yet", expected - registered));
        }
        Some(format!(
            "{missing} of {total} nodes not Ready: {}",
            parts.join(", ")
        ))
    }
}

/// Judges one Deployment; `None` when available.
pub fn deployment_problem(d: &Deployment) -> Option<String> {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if status.observed_generation.unwrap_or(0) < generation {
        return Some("spec change not observed yet".to_owned());
    }
    if status.updated_replicas.unwrap_or(0) < want {
        return Some(format!(
            "{}/{want} updated",
            status.updated_replicas.unwrap_or(0)
        ));
    }
    let condition_available = status.conditions.as_ref().is_some_and(|c| {
        c.iter()
            .any(|c| c.type_ == "Available" && c.status == "True")
    });
    if !condition_available {
        return Some(format!("{available}/{want} available"));
    }
    None
}

/// Judges one DaemonSet; `None` when every scheduled pod is updated, ready and available.
pub fn daemonset_problem(d: &DaemonSet) -> Option<String> {
    let status = d.status.clone().unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    if status.observed_generation.unwrap_or(0) < generation {
        return Some("spec change not observed yet".to_owned());
    }
    let desired = status.desired_number_scheduled;
    if desired == 0 {
        return Some("no pods scheduled".to_owned());
    }
    let updated = status.updated_number_scheduled.unwrap_or(0);
    let available = status.number_available.unwrap_or(0);
    if status.number_ready < desired || updated < desired || available < desired {
        return Some(format!(
            "{}/{desired} ready, {updated}/{desired} updated",
            status.number_ready
        ));
    }
    None
}

impl KubeClient {
    /// Condition `nodes_ready`: at least `expected` nodes are registered, every registered node
    /// is `Ready` and none still carries the [`UNINITIALIZED_TAINT`].
    ///
    /// One check, no waiting and no timeout. Returns the status when it holds, otherwise
    /// [`KubeError::NotReady`] naming each node and why.
    pub async fn nodes_ready(&self, expected: usize) -> Result<NodesStatus> {
        let status = self.nodes_status().await?;
        match status.shortfall(expected) {
            None => Ok(status),
            Some(summary) => Err(KubeError::NotReady(NotReady {
                condition: "nodes_ready",
                summary,
            })),
        }
    }

    /// The readiness of all registered nodes, without judging it.
    pub async fn nodes_status(&self) -> Result<NodesStatus> {
        let api: Api<Node> = Api::all(self.client().clone());
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|source| KubeError::List {
                what: "nodes".to_owned(),
                source,
            })?;
        Ok(NodesStatus::from_nodes(&list.items))
    }

    /// Condition `deployments_available`: each named Deployment in `namespace` exists, has
    /// observed its spec, updated all replicas and reports `Available`. One check, no timeout.
    pub async fn deployments_available(&self, namespace: &str, names: &[&str]) -> Result<()> {
        let api: Api<Deployment> = Api::namespaced(self.client().clone(), namespace);
        let mut problems = Vec::new();
        for name in names {
            let found = api.get_opt(name).await.map_err(|source| KubeError::List {
                what: format!("deployment {namespace}/{name}"),
                source,
            })?;
            let problem = match found {
                None => Some("not found".to_owned()),
                Some(d) => deployment_problem(&d),
            };
            if let Some(p) = problem {
                problems.push(format!("{namespace}/{name} ({p})"));
            }
        }
        not_ready(
            "deployments_available",
            "deployments not available",
            problems,
        )
    }

    /// Condition `daemonsets_ready`: each named DaemonSet in `namespace` has a pod scheduled,
    /// updated, ready and available on every node it targets. One check, no timeout.
    pub async fn daemonsets_ready(&self, namespace: &str, names: &[&str]) -> Result<()> {
        let api: Api<DaemonSet> = Api::namespaced(self.client().clone(), namespace);
        let mut problems = Vec::new();
        for name in names {
            let found = api.get_opt(name).await.map_err(|source| KubeError::List {
                what: format!("daemonset {namespace}/{name}"),
                source,
            })?;
            let problem = match found {
                None => Some("not found".to_owned()),
                Some(d) => daemonset_problem(&d),
            };
            if let Some(p) = problem {
                problems.push(format!("{namespace}/{name} ({p})"));
            }
        }
        not_ready("daemonsets_ready", "daemonsets not ready", problems)
    }
}

fn not_ready(condition: &'static str, what: &str, problems: Vec<String>) -> Result<()> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(KubeError::NotReady(NotReady {
            condition,
            summary: format!("{what}: {}", problems.join(", ")),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DaemonSetStatus, DeploymentCondition, DeploymentSpec, DeploymentStatus,
    };
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus, Taint};
    use kube::core::ObjectMeta;

    fn node(name: &str, ready: bool, uninitialized: bool) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: uninitialized.then(|| {
                    vec![Taint {
                        key: UNINITIALIZED_TAINT.into(),
                        effect: "NoSchedule".into(),
                        value: Some("true".into()),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn nodes_summary_names_each_problem() {
        let s = NodesStatus::from_nodes(&[
            node("demo-cp-1", true, false),
            node("demo-worker-2", true, true),
            node("demo-worker-1", false, false),
            node("demo-cp-2", true, false),
            node("demo-cp-3", true, false),
        ]);
        assert_eq!(s.ready, ["demo-cp-1", "demo-cp-2", "demo-cp-3"]);
        assert_eq!(
            s.shortfall(5).as_deref(),
            Some("2 of 5 nodes not Ready: demo-worker-1 (NotReady), demo-worker-2 (uninitialized)")
        );
    }

    #[test]
    fn missing_nodes_count_as_not_ready() {
        let s = NodesStatus::from_nodes(&[node("a", true, false), node("b", false, true)]);
        assert_eq!(
            s.shortfall(3).as_deref(),
            Some("2 of 3 nodes not Ready: b (NotReady, uninitialized), 1 not registered yet")
        );
        let s = NodesStatus::from_nodes(&[node("a", true, false)]);
        assert_eq!(s.shortfall(1), None);
        assert_eq!(
            s.shortfall(2).as_deref(),
            Some("1 of 2 nodes not Ready: 1 not registered yet")
        );
    }

    fn deployment(
        replicas: i32,
        updated: i32,
        available: i32,
        condition: bool,
        generation: i64,
        observed: i64,
    ) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                generation: Some(generation),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: Some(DeploymentStatus {
                updated_replicas: Some(updated),
                available_replicas: Some(available),
                observed_generation: Some(observed),
                conditions: Some(vec![DeploymentCondition {
                    type_: "Available".into(),
                    status: if condition { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn deployment_availability() {
        assert_eq!(deployment_problem(&deployment(2, 2, 1, true, 3, 3)), None);
        assert_eq!(
            deployment_problem(&deployment(2, 2, 0, false, 3, 3)).as_deref(),
            Some("0/2 available")
        );
        assert_eq!(
            deployment_problem(&deployment(2, 1, 2, true, 3, 3)).as_deref(),
            Some("1/2 updated")
        );
        assert_eq!(
            deployment_problem(&deployment(2, 2, 2, true, 4, 3)).as_deref(),
            Some("spec change not observed yet")
        );
        assert_eq!(
            deployment_problem(&Deployment::default()).as_deref(),
            Some("0/1 updated")
        );
    }

    fn daemonset(desired: i32, ready: i32, updated: i32) -> DaemonSet {
        DaemonSet {
            metadata: ObjectMeta {
                generation: Some(1),
                ..Default::default()
            },
            spec: None,
            status: Some(DaemonSetStatus {
                desired_number_scheduled: desired,
                number_ready: ready,
                updated_number_scheduled: Some(updated),
                number_available: Some(ready),
                observed_generation: Some(1),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn daemonset_readiness() {
        assert_eq!(daemonset_problem(&daemonset(3, 3, 3)), None);
        assert_eq!(
            daemonset_problem(&daemonset(3, 2, 3)).as_deref(),
            Some("2/3 ready, 3/3 updated")
        );
        assert_eq!(
            daemonset_problem(&daemonset(3, 3, 1)).as_deref(),
            Some("3/3 ready, 1/3 updated")
        );
        assert_eq!(
            daemonset_problem(&daemonset(0, 0, 0)).as_deref(),
            Some("no pods scheduled")
        );
    }
}
