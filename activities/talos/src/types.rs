//! Plain result types returned by [`crate::TalosClient`].

use serde::{Deserialize, Serialize};

/// `ApplyConfigurationRequest.Mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyMode {
    /// Apply and reboot (`REBOOT = 0`).
    Reboot,
    /// Apply live when possible, else reboot (`AUTO = 1`).
    Auto,
    /// Apply without reboot (`NO_REBOOT = 2`); refused in maintenance mode.
    NoReboot,
    /// Apply at the next reboot (`STAGED = 3`); refused in maintenance mode.
    Staged,
    /// Apply and revert after a timeout unless confirmed (`TRY = 4`).
    Try,
}

impl ApplyMode {
    /// The protobuf enum value.
    pub fn as_i32(self) -> i32 {
        match self {
            ApplyMode::Reboot => 0,
            ApplyMode::Auto => 1,
            ApplyMode::NoReboot => 2,
            ApplyMode::Staged => 3,
            ApplyMode::Try => 4,
        }
    }

    /// The mode for a protobuf enum value (`None` for unknown values).
    pub fn from_i32(value: i32) -> Option<Self> {
        Some(match value {
            0 => ApplyMode::Reboot,
            1 => ApplyMode::Auto,
            2 => ApplyMode::NoReboot,
            3 => ApplyMode::Staged,
            4 => ApplyMode::Try,
            _ => return None,
        })
    }
}

/// Reply of `ApplyConfiguration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyResult {
    /// Validation warnings.
    pub warnings: Vec<String>,
    /// The mode the node resolved to (maintenance replies leave it unset, which decodes as
    /// `Reboot`; `None` for a value this client does not know).
    pub mode: Option<ApplyMode>,
    /// Human-readable details, e.g. "Applied configuration without a reboot".
    pub mode_details: String,
}

/// Result of `Bootstrap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BootstrapOutcome {
    /// This call bootstrapped etcd.
    Bootstrapped,
    /// etcd was already bootstrapped (`AlreadyExists` "etcd data directory is not empty").
    AlreadyBootstrapped,
}

/// Reply of `Version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeVersion {
    /// Talos version tag, e.g. `v1.11.6`.
    pub tag: String,
    /// Git commit.
    pub sha: String,
    /// Build time.
    pub built: String,
    /// Go version.
    pub go_version: String,
    /// Operating system.
    pub os: String,
    /// Architecture, e.g. `amd64`.
    pub arch: String,
    /// Platform name, e.g. `hcloud` (empty when not reported).
    pub platform_name: String,
    /// Platform mode, e.g. `cloud` (empty when not reported).
    pub platform_mode: String,
}

/// One entry of `ServiceList`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Service id, e.g. `etcd`, `kubelet`.
    pub id: String,
    /// State, e.g. `Running`, `Preparing`.
    pub state: String,
    /// Health check passes.
    pub healthy: bool,
    /// Health is not known yet.
    pub health_unknown: bool,
    /// Last health message.
    pub last_message: String,
}

impl ServiceStatus {
    /// Healthy as talosctl's checks define it: state `Running` and health `healthy`.
    pub fn is_healthy(&self) -> bool {
        self.state == "Running" && self.healthy
    }
}

/// One member of `EtcdMemberList`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdMember {
    /// Member id.
    pub id: u64,
    /// Member name (the node hostname).
    pub hostname: String,
    /// Peer URLs, e.g. `https://10.0.0.2:2380`.
    pub peer_urls: Vec<String>,
    /// Client URLs, e.g. `https://10.0.0.2:2379`.
    pub client_urls: Vec<String>,
    /// Learner (non-voting) member.
    pub is_learner: bool,
}

/// One entry of storage `Disks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskInfo {
    /// Device path, e.g. `/dev/sda`.
    pub device_name: String,
    /// Size in bytes.
    pub size: u64,
    /// Model.
    pub model: String,
    /// Serial.
    pub serial: String,
    /// WWID.
    pub wwid: String,
    /// `Disk.DiskType` value (UNKNOWN=0, SSD=1, HDD=2, NVME=3, SD=4, CD=5).
    pub disk_type: i32,
    /// Holds the Talos installation.
    pub system_disk: bool,
    /// Read-only.
    pub readonly: bool,
}

/// A system extension a node booted with (`ExtensionStatus.metadata`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    /// Extension name, e.g. `schematic` or `qemu-guest-agent`.
    pub name: String,
    /// Extension version (for `schematic`, the schematic ID).
    #[serde(default)]
    pub version: String,
}

/// Reply of `Upgrade`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeAck {
    /// Acknowledgement, "Upgrade request received".
    pub ack: String,
    /// Actor id of the upgrade sequence.
    pub actor_id: String,
}

/// Arguments of `Upgrade`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeOptions {
    /// Installer image, e.g. `factory.talos.dev/hcloud-installer/<schematic>:v1.11.6`.
    pub image: String,
    /// Preserve ephemeral data (a no-op flag in Talos v1.11).
    pub preserve: bool,
    /// Stage the upgrade for the next reboot.
    pub stage: bool,
    /// Skip the etcd health checks on control planes.
    pub force: bool,
    /// Reboot mode POWERCYCLE (a full reboot, no kexec) instead of DEFAULT.
    #[serde(default)]
    pub powercycle: bool,
}

/// One event of a node's `Events` stream, as far as hk8s reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEvent {
    /// Event id.
    pub id: String,
    /// Actor id of the sequence that emitted it (empty for none).
    pub actor_id: String,
    /// What happened.
    pub kind: NodeEventKind,
}

/// The payloads of [`NodeEvent`] hk8s tells apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeEventKind {
    /// `SequenceEvent`: a sequence started (`action` 1), stopped (2) or failed (error set).
    Sequence {
        /// Sequence name, e.g. `upgrade`.
        sequence: String,
        /// `SequenceEvent.Action` (NOOP=0, START=1, STOP=2).
        action: i32,
        /// The error text of a failed sequence.
        error: Option<String>,
        /// The error is `LOCKED`: the sequence did not start because another one holds the
        /// node's sequence lock (Talos publishes it without actor ID).
        locked: bool,
    },
    /// `MachineStatusEvent`: the machine stage (RUNNING=4, UPGRADING=8, ...) and readiness.
    MachineStatus {
        /// `MachineStage` value.
        stage: i32,
        /// Ready.
        ready: bool,
    },
    /// Any other payload, by its type URL.
    Other {
        /// The `Any` type URL.
        type_url: String,
    },
}
