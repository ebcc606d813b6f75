//! `upgrade-cluster`: rolling Talos and Kubernetes upgrades that resume at node k.
//!
//! The body reads top to bottom like the steps it journals:
//! the cluster's servers (labels) → what every node runs (Version, static pods, kubelets) →
//! the plan ([`crate::upgrade_plan`]) → for each planned step:
//! - **Talos**: control planes one at a time, then workers `concurrency` at a time; per node
//!   `pre` (boot ID, version, gates) → `upgrade` (the RPC, once) → `reboot` (a new boot ID
//!   within the node deadline) → `post` (version = target, Ready, uncordoned, etcd) → `pause`;
//! - **Kubernetes**: pre-checks (removed APIs), then per control plane `ApplyConfiguration`
//!   without reboot for apiserver, controller-manager, scheduler in turn, each waiting for that
//!   node's static pod; kube-proxy (when enabled) and every kubelet; the addons re-applied and
//!   their rollouts waited for.
//!
//! Step keys carry the planned step (`upgrade/1-talos-v1.11.6/demo-cp-1/reboot`), so `hk8s
//! history <id>` shows each node's phases and timings, and a resume continues at the node and
//! phase it stopped in. The Upgrade RPC step decides from the node itself whether it already
//! happened (boot ID, events), so a kill between the RPC and its journal entry never upgrades a
//! node twice.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, try_join_all};
use hk8s_hetzner::Hetzner;
use hk8s_runtime::{Ctx, RetryPolicy, StepError, Workflow, WorkflowError};
use hk8s_talos_config::{ComponentVersions, SecretsBundle, SecretsStore, hcloud_installer_image};
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::activity::hetzner_error;
use crate::build_image::{Builder, ImageBuild};
use crate::cloud::CloudTarget;
use crate::policies::Policies;
use crate::spec::{ClusterSpec, CniType, Role};
use crate::talos::{TalosNode, load_credentials, machine_config_at};
use crate::upgrade_gates::{
    self as gates, CONTROL_PLANE_COMPONENTS, ClusterRunning, TalosAccess, UpgradeNode,
};
use crate::upgrade_plan::{self, PlannedStep, Running, Target};

/// How the rollout is paced (journaled with the run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutOptions {
    /// Workers upgraded at once (control planes are always one at a time).
    pub concurrency: usize,
    /// Durable pause after each node or batch of workers, in milliseconds.
    pub pause_ms: u64,
    /// How long a node may take to come back from its upgrade reboot, in seconds.
    pub node_timeout_secs: u64,
    /// How long a gate may take to hold, in seconds.
    pub gate_timeout_secs: u64,
}

impl Default for RolloutOptions {
    fn default() -> Self {
        RolloutOptions {
            concurrency: 1,
            pause_ms: 10_000,
            node_timeout_secs: 30 * 60,
            gate_timeout_secs: 10 * 60,
        }
    }
}

/// The journaled input of an `upgrade-cluster` run (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeClusterInput {
    /// The cluster spec: its `talos` and `kubernetes` versions are the targets.
    pub spec: ClusterSpec,
    /// Which Hetzner API the run talks to.
    pub cloud: CloudTarget,
    /// Pacing.
    pub rollout: RolloutOptions,
    /// The image factory the new version's snapshot is built from (`HK8S_IMAGE_FACTORY`); the
    /// spec's `imageBuilder.factory` when absent.
    #[serde(default)]
    pub image_factory: Option<String>,
    /// The rescue system's SSH port for the image build.
    #[serde(default = "default_ssh_port")]
    pub ssh_port: u16,
}

fn default_ssh_port() -> u16 {
    crate::build_image::DEFAULT_SSH_PORT
}

/// One node's outcome in a Talos step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeOutcome {
    /// Node name.
    pub node: String,
    /// Version before.
    pub from: String,
    /// Version after.
    pub to: String,
    /// It already ran the target.
    pub skipped: bool,
}

