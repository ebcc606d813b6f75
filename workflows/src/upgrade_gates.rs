//! The steps of `upgrade-cluster`, one function per step with its key in the doc: what the
//! cluster runs, the gates before and after each node, the Talos Upgrade RPC with its resume
//! decision (`../shared/reference/upgrades.md` §7), and the per-component Kubernetes applies.
//!
//! Every gate is one check per attempt; the step's retry policy owns the time, so a gate that
//! never holds ends as a failed step whose message names the node and the gate.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hk8s_hetzner::ClusterNode;
use hk8s_kube::KubeClient;
use hk8s_runtime::{Ctx, RetryPolicy, StepError, WorkflowError};
use hk8s_talos::{
    ApplyMode, ClientOptions, NodeEvent, NodeEventKind, TalosClient, TalosCredentials,
    UpgradeOptions,
};
use hk8s_talos_config::VANILLA_SCHEMATIC;
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::activity::{kube_error, talos_error};
use crate::spec::Role;

/// The Talos API port.
const TALOS_PORT: u16 = 50000;
/// `MachineStage` RUNNING.
const STAGE_RUNNING: i32 = 4;
/// `SequenceEvent.Action` START.
const ACTION_START: i32 = 1;
/// The Upgrade RPC's deadline: the node pulls the installer before it replies (§1.2).
const UPGRADE_RPC_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// A node of the cluster, as the upgrade steps address it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeNode {
    /// Server name (Talos hostname, Kubernetes node name).
    pub name: String,
    /// Role.
    pub role: Role,
    /// Public IPv4: the Talos API.
    pub public_ip: Ipv4Addr,
    /// Private IP (the Kubernetes InternalIP), when known.
    pub private_ip: Option<Ipv4Addr>,
}

impl UpgradeNode {
    /// From a labelled server.
    ///
    /// # Errors
    /// The server has no public IPv4.
    pub fn from_server(node: &ClusterNode) -> Result<Self, String> {
        Ok(UpgradeNode {
            name: node.name.clone(),
            role: node.role.into(),
            public_ip: node
                .public_ipv4
                .ok_or_else(|| format!("server {} has no public IPv4", node.name))?,
            private_ip: node.private_ip,
        })
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.public_ip, TALOS_PORT))
    }

    /// The addresses Kubernetes may know this node by (static pods' `status.hostIP`).
    pub fn ips(&self) -> Vec<IpAddr> {
        std::iter::once(IpAddr::V4(self.public_ip))
            .chain(self.private_ip.map(IpAddr::V4))
            .collect()
    }
}

/// What one node runs, read from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRunning {
    /// Node name.
    pub node: String,
    /// `Version.tag`, e.g. `v1.10.9`.
    pub talos: String,
    /// `Version.arch`, e.g. `amd64`.
    pub arch: String,
    /// The kubelet version Kubernetes reports (`v1.33.6`), empty when the node is unknown.
    pub kubelet: String,
    /// The Image Factory schematic the node booted ([`running_schematic`]).
    pub schematic: String,
}

/// What a Talos step moves every node to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TalosTarget {
    /// `Version.tag` to reach, e.g. `v1.11.6`.
    pub version: String,
    /// The Image Factory schematic ID to boot.
    pub schematic: String,
}

impl TalosTarget {
    /// Whether a node at `version` with `schematic` is at this target.
    pub fn reached(&self, version: &str, schematic: &str) -> bool {
        version == self.version && schematic == self.schematic
    }
}

/// The schematic a node booted: the version of its `schematic` extension, which the Image
/// Factory adds to every image; an image without one is the vanilla (no-extension) schematic.
async fn running_schematic(client: &TalosClient) -> Result<String, StepError> {
    Ok(client
        .schematic()
        .await
        .map_err(talos_error)?
        .unwrap_or_else(|| VANILLA_SCHEMATIC.to_owned()))
}

/// The first 12 characters of a schematic ID, as messages and plans show it.
pub fn short(schematic: &str) -> &str {
    schematic.get(..12).unwrap_or(schematic)
}

/// What the cluster runs (the step `upgrade/observe`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRunning {
    /// Every node, control planes first.
    pub nodes: Vec<NodeRunning>,
    /// The oldest Kubernetes component version (static pods and kubelets), without `v`.
    pub kubernetes: String,
}

