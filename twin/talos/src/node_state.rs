//! The state of one node that its lifecycle task, its API handlers and the fleet share:
//! [`NodeShared`] (phase, configs, speed, event channel), the phases and events, the node
//! options, and the cluster key the fleet files nodes under. A leaf: it imports no server,
//! handler or fleet code.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

use crate::config::{MachineConfig, MachineRole};
use crate::hooks::UpgradeFaultKind;
use crate::proto;

/// Events kept per boot (Talos `NewEvents(1000, 10)`).
pub(crate) const EVENT_BUFFER: usize = 1000;

/// The cluster key of an OS CA certificate PEM.
pub(crate) fn cluster_key(os_ca_crt_pem: &str) -> String {
    match crate::pki::cert_der(os_ca_crt_pem) {
        Some(der) => hex::encode(Sha256::digest(der.as_ref())),
        None => hex::encode(Sha256::digest(os_ca_crt_pem.as_bytes())),
    }
}

/// Options of one simulated node.
#[derive(Clone)]
pub struct NodeOptions {
    /// The server's public IPv4 (tests: `127.x.y.z`, never `127.0.0.1`).
    pub ip: Ipv4Addr,
    /// Hostname (the Hetzner server name); `machine.network.hostname` overrides it.
    pub hostname: String,
    /// Talos version of the booted image, e.g. `v1.11.6`.
    pub talos_version: String,
    /// Architecture reported by `Version`, e.g. `amd64`.
    pub arch: String,
    /// Time speed factor: every delay is divided by it (changeable later with
    /// [`crate::TalosFleet::set_speed`]).
    pub speed: f64,
    /// From power-on until the API listens.
    pub boot_delay: Duration,
    /// After ApplyConfiguration in maintenance mode: install and reboot, before the configured
    /// boot (which then takes `boot_delay`).
    pub install_delay: Duration,
    /// Reboot (and upgrade) downtime, before the next boot.
    pub reboot_delay: Duration,
    /// API port (Talos: 50000).
    pub port: u16,
    /// Size of the system disk reported by `Disks`.
    pub disk_size_bytes: u64,
    /// Hetzner `user_data`: a valid machine config here boots the node configured, skipping
    /// maintenance mode (Talos's hcloud platform reads it from the metadata service).
    pub user_data: Option<Vec<u8>>,
    /// Schematic ID of the booted image (the vanilla ID by default).
    pub schematic: String,
    /// Upgrade RPC: the synchronous installer pull before the reply (skipped when the image was
    /// pulled before on this node).
    pub pull_delay: Duration,
    /// Upgrade sequence: each phase other than drain, the installer and the reboot.
    pub phase_delay: Duration,
    /// Upgrade sequence: the installer writing the other boot slot.
    pub installer_delay: Duration,
}

impl fmt::Debug for NodeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeOptions")
            .field("ip", &self.ip)
            .field("hostname", &self.hostname)
            .field("talos_version", &self.talos_version)
            .field("speed", &self.speed)
            .field("boot_delay", &self.boot_delay)
            .field("install_delay", &self.install_delay)
            .field("reboot_delay", &self.reboot_delay)
            .field("port", &self.port)
            .field("user_data", &self.user_data.as_ref().map(|d| d.len()))
            .field("schematic", &self.schematic)
            .field("pull_delay", &self.pull_delay)
            .finish_non_exhaustive()
    }
}

impl NodeOptions {
    /// Options with realistic delays (boot 30 s, install 60 s, reboot 30 s, installer pull
    /// 20 s, upgrade phases 1 s, installer 20 s) at speed 1.
    pub fn new(
        ip: Ipv4Addr,
        hostname: impl Into<String>,
        talos_version: impl Into<String>,
    ) -> Self {
        Self {
            ip,
            hostname: hostname.into(),
            talos_version: talos_version.into(),
            arch: "amd64".into(),
            speed: 1.0,
            boot_delay: Duration::from_secs(30),
            install_delay: Duration::from_secs(60),
            reboot_delay: Duration::from_secs(30),
            port: 50000,
            disk_size_bytes: 40 * 1024 * 1024 * 1024,
            user_data: None,
            schematic: crate::hooks::VANILLA_SCHEMATIC.into(),
            pull_delay: Duration::from_secs(20),
            phase_delay: Duration::from_secs(1),
            installer_delay: Duration::from_secs(20),
        }
    }
}

/// Where a node is in its life.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum NodePhase {
    /// Powered off: nothing listens.
    Off,
    /// Booting: nothing listens yet.
    Booting,
    /// Maintenance API on `<ip>:50000` (no config yet).
    Maintenance,
    /// Installing and rebooting after ApplyConfiguration: nothing listens.
    Installing,
    /// Configured worker waiting for a control plane of its cluster to issue its apid
    /// certificate (trustd); nothing listens.
    WaitingForCertificates,
    /// Configured: mTLS API on `<ip>:50000`.
    Running,
    /// Rebooting: nothing listens.
    Rebooting,
    /// The upgrade sequence runs (cordon, drain, stop services, installer): the API still
    /// listens; it ends in `Rebooting`.
    Upgrading,
    /// The API could not start (e.g. the port was taken); the text says why.
    Failed(String),
    /// Deleted: the node left the fleet.
    Deleted,
}