/// What a successful `upgrade-cluster` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeSummary {
    /// The cluster.
    pub cluster: String,
    /// The planned steps, as printed.
    pub steps: Vec<String>,
    /// Per Talos step, every node's outcome.
    pub talos: Vec<Vec<NodeOutcome>>,
    /// Kubernetes versions reached, in order.
    pub kubernetes: Vec<String>,
    /// The snapshots new nodes of the target version boot from (architecture → image id).
    #[serde(default)]
    pub snapshots: std::collections::BTreeMap<String, i64>,
}

/// What the cluster runs and the plan from there (`--plan`, `--unattended`'s no-op check).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preview {
    /// What every node runs.
    pub running: ClusterRunning,
    /// The plan, as printed (empty: everything at target).
    pub steps: Vec<String>,
}

/// The `upgrade-cluster` workflow.
pub struct UpgradeCluster {
    hetzner: Arc<Hetzner>,
    builder: Builder,
    policies: Policies,
    cluster_dir: PathBuf,
}

impl UpgradeCluster {
    /// The workflow over a Hetzner client (which finds the cluster's servers by label);
    /// `builder` makes the target version's snapshot for nodes created later. `cluster_dir` is
    /// this machine's state folder of the cluster (talosconfig, kubeconfig, secrets bundle): a
    /// local path, so it stays out of the journaled input and a run resumes on another machine.
    pub fn new(hetzner: Arc<Hetzner>, builder: Builder, cluster_dir: PathBuf) -> Self {
        UpgradeCluster {
            hetzner,
            builder,
            policies: Policies::default(),
            cluster_dir,
        }
    }

    /// Replaces the retry policies (the image builder's too).
    #[must_use]
    pub fn with_policies(mut self, policies: Policies) -> Self {
        self.builder = self.builder.with_policies(policies.clone());
        self.policies = policies;
        self
    }
}

/// The targets the spec asks for.
///
/// # Errors
/// A version in the spec that is not `X.Y.Z` (naming the field).
pub fn target_of(spec: &ClusterSpec) -> Result<Target, String> {
    let talos = gates::version_of(&spec.talos.version)
        .ok_or_else(|| format!("talos.version: {:?} is not vX.Y.Z", spec.talos.version))?;
    let kubernetes = gates::version_of(spec.kubernetes_version()).ok_or_else(|| {
        format!(
            "kubernetes.version: {:?} is not X.Y.Z",
            spec.kubernetes.version
        )
    })?;
    Ok(Target {
        talos,
        schematic: spec.talos.schematic_id(),
        kubernetes,
    })
}

