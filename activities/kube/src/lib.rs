//! Kubernetes addons and activities for hk8s.
//!
//! # Brief overview
//!
//! - [`manifests`] renders the addon objects from typed [`AddonInputs`]: Hetzner CCM
//!   ([`manifests::ccm()`]), Hetzner CSI ([`manifests::csi()`]) and Cilium with Talos values
//!   ([`manifests::cilium()`]), all pinned by [`AddonVersions`]. [`manifests::all`] holds no
//!   secret; the token lives only in [`manifests::hcloud_secret`], wrapped in [`HcloudToken`].
//! - [`KubeClient`] (kube-rs, field manager `hk8s`) runs the activities: ordered server-side
//!   [`KubeClient::apply_all`], [`KubeClient::apply_hcloud_secret`], the named wait conditions
//!   [`KubeClient::nodes_ready`], [`KubeClient::deployments_available`] and
//!   [`KubeClient::daemonsets_ready`], [`KubeClient::approve_kubelet_serving_csrs`],
//!   [`KubeClient::smoke_test_pvc`] and [`KubeClient::delete_cloud_backed`].
//! - [`KubeError::class`] tells the caller's step policy whether to retry.
//!
//! **Architecture Invariant:** wait conditions are single checks with no timeout; a condition
//! that does not hold yet is a retryable [`KubeError::NotReady`] naming what is missing. The
//! step policy owns time. This crate knows nothing of the journal.
//!
//! # Assumptions (what the Talos machine configs must provide)
//!
//! - `cluster.network.cni.name: none` and `cluster.proxy.disabled: true`: Cilium is the CNI and
//!   replaces kube-proxy.
//! - `machine.features.kubePrism.enabled: true` on port 7445 (the Talos default): Cilium and the
//!   CCM reach the API at `localhost:7445`, before any Service IP works.
//! - `cluster.externalCloudProvider.enabled: true`: kubelets start with the
//!   `node.cloudprovider.kubernetes.io/uninitialized` taint, which the CCM removes.
//! - kubelet `extraArgs: {rotate-server-certificates: "true"}` for kubelet-serving CSRs to exist
//!   (and be approved by [`KubeClient::approve_kubelet_serving_csrs`]).
//! - With [`PodRouting::Native`] only: a node route for the pod CIDR into the private network
//!   (or a pod CIDR inside the network's range). The default [`PodRouting::Tunnel`] needs none.
//!
//! ```no_run
//! # async fn demo(kubeconfig: &[u8], token: hk8s_kube::HcloudToken) -> Result<(), hk8s_kube::KubeError> {
//! use hk8s_kube::{AddonInputs, KubeClient, manifests};
//! let inputs = AddonInputs::new("1.34.1", "demo", "10.244.0.0/16".parse().unwrap_or_default());
//! let kube = KubeClient::from_kubeconfig(kubeconfig).await?;
//! kube.apply_hcloud_secret(&token, 4711).await?;
//! kube.apply_all(&manifests::all(&inputs)).await?;
//! kube.nodes_ready(5).await?; // Err(NotReady) until all five are Ready: retry under a policy
//! # Ok(()) }
//! ```

mod client;
pub mod csr;
mod error;
pub mod manifests;
pub mod order;
mod secret;
mod storage;
pub mod upgrade;
mod waits;

pub use client::{ApplyReport, CsrReport, FIELD_MANAGER, KubeClient, Result};
pub use csr::NodeIdentity;
pub use error::{ErrorClass, KubeError, NotReady};
pub use manifests::{AddonInputs, AddonVersions, ApiEndpoint, PodRouting};
pub use secret::HcloudToken;
pub use storage::{CloudInventory, Remaining, SMOKE_IMAGE, SMOKE_NAMESPACE};
pub use upgrade::{NodeFacts, StaticPod};
pub use waits::{
    NodeProblem, NodesStatus, UNINITIALIZED_TAINT, daemonset_problem, deployment_problem,
};