/// Talos clients for one cluster: mTLS with the talosconfig credentials.
#[derive(Clone)]
pub struct TalosAccess {
    creds: TalosCredentials,
}

impl TalosAccess {
    /// Access with `creds`.
    pub fn new(creds: TalosCredentials) -> Self {
        TalosAccess { creds }
    }

    async fn client(&self, node: &UpgradeNode) -> Result<TalosClient, StepError> {
        TalosClient::secure(node.addr(), &self.creds)
            .await
            .map_err(talos_error)
    }

    async fn client_with(
        &self,
        node: &UpgradeNode,
        call_timeout: Duration,
    ) -> Result<TalosClient, StepError> {
        let options = ClientOptions {
            call_timeout,
            ..ClientOptions::default()
        };
        TalosClient::secure_with(node.addr(), &self.creds, options)
            .await
            .map_err(talos_error)
    }
}

/// A Kubernetes client for the cluster behind `kubeconfig`.
async fn kube(kubeconfig: &Path) -> Result<KubeClient, StepError> {
    crate::kube::connect(kubeconfig).await
}

/// `1.34.1` from `v1.34.1` or `registry.k8s.io/kube-apiserver:v1.34.1`.
pub fn version_of(text: &str) -> Option<Version> {
    let tag = text.rsplit(':').next().unwrap_or(text);
    let tag = tag.split('@').next().unwrap_or(tag);
    let tag = tag.strip_prefix('v').unwrap_or(tag);
    // `-fat`/`-slim` kubelet suffixes are not part of the version.
    let core = tag.split('-').next().unwrap_or(tag);
    Version::parse(core).ok()
}

/// Reads what the cluster runs: every node's `Version`, every control-plane static pod's
/// image and every kubelet. Not journaled by itself (the caller's step is).
///
/// # Errors
/// A node that does not answer, or a cluster that reports no Kubernetes version.
pub async fn read_running(
    talos: &TalosAccess,
    nodes: &[UpgradeNode],
    kubeconfig: &Path,
) -> Result<ClusterRunning, StepError> {
    let kube = kube(kubeconfig).await?;
    let facts = kube.node_facts().await.map_err(kube_error)?;
    let mut running = Vec::new();
    let mut versions: Vec<Version> = Vec::new();
    for node in nodes {
        let client = talos.client(node).await?;
        let version = client.version().await.map_err(talos_error)?;
        let kubelet = facts
            .iter()
            .find(|f| f.name == node.name)
            .map(|f| f.kubelet_version.clone())
            .unwrap_or_default();
        versions.extend(version_of(&kubelet));
        if node.role == Role::ControlPlane {
            for component in CONTROL_PLANE_COMPONENTS {
                for pod in kube
                    .static_pods(component.app(), &node.ips())
                    .await
                    .map_err(kube_error)?
                {
                    versions.extend(version_of(&pod.image));
                }
            }
        }
        running.push(NodeRunning {
            node: node.name.clone(),
            talos: version.tag,
            arch: version.arch,
            kubelet,
            schematic: running_schematic(&client).await?,
        });
    }
    if versions.is_empty() {
        // No kubelet registered and no static pod seen: what the API server says.
        versions.extend(version_of(
            &kube.server_version().await.map_err(kube_error)?,
        ));
    }
    let kubernetes = versions
        .into_iter()
        .min()
        .ok_or_else(|| StepError::permanent("the cluster reports no Kubernetes version"))?;
    Ok(ClusterRunning {
        nodes: running,
        kubernetes: kubernetes.to_string(),
    })
}

/// The journal record of one node before its Upgrade RPC (step `…/<node>/pre`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreUpgrade {
    /// The boot ID before the upgrade: a different one later proves the node rebooted.
    pub boot_id: String,
    /// `Version.tag` before the upgrade.
    pub version: String,
    /// `Version.arch`.
    pub arch: String,
    /// The schematic before the upgrade.
    pub schematic: String,
    /// The node already ran the target version and schematic: nothing to do.
    pub at_target: bool,
    /// When the gates passed.
    pub at: DateTime<Utc>,
}

/// The journal record of the Upgrade RPC (step `…/<node>/upgrade`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeSent {
    /// The installer image.
    pub image: String,
    /// The actor ID the node replied with (or found in its events on resume).
    pub actor_id: String,
    /// When the RPC was sent (or when the resume found it had been).
    pub sent_at: DateTime<Utc>,
    /// How this step decided: `sent`, `already-running` (the events of this boot show the
    /// upgrade sequence) or `already-rebooted` (the boot ID changed).
    pub decision: String,
}