/// The planner's input from what the nodes run.
fn planner_running(running: &ClusterRunning) -> Result<Running, String> {
    let nodes = running
        .nodes
        .iter()
        .map(|n| {
            Ok(upgrade_plan::NodeVersion {
                node: n.node.clone(),
                talos: gates::version_of(&n.talos)
                    .ok_or_else(|| format!("node {} reports Talos {:?}", n.node, n.talos))?,
                schematic: n.schematic.clone(),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Running {
        nodes,
        kubernetes: gates::version_of(&running.kubernetes)
            .ok_or_else(|| format!("the cluster runs Kubernetes {:?}", running.kubernetes))?,
    })
}

/// The cluster's nodes as the upgrade steps address them, from the labelled servers.
async fn cluster_nodes(
    hetzner: &Hetzner,
    cluster: &str,
) -> Result<(Vec<UpgradeNode>, std::net::Ipv4Addr), StepError> {
    let found = hetzner
        .cluster_nodes(cluster)
        .await
        .map_err(hetzner_error)?;
    if found.nodes.is_empty() {
        return Err(StepError::permanent(format!(
            "cluster {cluster} has no servers labelled cluster={cluster},managed-by=hk8s; create it first"
        )));
    }
    let api = found.api_ipv4.ok_or_else(|| {
        StepError::permanent(format!("cluster {cluster} has no API load balancer"))
    })?;
    let nodes = found
        .nodes
        .iter()
        .map(UpgradeNode::from_server)
        .collect::<Result<Vec<_>, _>>()
        .map_err(StepError::permanent)?;
    Ok((nodes, api))
}

/// Why [`preview`] has no plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreviewError {
    /// The spec's targets cannot be reached (the rule is named): a config error.
    #[error("{0}")]
    Refused(String),
    /// The cluster could not be read (servers, talosconfig, nodes, Kubernetes API).
    #[error("{0}")]
    Unreadable(String),
}

/// Reads what the cluster runs and plans from there, changing nothing (`--plan`, and the
/// check before a run that refuses unreachable targets or finds nothing to do).
///
/// # Errors
/// [`PreviewError`]: refused (naming the rule) or unreadable.
pub async fn preview(
    hetzner: &Hetzner,
    spec: &ClusterSpec,
    dir: &Path,
) -> Result<Preview, PreviewError> {
    let target = target_of(spec).map_err(PreviewError::Refused)?;
    let (nodes, _) = cluster_nodes(hetzner, &spec.cluster_name)
        .await
        .map_err(|e| PreviewError::Unreadable(e.message))?;
    let talos = TalosAccess::new(load_credentials(dir).map_err(PreviewError::Unreadable)?);
    let kubeconfig = dir.join(crate::talos::KUBECONFIG_FILE);
    let running = gates::read_running(&talos, &nodes, &kubeconfig)
        .await
        .map_err(|e| PreviewError::Unreadable(e.message))?;
    let from = planner_running(&running).map_err(PreviewError::Unreadable)?;
    let steps =
        upgrade_plan::plan(&from, &target).map_err(|e| PreviewError::Refused(e.to_string()))?;
    Ok(Preview {
        running,
        steps: steps.iter().map(ToString::to_string).collect(),
    })
}

impl Workflow for UpgradeCluster {
    const NAME: &'static str = "upgrade-cluster";
    // 2: the cluster's state folder left the input (a local path; see `UpgradeCluster::new`).
    // 3: the Talos gates read and compare the schematic a node booted, not only its version.
    const VERSION: u32 = 3;
    type Input = UpgradeClusterInput;
    type Output = UpgradeSummary;

    async fn run(
        &self,
        ctx: &Ctx,
        input: UpgradeClusterInput,
    ) -> Result<UpgradeSummary, WorkflowError> {
        let spec = &input.spec;
        let dir = self.cluster_dir.as_path();
        let kubeconfig = dir.join(crate::talos::KUBECONFIG_FILE);
        let cloud = &self.policies.cloud;
        let target = target_of(spec).map_err(WorkflowError::failed)?;

        // 1. The cluster's servers, by label; its talosconfig and secrets from the state folder.
        let (nodes, api_ip) = ctx
            .step("upgrade/cluster", cloud, &spec.cluster_name, |_| {
                cluster_nodes(&self.hetzner, &spec.cluster_name)
            })
            .await?;
        let talos = TalosAccess::new(load_credentials(dir).map_err(WorkflowError::failed)?);
        let bundle = load_bundle(ctx, dir)?;

        // 2. What every node runs, and the plan (refused before anything changes).
        let running: ClusterRunning = ctx
            .step("upgrade/observe", cloud, &nodes, |_| {
                gates::read_running(&talos, &nodes, &kubeconfig)
            })
            .await?;
        let from = planner_running(&running).map_err(WorkflowError::failed)?;
        let plan = upgrade_plan::plan(&from, &target)
            .map_err(|e| WorkflowError::failed(format!("refused before any change: {e}")))?;

        // 3. A schematic computed from the spec's customization is registered at the factory
        //    before any node is asked to pull an installer naming it.
        if plan.iter().any(|s| matches!(s, PlannedStep::Talos { .. })) {
            let factory = input
                .image_factory
                .clone()
                .unwrap_or_else(|| spec.image_builder.factory.clone());
            ctx.step(
                "upgrade/schematic",
                cloud,
                &(&factory, &target.schematic),
                |_| crate::factory::register_schematic(&factory, &spec.talos),
            )
            .await?;
        }

        // 4. Each planned step in turn.
        let mut summary = UpgradeSummary {
            cluster: spec.cluster_name.clone(),
            steps: plan.iter().map(ToString::to_string).collect(),
            talos: Vec::new(),
            kubernetes: Vec::new(),
            snapshots: Default::default(),
        };
        let mut talos_version = from
            .nodes
            .iter()
            .map(|n| n.talos.clone())
            .min()
            .ok_or_else(|| WorkflowError::failed("the cluster has no nodes"))?;
        let mut kubernetes = from.kubernetes.clone();
        for (i, step) in plan.iter().enumerate() {
            match step {
                PlannedStep::Talos { version, schematic } => {
                    let prefix = format!("upgrade/{}-talos-v{version}", i + 1);
                    let image = hcloud_installer_image(&version.to_string(), Some(schematic))
                        .map_err(|e| WorkflowError::failed(e.to_string()))?;
                    let outcomes = self
                        .roll_talos(
                            ctx,
                            &input,
                            &prefix,
                            &talos,
                            &nodes,
                            &gates::TalosTarget {
                                version: format!("v{version}"),
                                schematic: schematic.clone(),
                            },
                            &image,
                        )
                        .await?;
                    summary.talos.push(outcomes);
                    talos_version = version.clone();
                }
                PlannedStep::Kubernetes { version } => {
                    let prefix = format!("upgrade/{}-k8s-{version}", i + 1);
                    let render = Render {
                        spec,
                        bundle: &bundle,
                        api_ip,
                        talos_version: format!("v{talos_version}"),
                        kubernetes: version.to_string(),
                    };
                    self.roll_kubernetes(
                        ctx,
                        &input,
                        &prefix,
                        &talos,
                        &nodes,
                        &render,
                        &kubernetes,
                        version,
                    )
                    .await?;
                    summary.kubernetes.push(version.to_string());
                    kubernetes = version.clone();
                }
            }
        }

        // 5. New nodes created later (create-cluster picks the snapshot by the spec's version
        //    and schematic) find the target version's snapshot, built now if it is missing.
        if plan.iter().any(|s| matches!(s, PlannedStep::Talos { .. })) {
            let build = ImageBuild::from_spec(
                spec,
                spec.arches().into_iter().collect(),
                input.image_factory.clone(),
                input.ssh_port,
                false,
            );
            let images = self.builder.ensure_images(ctx, &build).await?;
            summary.snapshots = images
                .iter()
                .map(|(arch, image)| (arch.to_string(), image.id))
                .collect();
        }
        Ok(summary)
    }
}

/// How a node's machine config is rendered during a Kubernetes step.
struct Render<'a> {
    spec: &'a ClusterSpec,
    bundle: &'a SecretsBundle,
    api_ip: std::net::Ipv4Addr,
    talos_version: String,
    kubernetes: String,
}

impl Render<'_> {
    fn config(
        &self,
        node: &UpgradeNode,
        components: ComponentVersions,
    ) -> Result<Vec<u8>, StepError> {
        let talos_node = TalosNode {
            name: node.name.clone(),
            role: node.role,
            public_ip: node.public_ip,
        };
        machine_config_at(
            self.spec,
            self.bundle,
            &talos_node,
            self.api_ip,
            &self.talos_version,
            &self.kubernetes,
            components,
        )
        .map_err(|e| StepError::permanent(e.to_string()))
    }
}

