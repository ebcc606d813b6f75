//! The twin's own prost messages for the Talos machine API (server side).
//!
//! Written from the field numbers of Talos v1.11.6 `common.proto`, `machine.proto` and
//! `storage.proto` (project reference §3) and of the COSI specification's `resource.proto` and
//! `state.proto`, independently of the product's client messages.

#![allow(missing_docs)]

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `common.Metadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metadata {
    #[prost(string, tag = "1")]
    pub hostname: String,
    #[prost(string, tag = "2")]
    pub error: String,
    #[prost(message, optional, tag = "3")]
    pub status: Option<RpcStatus>,
}

/// `common.Data`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Data {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
    #[prost(bytes = "vec", tag = "2")]
    pub bytes: Vec<u8>,
}

/// `google.protobuf.Empty`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

/// `machine.ApplyConfigurationRequest` (fields 2 and 3 are unused upstream). `Debug` hides `data`.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub struct ApplyConfigurationRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub data: Vec<u8>,
    #[prost(int32, tag = "4")]
    pub mode: i32,
    #[prost(bool, tag = "5")]
    pub dry_run: bool,
    #[prost(message, optional, tag = "6")]
    pub try_mode_timeout: Option<prost_types::Duration>,
}

impl std::fmt::Debug for ApplyConfigurationRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyConfigurationRequest")
            .field("data", &format_args!("<{} bytes>", self.data.len()))
            .field("mode", &self.mode)
            .field("dry_run", &self.dry_run)
            .finish()
    }
}

/// `ApplyConfigurationRequest.Mode` values.
pub mod apply_mode {
    pub const REBOOT: i32 = 0;
    pub const AUTO: i32 = 1;
    pub const NO_REBOOT: i32 = 2;
    pub const STAGED: i32 = 3;
    pub const TRY: i32 = 4;
}

/// `machine.ApplyConfiguration`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ApplyConfiguration {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
    #[prost(string, repeated, tag = "2")]
    pub warnings: Vec<String>,
    #[prost(int32, tag = "3")]
    pub mode: i32,
    #[prost(string, tag = "4")]
    pub mode_details: String,
}

/// `machine.ApplyConfigurationResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ApplyConfigurationResponse {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<ApplyConfiguration>,
}

/// `machine.BootstrapRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BootstrapRequest {
    #[prost(bool, tag = "1")]
    pub recover_etcd: bool,
    #[prost(bool, tag = "2")]
    pub recover_skip_hash_check: bool,
}

/// `machine.Bootstrap`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Bootstrap {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
}

/// `machine.BootstrapResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BootstrapResponse {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<Bootstrap>,
}

/// `machine.VersionInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionInfo {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(string, tag = "2")]
    pub sha: String,
    #[prost(string, tag = "3")]
    pub built: String,
    #[prost(string, tag = "4")]
    pub go_version: String,
    #[prost(string, tag = "5")]
    pub os: String,
    #[prost(string, tag = "6")]
    pub arch: String,
}

/// `machine.PlatformInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PlatformInfo {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub mode: String,
}

/// `machine.FeaturesInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FeaturesInfo {
    #[prost(bool, tag = "1")]
    pub rbac: bool,
}

/// `machine.Version`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Version {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
    #[prost(message, optional, tag = "2")]
    pub version: Option<VersionInfo>,
    #[prost(message, optional, tag = "3")]
    pub platform: Option<PlatformInfo>,
    #[prost(message, optional, tag = "4")]
    pub features: Option<FeaturesInfo>,
}

/// `machine.VersionResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionResponse {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<Version>,
}

/// `machine.UpgradeRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpgradeRequest {
    #[prost(string, tag = "1")]
    pub image: String,
    #[prost(bool, tag = "2")]
    pub preserve: bool,
    #[prost(bool, tag = "3")]
    pub stage: bool,
    #[prost(bool, tag = "4")]
    pub force: bool,
    #[prost(int32, tag = "5")]
    pub reboot_mode: i32,
}

/// `machine.Upgrade`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Upgrade {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
    #[prost(string, tag = "2")]
    pub ack: String,
    #[prost(string, tag = "3")]
    pub actor_id: String,
}

/// `machine.UpgradeResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpgradeResponse {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<Upgrade>,
}

/// `machine.RebootRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RebootRequest {
    #[prost(int32, tag = "1")]
    pub mode: i32,
}

/// `machine.Reboot`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Reboot {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
    #[prost(string, tag = "2")]
    pub actor_id: String,
}

/// `machine.RebootResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RebootResponse {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<Reboot>,
}

/// `machine.ServiceEvent`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ServiceEvent {
    #[prost(string, tag = "1")]
    pub msg: String,
    #[prost(string, tag = "2")]
    pub state: String,
    #[prost(message, optional, tag = "3")]
    pub ts: Option<prost_types::Timestamp>,
}

