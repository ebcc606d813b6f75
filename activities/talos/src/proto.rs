//! Hand-written prost messages for the subset of the Talos machine API this client calls.
//!
//! Field numbers follow Talos v1.11.6 `api/common/common.proto`, `api/machine/machine.proto` and
//! `api/storage/storage.proto` (restated in the project's Talos reference, §3), and the COSI
//! specification's `v1alpha1/resource.proto` and `state.proto` (package `cosi.resource`). Only
//! the fields the client reads or sends are declared; prost skips unknown fields when decoding.

/// Messages of the `common` and `google.rpc` packages.
pub mod common {
    /// `google.rpc.Status`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RpcStatus {
        /// gRPC status code.
        #[prost(int32, tag = "1")]
        pub code: i32,
        /// Error message.
        #[prost(string, tag = "2")]
        pub message: String,
    }

    /// `common.Metadata`: set by apid on one-to-many proxied responses.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metadata {
        /// Node the message came from.
        #[prost(string, tag = "1")]
        pub hostname: String,
        /// Per-node error text.
        #[prost(string, tag = "2")]
        pub error: String,
        /// Per-node error status.
        #[prost(message, optional, tag = "3")]
        pub status: Option<RpcStatus>,
    }

    /// `common.Data`: one chunk of a byte stream.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Data {
        /// Proxy metadata.
        #[prost(message, optional, tag = "1")]
        pub metadata: Option<Metadata>,
        /// Payload bytes.
        #[prost(bytes = "vec", tag = "2")]
        pub bytes: Vec<u8>,
    }

    /// `google.protobuf.Empty`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Empty {}

    /// `google.protobuf.Any`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        /// Type URL, e.g. `talos/runtime/machine.SequenceEvent`.
        #[prost(string, tag = "1")]
        pub type_url: String,
        /// The encoded message.
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    /// `common.Error` (code FATAL=0, LOCKED=1, CANCELED=2).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Error {
        /// `common.Code`.
        #[prost(int32, tag = "1")]
        pub code: i32,
        /// Error text.
        #[prost(string, tag = "2")]
        pub message: String,
    }
}

/// Messages of the `machine` package.
pub mod machine {
    use super::common::Metadata;

    /// `machine.ApplyConfigurationRequest`. Its `Debug` output never shows the configuration bytes.
    #[derive(Clone, PartialEq, prost::Message)]
    #[prost(skip_debug)]
    pub struct ApplyConfigurationRequest {
        /// Machine configuration document(s).
        #[prost(bytes = "vec", tag = "1")]
        pub data: Vec<u8>,
        /// `ApplyConfigurationRequest.Mode`.
        #[prost(int32, tag = "4")]
        pub mode: i32,
        /// Validate only.
        #[prost(bool, tag = "5")]
        pub dry_run: bool,
        /// Revert timeout for TRY mode.
        #[prost(message, optional, tag = "6")]
        pub try_mode_timeout: Option<prost_types::Duration>,
    }

