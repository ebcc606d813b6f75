//! The hk8s workflows and the cluster spec they run from.
//!
//! - [`spec`]: the cluster YAML, parsed and validated before any API call.
//! - [`create_cluster`]: spec → Talos images → network, firewalls, placement groups, load
//!   balancer → servers.
//! - [`destroy_cluster`]: everything labelled `cluster=<name>,managed-by=hk8s`, in dependency
//!   order, then a final listing that proves nothing is left.
//!
//! This is the only crate that combines the runtime and the activities; it contains no HTTP,
//! gRPC or SSH code of its own.

pub mod activity;
pub mod cloud;
pub mod create_cluster;
pub mod destroy_cluster;
pub mod kube;
pub mod spec;
pub mod talos;

pub use cloud::CloudTarget;
pub use create_cluster::{ClusterCreated, ClusterInfra, CreateCluster, CreateClusterInput};
pub use destroy_cluster::{DestroyCluster, DestroyClusterInput, DestroySummary};
pub use spec::ClusterSpec;
