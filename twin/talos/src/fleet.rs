//! [`TalosFleet`]: state shared by all simulated Talos nodes of one twin.
//!
//! Clusters are keyed by their OS CA (SHA-256 of the `machine.ca.crt` DER, hex): nodes whose
//! configs carry the same OS CA trust each other, as apid does. A cluster records the OS CA key
//! supplied by a control plane config (see the crate docs for why workers need it), whether etcd
//! was bootstrapped, and the etcd members.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::config::{MachineRole, SecretPem};
use crate::hooks::{ClusterHooks, InstallerRegistry, UpgradeFaultKind};
use crate::node_state::{NodePhase, NodeShared, NodeStatus};

/// Shared state of the simulated Talos nodes of one twin. Cheap to clone; no globals.
#[derive(Clone)]
pub struct TalosFleet {
    inner: Arc<FleetInner>,
}

impl Default for TalosFleet {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for TalosFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("TalosFleet")
            .field("nodes", &state.nodes.keys().collect::<Vec<_>>())
            .field("clusters", &state.clusters.len())
            .finish()
    }
}

struct FleetInner {
    state: Mutex<FleetState>,
    changed: watch::Sender<u64>,
}

#[derive(Default)]
pub(crate) struct FleetState {
    pub(crate) nodes: HashMap<Ipv4Addr, Arc<NodeShared>>,
    pub(crate) clusters: HashMap<String, ClusterState>,
    faults: Vec<Fault>,
    calls: HashMap<(Ipv4Addr, String), u64>,
    upgrade_faults: Vec<UpgradeFault>,
    next_fault_id: u64,
    pub(crate) installers: Option<Arc<dyn InstallerRegistry>>,
    pub(crate) cluster_hooks: Option<Arc<dyn ClusterHooks>>,
}

/// An upgrade fault installed on demand: the next matching accepted Upgrade runs into it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UpgradeFault {
    /// Fault ID (assigned by [`TalosFleet::add_upgrade_fault`]).
    #[serde(default)]
    pub id: u64,
    /// Node (IP) whose upgrades it hits; `None`: any node.
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    /// What happens.
    pub kind: UpgradeFaultKind,
    /// Upgrades it hits before it is used up (0: every one until cleared). Default 1.
    #[serde(default = "one")]
    pub count: u32,
    /// Upgrades it hit so far.
    #[serde(default)]
    pub fired: u64,
}

fn one() -> u32 {
    1
}

/// An injected failure: the matching calls get a gRPC error instead of being served.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fault {
    /// Node whose calls fail (`None`: every node).
    pub ip: Option<Ipv4Addr>,
    /// Method name, e.g. `Bootstrap`, `ApplyConfiguration`, `Disks`; `*` for every method.
    pub method: String,
    /// gRPC status code number (e.g. 14 = Unavailable).
    pub code: i32,
    /// Status message.
    pub message: String,
    /// Matching calls to let through first (fail from call `skip + 1` on).
    pub skip: u32,
    /// How many calls fail, after which the fault is removed; 0: every matching call until
    /// [`TalosFleet::clear_faults`].
    pub times: u32,
}

/// Number of calls a node served for one method.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CallCount {
    /// Node that received the call.
    pub ip: Ipv4Addr,
    /// Method name, e.g. `Bootstrap`.
    pub method: String,
    /// Calls.
    pub count: u64,
}

/// One Talos cluster (one OS CA).
#[derive(Default)]
pub(crate) struct ClusterState {
    pub(crate) cluster_name: String,
    pub(crate) os_ca_key_pem: Option<SecretPem>,
    pub(crate) bootstrapped: bool,
    pub(crate) bootstraps: u64,
    pub(crate) members: Vec<Member>,
    /// Fewest healthy etcd members seen since the bootstrap or the last counter reset.
    pub(crate) min_healthy: Option<u64>,
    /// The 60 s etcd upgrade mutex of the pre-checks is held.
    pub(crate) upgrade_mutex: bool,
}

/// An etcd member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) id: u64,
    pub(crate) hostname: String,
    pub(crate) ip: Ipv4Addr,
}

/// A cluster as seen in a state dump.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClusterStatus {
    /// Cluster key: SHA-256 (hex) of the OS CA certificate DER.
    pub key: String,
    /// `cluster.clusterName` of the configs seen.
    pub cluster_name: String,
    /// etcd was bootstrapped.
    pub bootstrapped: bool,
    /// Bootstrap calls that succeeded (a correct client makes exactly one).
    pub successful_bootstraps: u64,
    /// A control plane supplied the OS CA key (workers can get apid certificates).
    pub has_os_ca_key: bool,
    /// etcd members as (hostname, IP), in join order.
    pub etcd_members: Vec<(String, Ipv4Addr)>,
    /// Members whose etcd runs now (node up, services not stopped by an upgrade).
    pub healthy_etcd_members: u64,
    /// Fewest healthy members seen since the bootstrap or the last
    /// [`TalosFleet::reset_upgrade_counters`] (`None` before the bootstrap).
    pub min_healthy_etcd_members: Option<u64>,
}

