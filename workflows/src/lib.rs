//! The hk8s workflows and the cluster spec they run from.
//!
//! - [`spec`]: the cluster YAML, parsed and validated before any API call; [`plan`]: the
//!   servers it asks for.
//! - [`create_cluster`]: spec → Talos images → network, firewalls, placement groups, load
//!   balancer → servers ([`infra`]) → Talos ([`talos`]) → Kubernetes addons ([`kube`]), each
//!   node on its own as soon as what it needs is published ([`slot`]).
//! - [`activity`]: activities as journaled steps, every error → retry-class mapping, and the
//!   `Role`/`Arch` conversions; [`policies`]: the retry policies both workflows share.
//! - [`build_image`]: Talos snapshots from the image factory, written from Hetzner's rescue
//!   system over SSH, boot-checked, then published; create-cluster runs its steps when a
//!   snapshot is missing.
//! - [`upgrade_cluster`]: rolling Talos upgrades node by node and Kubernetes upgrades
//!   component by component, resuming at node k; [`upgrade_gates`]: its steps and gates.
//! - [`upgrade_plan`]: the versions a cluster runs → upgrade steps inside Talos's and
//!   Kubernetes's support windows, or the rule that refuses the target.
//! - [`destroy_cluster`]: everything labelled `cluster=<name>,managed-by=hk8s`, in dependency
//!   order, then a final listing that proves nothing is left.
//!
//! - [`preflight`]: the spec checked against the live catalog (types orderable, not deprecated,
//!   matching their architecture; locations in the network zone), every problem at once;
//!   [`cluster_lock`]: the cluster lock in the cloud that keeps two runs on two machines from
//!   acting on one cluster at once, and its journal record.
//!
//! This is the only crate that combines the runtime and the activities; it contains no HTTP,
//! gRPC or SSH code of its own.

pub mod activity;
pub mod build_image;
pub mod cloud;
pub mod cluster_lock;
pub mod create_cluster;
pub mod destroy_cluster;
pub mod factory;
pub mod infra;
pub mod kube;
pub mod plan;
pub mod policies;
pub mod preflight;
pub mod slot;
pub mod spec;
pub mod talos;
pub mod upgrade_cluster;
pub mod upgrade_gates;
pub mod upgrade_plan;

pub use build_image::{BuildImage, BuildImageInput, Builder, BuiltImages, ImageBuild, RunRegistry};
pub use cloud::CloudTarget;
pub use create_cluster::{ClusterCreated, CreateCluster, CreateClusterInput};
pub use destroy_cluster::{DestroyCluster, DestroyClusterInput, DestroySummary};
pub use infra::ClusterInfra;
pub use policies::Policies;
pub use spec::ClusterSpec;
pub use upgrade_cluster::{UpgradeCluster, UpgradeClusterInput, UpgradeSummary};
