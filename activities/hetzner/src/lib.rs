//! Idempotent Hetzner Cloud activities behind one facade over the hcloud crate.
//!
//! # Brief overview
//!
//! - [`Hetzner`] is the facade. Build it once with [`Hetzner::new`] from a
//!   [`HetznerConfig`] (endpoint and token come from the CLI's `HCLOUD_ENDPOINT` and
//!   `HCLOUD_TOKEN`; this crate reads no environment). Every request goes through its
//!   client-side [`Pacing`] bucket (3600/h, burst 100 by default), so a big create does
//!   not run into Hetzner's 429.
//! - Activities are `async fn`s on [`Hetzner`], verb-object named, each idempotent and
//!   returning a small `Serialize` result for the journal:
//!   [`Hetzner::ensure_network`], [`Hetzner::ensure_firewall`],
//!   [`Hetzner::ensure_placement_group`], [`Hetzner::ensure_load_balancer`],
//!   [`Hetzner::ensure_server`], [`Hetzner::find_talos_image`],
//!   [`Hetzner::delete_server`], [`Hetzner::destroy_cluster_resources`],
//!   [`Hetzner::list_cluster_resources`], [`Hetzner::delete_by_labels`], plus
//!   [`Hetzner::wait_actions`].
//! - Image-build activities for the `build-image` workflow: [`Hetzner::ensure_ssh_key`],
//!   [`Hetzner::ensure_builder_server`], [`Hetzner::boot_rescue`], [`Hetzner::power_off`],
//!   [`Hetzner::ensure_snapshot`], [`Hetzner::set_image_labels`], [`Hetzner::power_on`],
//!   [`Hetzner::find_talos_snapshot`], [`Hetzner::list_builder_resources`],
//!   [`Hetzner::delete_builder_resources`], [`Hetzner::delete_image`], [`Hetzner::delete_ssh_key`];
//!   temporary resources carry [`builder_labels`] (`hk8s-run=<run id>`) and one run's
//!   leftovers go with `delete_by_labels(&builder_selector(run))`.
//! - Preflight and coordination: [`Hetzner::read_catalog`] (locations, server and load
//!   balancer types, read leniently with a bounded wait for an unreachable endpoint),
//!   [`Hetzner::acquire_cluster_lock`] / [`Hetzner::renew_cluster_lock`] /
//!   [`Hetzner::delete_cluster_lock`] (the cluster lock, a placement group
//!   `hk8s-lock-<cluster>` with holder and expiry labels), and
//!   [`Hetzner::cluster_secrets_fingerprint`] (the `secrets-fingerprint` label of the network).
//! - Every failure is one [`HetznerError`] (operation, HTTP status, Hetzner code,
//!   message, correlation id where visible) with [`HetznerError::class`] giving the
//!   [`ErrorClass`] the runtime retries by.
//! - [`labels`] builds labels, selectors and deterministic names; [`rules`] holds the
//!   firewall rule sets.
//!
//! # Ensure semantics
//!
//! Look up by deterministic name → create if missing → fix drift (labels, firewall rule
//! set, LB service/target/network, server network/firewalls/power) → return ids and IPs.
//! A create answered with `uniqueness_error`/`conflict` looks again instead of failing;
//! a delete answered with `not_found` is success. A resource that has hk8s's name but not
//! `managed-by=hk8s` and `cluster=<name>` is never adopted: that is
//! [`ErrorKind::NotManaged`], a permanent error.
//!
//! | resource | name | labels (plus `cluster`, `managed-by=hk8s`) |
//! |---|---|---|
//! | network | `<cluster>` | `component=network` |
//! | firewall | `<cluster>-control-plane`, `<cluster>-worker` | `component=firewall`, `role` |
//! | placement group | `<cluster>-cp-pg-1`, `<cluster>-worker-pg-2` (10 servers each) | `component=placement-group`, `role` |
//! | load balancer | `<cluster>-api` | `component=load-balancer` |
//! | server | `<cluster>-cp-1`, `<cluster>-worker-1`, `<cluster>-<pool>-1` | `component=server`, `role`, `pool` |
//!
//! # Error classes
//!
//! | class | codes |
//! |---|---|
//! | `RateLimited { until }` | `rate_limit_exceeded`, HTTP 429 |
//! | `Retryable` | `locked`, `conflict`, `unavailable`, `timeout`, `server_error`, `bad_gateway`, `maintenance`, `resource_in_use`, unknown 5xx/408, connection errors and timeouts, action wait timeout |
//! | `CapacityUnavailable` | `resource_unavailable`, `placement_error` |
//! | `Permanent` | `invalid_input`, `json_error`, `forbidden`, `unauthorized`, `token_readonly`, `resource_limit_exceeded`, `not_found`, `uniqueness_error`, `protected`, other 4xx, undecodable responses, not-managed or incompatible resources |
//!
//! # Firewall rules
//!
//! See [`rules`] for the table. In short: the only public sources are the configured
//! admin CIDRs (tcp 6443 on control planes, tcp 50000 on all nodes); nothing defaults to
//! `0.0.0.0/0`. Intra-cluster rules (etcd 2379-2380, 6443, 50000-50001, kubelet 10250,
//! Cilium VXLAN udp 8472, health 4240, Hubble 4244, ICMP) name the private network CIDR;
//! Hetzner firewalls do not filter private-network traffic, so these document intent.
//! The API load balancer cannot be firewalled by Hetzner: its public 6443 is open unless
//! [`LoadBalancerSpec::public_interface`] is `false`.
//!
//! # Limits of the `hcloud` crate this facade owns
//!
//! - Response headers are dropped: `RateLimit-*` and `X-Correlation-Id` are read only on
//!   the facade's own `GET /actions` poll (plain reqwest, same rustls client). A 429 on a
//!   crate call drains the pacing bucket and reports `RateLimited` until the next token.
//! - Per-endpoint error enums: errors are rebuilt from the raw body into [`HetznerError`].
//! - Strict models and closed enums: a 2xx body that does not match becomes
//!   [`ErrorKind::Decode`] (permanent, without status). The action poll decodes leniently.
//! - No waiter: [`Hetzner::wait_actions`] batches up to 25 ids per `GET /actions` call,
//!   and concurrent callers share one poll per interval (1 s growing ×1.5 to 10 s by
//!   default), so ten servers created at once cost one poll per interval, not ten.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), hk8s_hetzner::HetznerError> {
//! use hk8s_hetzner::{ApiToken, Hetzner, HetznerConfig, NetworkSpec};
//! let hetzner = Hetzner::new(
//!     HetznerConfig::new(ApiToken::new("token from HCLOUD_TOKEN"))
//!         .with_endpoint("http://127.0.0.1:8080/v1"),
//! )?;
//! let network = hetzner
//!     .ensure_network(&NetworkSpec {
//!         cluster: "demo".into(),
//!         ip_range: "10.0.0.0/16".parse().unwrap(),
//!         subnet_range: "10.0.1.0/24".parse().unwrap(),
//!         network_zone: "eu-central".into(),
//!         secrets_fingerprint: None,
//!     })
//!     .await?;
//! println!("network {} ({})", network.id, network.name);
//! # Ok(()) }
//! ```

