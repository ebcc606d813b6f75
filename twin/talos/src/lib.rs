//! Simulated Talos nodes for the twin: maintenance and mTLS machine API servers.
//!
//! This crate imports no product crate: its protobuf messages ([`proto`]) and its reading of
//! machine configs ([`config`]) are written from the Talos reference, so a misunderstanding in
//! the product's client cannot be mirrored here.
//!
//! A [`TalosFleet`] holds every node of one twin; [`TalosNode::spawn`] powers on a server booted
//! from a Talos image at `<ip>:50000` and returns a [`NodeHandle`].
//!
//! Lifecycle: `Booting` (boot delay) → `Maintenance` (TLS, ephemeral self-signed Ed25519
//! certificate, no client auth, callers are `os:reader`) → ApplyConfiguration → `Installing`
//! (install delay, nothing listens) → `Booting` → `Running` (mTLS against the config's OS CA).
//! Reboot and Upgrade go through `Rebooting`/`Upgrading` (reboot delay). All delays are divided
//! by the speed factor.
//!
//! RPCs in maintenance mode:
//! - `machine.MachineService/ApplyConfiguration` (AUTO, REBOOT, TRY; NO_REBOOT and STAGED →
//!   `Unimplemented`; validation errors → `InvalidArgument` with Talos's messages; `dry_run`).
//! - `storage.StorageService/Disks`.
//! - Other MachineService methods → `Unimplemented` ("API is not implemented in maintenance
//!   mode" for Version/Upgrade/Reset/MetaWrite/MetaDelete, else "method X not implemented").
//!
//! RPCs in configured mode (roles from the client certificate's `O=`, Talos's RBAC table,
//! `PermissionDenied "not authorized"`):
//! - ApplyConfiguration (admin), Bootstrap (admin; once per cluster, then `AlreadyExists`;
//!   `FailedPrecondition` on a worker), Kubeconfig (admin, control plane only, one `Data` chunk
//!   of a tar.gz holding `kubeconfig`, no tar trailer), Upgrade (admin), Reboot (admin,
//!   operator), Version, ServiceList, EtcdMemberList (readers; etcd members also
//!   `os:etcd:backup`), storage Disks (readers).
//! - Any other method → `Unimplemented` "twin: … is not simulated".
//! - gRPC metadata `node` (one value) hands the call to that node of the fleet (apid one-to-one
//!   proxying, same cluster only; the reply passes through verbatim). `nodes` (one or more
//!   values, or comma-separated) fans out: replies are concatenated with `metadata.hostname` =
//!   the target as given, and a per-node failure becomes a message with `metadata.error` and
//!   `metadata.status` instead of a gRPC error.
//!
//! For the twin's control API: [`TalosFleet::set_speed`], [`TalosFleet::inject_fault`] (a gRPC
//! error for the Nth..Mth call of a method on a node), [`TalosFleet::call_counts`],
//! [`TalosFleet::nodes`] and [`TalosFleet::clusters`] (serializable state dump).
//!
//! Shortcuts (documented deviations):
//! - Workers get their apid certificate from trustd on a control plane in real Talos; here a
//!   worker's certificate is signed with the OS CA key a control plane of the same cluster
//!   registered in the fleet. Until one did, the worker stays in `WaitingForCertificates`.
//! - The client EKU is always checked (`apidCheckExtKeyUsage: true`, the generated default).
//! - etcd: the bootstrap node becomes the first member and every running control plane of the
//!   cluster joins at once; a control plane reaching `Running` later joins then.
//! - The admin kubeconfig key is PKCS#8 (`PRIVATE KEY`); Talos writes SEC1.
//! - Upgrade takes the new version from the installer image tag (`…:v1.11.7`); an image without
//!   a tag is refused with `InvalidArgument`. On a control plane without `force`, every other
//!   etcd member's node must be `Running` (else `FailedPrecondition`).
//! - ApplyConfiguration on a configured node: same config or same role and OS CA → applied
//!   without reboot; otherwise AUTO/REBOOT reboot the node; STAGED applies at the next boot;
//!   TRY is never rolled back. Dry runs do not render a diff.
//! - Kubeconfig works on any configured control plane (as in Talos, it does not need etcd).
//! - `Version` reports platform `hcloud`/`cloud`; `Disks` reports one `/dev/sda`.
//! - A node can also boot configured from Hetzner `user_data` ([`NodeOptions::user_data`]).

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod api;
pub mod config;
mod fleet;
pub mod hooks;
mod kubeconfig;
mod node;
mod node_state;
pub mod pki;
pub mod proto;
mod server;
pub mod tls;
mod upgrade;

pub use config::{MachineConfig, MachineRole};
pub use fleet::{CallCount, ClusterStatus, Fault, TalosFleet, UpgradeFault};
pub use hooks::{ClusterHooks, Cordon, Eviction, Installer, InstallerRegistry, UpgradeFaultKind};
pub use node::{NodeHandle, SpawnError, TalosNode};
pub use node_state::{NodeOptions, NodePhase, NodeStatus, UpgradeRecord, UpgradeRun};
