//! `destroy-cluster`: delete everything hk8s made for a cluster, then prove nothing is left.
//!
//! Only resources labelled `cluster=<name>,managed-by=hk8s` are touched, in dependency order
//! (servers, load balancers, firewalls, placement groups, networks). The last step lists them
//! again and fails the run if anything remains, naming it.

use std::sync::Arc;

use hk8s_hetzner::{ClusterResources, DestroyReport, Hetzner};
use hk8s_runtime::{Ctx, RetryPolicy, Workflow, WorkflowError};
use serde::{Deserialize, Serialize};

use crate::activity::hetzner_step;
use crate::cloud::CloudTarget;

/// The journaled input of a `destroy-cluster` run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestroyClusterInput {
    /// Cluster name (the `cluster=` label value).
    pub cluster: String,
    /// Which Hetzner API the run talks to.
    pub cloud: CloudTarget,
}

/// What a successful `destroy-cluster` deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestroySummary {
    /// Cluster name.
    pub cluster: String,
    /// What was deleted (or was already gone).
    pub deleted: ClusterResources,
}

/// The `destroy-cluster` workflow.
pub struct DestroyCluster {
    hetzner: Arc<Hetzner>,
    policy: RetryPolicy,
}

impl DestroyCluster {
    /// The workflow over a Hetzner client, with the default retry policy.
    pub fn new(hetzner: Arc<Hetzner>) -> Self {
        DestroyCluster {
            hetzner,
            policy: RetryPolicy::default(),
        }
    }

    /// Replaces the retry policy of the cloud steps.
    #[must_use]
    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }
}

impl Workflow for DestroyCluster {
    const NAME: &'static str = "destroy-cluster";
    const VERSION: u32 = 1;
    type Input = DestroyClusterInput;
    type Output = DestroySummary;

    async fn run(
        &self,
        ctx: &Ctx,
        input: DestroyClusterInput,
    ) -> Result<DestroySummary, WorkflowError> {
        let hz = &*self.hetzner;
        let p = &self.policy;
        let cluster = input.cluster.as_str();

        // 1. Delete in dependency order (one activity; `not_found` is success, so a re-run after
        //    a crash continues where the last one stopped).
        let report: DestroyReport = hetzner_step(ctx, p, "delete-resources", &cluster, || {
            hz.destroy_cluster_resources(cluster)
        })
        .await?;

        // 2. Prove nothing is left with a fresh listing.
        let remaining: ClusterResources = hetzner_step(ctx, p, "verify-empty", &cluster, || {
            hz.list_cluster_resources(cluster)
        })
        .await?;
        if !remaining.is_empty() {
            return Err(WorkflowError::failed(format!(
                "{} resource(s) of cluster {cluster} are still there after deletion: {}",
                remaining.count(),
                describe(&remaining)
            )));
        }
        Ok(DestroySummary {
            cluster: cluster.to_string(),
            deleted: report.deleted,
        })
    }
}

/// `server demo-cp-1 (42), firewall demo-worker (7)`.
pub fn describe(resources: &ClusterResources) -> String {
    let kinds = [
        ("server", &resources.servers),
        ("load balancer", &resources.load_balancers),
        ("firewall", &resources.firewalls),
        ("placement group", &resources.placement_groups),
        ("network", &resources.networks),
    ];
    kinds
        .iter()
        .flat_map(|(kind, list)| {
            list.iter()
                .map(move |r| format!("{kind} {} ({})", r.name, r.id))
        })
        .collect::<Vec<_>>()
        .join(", ")
}