    impl std::fmt::Debug for ApplyConfigurationRequest {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("ApplyConfigurationRequest")
                .field(
                    "data",
                    &format_args!("<{} bytes redacted>", self.data.len()),
                )
                .field("mode", &self.mode)
                .field("dry_run", &self.dry_run)
                .field("try_mode_timeout", &self.try_mode_timeout)
                .finish()
        }
    }

    /// `machine.ApplyConfiguration`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ApplyConfiguration {
        /// Proxy metadata.
        #[prost(message, optional, tag = "1")]
        pub metadata: Option<Metadata>,
        /// Validation warnings.
        #[prost(string, repeated, tag = "2")]
        pub warnings: Vec<String>,
        /// Resolved mode.
        #[prost(int32, tag = "3")]
        pub mode: i32,
        /// Human-readable mode details.
        #[prost(string, tag = "4")]
        pub mode_details: String,
    }

    /// `machine.ApplyConfigurationResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ApplyConfigurationResponse {
        /// One message per node.
        #[prost(message, repeated, tag = "1")]
        pub messages: Vec<ApplyConfiguration>,
    }

    /// `machine.BootstrapRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BootstrapRequest {
        /// Recover etcd from a snapshot.
        #[prost(bool, tag = "1")]
        pub recover_etcd: bool,
        /// Skip the snapshot hash check.
        #[prost(bool, tag = "2")]
        pub recover_skip_hash_check: bool,
    }

    /// `machine.Bootstrap`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Bootstrap {
        /// Proxy metadata.
        #[prost(message, optional, tag = "1")]
        pub metadata: Option<Metadata>,
    }

    /// `machine.BootstrapResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BootstrapResponse {
        /// One message per node.
        #[prost(message, repeated, tag = "1")]
        pub messages: Vec<Bootstrap>,
    }

    /// `machine.VersionInfo`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct VersionInfo {
        /// Version tag, e.g. `v1.11.6`.
        #[prost(string, tag = "1")]
        pub tag: String,
        /// Git commit.
        #[prost(string, tag = "2")]
        pub sha: String,
        /// Build time.
        #[prost(string, tag = "3")]
        pub built: String,
        /// Go version.
        #[prost(string, tag = "4")]
        pub go_version: String,
        /// Operating system.
        #[prost(string, tag = "5")]
        pub os: String,
        /// Architecture.
        #[prost(string, tag = "6")]
        pub arch: String,
    }

    /// `machine.PlatformInfo`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PlatformInfo {
        /// Platform name, e.g. `hcloud`.
        #[prost(string, tag = "1")]
        pub name: String,
        /// Platform mode, e.g. `cloud`.
        #[prost(string, tag = "2")]
        pub mode: String,
    }

    /// `machine.Version`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Version {
        /// Proxy metadata.
        #[prost(message, optional, tag = "1")]
        pub metadata: Option<Metadata>,
        /// Version information.
        #[prost(message, optional, tag = "2")]
        pub version: Option<VersionInfo>,
        /// Platform information.
        #[prost(message, optional, tag = "3")]
        pub platform: Option<PlatformInfo>,
    }

    /// `machine.VersionResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct VersionResponse {
        /// One message per node.
        #[prost(message, repeated, tag = "1")]
        pub messages: Vec<Version>,
    }

    /// `machine.UpgradeRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct UpgradeRequest {
        /// Installer image reference.
        #[prost(string, tag = "1")]
        pub image: String,
        /// Preserve ephemeral data (a no-op in Talos v1.11).
        #[prost(bool, tag = "2")]
        pub preserve: bool,
        /// Stage the upgrade for the next reboot.
        #[prost(bool, tag = "3")]
        pub stage: bool,
        /// Skip etcd health checks.
        #[prost(bool, tag = "4")]
        pub force: bool,
        /// `UpgradeRequest.RebootMode`.
        #[prost(int32, tag = "5")]
        pub reboot_mode: i32,
    }

    /// `machine.Upgrade`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Upgrade {
        /// Proxy metadata.
        #[prost(message, optional, tag = "1")]
        pub metadata: Option<Metadata>,
        /// Acknowledgement text.
        #[prost(string, tag = "2")]
        pub ack: String,
        /// Actor id of the upgrade sequence.
        #[prost(string, tag = "3")]
        pub actor_id: String,
    }

    /// `machine.UpgradeResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct UpgradeResponse {
        /// One message per node.
        #[prost(message, repeated, tag = "1")]
        pub messages: Vec<Upgrade>,
    }

    /// `machine.ReadRequest`: a file to stream back.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ReadRequest {
        /// Absolute path on the node, e.g. `/proc/sys/kernel/random/boot_id`.
        #[prost(string, tag = "1")]
        pub path: String,
    }

    /// `machine.EventsRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EventsRequest {
        /// How many buffered events to replay first (`-1`: all since boot).
        #[prost(int32, tag = "1")]
        pub tail_events: i32,
        /// Replay events after this id.
        #[prost(string, tag = "2")]
        pub tail_id: String,
        /// Replay events of the last N seconds.
        #[prost(int32, tag = "3")]
        pub tail_seconds: i32,
        /// Only events of this actor.
        #[prost(string, tag = "4")]
        pub with_actor_id: String,
    }

    /// `machine.Event`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Event {
        /// Proxy metadata.
        #[prost(message, optional, tag = "1")]
        pub metadata: Option<Metadata>,
        /// The payload (`SequenceEvent`, `PhaseEvent`, `MachineStatusEvent`, ...).
        #[prost(message, optional, tag = "2")]
        pub data: Option<super::common::Any>,
        /// Event id.
        #[prost(string, tag = "3")]
        pub id: String,
        /// Actor id of the sequence that emitted it.
        #[prost(string, tag = "4")]
        pub actor_id: String,
    }

    /// `machine.SequenceEvent` (action NOOP=0, START=1, STOP=2).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SequenceEvent {
        /// Sequence name, e.g. `upgrade`.
        #[prost(string, tag = "1")]
        pub sequence: String,
        /// `SequenceEvent.Action`.
        #[prost(int32, tag = "2")]
        pub action: i32,
        /// Set when the sequence failed.
        #[prost(message, optional, tag = "3")]
        pub error: Option<super::common::Error>,
    }

    /// `machine.MachineStatusEvent.MachineStatus`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MachineStatus {
        /// All readiness conditions are met.
        #[prost(bool, tag = "1")]
        pub ready: bool,
    }

    /// `machine.MachineStatusEvent` (stage BOOTING=1 … RUNNING=4, REBOOTING=5, UPGRADING=8).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MachineStatusEvent {
        /// `MachineStage`.
        #[prost(int32, tag = "1")]
        pub stage: i32,
        /// Readiness.
        #[prost(message, optional, tag = "2")]
        pub status: Option<MachineStatus>,
    }

    /// `machine.RebootRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RebootRequest {
        /// `RebootRequest.Mode` (DEFAULT=0, POWERCYCLE=1).
        #[prost(int32, tag = "1")]
        pub mode: i32,
    }

    /// `machine.Reboot`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Reboot {
        /// Proxy metadata.
        #[prost(message, optional, tag = "1")]
        pub metadata: Option<Metadata>,
        /// Actor id of the reboot sequence.
        #[prost(string, tag = "2")]
        pub actor_id: String,
    }

    /// `machine.RebootResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RebootResponse {
        /// One message per node.
        #[prost(message, repeated, tag = "1")]
        pub messages: Vec<Reboot>,
    }

    /// `machine.ServiceHealth`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServiceHealth {
        /// Health not known yet.
        #[prost(bool, tag = "1")]
        pub unknown: bool,
        /// Healthy.
        #[prost(bool, tag = "2")]
        pub healthy: bool,
        /// Last health message.
        #[prost(string, tag = "3")]
        pub last_message: String,
    }

    /// `machine.ServiceInfo`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServiceInfo {
        /// Service id, e.g. `etcd`.
        #[prost(string, tag = "1")]
        pub id: String,
        /// Service state, e.g. `Running`.
        #[prost(string, tag = "2")]
        pub state: String,
        /// Health.
        #[prost(message, optional, tag = "4")]
        pub health: Option<ServiceHealth>,
    }

    /// `machine.ServiceList`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServiceList {
        /// Proxy metadata.
        #[prost(message, optional, tag = "1")]
        pub metadata: Option<Metadata>,
        /// Services.
        #[prost(message, repeated, tag = "2")]
        pub services: Vec<ServiceInfo>,
    }

    /// `machine.ServiceListResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServiceListResponse {
        /// One message per node.
        #[prost(message, repeated, tag = "1")]
        pub messages: Vec<ServiceList>,
    }

    /// `machine.EtcdMemberListRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EtcdMemberListRequest {
        /// Ask the local etcd member only.
        #[prost(bool, tag = "1")]
        pub query_local: bool,
    }

    /// `machine.EtcdMember`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EtcdMember {
        /// Member id.
        #[prost(uint64, tag = "2")]
        pub id: u64,
        /// Member name (the node hostname).
        #[prost(string, tag = "3")]
        pub hostname: String,
        /// Peer URLs.
        #[prost(string, repeated, tag = "4")]
        pub peer_urls: Vec<String>,
        /// Client URLs.
        #[prost(string, repeated, tag = "5")]
        pub client_urls: Vec<String>,
        /// Learner (non-voting) member.
        #[prost(bool, tag = "6")]
        pub is_learner: bool,
    }

    /// `machine.EtcdMembers`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EtcdMembers {
        /// Proxy metadata.
        #[prost(message, optional, tag = "1")]
        pub metadata: Option<Metadata>,
        /// Members.
        #[prost(message, repeated, tag = "3")]
        pub members: Vec<EtcdMember>,
    }

    /// `machine.EtcdMemberListResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EtcdMemberListResponse {
        /// One message per node.
        #[prost(message, repeated, tag = "1")]
        pub messages: Vec<EtcdMembers>,
    }
}