/// The journal record of the new boot (step `…/<node>/reboot`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewBoot {
    /// The new boot ID.
    pub boot_id: String,
    /// `Version.tag` after the reboot.
    pub version: String,
    /// The schematic after the reboot.
    pub schematic: String,
}

impl NewBoot {
    /// The node came back on what it ran before, not on `target`: Talos rolled the upgrade
    /// back (upgrades.md §1.5).
    pub fn rolled_back(&self, pre: &PreUpgrade, target: &TalosTarget) -> bool {
        !target.reached(&self.version, &self.schematic)
            && self.version == pre.version
            && self.schematic == pre.schematic
    }
}

/// The gates every node must pass before its upgrade: etcd has one healthy voting member per
/// control plane (asked through a control plane that is not `target`), every node is Ready,
/// no other node is cordoned by an upgrade, and no PodDisruptionBudget blocks `target`'s drain.
async fn cluster_healthy(
    talos: &TalosAccess,
    nodes: &[UpgradeNode],
    target: Option<&UpgradeNode>,
    kubeconfig: &Path,
    drain: bool,
) -> Result<(), StepError> {
    let what = target.map_or("the cluster".to_owned(), |t| t.name.clone());
    let control_planes: Vec<&UpgradeNode> = nodes
        .iter()
        .filter(|n| n.role == Role::ControlPlane)
        .collect();
    let via = control_planes
        .iter()
        .find(|n| Some(n.name.as_str()) != target.map(|t| t.name.as_str()))
        .or(control_planes.first())
        .ok_or_else(|| StepError::permanent("the cluster has no control plane"))?;
    let client = talos.client(via).await.map_err(|e| {
        StepError::retryable(format!(
            "gate etcd for {what}: {} does not answer: {}",
            via.name, e.message
        ))
    })?;
    let members = client.etcd_member_list().await.map_err(|e| {
        StepError::retryable(format!(
            "gate etcd for {what}: member list through {}: {e}",
            via.name
        ))
    })?;
    let voting = members.iter().filter(|m| !m.is_learner).count();
    if voting != control_planes.len() {
        return Err(StepError::retryable(format!(
            "gate etcd for {what}: {voting} voting members, {} control planes",
            control_planes.len()
        )));
    }
    for cp in &control_planes {
        let healthy = match talos.client(cp).await {
            Ok(c) => c
                .service_list()
                .await
                .map(|s| s.iter().any(|s| s.id == "etcd" && s.is_healthy()))
                .unwrap_or(false),
            Err(_) => false,
        };
        if !healthy {
            return Err(StepError::retryable(format!(
                "gate etcd for {what}: etcd on {} is not running and healthy",
                cp.name
            )));
        }
    }
    let kube = kube(kubeconfig).await?;
    let facts = kube.node_facts().await.map_err(kube_error)?;
    for node in nodes {
        match facts.iter().find(|f| f.name == node.name) {
            None => {
                return Err(StepError::retryable(format!(
                    "gate nodes-ready for {what}: node {} is not registered",
                    node.name
                )));
            }
            Some(f) if !f.ready => {
                return Err(StepError::retryable(format!(
                    "gate nodes-ready for {what}: node {} is not Ready",
                    node.name
                )));
            }
            Some(f)
                if f.cordoned_by_upgrade
                    && Some(f.name.as_str()) != target.map(|t| t.name.as_str()) =>
            {
                return Err(StepError::retryable(format!(
                    "gate no-other-cordoned for {what}: node {} is still cordoned by an upgrade",
                    f.name
                )));
            }
            Some(_) => {}
        }
    }
    if drain && let Some(t) = target {
        let blockers = kube.drain_blockers(&t.name).await.map_err(kube_error)?;
        if !blockers.is_empty() {
            return Err(StepError::retryable(format!(
                "gate pod-disruption-budgets for {}: eviction would be refused by {}",
                t.name,
                blockers.join(", ")
            )));
        }
    }
    Ok(())
}

