//! The Kubernetes half of `create-cluster`: the `hcloud` secret, the addons (Hetzner CCM and
//! CSI, Cilium), kubelet-serving CSR approval, and the waits for Ready nodes and available
//! addons. Every wait is one check per attempt; the step's retry policy owns the time.

use std::net::IpAddr;
use std::path::Path;

use hk8s_hetzner::ServerInfo;
use hk8s_kube::manifests::{self, ADDON_NAMESPACE};
use hk8s_kube::{AddonInputs, HcloudToken, KubeClient, NodeIdentity};
use hk8s_runtime::{Ctx, RetryPolicy, StepError, WorkflowError};
use serde::{Deserialize, Serialize};

use crate::activity::kube_error;
use crate::spec::{ClusterSpec, CniType};

/// What the Kubernetes steps report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeSummary {
    /// Objects applied (`kind/namespace/name`).
    pub applied: usize,
    /// Nodes that are Ready.
    pub ready_nodes: Vec<String>,
    /// Kubelet-serving CSRs approved.
    pub approved_csrs: Vec<String>,
}

/// The addon set for the spec: CCM and CSI always, Cilium when `cni.type: cilium`.
pub fn addon_inputs(spec: &ClusterSpec) -> AddonInputs {
    let mut inputs = AddonInputs::new(
        spec.kubernetes_version(),
        &spec.cluster_name,
        spec.network.pod_cidr,
    );
    inputs.load_balancer_location = Some(spec.hetzner.region.clone());
    inputs
}

fn addon_objects(spec: &ClusterSpec, inputs: &AddonInputs) -> Vec<serde_json::Value> {
    match spec.cni.cni_type {
        CniType::Cilium => manifests::all(inputs),
        CniType::Flannel => manifests::ccm(inputs)
            .into_iter()
            .chain(manifests::csi(inputs))
            .collect(),
    }
}

/// The daemonsets that must be ready.
fn addon_daemonsets(spec: &ClusterSpec) -> Vec<&'static str> {
    manifests::ADDON_DAEMONSETS
        .into_iter()
        .filter(|d| spec.cni.cni_type == CniType::Cilium || !d.contains("cilium"))
        .collect()
}

fn addon_deployments(spec: &ClusterSpec) -> Vec<&'static str> {
    manifests::ADDON_DEPLOYMENTS
        .into_iter()
        .filter(|d| spec.cni.cni_type == CniType::Cilium || !d.contains("cilium"))
        .collect()
}

/// A client for the cluster behind `kubeconfig` (the one place that reads a kubeconfig file).
///
/// # Errors
/// Permanent when the file cannot be read; the client's class when it cannot be built.
pub async fn connect(kubeconfig: &Path) -> Result<KubeClient, StepError> {
    let bytes = std::fs::read(kubeconfig)
        .map_err(|e| StepError::permanent(format!("cannot read {}: {e}", kubeconfig.display())))?;
    KubeClient::from_kubeconfig(&bytes)
        .await
        .map_err(kube_error)
}

/// Step `kube/hcloud-secret`: the token and network id the CCM and CSI driver read.
pub async fn apply_hcloud_secret(
    ctx: &Ctx,
    policy: &RetryPolicy,
    kubeconfig: &Path,
    token: &HcloudToken,
    network_id: i64,
) -> Result<(), WorkflowError> {
    ctx.step(
        "kube/hcloud-secret",
        policy,
        &(network_id, kubeconfig),
        |_| async {
            let kube = connect(kubeconfig).await?;
            kube.apply_hcloud_secret(token, network_id)
                .await
                .map_err(kube_error)
        },
    )
    .await
}

/// Step `kube/addons`: applies the addon objects of the spec; returns how many were applied.
pub async fn apply_addons(
    ctx: &Ctx,
    policy: &RetryPolicy,
    spec: &ClusterSpec,
    kubeconfig: &Path,
) -> Result<usize, WorkflowError> {
    apply_addons_as(ctx, "kube/addons", policy, spec, kubeconfig).await
}

/// [`apply_addons`] as the step `key` (an upgrade re-applies them for each Kubernetes step).
pub async fn apply_addons_as(
    ctx: &Ctx,
    key: &str,
    policy: &RetryPolicy,
    spec: &ClusterSpec,
    kubeconfig: &Path,
) -> Result<usize, WorkflowError> {
    let inputs = addon_inputs(spec);
    let objects = addon_objects(spec, &inputs);
    ctx.step(key, policy, &objects, |_| async {
        let kube = connect(kubeconfig).await?;
        let report = kube.apply_all(&objects).await.map_err(kube_error)?;
        Ok(report.applied.len())
    })
    .await
}