/// The secrets bundle (for rendering configs), with its secrets registered for scrubbing.
fn load_bundle(ctx: &Ctx, dir: &Path) -> Result<SecretsBundle, WorkflowError> {
    let bundle = SecretsStore::load(dir)
        .map_err(|e| WorkflowError::failed(e.to_string()))?
        .ok_or_else(|| {
            WorkflowError::failed(format!(
                "the cluster's secrets bundle {} is missing; restore it",
                SecretsStore::path(dir).display()
            ))
        })?;
    for secret in [
        bundle.bootstrap_token(),
        bundle.trustd_token(),
        bundle.cluster_secret(),
    ] {
        ctx.scrubber().register(secret.expose());
    }
    Ok(bundle)
}

impl UpgradeCluster {
    fn gate_policy(&self, input: &UpgradeClusterInput) -> RetryPolicy {
        self.policies
            .wait
            .clone()
            .with_max_elapsed(Some(Duration::from_secs(input.rollout.gate_timeout_secs)))
    }

    fn boot_policy(&self, input: &UpgradeClusterInput) -> RetryPolicy {
        self.policies
            .wait
            .clone()
            .with_max_elapsed(Some(Duration::from_secs(input.rollout.node_timeout_secs)))
    }

    /// A Talos step: control planes one at a time, then workers in batches of `concurrency`,
    /// a durable pause after each.
    #[allow(clippy::too_many_arguments)]
    async fn roll_talos(
        &self,
        ctx: &Ctx,
        input: &UpgradeClusterInput,
        prefix: &str,
        talos: &TalosAccess,
        nodes: &[UpgradeNode],
        target: &gates::TalosTarget,
        image: &str,
    ) -> Result<Vec<NodeOutcome>, WorkflowError> {
        let control_planes: Vec<&UpgradeNode> = nodes
            .iter()
            .filter(|n| n.role == Role::ControlPlane)
            .collect();
        let workers: Vec<&UpgradeNode> = nodes.iter().filter(|n| n.role == Role::Worker).collect();
        let batches = control_planes.iter().map(|n| vec![*n]).chain(
            workers
                .chunks(input.rollout.concurrency.max(1))
                .map(<[_]>::to_vec),
        );
        let mut outcomes = Vec::new();
        let gate = self.gate_policy(input);
        let kubeconfig = self.cluster_dir.join(crate::talos::KUBECONFIG_FILE);
        for batch in batches {
            // A node's gates watch the cluster without the node's batch siblings: those are
            // being upgraded beside it (cordoned, rebooting) and pass their own gates.
            let watched: Vec<Vec<UpgradeNode>> = batch
                .iter()
                .map(|node| {
                    nodes
                        .iter()
                        .filter(|n| n.name == node.name || !batch.iter().any(|b| b.name == n.name))
                        .cloned()
                        .collect()
                })
                .collect();
            // Every node of the batch passes its pre-gates before any of them is upgraded.
            let pres = try_join_all(batch.iter().zip(&watched).map(|(node, watched)| {
                let (gate, kubeconfig) = (&gate, &kubeconfig);
                async move {
                    let key = format!("{prefix}/{}/pre", node.name);
                    gates::pre_upgrade(ctx, &key, gate, talos, watched, node, target, kubeconfig)
                        .await
                }
            }))
            .await?;
            // Every node of the batch reaches its own end before a failure stops the run: a
            // sibling whose Upgrade was accepted is waited through its reboot and post-gates,
            // not abandoned mid-upgrade for the resume to rediscover.
            let done = join_all(batch.iter().zip(&pres).zip(&watched).map(
                |((node, pre), watched)| {
                    self.upgrade_node(ctx, input, prefix, talos, watched, node, pre, target, image)
                },
            ))
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
            let upgraded = done.iter().any(|o| !o.skipped);
            outcomes.extend(done);
            if upgraded && input.rollout.pause_ms > 0 {
                let last = batch.last().map(|n| n.name.as_str()).unwrap_or_default();
                ctx.sleep(
                    &format!("{prefix}/{last}/pause"),
                    Duration::from_millis(input.rollout.pause_ms),
                )
                .await?;
            }
        }
        Ok(outcomes)
    }