/// Step `<prefix>/<node>/pre`: the node's boot ID, version and schematic, and the pre-gates
/// ([`cluster_healthy`]) unless it already runs `target`.
#[allow(clippy::too_many_arguments)]
pub async fn pre_upgrade(
    ctx: &Ctx,
    key: &str,
    gate: &RetryPolicy,
    talos: &TalosAccess,
    nodes: &[UpgradeNode],
    node: &UpgradeNode,
    target: &TalosTarget,
    kubeconfig: &Path,
) -> Result<PreUpgrade, WorkflowError> {
    ctx.step(key, gate, &(&node.name, target), |_| async {
        let client = talos.client(node).await?;
        let version = client.version().await.map_err(talos_error)?;
        let boot_id = client.boot_id().await.map_err(talos_error)?;
        let schematic = running_schematic(&client).await?;
        let at_target = target.reached(&version.tag, &schematic);
        if !at_target {
            cluster_healthy(talos, nodes, Some(node), kubeconfig, true).await?;
        }
        Ok(PreUpgrade {
            boot_id,
            version: version.tag,
            arch: version.arch,
            schematic,
            at_target,
            at: Utc::now(),
        })
    })
    .await
}

/// Reboot mode POWERCYCLE where kexec is known to hang: arm64 hosts older than v1.11.6
/// (talos#12402, upgrades.md §1.3).
pub fn needs_powercycle(arch: &str, host: &str) -> bool {
    arch == "arm64" && version_of(host).is_some_and(|v| v < Version::new(1, 11, 6))
}

/// Step `<prefix>/<node>/upgrade`: sends the Upgrade RPC once. Before sending, the node is
/// asked whether it already did (the resume decision table, upgrades.md §7): a new boot ID
/// means it rebooted already; an `upgrade` sequence START in this boot's events means it is
/// upgrading; only otherwise is the RPC sent (a repeat is harmless in Talos, §1.6, but the
/// decision keeps it to one).
#[allow(clippy::too_many_arguments)]
pub async fn send_upgrade(
    ctx: &Ctx,
    key: &str,
    policy: &RetryPolicy,
    talos: &TalosAccess,
    node: &UpgradeNode,
    pre: &PreUpgrade,
    image: &str,
    idle: Duration,
) -> Result<UpgradeSent, WorkflowError> {
    ctx.step(key, policy, &(&node.name, &pre.boot_id, image), |_| async {
        let client = talos.client_with(node, UPGRADE_RPC_TIMEOUT).await?;
        let boot_id = client.boot_id().await.map_err(talos_error)?;
        if boot_id != pre.boot_id {
            return Ok(UpgradeSent {
                image: image.to_owned(),
                actor_id: String::new(),
                sent_at: Utc::now(),
                decision: "already-rebooted".to_owned(),
            });
        }
        // Events are a best-effort witness: a node whose stream cannot be read is asked again.
        let events = client.events_since_boot(idle).await.unwrap_or_default();
        if let Some(started) = events.iter().find(|e| {
            matches!(&e.kind, NodeEventKind::Sequence { sequence, action, .. }
                if sequence == "upgrade" && *action == ACTION_START)
        }) {
            return Ok(UpgradeSent {
                image: image.to_owned(),
                actor_id: started.actor_id.clone(),
                sent_at: Utc::now(),
                decision: "already-running".to_owned(),
            });
        }
        let sent_at = Utc::now();
        let ack = client
            .upgrade(&UpgradeOptions {
                image: image.to_owned(),
                preserve: false,
                stage: false,
                force: false,
                powercycle: needs_powercycle(&pre.arch, &pre.version),
            })
            .await
            .map_err(|e| {
                // An installer the node cannot resolve is permanent (hk8s-talos's classify).
                let err = talos_error(e);
                StepError {
                    message: format!("Upgrade RPC to {}: {}", node.name, err.message),
                    ..err
                }
            })?;
        // An ack does not mean the sequence started: when another sequence holds the node's
        // lock, Talos publishes LOCKED without actor ID and does nothing else (upgrades.md
        // §1.6). Re-sending is harmless, so the step tries again (and the check above then
        // finds an upgrade that did start, ours or another actor's).
        let after = client.events_since_boot(idle).await.unwrap_or_default();
        if not_started_locked(&after, &ack.actor_id) {
            return Err(StepError::retryable(format!(
                "Upgrade RPC to {} was acknowledged but did not start: another sequence holds \
                 the node's lock (LOCKED); sending it again",
                node.name
            )));
        }
        Ok(UpgradeSent {
            image: image.to_owned(),
            actor_id: ack.actor_id,
            sent_at,
            decision: "sent".to_owned(),
        })
    })
    .await
}