/// Step `kube/nodes-ready`: every server is a Ready node, approving the kubelet-serving CSRs of
/// known nodes on every attempt. Returns the Ready nodes and the approved CSRs.
pub async fn wait_nodes_ready(
    ctx: &Ctx,
    wait: &RetryPolicy,
    servers: &[ServerInfo],
    kubeconfig: &Path,
) -> Result<(Vec<String>, Vec<String>), WorkflowError> {
    let identities: Vec<NodeIdentity> = servers.iter().map(node_identity).collect();
    let expected = servers.len();
    ctx.step(
        "kube/nodes-ready",
        wait,
        &(&identities_key(&identities), expected),
        |_| async {
            let kube = connect(kubeconfig).await?;
            let csrs = kube
                .approve_kubelet_serving_csrs(&identities)
                .await
                .map_err(kube_error)?;
            for (name, why) in &csrs.refused {
                tracing::warn!(csr = %name, reason = %why, "kubelet-serving CSR left pending");
            }
            let status = kube.nodes_ready(expected).await.map_err(kube_error)?;
            Ok((status.ready, csrs.approved))
        },
    )
    .await
}

/// Step `kube/addons-ready`: the addons' deployments are available and daemonsets ready.
pub async fn wait_addons_ready(
    ctx: &Ctx,
    wait: &RetryPolicy,
    spec: &ClusterSpec,
    kubeconfig: &Path,
) -> Result<(), WorkflowError> {
    wait_addons_ready_as(ctx, "kube/addons-ready", wait, spec, kubeconfig).await
}

/// [`wait_addons_ready`] as the step `key`.
pub async fn wait_addons_ready_as(
    ctx: &Ctx,
    key: &str,
    wait: &RetryPolicy,
    spec: &ClusterSpec,
    kubeconfig: &Path,
) -> Result<(), WorkflowError> {
    let deployments = addon_deployments(spec);
    let daemonsets = addon_daemonsets(spec);
    ctx.step(key, wait, &(&deployments, &daemonsets), |_| async {
        let kube = connect(kubeconfig).await?;
        kube.deployments_available(ADDON_NAMESPACE, &deployments)
            .await
            .map_err(kube_error)?;
        kube.daemonsets_ready(ADDON_NAMESPACE, &daemonsets)
            .await
            .map_err(kube_error)
    })
    .await
}

/// Step `kube/verify-volume`: the storage smoke test (a volume claim binds, then is removed).
pub async fn verify_volume(
    ctx: &Ctx,
    wait: &RetryPolicy,
    kubeconfig: &Path,
) -> Result<(), WorkflowError> {
    ctx.step("kube/verify-volume", wait, &"pvc", |_| async {
        let kube = connect(kubeconfig).await?;
        kube.smoke_test_pvc().await.map_err(kube_error)
    })
    .await
}

/// The name and addresses (private, public IPv4, public IPv6) a server's kubelet may claim.
fn node_identity(server: &ServerInfo) -> NodeIdentity {
    NodeIdentity {
        name: server.name.clone(),
        addresses: server
            .private_ip
            .into_iter()
            .chain(server.public_ipv4)
            .map(IpAddr::V4)
            .chain(ipv6_host(server.public_ipv6.as_deref()))
            .collect(),
    }
}

/// Hetzner gives a server a /64; its address is `<prefix>::1`.
fn ipv6_host(net: Option<&str>) -> Option<IpAddr> {
    let prefix = net?.split('/').next()?;
    let addr: std::net::Ipv6Addr = prefix.parse().ok()?;
    let mut segments = addr.segments();
    segments[7] = 1;
    Some(IpAddr::V6(std::net::Ipv6Addr::from(segments)))
}

fn identities_key(ids: &[NodeIdentity]) -> Vec<(String, Vec<String>)> {
    ids.iter()
        .map(|i| {
            (
                i.name.clone(),
                i.addresses.iter().map(ToString::to_string).collect(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_host_is_prefix_one() {
        assert_eq!(
            ipv6_host(Some("2001:db8:1:2::/64")),
            Some("2001:db8:1:2::1".parse().unwrap())
        );
        assert_eq!(ipv6_host(None), None);
        assert_eq!(ipv6_host(Some("garbage")), None);
    }

    #[test]
    fn flannel_clusters_get_no_cilium() {
        let yaml = crate::spec::EXAMPLE_YAML.replace("type: cilium", "type: flannel");
        let spec = ClusterSpec::from_yaml(&yaml, "t").unwrap();
        let objects = addon_objects(&spec, &addon_inputs(&spec));
        assert!(!objects.iter().any(|o| o.to_string().contains("cilium")));
        assert!(
            addon_daemonsets(&spec)
                .iter()
                .all(|d| !d.contains("cilium"))
        );
    }
}