/// Messages of the `storage` package.
pub mod storage {
    use super::common::Metadata;

    /// `storage.Disk`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Disk {
        /// Size in bytes.
        #[prost(uint64, tag = "1")]
        pub size: u64,
        /// Model.
        #[prost(string, tag = "2")]
        pub model: String,
        /// Device path, e.g. `/dev/sda`.
        #[prost(string, tag = "3")]
        pub device_name: String,
        /// Name.
        #[prost(string, tag = "4")]
        pub name: String,
        /// Serial.
        #[prost(string, tag = "5")]
        pub serial: String,
        /// WWID.
        #[prost(string, tag = "8")]
        pub wwid: String,
        /// `Disk.DiskType` (UNKNOWN=0, SSD=1, HDD=2, NVME=3, SD=4, CD=5).
        #[prost(int32, tag = "9")]
        pub r#type: i32,
        /// Holds the Talos installation.
        #[prost(bool, tag = "11")]
        pub system_disk: bool,
        /// Read-only device.
        #[prost(bool, tag = "13")]
        pub readonly: bool,
    }

    /// `storage.Disks`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Disks {
        /// Proxy metadata.
        #[prost(message, optional, tag = "1")]
        pub metadata: Option<Metadata>,
        /// Disks.
        #[prost(message, repeated, tag = "2")]
        pub disks: Vec<Disk>,
    }

    /// `storage.DisksResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DisksResponse {
        /// One message per node.
        #[prost(message, repeated, tag = "1")]
        pub messages: Vec<Disks>,
    }
}