    /// One node: the RPC (decided from the node), the new boot, the post-gates; its gates
    /// watch `nodes` (the cluster without the node's batch siblings).
    #[allow(clippy::too_many_arguments)]
    async fn upgrade_node(
        &self,
        ctx: &Ctx,
        input: &UpgradeClusterInput,
        prefix: &str,
        talos: &TalosAccess,
        nodes: &[UpgradeNode],
        node: &UpgradeNode,
        pre: &gates::PreUpgrade,
        target: &gates::TalosTarget,
        image: &str,
    ) -> Result<NodeOutcome, WorkflowError> {
        if pre.at_target {
            return Ok(NodeOutcome {
                node: node.name.clone(),
                from: pre.version.clone(),
                to: pre.version.clone(),
                skipped: true,
            });
        }
        let from = pre.version.clone();
        let kubeconfig = self.cluster_dir.join(crate::talos::KUBECONFIG_FILE);
        let idle = self.policies.wait.initial.max(Duration::from_millis(200));
        let gate = self.gate_policy(input);
        let mut pre = pre.clone();
        // `rolled_back` ends the run at the last attempt, so the loop ends in a return or `?`.
        let mut attempt = 1;
        loop {
            // Attempt 1 keeps the plain keys; a retry after a rollback gets its own.
            let key = |phase: &str| match attempt {
                1 => format!("{prefix}/{}/{phase}", node.name),
                n => format!("{prefix}/{}/attempt-{n}/{phase}", node.name),
            };
            if attempt > 1 {
                // The node is back on its old version: the pre-gates hold again before the
                // next RPC, and its current boot ID is the one a new reboot must change.
                pre = gates::pre_upgrade(
                    ctx,
                    &key("pre"),
                    &gate,
                    talos,
                    nodes,
                    node,
                    target,
                    &kubeconfig,
                )
                .await?;
            }
            if !pre.at_target {
                gates::send_upgrade(ctx, &key("upgrade"), &gate, talos, node, &pre, image, idle)
                    .await?;
                let boot = gates::wait_new_boot(
                    ctx,
                    &key("reboot"),
                    &self.boot_policy(input),
                    talos,
                    node,
                    &pre,
                )
                .await?;
                if boot.rolled_back(&pre, target) {
                    gates::rolled_back(
                        ctx,
                        &key("rolled-back"),
                        node,
                        &pre,
                        &boot,
                        target,
                        attempt,
                    )
                    .await?;
                    attempt += 1;
                    continue;
                }
            }
            let to = gates::post_upgrade(
                ctx,
                &key("post"),
                &gate,
                talos,
                nodes,
                node,
                &pre,
                target,
                &kubeconfig,
            )
            .await?;
            return Ok(NodeOutcome {
                node: node.name.clone(),
                from: from.clone(),
                to,
                skipped: false,
            });
        }
    }

