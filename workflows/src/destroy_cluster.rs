//! `destroy-cluster`: delete everything hk8s made for a cluster, then prove nothing is left.
//!
//! Only resources labelled `cluster=<name>,managed-by=hk8s` are touched, in dependency order
//! (servers, load balancers, firewalls, placement groups, networks). The last step lists them
//! again and fails the run if anything remains, naming it. Then the image builder's leftovers of
//! dead runs go too (`component=image-builder`, any `hk8s-run` no live process holds).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hk8s_hetzner::{ClusterResources, DestroyReport, Hetzner};
use hk8s_kube::CloudInventory;
use hk8s_runtime::{Ctx, StepError, Workflow, WorkflowError};
use serde::{Deserialize, Serialize};

use crate::activity::{hetzner_error, hetzner_step, kube_error};
use crate::build_image::Builder;
use crate::cloud::CloudTarget;
use crate::kube;
use crate::policies::Policies;
use crate::talos::KUBECONFIG_FILE;

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
    /// Load balancers of the CCM and volumes of the CSI driver that were removed.
    pub cloud_backed: CloudInventory,
    /// What could not be proven gone (e.g. the Kubernetes API did not answer).
    pub warnings: Vec<String>,
}

/// The `destroy-cluster` workflow.
pub struct DestroyCluster {
    hetzner: Arc<Hetzner>,
    cluster_dir: PathBuf,
    policies: Policies,
    builder: Option<Builder>,
}

/// Tries at the Kubernetes API (and at waiting for its controllers) before destroy goes on
/// without it.
const API_ATTEMPTS: u32 = 8;

async fn inventory(kubeconfig: &Path) -> Result<CloudInventory, StepError> {
    let kube = kube::connect(kubeconfig).await?;
    kube.cloud_backed_inventory().await.map_err(kube_error)
}

impl DestroyCluster {
    /// The workflow over a Hetzner client, with the default retry policies. `cluster_dir` is
    /// this machine's state folder of the cluster (its kubeconfig reaches the cluster's
    /// controllers): a local path, never journaled.
    pub fn new(hetzner: Arc<Hetzner>, cluster_dir: PathBuf) -> Self {
        DestroyCluster {
            hetzner,
            cluster_dir,
            policies: Policies::default(),
            builder: None,
        }
    }

    /// Also deletes the image builder's leftovers of dead runs (step
    /// `image-builder/leftovers`, see [`Builder::remove_leftovers`]).
    #[must_use]
    pub fn with_builder(mut self, builder: Builder) -> Self {
        self.builder = Some(builder);
        self
    }

    /// Replaces the retry policies of the cloud steps and of the steps that wait for the
    /// cluster's controllers.
    #[must_use]
    pub fn with_policies(mut self, policies: Policies) -> Self {
        self.builder = self.builder.map(|b| b.with_policies(policies.clone()));
        self.policies = policies;
        self
    }
}

impl Workflow for DestroyCluster {
    const NAME: &'static str = "destroy-cluster";
    // 3: the cluster's state folder left the input (a local path; see `DestroyCluster::new`).
    const VERSION: u32 = 3;
    type Input = DestroyClusterInput;
    type Output = DestroySummary;