/// `machine.ServiceEvents`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ServiceEvents {
    #[prost(message, repeated, tag = "1")]
    pub events: Vec<ServiceEvent>,
}

/// `machine.ServiceHealth`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ServiceHealth {
    #[prost(bool, tag = "1")]
    pub unknown: bool,
    #[prost(bool, tag = "2")]
    pub healthy: bool,
    #[prost(string, tag = "3")]
    pub last_message: String,
    #[prost(message, optional, tag = "4")]
    pub last_change: Option<prost_types::Timestamp>,
}

/// `machine.ServiceInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ServiceInfo {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub state: String,
    #[prost(message, optional, tag = "3")]
    pub events: Option<ServiceEvents>,
    #[prost(message, optional, tag = "4")]
    pub health: Option<ServiceHealth>,
}

/// `machine.ServiceList`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ServiceList {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
    #[prost(message, repeated, tag = "2")]
    pub services: Vec<ServiceInfo>,
}

/// `machine.ServiceListResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ServiceListResponse {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<ServiceList>,
}

/// `machine.EtcdMemberListRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EtcdMemberListRequest {
    #[prost(bool, tag = "1")]
    pub query_local: bool,
}

/// `machine.EtcdMember` (field 1 unused upstream).
#[derive(Clone, PartialEq, prost::Message)]
pub struct EtcdMember {
    #[prost(uint64, tag = "2")]
    pub id: u64,
    #[prost(string, tag = "3")]
    pub hostname: String,
    #[prost(string, repeated, tag = "4")]
    pub peer_urls: Vec<String>,
    #[prost(string, repeated, tag = "5")]
    pub client_urls: Vec<String>,
    #[prost(bool, tag = "6")]
    pub is_learner: bool,
}

/// `machine.EtcdMembers`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EtcdMembers {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
    #[prost(string, repeated, tag = "2")]
    pub legacy_members: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    pub members: Vec<EtcdMember>,
}

/// `machine.EtcdMemberListResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EtcdMemberListResponse {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<EtcdMembers>,
}

/// `storage.Disk`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Disk {
    #[prost(uint64, tag = "1")]
    pub size: u64,
    #[prost(string, tag = "2")]
    pub model: String,
    #[prost(string, tag = "3")]
    pub device_name: String,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(string, tag = "5")]
    pub serial: String,
    #[prost(string, tag = "6")]
    pub modalias: String,
    #[prost(string, tag = "7")]
    pub uuid: String,
    #[prost(string, tag = "8")]
    pub wwid: String,
    #[prost(int32, tag = "9")]
    pub r#type: i32,
    #[prost(string, tag = "10")]
    pub bus_path: String,
    #[prost(bool, tag = "11")]
    pub system_disk: bool,
    #[prost(string, tag = "12")]
    pub subsystem: String,
    #[prost(bool, tag = "13")]
    pub readonly: bool,
}

/// `storage.Disks`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Disks {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
    #[prost(message, repeated, tag = "2")]
    pub disks: Vec<Disk>,
}

/// `storage.DisksResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DisksResponse {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<Disks>,
}

/// `common.Error` (`code`: FATAL=0, LOCKED=1, CANCELED=2).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CommonError {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `common.Code` values.
pub mod error_code {
    pub const FATAL: i32 = 0;
    pub const LOCKED: i32 = 1;
    pub const CANCELED: i32 = 2;
}

/// `machine.EventsRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EventsRequest {
    #[prost(int32, tag = "1")]
    pub tail_events: i32,
    #[prost(string, tag = "2")]
    pub tail_id: String,
    #[prost(int32, tag = "3")]
    pub tail_seconds: i32,
    #[prost(string, tag = "4")]
    pub with_actor_id: String,
}

/// `machine.Event`: `data` is a `google.protobuf.Any` with type URL
/// `talos/runtime/machine.<Message>`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
    #[prost(message, optional, tag = "2")]
    pub data: Option<prost_types::Any>,
    #[prost(string, tag = "3")]
    pub id: String,
    #[prost(string, tag = "4")]
    pub actor_id: String,
}

/// `machine.SequenceEvent` (`action`: NOOP=0, START=1, STOP=2).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SequenceEvent {
    #[prost(string, tag = "1")]
    pub sequence: String,
    #[prost(int32, tag = "2")]
    pub action: i32,
    #[prost(message, optional, tag = "3")]
    pub error: Option<CommonError>,
}

/// `SequenceEvent.Action` values.
pub mod sequence_action {
    pub const NOOP: i32 = 0;
    pub const START: i32 = 1;
    pub const STOP: i32 = 2;
}

/// `machine.PhaseEvent` (`action`: START=0, STOP=1).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PhaseEvent {
    #[prost(string, tag = "1")]
    pub phase: String,
    #[prost(int32, tag = "2")]
    pub action: i32,
}