    /// A Kubernetes step like `talosctl upgrade-k8s`.
    #[allow(clippy::too_many_arguments)]
    async fn roll_kubernetes(
        &self,
        ctx: &Ctx,
        input: &UpgradeClusterInput,
        prefix: &str,
        talos: &TalosAccess,
        nodes: &[UpgradeNode],
        render: &Render<'_>,
        from: &Version,
        to: &Version,
    ) -> Result<(), WorkflowError> {
        let kubeconfig = self.cluster_dir.join(crate::talos::KUBECONFIG_FILE);
        let gate = self.gate_policy(input);
        let cloud = &self.policies.cloud;
        let target = to.to_string();

        // Pre-checks: every node's Talos runs the target (the planner's window), and no object
        // is stored at an API the target removes.
        let removed: Vec<String> = ctx
            .step(&format!("{prefix}/precheck"), cloud, &(from.to_string(), &target), |_| async {
                let found = gates::removed_api_objects(&kubeconfig, from, to).await?;
                if found.is_empty() {
                    Ok(found)
                } else {
                    Err(StepError::permanent(format!(
                        "Kubernetes {target} removes APIs the cluster still holds objects of: {}; \
                         migrate them first",
                        found.join(", ")
                    )))
                }
            })
            .await?;
        debug_assert!(removed.is_empty());

        let control_planes: Vec<&UpgradeNode> = nodes
            .iter()
            .filter(|n| n.role == Role::ControlPlane)
            .collect();
        // 1. apiserver, then controller-manager, then scheduler, each on every control plane.
        for component in CONTROL_PLANE_COMPONENTS {
            for node in &control_planes {
                let key =
                    |phase: &str| format!("{prefix}/{}/{}/{phase}", component.app(), node.name);
                let what = format!("{} {target}", component.app());
                gates::apply_no_reboot(ctx, &key("apply"), cloud, talos, node, &what, || async {
                    let mut components =
                        gates::node_components(node, &kubeconfig, &from.to_string()).await?;
                    match component {
                        gates::Component::ApiServer => components.apiserver = Some(target.clone()),
                        gates::Component::ControllerManager => {
                            components.controller_manager = Some(target.clone());
                        }
                        gates::Component::Scheduler => components.scheduler = Some(target.clone()),
                    }
                    render.config(node, keep_proxy(components, from, render))
                })
                .await?;
                gates::wait_static_pod(
                    ctx,
                    &key("ready"),
                    &gate,
                    node,
                    component,
                    &target,
                    &kubeconfig,
                )
                .await?;
            }
        }
        // 2. kube-proxy (when Talos runs it) and the kubelet on every node, control planes
        //    first.
        for node in nodes {
            let key = |phase: &str| format!("{prefix}/kubelet/{}/{phase}", node.name);
            let what = format!("kubelet and kube-proxy {target}");
            gates::apply_no_reboot(ctx, &key("apply"), cloud, talos, node, &what, || async {
                let mut components =
                    gates::node_components(node, &kubeconfig, &from.to_string()).await?;
                components.kubelet = Some(target.clone());
                components.proxy = Some(target.clone());
                render.config(node, components)
            })
            .await?;
            gates::wait_kubelet(ctx, &key("ready"), &gate, node, &target, &kubeconfig).await?;
        }
        // 3. hk8s's addons for the new version, and their rollouts.
        let mut spec = render.spec.clone();
        spec.kubernetes.version = target.clone();
        crate::kube::apply_addons_as(ctx, &format!("{prefix}/addons"), cloud, &spec, &kubeconfig)
            .await?;
        crate::kube::wait_addons_ready_as(
            ctx,
            &format!("{prefix}/addons-ready"),
            &self.policies.wait,
            &spec,
            &kubeconfig,
        )
        .await?;
        Ok(())
    }
}

/// kube-proxy stays at the version it runs until the kubelet phase (with Cilium it is disabled
/// and its image unused).
fn keep_proxy(
    mut components: ComponentVersions,
    from: &Version,
    render: &Render<'_>,
) -> ComponentVersions {
    if components.proxy.is_none() {
        components.proxy = Some(if render.spec.cni.cni_type == CniType::Cilium {
            render.kubernetes.clone()
        } else {
            from.to_string()
        });
    }
    components
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::EXAMPLE_YAML;

    #[test]
    fn targets_come_from_the_spec() {
        let spec = ClusterSpec::from_yaml(EXAMPLE_YAML, "t").unwrap();
        let target = target_of(&spec).unwrap();
        assert_eq!(target.talos, Version::new(1, 11, 6));
        assert_eq!(target.kubernetes, Version::new(1, 34, 1));
        assert_eq!(target.schematic, spec.talos.schematic_id());
    }
}