    async fn run(
        &self,
        ctx: &Ctx,
        input: DestroyClusterInput,
    ) -> Result<DestroySummary, WorkflowError> {
        let hetzner = &*self.hetzner;
        let policy = &self.policies.cloud;
        let cluster = input.cluster.as_str();
        let kubeconfig = self.cluster_dir.join(KUBECONFIG_FILE);
        let mut warnings = Vec::new();

        // 1. While the Kubernetes API answers: note what the CCM and the CSI driver made, delete
        //    the Services and claims behind it, and wait until they removed it from Hetzner.
        let inventory: Option<CloudInventory> = ctx
            .step("kube/inventory", &self.policies.wait, &kubeconfig, |attempt| {
                let kubeconfig = kubeconfig.clone();
                async move {
                    if !kubeconfig.exists() {
                        return Ok(None);
                    }
                    match inventory(&kubeconfig).await {
                        Ok(inv) => Ok(Some(inv)),
                        // The API may be gone for good (servers deleted by hand): give up on it
                        // after a few tries instead of blocking the destroy.
                        Err(e) if attempt.number >= API_ATTEMPTS => {
                            tracing::warn!(error = %e.message, "the Kubernetes API does not answer");
                            Ok(None)
                        }
                        Err(e) => Err(e),
                    }
                }
            })
            .await?;
        let cloud_backed = match inventory {
            Some(inv) => {
                ctx.step(
                    "kube/delete-cloud-backed",
                    &self.policies.wait,
                    &inv,
                    |_| async {
                        let kube = kube::connect(&kubeconfig).await?;
                        let remaining = kube.delete_cloud_backed().await.map_err(kube_error)?;
                        if remaining.is_empty() {
                            Ok(())
                        } else {
                            Err(StepError::retryable(format!(
                                "still being deleted: {remaining:?}"
                            )))
                        }
                    },
                )
                .await?;
                let inv_ref = &inv;
                ctx.step("hetzner/cloud-backed-gone", &self.policies.wait, &inv, |attempt| async move {
                    let inv = inv_ref;
                    let lbs = hetzner.list_ccm_load_balancers(&inv.service_uids).await.map_err(hetzner_error)?;
                    let volumes = hetzner.list_volumes_by_id(&inv.volume_ids).await.map_err(hetzner_error)?;
                    if lbs.is_empty() && volumes.is_empty() {
                        return Ok(());
                    }
                    if attempt.number < API_ATTEMPTS {
                        return Err(StepError::retryable(format!(
                            "waiting for the CCM and CSI to delete {} load balancer(s) and {} volume(s)",
                            lbs.len(),
                            volumes.len()
                        )));
                    }
                    // Their controllers did not clean up: these are provably this cluster's.
                    for lb in &lbs {
                        hetzner.delete_load_balancer(lb.id).await.map_err(hetzner_error)?;
                    }
                    for volume in &volumes {
                        hetzner.delete_volume(volume.id).await.map_err(hetzner_error)?;
                    }
                    Ok(())
                })
                .await?;
                inv
            }
            None => {
                warnings.push(format!(
                    "the Kubernetes API of cluster {cluster} did not answer: load balancers labelled \
                     hcloud-ccm/service-uid and volumes its CSI driver created may remain; check them in the console"
                ));
                CloudInventory::default()
            }
        };

        // 2. Delete in dependency order (one activity; `not_found` is success, so a re-run after
        //    a crash continues where the last one stopped).
        let report: DestroyReport = hetzner_step(ctx, policy, "delete-resources", &cluster, || {
            hetzner.destroy_cluster_resources(cluster)
        })
        .await?;

        // 3. Prove nothing is left with a fresh listing, including what the controllers made.
        let remaining: ClusterResources =
            hetzner_step(ctx, policy, "verify-empty", &cluster, || async {
                let mut remaining = hetzner.list_cluster_resources(cluster).await?;
                remaining.load_balancers.extend(
                    hetzner
                        .list_ccm_load_balancers(&cloud_backed.service_uids)
                        .await?,
                );
                remaining.volumes = hetzner.list_volumes_by_id(&cloud_backed.volume_ids).await?;
                Ok(remaining)
            })
            .await?;
        if !remaining.is_empty() {
            return Err(WorkflowError::failed(format!(
                "{} resource(s) of cluster {cluster} are still there after deletion: {}",
                remaining.count(),
                describe(&remaining)
            )));
        }

        // 4. Temporary image-build resources of dead runs (servers, keys, unpublished snapshots).
        if let Some(builder) = &self.builder {
            builder.remove_leftovers(ctx).await?;
        }
        Ok(DestroySummary {
            cluster: cluster.to_string(),
            deleted: report.deleted,
            cloud_backed,
            warnings,
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
        ("volume", &resources.volumes),
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