/// `machine.TaskEvent` (`action`: START=0, STOP=1).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TaskEvent {
    #[prost(string, tag = "1")]
    pub task: String,
    #[prost(int32, tag = "2")]
    pub action: i32,
}

/// `PhaseEvent.Action` / `TaskEvent.Action` values.
pub mod step_action {
    pub const START: i32 = 0;
    pub const STOP: i32 = 1;
}

/// `machine.RestartEvent`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RestartEvent {
    #[prost(int64, tag = "1")]
    pub cmd: i64,
}

/// `machine.MachineStatusEvent.MachineStatus.UnmetCondition`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UnmetCondition {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub reason: String,
}

/// `machine.MachineStatusEvent.MachineStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MachineStatus {
    #[prost(bool, tag = "1")]
    pub ready: bool,
    #[prost(message, repeated, tag = "2")]
    pub unmet_conditions: Vec<UnmetCondition>,
}

/// `machine.MachineStatusEvent`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MachineStatusEvent {
    #[prost(int32, tag = "1")]
    pub stage: i32,
    #[prost(message, optional, tag = "2")]
    pub status: Option<MachineStatus>,
}

/// `MachineStatusEvent.MachineStage` values.
pub mod machine_stage {
    pub const UNKNOWN: i32 = 0;
    pub const BOOTING: i32 = 1;
    pub const INSTALLING: i32 = 2;
    pub const MAINTENANCE: i32 = 3;
    pub const RUNNING: i32 = 4;
    pub const REBOOTING: i32 = 5;
    pub const SHUTTING_DOWN: i32 = 6;
    pub const RESETTING: i32 = 7;
    pub const UPGRADING: i32 = 8;
}

/// `UpgradeRequest.RebootMode` values.
pub mod reboot_mode {
    pub const DEFAULT: i32 = 0;
    pub const POWERCYCLE: i32 = 1;
}

/// `machine.ReadRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadRequest {
    #[prost(string, tag = "1")]
    pub path: String,
}

/// `machine.EtcdMemberStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EtcdMemberStatus {
    #[prost(string, tag = "1")]
    pub protocol_version: String,
    #[prost(int64, tag = "2")]
    pub db_size: i64,
    #[prost(int64, tag = "3")]
    pub db_size_in_use: i64,
    #[prost(uint64, tag = "4")]
    pub leader: u64,
    #[prost(uint64, tag = "5")]
    pub raft_index: u64,
    #[prost(uint64, tag = "6")]
    pub raft_term: u64,
    #[prost(uint64, tag = "7")]
    pub raft_applied_index: u64,
    #[prost(string, repeated, tag = "8")]
    pub errors: Vec<String>,
    #[prost(bool, tag = "9")]
    pub is_learner: bool,
    #[prost(uint64, tag = "10")]
    pub member_id: u64,
    #[prost(string, tag = "11")]
    pub storage_version: String,
}

/// `machine.EtcdStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EtcdStatus {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
    #[prost(message, optional, tag = "2")]
    pub member_status: Option<EtcdMemberStatus>,
}

/// `machine.EtcdStatusResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EtcdStatusResponse {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<EtcdStatus>,
}

/// Type URL prefix of event payloads.
pub const EVENT_TYPE_PREFIX: &str = "talos/runtime/";

/// Wraps an event payload as Talos does (`talos/runtime/machine.<name>`).
pub fn event_any(name: &str, msg: &impl prost::Message) -> prost_types::Any {
    prost_types::Any {
        type_url: format!("{EVENT_TYPE_PREFIX}machine.{name}"),
        value: msg.encode_to_vec(),
    }
}

/// COSI `cosi.resource.Metadata` (the fields the twin fills).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CosiMetadata {
    #[prost(string, tag = "1")]
    pub namespace: String,
    #[prost(string, tag = "2")]
    pub r#type: String,
    #[prost(string, tag = "3")]
    pub id: String,
    #[prost(string, tag = "4")]
    pub version: String,
    #[prost(string, tag = "5")]
    pub owner: String,
    #[prost(string, tag = "6")]
    pub phase: String,
}

/// COSI `cosi.resource.Spec`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CosiSpec {
    #[prost(bytes = "vec", tag = "1")]
    pub proto_spec: Vec<u8>,
    #[prost(string, tag = "2")]
    pub yaml_spec: String,
}

/// COSI `cosi.resource.Resource`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CosiResource {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<CosiMetadata>,
    #[prost(message, optional, tag = "2")]
    pub spec: Option<CosiSpec>,
}

/// COSI `cosi.resource.ListRequest` (label and ID queries in `options` are not simulated).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CosiListRequest {
    #[prost(string, tag = "1")]
    pub namespace: String,
    #[prost(string, tag = "2")]
    pub r#type: String,
}

/// COSI `cosi.resource.ListResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CosiListResponse {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<CosiResource>,
}