/// Whether `events` (since boot) end in a LOCKED sequence event and show no upgrade START of
/// `actor_id`: the upgrade just requested was refused by the node's sequence lock.
fn not_started_locked(events: &[NodeEvent], actor_id: &str) -> bool {
    let started = events.iter().any(|e| {
        e.actor_id == actor_id
            && matches!(&e.kind, NodeEventKind::Sequence { sequence, action, .. }
                if sequence == "upgrade" && *action == ACTION_START)
    });
    let last_locked = events
        .iter()
        .rev()
        .find_map(|e| match &e.kind {
            NodeEventKind::Sequence { locked, .. } => Some(*locked),
            _ => None,
        })
        .unwrap_or(false);
    last_locked && !started
}

/// Step `<prefix>/<node>/reboot`: waits (within `boot`'s budget, the node deadline) until the
/// node answers with a boot ID other than the one before the upgrade.
pub async fn wait_new_boot(
    ctx: &Ctx,
    key: &str,
    boot: &RetryPolicy,
    talos: &TalosAccess,
    node: &UpgradeNode,
    pre: &PreUpgrade,
) -> Result<NewBoot, WorkflowError> {
    ctx.step(key, boot, &(&node.name, &pre.boot_id), |_| async {
        let not_back = |why: String| {
            StepError::retryable(format!(
                "gate new-boot: {} has not come back from its upgrade reboot ({why})",
                node.name
            ))
        };
        let client = talos.client(node).await.map_err(|e| not_back(e.message))?;
        let boot_id = client
            .boot_id()
            .await
            .map_err(|e| not_back(e.to_string()))?;
        if boot_id == pre.boot_id {
            // Still the old boot: a failed sequence shows in its events before the reboot.
            let events = client
                .events_since_boot(Duration::from_millis(200))
                .await
                .unwrap_or_default();
            let failed = events.iter().rev().find_map(|e| match &e.kind {
                NodeEventKind::Sequence {
                    sequence,
                    error: Some(msg),
                    ..
                } if sequence == "upgrade" => Some(msg.clone()),
                _ => None,
            });
            return Err(not_back(match failed {
                Some(msg) => format!("the upgrade sequence failed: {msg}"),
                None => "same boot ID".to_owned(),
            }));
        }
        let version = client
            .version()
            .await
            .map_err(|e| not_back(e.to_string()))?;
        let schematic = running_schematic(&client)
            .await
            .map_err(|e| not_back(e.message))?;
        Ok(NewBoot {
            boot_id,
            version: version.tag,
            schematic,
        })
    })
    .await
}

/// How many Upgrade attempts a node gets across resumes of one run before a rollback is final.
pub const UPGRADE_ATTEMPTS: u32 = 3;

/// Step `<prefix>/<node>/[attempt-<n>/]rolled-back`: the node came back from attempt `attempt`
/// on its old version (a failed, rolled-back upgrade, upgrades.md §1.5). The first execution
/// stops the run with a resumable failure that says so; resuming the run is the go-ahead for
/// the next attempt (the step then passes), until [`UPGRADE_ATTEMPTS`] have rolled back.
pub async fn rolled_back(
    ctx: &Ctx,
    key: &str,
    node: &UpgradeNode,
    pre: &PreUpgrade,
    boot: &NewBoot,
    target: &TalosTarget,
    attempt: u32,
) -> Result<(), WorkflowError> {
    let policy = RetryPolicy::no_retry();
    ctx.step(
        key,
        &policy,
        &(&node.name, &boot.boot_id, attempt),
        |a| async move {
            let (got, wanted) = came_back_as(&boot.version, &boot.schematic, target);
            let what = format!(
                "gate version: {} rebooted into {got} instead of {wanted} after upgrade attempt \
             {attempt} of {UPGRADE_ATTEMPTS}: the upgrade failed and Talos rolled back \
             (boot {} -> {}); the node is NOT upgraded",
                node.name, pre.boot_id, boot.boot_id
            );
            if attempt >= UPGRADE_ATTEMPTS {
                Err(StepError::permanent(format!(
                    "{what}; not retrying again: read the node's logs, fix the cause, then start \
                 a new upgrade run"
                )))
            } else if a.number == 1 {
                Err(StepError::permanent(format!(
                    "{what}; resuming the run retries it (attempt {} of {UPGRADE_ATTEMPTS})",
                    attempt + 1
                )))
            } else {
                Ok(())
            }
        },
    )
    .await
}

