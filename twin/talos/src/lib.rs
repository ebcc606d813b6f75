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
//! Reboot goes through `Rebooting` (reboot delay); Upgrade runs its sequence in `Upgrading` (the
//! API still listens) and then reboots (see "Upgrades" below). All delays are divided by the
//! speed factor.
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
//!   of a tar.gz holding `kubeconfig`, no tar trailer), Upgrade (admin), Read (admin; only
//!   `/proc/sys/kernel/random/boot_id`), Reboot (admin, operator), Version, ServiceList,
//!   Events (readers), EtcdMemberList, EtcdStatus (readers; also `os:etcd:backup`), storage
//!   Disks (readers).
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
//!
//! Upgrades (Talos v1.11 `v1alpha1_server.go` and the `upgrade` sequence; reference
//! `upgrades.md` §1 and §6):
//! - The RPC pulls the installer synchronously (`NodeOptions::pull_delay`, skipped for an image
//!   pulled before) and resolves it through the fleet's [`InstallerRegistry`] (default: any
//!   well-formed reference, [`hooks::parse_installer`]); a failure is `Unknown` `error
//!   validating installer image "<ref>": failed to resolve reference "<ref>": <ref>: not found`.
//! - Control planes without `force`: the local member must be healthy (else `DeadlineExceeded`
//!   `failed to acquire upgrade mutex: context deadline exceeded`), the upgrade mutex free
//!   (`failed to acquire upgrade mutex: mutex: Locked by another session`), not exactly 2
//!   members (`error validating etcd for upgrade: etcd member count(2) is insufficient to
//!   maintain quorum if upgrade commences`), every member healthy (after the 15 s probe,
//!   `DeadlineExceeded` `error validating etcd for upgrade: etcd member <id %016x> is not
//!   healthy; all members must be healthy to perform an upgrade: context deadline exceeded`).
//! - Then `{ack: "Upgrade request received", actor_id}`. While a sequence runs, another Upgrade
//!   (or a Reboot) is acked and publishes `SequenceEvent{NOOP, error{LOCKED, "sequence not
//!   started: locked"}}` without actor ID.
//! - The sequence publishes actor-tagged `SequenceEvent upgrade START`, `PhaseEvent`/`TaskEvent`
//!   per phase (drain, cleanup, dbus, stopServices, unmount, unmountBind, unmountSystem,
//!   volumeFinalize, upgrade, meta, kexec (DEFAULT reboot mode only), stopEverything, reboot),
//!   `MachineStatusEvent` UPGRADING then REBOOTING, and `RestartEvent` last; the streams then
//!   end. Cordon and drain go through [`ClusterHooks`] (5 min budget, 429 retried every 5 s,
//!   then the pods are killed with the node); stopServices stops kubelet and etcd (the member
//!   stays listed); the installer's pre-flight ([`hooks::preflight`]) may fail the sequence
//!   (FATAL `sequence failed: error running phase 9 in upgrade sequence: task 1/1: failed, …`,
//!   10 s, reboot into the old version). `stage` runs `stageUpgrade` (no drain; installs at
//!   the next boot). Each boot has a new boot ID and a fresh event buffer (1000 events);
//!   BOOTING/RUNNING uncordons a node carrying `talos.dev/cordoned`.
//! - Faults ([`UpgradeFaultKind`], [`TalosFleet::add_upgrade_fault`]): never returns, boot
//!   rollback, installer refusal, locked; an arm64 host on v1.11.4–v1.11.5 hangs in kexec
//!   (reboot mode DEFAULT) as if it never returned.
//! - Counters: [`NodeStatus`] (`boot_id`, `schematic`, `upgrade_rpcs_accepted`,
//!   `upgrades_started`, `upgrade`, `last_upgrade`) and [`ClusterStatus`]
//!   (`healthy_etcd_members`, `min_healthy_etcd_members`, reset with
//!   [`TalosFleet::reset_upgrade_counters`]).
//! - Shortcuts: the new boot is RUNNING+ready at once (no wait for the Node's readiness); no
//!   COSI (`ExtensionStatuses`, `MachineStatus`), no `Rollback` RPC, no `ClusterService`; the
//!   platform follows the installer but links are not renamed.
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