/// A node as seen in a state dump or by a test.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeStatus {
    /// IPv4 address.
    pub ip: Ipv4Addr,
    /// Effective hostname.
    pub hostname: String,
    /// Lifecycle phase.
    pub phase: NodePhase,
    /// Role from the applied config.
    pub role: Option<MachineRole>,
    /// `cluster.clusterName` of the applied config.
    pub cluster_name: Option<String>,
    /// SHA-256 (hex) of the applied config's OS CA certificate (the key of its cluster in
    /// [`crate::ClusterStatus`]): nodes given one secrets bundle share it.
    pub cluster_key: Option<String>,
    /// Running Talos version tag.
    pub talos_version: String,
    /// Member of its cluster's etcd.
    pub etcd_member: bool,
    /// Its cluster's etcd was bootstrapped.
    pub cluster_bootstrapped: bool,
    /// Completed boots (maintenance or configured API came up).
    pub boots: u64,
    /// `/proc/sys/kernel/random/boot_id` of the current boot (new at every boot).
    pub boot_id: String,
    /// Schematic ID of the installed image.
    pub schematic: String,
    /// Platform of the installed image (`hcloud`; `metal` after a metal installer).
    pub platform: String,
    /// kubelet, etcd (control planes) and the other services run (false from the upgrade's
    /// `stopServices` phase until the next boot, and while the API is down).
    pub services_up: bool,
    /// Upgrade RPCs answered with an ack (including ones that then hit the sequence lock).
    pub upgrade_rpcs_accepted: u64,
    /// Upgrade sequences started.
    pub upgrades_started: u64,
    /// The upgrade sequence running now.
    pub upgrade: Option<UpgradeRun>,
    /// The last upgrade that ended, with its outcome.
    pub last_upgrade: Option<UpgradeRecord>,
}

/// An accepted upgrade (what the RPC asked for and how far the sequence is).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UpgradeRun {
    /// The actor ID returned by the RPC.
    pub actor_id: String,
    /// `UpgradeRequest.image`.
    pub image: String,
    /// Version the installer installs.
    pub target_version: String,
    /// Schematic the installer installs.
    pub target_schematic: String,
    /// Platform the installer writes.
    pub target_platform: String,
    /// `stage`.
    pub stage: bool,
    /// `force`.
    pub force: bool,
    /// `reboot_mode` (0 DEFAULT, 1 POWERCYCLE).
    pub reboot_mode: i32,
    /// The current phase of the sequence.
    pub phase: String,
    /// Injected fault this upgrade runs into.
    pub fault: Option<UpgradeFaultKind>,
}

/// How an upgrade ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UpgradeRecord {
    /// The upgrade's actor ID.
    pub actor_id: String,
    /// Version before.
    pub from_version: String,
    /// Version asked for.
    pub target_version: String,
    /// `upgraded`, `rolled_back` (the new version failed to boot), `failed` (a sequence error:
    /// rebooted into the old version), `never_returned` or `staged` (installs at next boot).
    pub outcome: String,
    /// The sequence error, when it failed.
    pub error: Option<String>,
    /// Cordon result: `cordoned`, `already_unschedulable`, `no_node` or `skipped` (staged).
    pub cordon: String,
    /// Pods evicted by the drain.
    pub evicted: u64,
    /// Evictions refused with 429 (retried every 5 s).
    pub eviction_refusals: u64,
    /// The drain gave up after its 5 minutes (the remaining pods were killed with the node).
    pub drain_gave_up: bool,
}

#[derive(Debug)]
pub(crate) enum NodeEvent {
    /// A config was accepted in maintenance mode.
    Applied,
    /// Reboot requested (Reboot RPC or a config change needing one).
    Reboot,
    /// Run the upgrade sequence (the RPC already recorded it as `NodeState::upgrade`).
    Upgrade(Box<UpgradeRun>),
    PowerOff,
    PowerOn,
    Delete,
}

pub(crate) struct NodeState {
    pub(crate) phase: NodePhase,
    pub(crate) config: Option<Arc<MachineConfig>>,
    pub(crate) staged: Option<Arc<MachineConfig>>,
    pub(crate) version: String,
    pub(crate) boots: u64,
    pub(crate) boot_id: String,
    pub(crate) schematic: String,
    pub(crate) platform: String,
    pub(crate) services_up: bool,
    pub(crate) upgrade_rpcs_accepted: u64,
    pub(crate) upgrades_started: u64,
    pub(crate) upgrade: Option<UpgradeRun>,
    pub(crate) last_upgrade: Option<UpgradeRecord>,
    /// Installer images pulled into the system containerd (kept across reboots).
    pub(crate) pulled: HashSet<String>,
    /// The next boot installs this (version, schematic, platform): a staged upgrade, or the
    /// new slot of a node that hung and is power cycled.
    pub(crate) pending: Option<(String, String, String)>,
    pub(crate) events: EventBus,
}