pub(crate) fn member_id(ip: Ipv4Addr) -> u64 {
    let digest = Sha256::digest(ip.octets());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes)
}

impl TalosFleet {
    /// An empty fleet.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(FleetInner {
                state: Mutex::new(FleetState::default()),
                changed: watch::Sender::new(0),
            }),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, FleetState> {
        // A poisoned lock only means a panicking test thread; the state itself stays usable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn notify(&self) {
        self.inner.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    /// A receiver that changes whenever a node is added or removed or reaches `Running`, or a
    /// cluster is registered, bootstrapped or gains an etcd member. (Per-node phases:
    /// [`crate::NodeHandle::wait_until`].)
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.subscribe()
    }

    /// Status of every node, ordered by IP.
    pub fn nodes(&self) -> Vec<NodeStatus> {
        let nodes: Vec<Arc<NodeShared>> = self.lock().nodes.values().cloned().collect();
        let mut out: Vec<_> = nodes.iter().map(|n| self.status_of(n)).collect();
        out.sort_by_key(|s| s.ip);
        out
    }

    /// Status of the node at `ip`, if the fleet has one.
    pub fn node(&self, ip: Ipv4Addr) -> Option<NodeStatus> {
        let node = self.lock().nodes.get(&ip).cloned()?;
        Some(self.status_of(&node))
    }

    /// Sets the speed factor of every node (delays already running keep their length).
    /// Ignored unless positive and finite.
    pub fn set_speed(&self, speed: f64) {
        if !(speed.is_finite() && speed > 0.0) {
            return;
        }
        for node in self.lock().nodes.values() {
            node.set_speed(speed);
        }
    }

    /// Makes matching calls fail with `fault.code` (see [`Fault`]).
    pub fn inject_fault(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Calls served so far, per node and method, ordered by IP then method.
    pub fn call_counts(&self) -> Vec<CallCount> {
        let state = self.lock();
        let mut out: Vec<CallCount> = state
            .calls
            .iter()
            .map(|((ip, method), count)| CallCount {
                ip: *ip,
                method: method.clone(),
                count: *count,
            })
            .collect();
        out.sort_by(|a, b| (a.ip, &a.method).cmp(&(b.ip, &b.method)));
        out
    }

    /// Counts a call and returns the fault to answer it with, if one matches.
    pub(crate) fn record_call(&self, ip: Ipv4Addr, method: &str) -> Option<tonic::Status> {
        let mut state = self.lock();
        *state.calls.entry((ip, method.to_string())).or_default() += 1;
        let index = state.faults.iter().position(|f| {
            f.ip.is_none_or(|i| i == ip) && (f.method == "*" || f.method == method)
        })?;
        let fault = &mut state.faults[index];
        if fault.skip > 0 {
            fault.skip -= 1;
            return None;
        }
        let status = tonic::Status::new(tonic::Code::from_i32(fault.code), fault.message.clone());
        if fault.times > 0 {
            fault.times -= 1;
            if fault.times == 0 {
                state.faults.remove(index);
            }
        }
        Some(status)
    }

    /// The shared state of the node at `ip`.
    pub(crate) fn node_shared(&self, ip: Ipv4Addr) -> Option<Arc<NodeShared>> {
        self.lock().nodes.get(&ip).cloned()
    }

    /// The status of one node: its own state plus its cluster's etcd membership.
    pub(crate) fn status_of(&self, node: &NodeShared) -> NodeStatus {
        let hostname = node.hostname();
        let key = node.cluster_key();
        let (phase, role, cluster_name, version, boots) = {
            let s = node.lock();
            (
                s.phase.clone(),
                s.config.as_ref().map(|c| c.role),
                s.config.as_ref().map(|c| c.cluster_name.clone()),
                s.version.clone(),
                s.boots,
            )
        };
        let (etcd_member, cluster_bootstrapped) = match &key {
            Some(key) => (
                self.members(key).iter().any(|m| m.ip == node.ip),
                self.is_bootstrapped(key),
            ),
            None => (false, false),
        };
        let s = node.lock();
        NodeStatus {
            ip: node.ip,
            hostname,
            phase,
            role,
            cluster_name,
            cluster_key: key.clone(),
            talos_version: version,
            etcd_member,
            cluster_bootstrapped,
            boots,
            boot_id: s.boot_id.clone(),
            schematic: s.schematic.clone(),
            platform: s.platform.clone(),
            services_up: s.services_up,
            upgrade_rpcs_accepted: s.upgrade_rpcs_accepted,
            upgrades_started: s.upgrades_started,
            upgrade: s.upgrade.clone(),
            last_upgrade: s.last_upgrade.clone(),
        }
    }

    /// Every cluster the fleet has seen, ordered by key.
    pub fn clusters(&self) -> Vec<ClusterStatus> {
        let state = self.lock();
        let mut out: Vec<_> = state
            .clusters
            .iter()
            .map(|(key, c)| ClusterStatus {
                key: key.clone(),
                cluster_name: c.cluster_name.clone(),
                bootstrapped: c.bootstrapped,
                successful_bootstraps: c.bootstraps,
                has_os_ca_key: c.os_ca_key_pem.is_some(),
                etcd_members: c
                    .members
                    .iter()
                    .map(|m| (m.hostname.clone(), m.ip))
                    .collect(),
                healthy_etcd_members: healthy_count(&state, c),
                min_healthy_etcd_members: c.min_healthy,
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Records a configured node's cluster; a control plane also supplies the OS CA key.
    pub(crate) fn register_config(
        &self,
        key: &str,
        cluster_name: &str,
        role: MachineRole,
        os_ca_key_pem: Option<&SecretPem>,
    ) {
        {
            let mut state = self.lock();
            let cluster = state.clusters.entry(key.to_string()).or_default();
            if cluster.cluster_name.is_empty() {
                cluster.cluster_name = cluster_name.to_string();
            }
            if role == MachineRole::ControlPlane
                && cluster.os_ca_key_pem.is_none()
                && let Some(pem) = os_ca_key_pem
            {
                cluster.os_ca_key_pem = Some(pem.clone());
            }
        }
        self.notify();
    }

    pub(crate) fn os_ca_key(&self, key: &str) -> Option<SecretPem> {
        self.lock().clusters.get(key)?.os_ca_key_pem.clone()
    }

    /// Bootstraps etcd on `node`: it becomes the first member and every other running control
    /// plane of the cluster joins. `Err(())` when the cluster was already bootstrapped.
    pub(crate) fn bootstrap(&self, key: &str, ip: Ipv4Addr, hostname: &str) -> Result<(), ()> {
        {
            let mut state = self.lock();
            let running_cps: Vec<(Ipv4Addr, String)> = state
                .nodes
                .values()
                .filter(|n| n.ip != ip && n.is_running_cp_of(key))
                .map(|n| (n.ip, n.hostname()))
                .collect();
            let cluster = state.clusters.entry(key.to_string()).or_default();
            if cluster.bootstrapped {
                return Err(());
            }
            cluster.bootstrapped = true;
            cluster.bootstraps += 1;
            cluster.members.push(Member {
                id: member_id(ip),
                hostname: hostname.to_string(),
                ip,
            });
            for (ip, hostname) in running_cps {
                cluster.members.push(Member {
                    id: member_id(ip),
                    hostname,
                    ip,
                });
            }
        }
        self.notify();
        Ok(())
    }

    /// A control plane reached Running: it joins etcd if the cluster is bootstrapped.
    pub(crate) fn control_plane_running(&self, key: &str, ip: Ipv4Addr, hostname: &str) {
        let joined = {
            let mut state = self.lock();
            match state.clusters.get_mut(key) {
                Some(cluster)
                    if cluster.bootstrapped && !cluster.members.iter().any(|m| m.ip == ip) =>
                {
                    cluster.members.push(Member {
                        id: member_id(ip),
                        hostname: hostname.to_string(),
                        ip,
                    });
                    true
                }
                _ => false,
            }
        };
        if joined {
            self.notify();
        }
    }

    pub(crate) fn members(&self, key: &str) -> Vec<Member> {
        self.lock()
            .clusters
            .get(key)
            .map(|c| c.members.clone())
            .unwrap_or_default()
    }

    pub(crate) fn is_bootstrapped(&self, key: &str) -> bool {
        self.lock()
            .clusters
            .get(key)
            .is_some_and(|c| c.bootstrapped)
    }

    /// Finds a node by IP or hostname (the `node` metadata target).
    pub(crate) fn lookup(&self, target: &str) -> Option<Arc<NodeShared>> {
        let state = self.lock();
        if let Ok(ip) = target.parse::<Ipv4Addr>() {
            return state.nodes.get(&ip).cloned();
        }
        state
            .nodes
            .values()
            .find(|n| n.hostname() == target)
            .cloned()
    }
}

/// Whether the etcd of the member at `ip` runs: its node is up and its services run.
fn member_healthy(state: &FleetState, ip: Ipv4Addr) -> bool {
    state.nodes.get(&ip).is_some_and(|n| {
        let s = n.lock();
        matches!(s.phase, NodePhase::Running | NodePhase::Upgrading) && s.services_up
    })
}

fn healthy_count(state: &FleetState, cluster: &ClusterState) -> u64 {
    cluster
        .members
        .iter()
        .filter(|m| member_healthy(state, m.ip))
        .count() as u64
}

impl TalosFleet {
    /// Sets the registry that decides which installer images exist (default: any well-formed
    /// reference, see [`crate::hooks::parse_installer`]).
    pub fn set_installer_registry(&self, registry: Arc<dyn InstallerRegistry>) {
        self.lock().installers = Some(registry);
    }

    /// Sets the Kubernetes side of upgrades (cordon, drain, uncordon). Without it, upgrades
    /// skip cordon and drain as a node without kubelet registration does.
    pub fn set_cluster_hooks(&self, hooks: Arc<dyn ClusterHooks>) {
        self.lock().cluster_hooks = Some(hooks);
    }

    pub(crate) fn cluster_hooks(&self) -> Option<Arc<dyn ClusterHooks>> {
        self.lock().cluster_hooks.clone()
    }

    pub(crate) fn installers(&self) -> Option<Arc<dyn InstallerRegistry>> {
        self.lock().installers.clone()
    }

    /// Installs an upgrade fault; returns its ID.
    pub fn add_upgrade_fault(&self, mut fault: UpgradeFault) -> u64 {
        let mut state = self.lock();
        state.next_fault_id += 1;
        fault.id = state.next_fault_id;
        fault.fired = 0;
        let id = fault.id;
        state.upgrade_faults.push(fault);
        id
    }

    /// The installed upgrade faults with their counters.
    pub fn upgrade_faults(&self) -> Vec<UpgradeFault> {
        self.lock().upgrade_faults.clone()
    }

    /// Removes every upgrade fault.
    pub fn clear_upgrade_faults(&self) {
        self.lock().upgrade_faults.clear();
    }

    /// The fault an upgrade accepted on `ip` runs into (counted as fired).
    pub(crate) fn take_upgrade_fault(&self, ip: Ipv4Addr) -> Option<UpgradeFaultKind> {
        let mut state = self.lock();
        let index = state.upgrade_faults.iter().position(|f| {
            f.ip.is_none_or(|i| i == ip) && (f.count == 0 || f.fired < u64::from(f.count))
        })?;
        let fault = &mut state.upgrade_faults[index];
        fault.fired += 1;
        Some(fault.kind)
    }

    /// Records the healthy etcd member count of every bootstrapped cluster (the minimum since
    /// the bootstrap or the last reset). Called at every change of a node's phase or services.
    pub(crate) fn observe_etcd(&self) {
        let mut state = self.lock();
        let counts: Vec<(String, u64)> = state
            .clusters
            .iter()
            .filter(|(_, c)| c.bootstrapped)
            .map(|(k, c)| (k.clone(), healthy_count(&state, c)))
            .collect();
        for (key, healthy) in counts {
            if let Some(c) = state.clusters.get_mut(&key) {
                c.min_healthy = Some(c.min_healthy.map_or(healthy, |m| m.min(healthy)));
            }
        }
    }

    /// Resets the upgrade counters: each cluster's minimum healthy etcd members becomes the
    /// current count, and every node's Upgrade RPC and sequence counts go to 0.
    pub fn reset_upgrade_counters(&self) {
        {
            let mut state = self.lock();
            for node in state.nodes.values() {
                let mut s = node.lock();
                s.upgrade_rpcs_accepted = 0;
                s.upgrades_started = 0;
            }
            let keys: Vec<String> = state.clusters.keys().cloned().collect();
            for key in keys {
                let healthy = state.clusters.get(&key).map(|c| healthy_count(&state, c));
                if let Some(c) = state.clusters.get_mut(&key) {
                    c.min_healthy = if c.bootstrapped { healthy } else { None };
                }
            }
        }
        self.notify();
    }

    /// Whether the etcd member at `ip` is healthy.
    pub(crate) fn is_member_healthy(&self, ip: Ipv4Addr) -> bool {
        member_healthy(&self.lock(), ip)
    }

    /// Takes the cluster's etcd upgrade mutex; false when another pre-check holds it.
    pub(crate) fn try_lock_upgrade_mutex(&self, key: &str) -> bool {
        let mut state = self.lock();
        let c = state.clusters.entry(key.to_string()).or_default();
        if c.upgrade_mutex {
            return false;
        }
        c.upgrade_mutex = true;
        true
    }

    /// Releases the cluster's etcd upgrade mutex.
    pub(crate) fn unlock_upgrade_mutex(&self, key: &str) {
        if let Some(c) = self.lock().clusters.get_mut(key) {
            c.upgrade_mutex = false;
        }
    }
}