/// Messages of the COSI `cosi.resource` package (service `cosi.resource.State`).
pub mod cosi {
    /// `cosi.resource.Metadata`: the resource pointer `(namespace, type, id)` and its version.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metadata {
        /// Namespace, e.g. `runtime`.
        #[prost(string, tag = "1")]
        pub namespace: String,
        /// Resource type, e.g. `ExtensionStatuses.runtime.talos.dev`.
        #[prost(string, tag = "2")]
        pub r#type: String,
        /// Resource ID.
        #[prost(string, tag = "3")]
        pub id: String,
        /// Resource version.
        #[prost(string, tag = "4")]
        pub version: String,
    }

    /// `cosi.resource.Spec`: the spec as protobuf and as YAML (the server fills both).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Spec {
        /// The spec's protobuf encoding (type-specific).
        #[prost(bytes = "vec", tag = "1")]
        pub proto_spec: Vec<u8>,
        /// The spec as YAML.
        #[prost(string, tag = "2")]
        pub yaml_spec: String,
    }

    /// `cosi.resource.Resource`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        /// Metadata.
        #[prost(message, optional, tag = "1")]
        pub metadata: Option<Metadata>,
        /// Spec.
        #[prost(message, optional, tag = "2")]
        pub spec: Option<Spec>,
    }

    /// `cosi.resource.ListRequest` (without `options`: no label or ID query).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListRequest {
        /// Namespace to list.
        #[prost(string, tag = "1")]
        pub namespace: String,
        /// Resource type to list.
        #[prost(string, tag = "2")]
        pub r#type: String,
    }

    /// `cosi.resource.ListResponse`: one resource per message of the stream.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListResponse {
        /// The resource.
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
    }
}
