//! Serde types for the Talos `v1alpha1` machine-config document: only the fields hk8s emits,
//! in the order talosctl writes them, empty optional fields skipped.
//!
//! There is deliberately no `persist` field: talosctl still writes `persist: true`, but the key
//! is deprecated (`docgen:nodoc`), ignored by Talos, and absent from the v1.11 JSON schema
//! (whose `v1alpha1.Config` forbids additional properties), so a config with it fails schema
//! validation.

use std::collections::BTreeMap;

use serde::Serialize;

fn is_false(value: &bool) -> bool {
    !*value
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Document {
    pub version: &'static str,
    pub debug: bool,
    pub machine: Machine,
    pub cluster: Cluster,
}

/// `crt` + `key` (both base64 of PEM); `key` is `""` where Talos forbids the key.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PemPair {
    pub crt: String,
    pub key: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Machine {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub token: String,
    pub ca: PemPair,
    #[serde(rename = "certSANs")]
    pub cert_sans: Vec<String>,
    pub kubelet: Kubelet,
    pub network: Network,
    pub install: Install,
    pub features: Features,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Kubelet {
    pub image: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_args: BTreeMap<String, String>,
    pub default_runtime_seccomp_profile_enabled: bool,
    #[serde(rename = "nodeIP", skip_serializing_if = "Option::is_none")]
    pub node_ip: Option<KubeletNodeIp>,
    pub disable_manifests_directory: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KubeletNodeIp {
    pub valid_subnets: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Network {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Install {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    pub wipe: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Features {
    pub rbac: bool,
    pub stable_hostname: bool,
    pub apid_check_ext_key_usage: bool,
    pub disk_quota_support: bool,
    pub kube_prism: KubePrism,
    #[serde(rename = "hostDNS")]
    pub host_dns: HostDns,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct KubePrism {
    pub enabled: bool,
    pub port: u16,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct HostDns {
    pub enabled: bool,
    #[serde(rename = "forwardKubeDNSToHost")]
    pub forward_kube_dns_to_host: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Cluster {
    pub id: String,
    pub secret: String,
    pub control_plane: ControlPlane,
    pub cluster_name: String,
    pub network: ClusterNetwork,
    pub token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aescbc_encryption_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secretbox_encryption_secret: Option<String>,
    pub ca: PemPair,
    #[serde(rename = "aggregatorCA", skip_serializing_if = "Option::is_none")]
    pub aggregator_ca: Option<PemPair>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<KeyOnly>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_server: Option<ApiServer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub controller_manager: Option<ImageOnly>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<Proxy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<ImageOnly>,
    pub discovery: Discovery,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd: Option<Etcd>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_cloud_provider: Option<ExternalCloudProvider>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ControlPlane {
    pub endpoint: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClusterNetwork {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cni: Option<CniConfig>,
    pub dns_domain: String,
    pub pod_subnets: Vec<String>,
    pub service_subnets: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct CniConfig {
    pub name: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct KeyOnly {
    pub key: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ImageOnly {
    pub image: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApiServer {
    pub image: String,
    #[serde(rename = "certSANs")]
    pub cert_sans: Vec<String>,
    pub disable_pod_security_policy: bool,
    pub admission_control: Vec<AdmissionPlugin>,
    pub audit_policy: AuditPolicy,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct AdmissionPlugin {
    pub name: &'static str,
    pub configuration: PodSecurityConfiguration,
}

/// Field order as talosctl writes it (Go maps are sorted).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PodSecurityConfiguration {
    pub api_version: &'static str,
    pub defaults: PodSecurityDefaults,
    pub exemptions: PodSecurityExemptions,
    pub kind: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct PodSecurityDefaults {
    pub audit: &'static str,
    #[serde(rename = "audit-version")]
    pub audit_version: &'static str,
    pub enforce: &'static str,
    #[serde(rename = "enforce-version")]
    pub enforce_version: &'static str,
    pub warn: &'static str,
    #[serde(rename = "warn-version")]
    pub warn_version: &'static str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PodSecurityExemptions {
    pub namespaces: Vec<String>,
    pub runtime_classes: Vec<String>,
    pub usernames: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuditPolicy {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub rules: Vec<AuditRule>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct AuditRule {
    pub level: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Proxy {
    #[serde(skip_serializing_if = "is_false")]
    pub disabled: bool,
    pub image: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Discovery {
    pub enabled: bool,
    pub registries: DiscoveryRegistries,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct DiscoveryRegistries {
    pub kubernetes: KubernetesRegistry,
    pub service: ServiceRegistry,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct KubernetesRegistry {
    pub disabled: bool,
}

/// Serializes as `{}` (the service registry enabled with its defaults).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ServiceRegistry {}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Etcd {
    pub ca: PemPair,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub advertised_subnets: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ExternalCloudProvider {
    pub enabled: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<String>,
}
