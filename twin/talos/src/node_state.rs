//! The state of one node that its lifecycle task, its API handlers and the fleet share:
//! [`NodeShared`] (phase, configs, speed, event channel), the phases and events, the node
//! options, and the cluster key the fleet files nodes under. A leaf: it imports no server,
//! handler or fleet code.

use std::fmt;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

use crate::config::{MachineConfig, MachineRole};

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
            .finish()
    }
}

impl NodeOptions {
    /// Options with realistic delays (boot 30 s, install 60 s, reboot 30 s) at speed 1.
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
    /// Upgrading and rebooting: nothing listens.
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
}

#[derive(Debug)]
pub(crate) enum NodeEvent {
    /// A config was accepted in maintenance mode.
    Applied,
    /// Reboot requested (Reboot RPC or a config change needing one).
    Reboot,
    /// Upgrade to this version tag.
    Upgrade(String),
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