/// Step `<prefix>/<node>/post`: `Version.tag` is the target (a node back on its old version is
/// a failed, rolled-back upgrade, and the step fails saying so), the machine is RUNNING and
/// ready, the Node is Ready and uncordoned, and etcd is healthy.
#[allow(clippy::too_many_arguments)]
pub async fn post_upgrade(
    ctx: &Ctx,
    key: &str,
    gate: &RetryPolicy,
    talos: &TalosAccess,
    nodes: &[UpgradeNode],
    node: &UpgradeNode,
    pre: &PreUpgrade,
    target: &TalosTarget,
    kubeconfig: &Path,
) -> Result<String, WorkflowError> {
    ctx.step(key, gate, &(&node.name, target), |_| async {
        let client = talos.client(node).await?;
        let version = client.version().await.map_err(talos_error)?;
        let schematic = running_schematic(&client).await?;
        if !target.reached(&version.tag, &schematic) {
            let what = if version.tag == pre.version && schematic == pre.schematic {
                "the upgrade failed and Talos rolled back"
            } else {
                "an unexpected version"
            };
            let (got, wanted) = came_back_as(&version.tag, &schematic, target);
            return Err(StepError::permanent(format!(
                "gate version: {} rebooted into {got} instead of {wanted}: {what}; \
                 the node is NOT upgraded",
                node.name
            )));
        }
        let events = client
            .events_since_boot(Duration::from_millis(200))
            .await
            .unwrap_or_default();
        let status = events.iter().rev().find_map(|e| match e.kind {
            NodeEventKind::MachineStatus { stage, ready } => Some((stage, ready)),
            _ => None,
        });
        if let Some((stage, ready)) = status
            && !(stage == STAGE_RUNNING && ready)
        {
            return Err(StepError::retryable(format!(
                "gate machine-ready: {} is in stage {stage} (ready {ready})",
                node.name
            )));
        }
        let kube = kube(kubeconfig).await?;
        let facts = kube.node_facts().await.map_err(kube_error)?;
        let fact = facts.iter().find(|f| f.name == node.name).ok_or_else(|| {
            StepError::retryable(format!("gate node-ready: {} is not registered", node.name))
        })?;
        if !fact.ready {
            return Err(StepError::retryable(format!(
                "gate node-ready: {} is not Ready",
                node.name
            )));
        }
        if fact.unschedulable {
            if fact.cordoned_by_upgrade && ctx_late(pre) {
                // Talos uncordons a node it cordoned once it is RUNNING; a cordon left after
                // that is ours to clear.
                kube.uncordon_upgrade_leftover(&node.name)
                    .await
                    .map_err(kube_error)?;
            }
            return Err(StepError::retryable(format!(
                "gate uncordoned: {} is still cordoned",
                node.name
            )));
        }
        cluster_healthy(talos, nodes, None, kubeconfig, false).await?;
        Ok(version.tag)
    })
    .await
}

/// What a node came back on and the target, for a message: the versions, with the schematics
/// named when they differ (`v1.11.6 (schematic 376567988ad3…)`).
fn came_back_as(version: &str, schematic: &str, target: &TalosTarget) -> (String, String) {
    if schematic == target.schematic {
        (version.to_owned(), target.version.clone())
    } else {
        (
            format!("{version} (schematic {}…)", short(schematic)),
            format!(
                "{} (schematic {}…)",
                target.version,
                short(&target.schematic)
            ),
        )
    }
}

/// Whether a cordon left on an upgraded node has outlived Talos's own uncordon (a minute).
fn ctx_late(pre: &PreUpgrade) -> bool {
    Utc::now() - pre.at > chrono::Duration::minutes(1)
}

/// A control-plane component a Kubernetes upgrade moves, in `upgrade-k8s`'s order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Component {
    /// kube-apiserver.
    ApiServer,
    /// kube-controller-manager.
    ControllerManager,
    /// kube-scheduler.
    Scheduler,
}

/// The static-pod components, in order.
pub const CONTROL_PLANE_COMPONENTS: [Component; 3] = [
    Component::ApiServer,
    Component::ControllerManager,
    Component::Scheduler,
];