/// The events of the current boot and the open `Events` streams.
#[derive(Default)]
pub(crate) struct EventBus {
    pub(crate) buffer: VecDeque<(Instant, proto::Event)>,
    pub(crate) subscribers: Vec<tokio::sync::mpsc::UnboundedSender<proto::Event>>,
}

static EVENT_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A sortable event ID (Talos uses xids: 20 characters).
pub(crate) fn event_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let n = EVENT_SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{:08x}{:012x}", secs & 0xffff_ffff, n & 0xffff_ffff_ffff)
}

impl NodeState {
    /// Starts the event log of a new boot: the old buffer goes and open streams end (EOF).
    pub(crate) fn new_boot_events(&mut self) {
        self.events = EventBus::default();
    }

    /// Publishes one event (`name` is the message name, e.g. `SequenceEvent`).
    pub(crate) fn publish(&mut self, actor_id: &str, name: &str, msg: &impl prost::Message) {
        let event = proto::Event {
            metadata: None,
            data: Some(proto::event_any(name, msg)),
            id: event_id(),
            actor_id: actor_id.to_string(),
        };
        let bus = &mut self.events;
        bus.subscribers.retain(|s| s.send(event.clone()).is_ok());
        bus.buffer.push_back((Instant::now(), event));
        while bus.buffer.len() > EVENT_BUFFER {
            bus.buffer.pop_front();
        }
    }

    /// Publishes a `MachineStatusEvent`.
    pub(crate) fn publish_stage(&mut self, stage: i32, ready: bool, unmet: &[(&str, &str)]) {
        self.publish(
            "",
            "MachineStatusEvent",
            &proto::MachineStatusEvent {
                stage,
                status: Some(proto::MachineStatus {
                    ready,
                    unmet_conditions: unmet
                        .iter()
                        .map(|(n, r)| proto::UnmetCondition {
                            name: n.to_string(),
                            reason: r.to_string(),
                        })
                        .collect(),
                }),
            },
        );
    }
}

/// State of one node shared by its lifecycle task, its API servers and the fleet.
pub(crate) struct NodeShared {
    pub(crate) ip: Ipv4Addr,
    /// Current speed factor (f64 bits); starts at `opts.speed`, changed by
    /// [`crate::TalosFleet::set_speed`].
    pub(crate) speed: AtomicU64,
    pub(crate) opts: NodeOptions,
    pub(crate) state: Mutex<NodeState>,
    pub(crate) events: mpsc::UnboundedSender<NodeEvent>,
    pub(crate) phase_tx: watch::Sender<NodePhase>,
}

impl NodeShared {
    pub(crate) fn scaled(&self, d: Duration) -> Duration {
        d.div_f64(f64::from_bits(self.speed.load(Ordering::Relaxed)))
    }

    pub(crate) fn set_speed(&self, speed: f64) {
        self.speed.store(speed.to_bits(), Ordering::Relaxed);
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, NodeState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn send(&self, event: NodeEvent) {
        // The task ends only on Delete; a send after that has nothing to reach.
        let _ = self.events.send(event);
    }

    pub(crate) fn set_phase(&self, phase: NodePhase) {
        self.lock().phase = phase.clone();
        self.phase_tx.send_replace(phase);
    }

    pub(crate) fn phase(&self) -> NodePhase {
        self.lock().phase.clone()
    }

    pub(crate) fn config(&self) -> Option<Arc<MachineConfig>> {
        self.lock().config.clone()
    }

    /// Effective hostname: `machine.network.hostname`, else the server name.
    pub(crate) fn hostname(&self) -> String {
        self.lock()
            .config
            .as_ref()
            .and_then(|c| c.hostname.clone())
            .unwrap_or_else(|| self.opts.hostname.clone())
    }

    pub(crate) fn cluster_key(&self) -> Option<String> {
        self.lock()
            .config
            .as_ref()
            .map(|c| cluster_key(&c.os_ca_crt_pem))
    }

    pub(crate) fn is_running_cp_of(&self, key: &str) -> bool {
        let state = self.lock();
        state.phase == NodePhase::Running
            && state.config.as_ref().is_some_and(|c| {
                c.role == MachineRole::ControlPlane && cluster_key(&c.os_ca_crt_pem) == key
            })
    }
}

impl NodeShared {
    /// Takes a config in maintenance mode; false when the node already left maintenance (a
    /// concurrent apply won).
    pub(crate) fn accept_maintenance_config(&self, config: MachineConfig) -> bool {
        {
            let mut state = self.lock();
            if state.phase != NodePhase::Maintenance {
                return false;
            }
            state.config = Some(Arc::new(config));
            state.phase = NodePhase::Installing;
        }
        self.phase_tx.send_replace(NodePhase::Installing);
        true
    }
}