#![deny(missing_docs)]
// `HetznerError` carries operation, status, code, message, correlation id and retry
// time as plain public fields (what the workflows match on); 136 bytes is fine next to
// a network round trip.
#![allow(clippy::result_large_err)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod actions;
mod builder;
mod catalog;
mod client;
mod cloud_backed;
mod cluster_nodes;
mod config;
mod destroy;
mod error;
mod firewall;
mod image;
pub mod labels;
mod load_balancer;
mod lock;
mod network;
mod outcome;
mod pacing;
mod placement;
pub mod rules;
mod server;

pub use actions::ActionId;
pub use builder::{
    BuilderResources, BuilderServerInfo, BuilderServerSpec, COMPONENT_IMAGE_BUILDER, LABEL_RUN,
    LABEL_SCHEMATIC, SCHEMATIC_LABEL_LEN, SnapshotInfo, SshKeyInfo, SshKeySpec, builder_labels,
    builder_selector, schematic_label_value,
};
pub use catalog::{
    Catalog, Deprecation, LoadBalancerTypeInfo, LocationInfo, PriceLocation, ServerTypeInfo,
    TypeLocation,
};
pub use client::Hetzner;
pub use cloud_backed::CCM_SERVICE_UID_LABEL;
pub use cluster_nodes::{ClusterNode, ClusterNodes};
pub use config::{ApiToken, DEFAULT_ENDPOINT, HetznerConfig, Pacing};
pub use destroy::{ClusterResources, DestroyReport, ResourceSummary};
pub use error::{ErrorClass, ErrorKind, HetznerError};
pub use firewall::{FirewallInfo, FirewallSpec, RequestedFirewall};
pub use image::{
    Arch, ImageInfo, LABEL_ARCH, LABEL_OS, LABEL_VERSION, talos_image_labels, talos_image_selector,
};
pub use labels::{Component, Labels, Role};
pub use load_balancer::{API_PORT, LoadBalancerInfo, LoadBalancerSpec};
pub use lock::{
    COMPONENT_CLUSTER_LOCK, ClusterLock, LABEL_LOCK_CLUSTER, LABEL_LOCK_EXPIRES, LABEL_LOCK_HOST,
    LABEL_LOCK_PID, LABEL_LOCK_RUN, LockAttempt, LockDecision, LockOwner, cluster_lock_name,
    decide_lock,
};
pub use network::{LABEL_SECRETS_FINGERPRINT, NetworkInfo, NetworkSpec};
pub use outcome::{DeleteOutcome, EnsureOutcome};
pub use placement::{PlacementGroupInfo, PlacementGroupSpec};
pub use rules::{FirewallRule, RuleProtocol};
pub use server::{RequestedServer, ServerInfo, ServerListing, ServerSpec};