impl Component {
    /// The pods' `k8s-app` label value and step-key part.
    pub fn app(self) -> &'static str {
        match self {
            Component::ApiServer => "kube-apiserver",
            Component::ControllerManager => "kube-controller-manager",
            Component::Scheduler => "kube-scheduler",
        }
    }
}

/// The Kubernetes versions one node runs now, per component, as the config to apply keeps
/// them (what is not observed keeps `fallback`).
pub async fn node_components(
    node: &UpgradeNode,
    kubeconfig: &Path,
    fallback: &str,
) -> Result<hk8s_talos_config::ComponentVersions, StepError> {
    let kube = kube(kubeconfig).await?;
    let mut versions = hk8s_talos_config::ComponentVersions::default();
    let observed = |image: Option<&str>| {
        Some(
            image
                .and_then(version_of)
                .map_or(fallback.to_owned(), |v| v.to_string()),
        )
    };
    if node.role == Role::ControlPlane {
        for component in CONTROL_PLANE_COMPONENTS {
            let pods = kube
                .static_pods(component.app(), &node.ips())
                .await
                .map_err(kube_error)?;
            let version = observed(pods.first().map(|p| p.image.as_str()));
            match component {
                Component::ApiServer => versions.apiserver = version,
                Component::ControllerManager => versions.controller_manager = version,
                Component::Scheduler => versions.scheduler = version,
            }
        }
    }
    let facts = kube.node_facts().await.map_err(kube_error)?;
    versions.kubelet = observed(
        facts
            .iter()
            .find(|f| f.name == node.name)
            .map(|f| f.kubelet_version.as_str()),
    );
    Ok(versions)
}

/// Step `<prefix>/<component>/<node>/apply`: `ApplyConfiguration` in NO_REBOOT mode with the
/// config `render` makes from the versions the node runs now (`what` names the change for the
/// journal, e.g. `kube-apiserver 1.34.1`). Re-applying an identical config changes nothing.
pub async fn apply_no_reboot<F, Fut>(
    ctx: &Ctx,
    key: &str,
    policy: &RetryPolicy,
    talos: &TalosAccess,
    node: &UpgradeNode,
    what: &str,
    render: F,
) -> Result<String, WorkflowError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u8>, StepError>>,
{
    ctx.step(key, policy, &(&node.name, what), |_| async {
        let config = render().await?;
        let client = talos.client(node).await?;
        let result = client
            .apply_configuration(&config, ApplyMode::NoReboot)
            .await
            .map_err(|e| {
                let err = talos_error(e);
                StepError {
                    message: format!(
                        "ApplyConfiguration (no reboot) on {}: {}",
                        node.name, err.message
                    ),
                    ..err
                }
            })?;
        Ok(result.mode_details)
    })
    .await
}

