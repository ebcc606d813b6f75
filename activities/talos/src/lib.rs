//! Talos machine API client (maintenance mode and mTLS) over tonic.
//!
//! hk8s talks to Talos nodes with hand-written prost messages ([`proto`], field numbers from Talos
//! v1.11.6) over `tonic::client::Grpc`, with its own rustls configuration ([`tls`]):
//!
//! - [`TalosClient::maintenance`]: TLS without server verification and without client
//!   certificate, ALPN `h2` — for a node that has no configuration yet.
//! - [`TalosClient::secure`]: mutual TLS with the talosconfig credentials, verifying the node
//!   against the OS CA by its IP SAN.
//! - [`TalosClient::with_node`] adds the gRPC metadata `node` (apid one-to-one proxying).
//!
//! RPCs implemented (all unary except `Kubeconfig`, which is server-streaming):
//!
//! | Method | RPC | Mode |
//! |---|---|---|
//! | [`TalosClient::apply_configuration`] | `machine.MachineService/ApplyConfiguration` | maintenance or secure |
//! | [`TalosClient::disks`] | `storage.StorageService/Disks` | maintenance or secure |
//! | [`TalosClient::bootstrap`] | `machine.MachineService/Bootstrap` (`AlreadyExists` = success) | secure |
//! | [`TalosClient::kubeconfig`] | `machine.MachineService/Kubeconfig` (stream → tar.gz → `kubeconfig`) | secure |
//! | [`TalosClient::version`] | `machine.MachineService/Version` | secure |
//! | [`TalosClient::service_list`] | `machine.MachineService/ServiceList` | secure |
//! | [`TalosClient::etcd_member_list`] | `machine.MachineService/EtcdMemberList` | secure |
//! | [`TalosClient::upgrade`] | `machine.MachineService/Upgrade` | secure |
//! | [`TalosClient::reboot`] | `machine.MachineService/Reboot` | secure |
//! | [`TalosClient::read_file`], [`TalosClient::boot_id`] | `machine.MachineService/Read` (stream) | secure |
//! | [`TalosClient::events_since_boot`] | `machine.MachineService/Events` (stream, `tail_events=-1`) | secure |
//!
//! Errors are [`TalosError`]s; [`TalosError::class`] says whether a retry can help
//! (`InvalidArgument` permanent; `Unavailable`, `DeadlineExceeded`, connection refused retryable).
//! Machine configurations and keys never appear in errors or `Debug` output.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod archive;
mod client;
mod connect;
pub mod error;
pub mod proto;
pub mod tls;
pub mod types;

pub use client::{ClientMode, ClientOptions, SCHEMATIC_EXTENSION, TALOS_API_PORT, TalosClient};
pub use error::{ErrorClass, TalosError};
pub use tls::TalosCredentials;
pub use types::{
    ApplyMode, ApplyResult, BootstrapOutcome, DiskInfo, EtcdMember, Extension, NodeEvent,
    NodeEventKind, NodeVersion, ServiceStatus, UpgradeAck, UpgradeOptions,
};