/// Step `<prefix>/<component>/<node>/ready`: the node's static pod of `component` runs the
/// target image and is Ready.
pub async fn wait_static_pod(
    ctx: &Ctx,
    key: &str,
    gate: &RetryPolicy,
    node: &UpgradeNode,
    component: Component,
    target: &str,
    kubeconfig: &Path,
) -> Result<String, WorkflowError> {
    ctx.step(key, gate, &(&node.name, component, target), |_| async {
        let kube = kube(kubeconfig).await?;
        let pods = kube
            .static_pods(component.app(), &node.ips())
            .await
            .map_err(kube_error)?;
        let want = version_of(target);
        match pods.iter().find(|p| version_of(&p.image) == want) {
            Some(p) if p.ready => Ok(p.uid.clone()),
            Some(p) => Err(StepError::retryable(format!(
                "gate static-pod: {} on {} runs {} but is not Ready",
                component.app(),
                node.name,
                p.image
            ))),
            None => Err(StepError::retryable(format!(
                "gate static-pod: {} on {} does not run {target} yet ({})",
                component.app(),
                node.name,
                pods.iter()
                    .map(|p| p.image.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    })
    .await
}

/// Step `<prefix>/kubelet/<node>/ready`: the node's kubelet reports the target and is Ready.
pub async fn wait_kubelet(
    ctx: &Ctx,
    key: &str,
    gate: &RetryPolicy,
    node: &UpgradeNode,
    target: &str,
    kubeconfig: &Path,
) -> Result<String, WorkflowError> {
    ctx.step(key, gate, &(&node.name, target), |_| async {
        let kube = kube(kubeconfig).await?;
        let facts = kube.node_facts().await.map_err(kube_error)?;
        let fact = facts.iter().find(|f| f.name == node.name);
        match fact {
            Some(f) if version_of(&f.kubelet_version) == version_of(target) && f.ready => {
                Ok(f.kubelet_version.clone())
            }
            Some(f) => Err(StepError::retryable(format!(
                "gate kubelet: {} reports kubelet {} (Ready {}), waiting for v{target}",
                node.name, f.kubelet_version, f.ready
            ))),
            None => Err(StepError::retryable(format!(
                "gate kubelet: {} is not registered",
                node.name
            ))),
        }
    })
    .await
}

/// APIs a Kubernetes minor removes: (minor, `group/version`, resource) — the ones clusters
/// still held objects of in the field (Kubernetes deprecation guide).
const REMOVED_APIS: &[(u64, &str, &str)] = &[
    (25, "policy/v1beta1", "poddisruptionbudgets"),
    (25, "batch/v1beta1", "cronjobs"),
    (25, "discovery.k8s.io/v1beta1", "endpointslices"),
    (25, "autoscaling/v2beta1", "horizontalpodautoscalers"),
    (26, "autoscaling/v2beta2", "horizontalpodautoscalers"),
    (26, "flowcontrol.apiserver.k8s.io/v1beta1", "flowschemas"),
    (27, "storage.k8s.io/v1beta1", "csistoragecapacities"),
    (29, "flowcontrol.apiserver.k8s.io/v1beta2", "flowschemas"),
    (32, "flowcontrol.apiserver.k8s.io/v1beta3", "flowschemas"),
];

/// The pre-check of a Kubernetes step to `target`: APIs the target removes that the cluster
/// still serves objects of. Returns the offending `resource.group/version (N objects)`.
pub async fn removed_api_objects(
    kubeconfig: &Path,
    from: &Version,
    target: &Version,
) -> Result<Vec<String>, StepError> {
    let kube = kube(kubeconfig).await?;
    let mut found = Vec::new();
    for (minor, api_version, plural) in REMOVED_APIS {
        if *minor > from.minor && *minor <= target.minor {
            let count = kube
                .objects_at(api_version, plural)
                .await
                .map_err(kube_error)?;
            if count > 0 {
                found.push(format!(
                    "{plural}.{api_version} ({count} objects; removed in 1.{minor})"
                ));
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequence(actor: &str, name: &str, action: i32, locked: bool) -> NodeEvent {
        NodeEvent {
            id: String::new(),
            actor_id: actor.into(),
            kind: NodeEventKind::Sequence {
                sequence: name.into(),
                action,
                error: locked.then(|| "sequence not started: locked".into()),
                locked,
            },
        }
    }

    #[test]
    fn a_locked_upgrade_is_one_whose_start_never_came() {
        let boot = sequence("", "boot", ACTION_START, false);
        let locked = sequence("", "", 0, true);
        let ours = sequence("a-2", "upgrade", ACTION_START, false);
        assert!(
            !not_started_locked(std::slice::from_ref(&boot), "a-2"),
            "no answer yet"
        );
        assert!(not_started_locked(&[boot.clone(), locked.clone()], "a-2"));
        // An earlier attempt was locked, this one started.
        assert!(!not_started_locked(
            &[boot.clone(), locked.clone(), ours.clone()],
            "a-2"
        ));
        // Another actor's upgrade started, ours was locked out by it.
        let theirs = sequence("b-1", "upgrade", ACTION_START, false);
        assert!(not_started_locked(&[boot, theirs, locked], "a-2"));
    }

    #[test]
    fn versions_come_from_tags_and_images() {
        assert_eq!(version_of("v1.34.1"), Some(Version::new(1, 34, 1)));
        assert_eq!(
            version_of("registry.k8s.io/kube-apiserver:v1.33.6"),
            Some(Version::new(1, 33, 6))
        );
        assert_eq!(
            version_of("ghcr.io/siderolabs/kubelet:v1.34.1-fat"),
            Some(Version::new(1, 34, 1))
        );
        assert_eq!(version_of("garbage"), None);
    }

    #[test]
    fn powercycle_only_for_old_arm64_hosts() {
        assert!(needs_powercycle("arm64", "v1.11.5"));
        assert!(!needs_powercycle("arm64", "v1.11.6"));
        assert!(!needs_powercycle("amd64", "v1.10.9"));
    }
}
