//! Machine configs (`controlplane.yaml` / `worker.yaml`) for the v1.9–v1.11 contracts.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use crate::contract::Contract;
use crate::error::{Error, Result};
use crate::secrets::{CertAndKey, EncryptionSecret, SecretsBundle};
use crate::v1alpha1::{
    AdmissionPlugin, ApiServer, AuditPolicy, AuditRule, Cluster, ClusterNetwork, CniConfig,
    ControlPlane, Discovery, DiscoveryRegistries, Document, Etcd, ExternalCloudProvider, Features,
    HostDns, ImageOnly, Install, KeyOnly, KubePrism, Kubelet, KubeletNodeIp, KubernetesRegistry,
    Machine, Network, PemPair, PodSecurityConfiguration, PodSecurityDefaults,
    PodSecurityExemptions, Proxy, ServiceRegistry,
};
use crate::yaml;

/// Port of the Kubernetes API behind the control-plane endpoint.
pub const KUBERNETES_API_PORT: u16 = 6443;

/// The role of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Runs etcd and the Kubernetes control plane (`type: controlplane`).
    ControlPlane,
    /// Runs workloads only (`type: worker`).
    Worker,
}

/// Which CNI the cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Cni {
    /// Talos's built-in flannel (no `cni` key in the config, as talosctl writes it).
    #[default]
    Flannel,
    /// Cilium, installed by hk8s: Talos gets `cni.name: none` and kube-proxy disabled
    /// (Cilium's kube-proxy replacement).
    Cilium,
}

/// Hetzner Cloud specific settings (as in hcloud-talos' config patches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HetznerSettings {
    /// The cluster's private network, e.g. `10.0.0.0/16`: kubelet `nodeIP.validSubnets` and
    /// etcd `advertisedSubnets`, so node traffic stays on the private network.
    pub private_network_cidr: String,
    /// Manifests Talos applies for the external cloud provider (empty: hk8s installs the
    /// hcloud CCM itself).
    pub cloud_provider_manifests: Vec<String>,
}

/// Everything a node's machine config depends on besides the secrets bundle.
///
/// [`MachineConfigInput::new`] gives exactly what `talosctl gen config <name> https://<host>:6443`
/// would produce; set the other fields for hk8s clusters (or use
/// [`MachineConfigInput::hetzner`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineConfigInput {
    /// Node role.
    pub role: Role,
    /// Cluster name (`cluster.clusterName`).
    pub cluster_name: String,
    /// Host of the control-plane endpoint (the load balancer IP); the endpoint is
    /// `https://<host>:6443`, and the host is the first Kubernetes API certificate SAN.
    pub endpoint_host: String,
    /// Kubernetes version, with or without the leading `v` (e.g. `1.34.1`).
    pub kubernetes_version: String,
    /// Machine-config contract.
    pub contract: Contract,
    /// Additional certificate SANs (e.g. the load balancer IP and floating IPs): `machine.certSANs`
    /// and, after the endpoint host, `cluster.apiServer.certSANs`. Duplicates are dropped.
    pub cert_sans: Vec<String>,
    /// Cluster DNS domain (default `cluster.local`).
    pub dns_domain: String,
    /// Pod CIDRs (default `10.244.0.0/16`).
    pub pod_subnets: Vec<String>,
    /// Service CIDRs (default `10.96.0.0/12`).
    pub service_subnets: Vec<String>,
    /// CNI choice.
    pub cni: Cni,
    /// Installer image (`machine.install.image`), e.g. from [`crate::hcloud_installer_image`].
    pub install_image: Option<String>,
    /// Install disk (`machine.install.disk`); Hetzner images are already on the disk, so hk8s
    /// may leave it unset.
    pub install_disk: Option<String>,
    /// Node hostname (`machine.network.hostname`).
    pub hostname: Option<String>,
    /// Hetzner settings; `None` renders a plain talosctl config.
    pub hetzner: Option<HetznerSettings>,
    /// Per-component Kubernetes versions that differ from `kubernetes_version` (a rolling
    /// Kubernetes upgrade moves one component at a time).
    pub component_versions: ComponentVersions,
}

/// Kubernetes versions of single components; `None` means `kubernetes_version`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentVersions {
    /// `cluster.apiServer.image`.
    pub apiserver: Option<String>,
    /// `cluster.controllerManager.image`.
    pub controller_manager: Option<String>,
    /// `cluster.scheduler.image`.
    pub scheduler: Option<String>,
    /// `cluster.proxy.image`.
    pub proxy: Option<String>,
    /// `machine.kubelet.image`.
    pub kubelet: Option<String>,
}

impl MachineConfigInput {
    /// The inputs `talosctl gen config` uses by default for this cluster, endpoint host and
    /// Kubernetes version: default subnets and DNS domain, flannel, no extras.
    pub fn new(
        role: Role,
        cluster_name: impl Into<String>,
        endpoint_host: impl Into<String>,
        kubernetes_version: impl Into<String>,
        contract: Contract,
    ) -> Self {
        let endpoint_host = endpoint_host.into();
        // talosctl switches to IPv6 defaults when the endpoint is an IPv6 literal.
        let ipv6 = matches!(endpoint_host.parse::<IpAddr>(), Ok(IpAddr::V6(_)));
        let (pods, services) = if ipv6 {
            ("fc00:db8:10::/56", "fc00:db8:20::/112")
        } else {
            ("10.244.0.0/16", "10.96.0.0/12")
        };
        Self {
            role,
            cluster_name: cluster_name.into(),
            endpoint_host,
            kubernetes_version: kubernetes_version.into(),
            contract,
            cert_sans: Vec::new(),
            dns_domain: "cluster.local".to_owned(),
            pod_subnets: vec![pods.to_owned()],
            service_subnets: vec![services.to_owned()],
            cni: Cni::Flannel,
            install_image: None,
            install_disk: None,
            hostname: None,
            hetzner: None,
            component_versions: ComponentVersions::default(),
        }
    }

    /// An hk8s node on Hetzner Cloud: endpoint = the load balancer IP (also a SAN), the
    /// factory installer image for `talos_version` (vanilla schematic unless given), hostname,
    /// private network, external cloud provider.
    #[allow(clippy::too_many_arguments)]
    pub fn hetzner(
        role: Role,
        cluster_name: impl Into<String>,
        load_balancer_ip: impl Into<String>,
        kubernetes_version: impl Into<String>,
        talos_version: &str,
        schematic: Option<&str>,
        private_network_cidr: impl Into<String>,
        hostname: impl Into<String>,
    ) -> Result<Self> {
        let contract = Contract::from_talos_version(talos_version)?;
        let lb = load_balancer_ip.into();
        let mut input = Self::new(role, cluster_name, lb.clone(), kubernetes_version, contract);
        input.cert_sans = vec![lb];
        input.install_image = Some(crate::contract::hcloud_installer_image(
            talos_version,
            schematic,
        )?);
        input.hostname = Some(hostname.into());
        input.hetzner = Some(HetznerSettings {
            private_network_cidr: private_network_cidr.into(),
            cloud_provider_manifests: Vec::new(),
        });
        Ok(input)
    }

    /// `https://<endpoint host>:6443` (IPv6 literals in brackets).
    pub fn endpoint_url(&self) -> String {
        match self.endpoint_host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("https://[{v6}]:{KUBERNETES_API_PORT}"),
            _ => format!("https://{}:{KUBERNETES_API_PORT}", self.endpoint_host),
        }
    }

    fn validate(&self) -> Result<()> {
        let invalid = |field: &'static str, problem: String| Error::InvalidInput { field, problem };
        if self.cluster_name.trim().is_empty() {
            return Err(invalid("cluster_name", "empty".to_owned()));
        }
        let host = &self.endpoint_host;
        if host.is_empty() || host.contains(['/', ' ']) || host.contains("://") {
            return Err(invalid(
                "endpoint_host",
                format!("{host:?} is not a bare host name or IP address"),
            ));
        }
        if host.contains(':') && host.parse::<IpAddr>().is_err() {
            return Err(invalid(
                "endpoint_host",
                format!("{host:?} must not carry a port (the endpoint port is 6443)"),
            ));
        }
        kubernetes_tag(&self.kubernetes_version)?;
        if self.pod_subnets.is_empty() {
            return Err(invalid("pod_subnets", "empty".to_owned()));
        }
        if self.service_subnets.is_empty() {
            return Err(invalid("service_subnets", "empty".to_owned()));
        }
        for cidr in &self.pod_subnets {
            check_cidr(cidr).map_err(|p| invalid("pod_subnets", p))?;
        }
        for cidr in &self.service_subnets {
            check_cidr(cidr).map_err(|p| invalid("service_subnets", p))?;
        }
        if let Some(h) = &self.hetzner {
            check_cidr(&h.private_network_cidr)
                .map_err(|p| invalid("hetzner.private_network_cidr", p))?;
        }
        if self.dns_domain.trim().is_empty() {
            return Err(invalid("dns_domain", "empty".to_owned()));
        }
        if let Some(name) = &self.hostname
            && (name.is_empty()
                || name.len() > 253
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
        {
            return Err(invalid(
                "hostname",
                format!("{name:?} is not a valid host name"),
            ));
        }
        Ok(())
    }
}

/// `1.34.1` / `v1.34.1` → `v1.34.1`.
fn kubernetes_tag(version: &str) -> Result<String> {
    let v = version.trim();
    let digits = v.strip_prefix('v').unwrap_or(v);
    let parts: Vec<&str> = digits.split('.').collect();
    let ok = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !ok {
        return Err(Error::InvalidInput {
            field: "kubernetes_version",
            problem: format!("{version:?} is not MAJOR.MINOR.PATCH"),
        });
    }
    Ok(format!("v{digits}"))
}

fn check_cidr(cidr: &str) -> Result<(), String> {
    let (addr, prefix) = cidr
        .split_once('/')
        .ok_or_else(|| format!("{cidr:?} is not a CIDR (address/prefix)"))?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{cidr:?} has an invalid address"))?;
    let prefix: u8 = prefix
        .parse()
        .map_err(|_| format!("{cidr:?} has an invalid prefix length"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(format!("{cidr:?} prefix length exceeds {max}"));
    }
    Ok(())
}

fn dedup(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// A rendered machine config for one node.
///
/// It embeds CA keys and tokens, so `Debug` shows only the role and hostname.
#[derive(Clone)]
pub struct MachineConfig {
    role: Role,
    hostname: Option<String>,
    document: Document,
}

impl fmt::Debug for MachineConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MachineConfig")
            .field("role", &self.role)
            .field("hostname", &self.hostname)
            .finish_non_exhaustive()
    }
}

impl MachineConfig {
    /// The node role this config is for.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The hostname set in the config, if any.
    pub fn hostname(&self) -> Option<&str> {
        self.hostname.as_deref()
    }

    /// The config as YAML (talosctl layout, without the deprecated `persist` key), ready to be
    /// sent with ApplyConfiguration or used as Hetzner user data. Contains secrets.
    pub fn to_yaml(&self) -> Result<String> {
        yaml::to_string("machine config", &self.document)
    }
}

fn pem_pair(ca: &CertAndKey, with_key: bool) -> PemPair {
    PemPair {
        crt: ca.crt_base64(),
        key: if with_key {
            ca.key_base64().expose().to_owned()
        } else {
            String::new()
        },
    }
}

/// Renders the machine config for one node from the cluster's secrets bundle.
pub fn generate_machine_config(
    bundle: &SecretsBundle,
    input: &MachineConfigInput,
) -> Result<MachineConfig> {
    input.validate()?;
    let control_plane = input.role == Role::ControlPlane;
    let tag = kubernetes_tag(&input.kubernetes_version)?;
    let versions = &input.component_versions;
    let tag_of = |v: &Option<String>| -> Result<String> {
        match v {
            Some(v) => kubernetes_tag(v),
            None => Ok(tag.clone()),
        }
    };
    let (apiserver_tag, cm_tag, scheduler_tag, proxy_tag, kubelet_tag) = (
        tag_of(&versions.apiserver)?,
        tag_of(&versions.controller_manager)?,
        tag_of(&versions.scheduler)?,
        tag_of(&versions.proxy)?,
        tag_of(&versions.kubelet)?,
    );
    let hetzner = input.hetzner.as_ref();
    // The contract only matters for output from v1.12 on; v1.8–v1.11 render identically.
    let _ = input.contract;

    let mut kubelet_args = BTreeMap::new();
    if hetzner.is_some() {
        kubelet_args.insert("cloud-provider".to_owned(), "external".to_owned());
        kubelet_args.insert("rotate-server-certificates".to_owned(), "true".to_owned());
    }
    let mut node_labels = BTreeMap::new();
    if control_plane {
        node_labels.insert(
            "node.kubernetes.io/exclude-from-external-load-balancers".to_owned(),
            String::new(),
        );
    }

    let machine = Machine {
        kind: if control_plane {
            "controlplane"
        } else {
            "worker"
        },
        token: bundle.trustd_token().expose().to_owned(),
        // Talos rejects an OS CA key on non-controlplane nodes.
        ca: pem_pair(bundle.os_ca(), control_plane),
        cert_sans: dedup(input.cert_sans.iter().cloned()),
        kubelet: Kubelet {
            image: format!("ghcr.io/siderolabs/kubelet:{kubelet_tag}"),
            extra_args: kubelet_args,
            default_runtime_seccomp_profile_enabled: true,
            node_ip: hetzner.map(|h| KubeletNodeIp {
                valid_subnets: vec![h.private_network_cidr.clone()],
            }),
            disable_manifests_directory: true,
        },
        network: Network {
            hostname: input.hostname.clone(),
        },
        install: Install {
            disk: input.install_disk.clone(),
            image: input.install_image.clone(),
            wipe: false,
        },
        features: Features {
            rbac: true,
            stable_hostname: true,
            apid_check_ext_key_usage: true,
            disk_quota_support: true,
            kube_prism: KubePrism {
                enabled: true,
                port: 7445,
            },
            host_dns: HostDns {
                enabled: true,
                forward_kube_dns_to_host: true,
            },
        },
        node_labels,
    };

    let (aescbc, secretbox) = match bundle.encryption_secret() {
        EncryptionSecret::Secretbox(s) => (None, Some(s.expose().to_owned())),
        EncryptionSecret::AesCbc(s) => (Some(s.expose().to_owned()), None),
    };
    let cilium = input.cni == Cni::Cilium;
    let cluster = Cluster {
        id: bundle.cluster_id().to_owned(),
        secret: bundle.cluster_secret().expose().to_owned(),
        control_plane: ControlPlane {
            endpoint: input.endpoint_url(),
        },
        cluster_name: input.cluster_name.clone(),
        network: ClusterNetwork {
            cni: cilium.then_some(CniConfig { name: "none" }),
            dns_domain: input.dns_domain.clone(),
            pod_subnets: input.pod_subnets.clone(),
            service_subnets: input.service_subnets.clone(),
        },
        token: bundle.bootstrap_token().expose().to_owned(),
        aescbc_encryption_secret: aescbc.filter(|_| control_plane),
        secretbox_encryption_secret: secretbox.filter(|_| control_plane),
        // Talos rejects a Kubernetes CA key on non-controlplane nodes.
        ca: pem_pair(bundle.kubernetes_ca(), control_plane),
        aggregator_ca: control_plane.then(|| pem_pair(bundle.aggregator_ca(), true)),
        service_account: control_plane.then(|| KeyOnly {
            key: crate::secrets::base64_of(bundle.service_account_key_pem().expose()),
        }),
        api_server: control_plane.then(|| ApiServer {
            image: format!("registry.k8s.io/kube-apiserver:{apiserver_tag}"),
            cert_sans: dedup(
                std::iter::once(input.endpoint_host.clone()).chain(input.cert_sans.iter().cloned()),
            ),
            disable_pod_security_policy: true,
            admission_control: vec![pod_security_admission()],
            audit_policy: AuditPolicy {
                api_version: "audit.k8s.io/v1",
                kind: "Policy",
                rules: vec![AuditRule { level: "Metadata" }],
            },
        }),
        controller_manager: control_plane.then(|| ImageOnly {
            image: format!("registry.k8s.io/kube-controller-manager:{cm_tag}"),
        }),
        // kube-proxy runs from the control plane's bootstrap manifests, so only the control
        // plane config carries `proxy`.
        proxy: control_plane.then(|| Proxy {
            disabled: cilium,
            image: format!("registry.k8s.io/kube-proxy:{proxy_tag}"),
        }),
        scheduler: control_plane.then(|| ImageOnly {
            image: format!("registry.k8s.io/kube-scheduler:{scheduler_tag}"),
        }),
        discovery: Discovery {
            enabled: true,
            registries: DiscoveryRegistries {
                kubernetes: KubernetesRegistry { disabled: true },
                service: ServiceRegistry {},
            },
        },
        etcd: control_plane.then(|| Etcd {
            ca: pem_pair(bundle.etcd_ca(), true),
            advertised_subnets: hetzner
                .map(|h| vec![h.private_network_cidr.clone()])
                .unwrap_or_default(),
        }),
        // The kubelet reads this from every node's own config, so workers get it too.
        external_cloud_provider: hetzner.map(|h| ExternalCloudProvider {
            enabled: true,
            manifests: h.cloud_provider_manifests.clone(),
        }),
    };

    Ok(MachineConfig {
        role: input.role,
        hostname: input.hostname.clone(),
        document: Document {
            version: "v1alpha1",
            debug: false,
            machine,
            cluster,
        },
    })
}

fn pod_security_admission() -> AdmissionPlugin {
    AdmissionPlugin {
        name: "PodSecurity",
        configuration: PodSecurityConfiguration {
            api_version: "pod-security.admission.config.k8s.io/v1alpha1",
            defaults: PodSecurityDefaults {
                audit: "restricted",
                audit_version: "latest",
                enforce: "baseline",
                enforce_version: "latest",
                warn: "restricted",
                warn_version: "latest",
            },
            exemptions: PodSecurityExemptions {
                namespaces: vec!["kube-system".to_owned()],
                runtime_classes: Vec::new(),
                usernames: Vec::new(),
            },
            kind: "PodSecurityConfiguration",
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use serde_json::{Value, json};

    use super::*;
    use crate::testutil::{bundle, spec_dir, spec_file, yaml_to_json};

    /// A named edit applied to a copy of a test value.
    type Edit<T> = (&'static str, fn(&mut T));

    /// The v1.11 schema validator, built once; `None` when the spec folder is absent.
    fn validator() -> Option<&'static jsonschema::Validator> {
        static VALIDATOR: OnceLock<Option<jsonschema::Validator>> = OnceLock::new();
        VALIDATOR
            .get_or_init(|| {
                let dir = spec_dir()?;
                let schema: Value =
                    serde_json::from_str(&spec_file(&dir, "talos-config.schema.json")).unwrap();
                Some(jsonschema::draft202012::new(&schema).unwrap())
            })
            .as_ref()
    }

    fn schema_errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
        v.iter_errors(doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }

    fn render(input: &MachineConfigInput) -> Value {
        yaml_to_json(
            &generate_machine_config(bundle(), input)
                .unwrap()
                .to_yaml()
                .unwrap(),
        )
    }

    fn hetzner_input(role: Role, talos: &str) -> MachineConfigInput {
        MachineConfigInput::hetzner(
            role,
            "demo",
            "203.0.113.10",
            "1.34.1",
            talos,
            None,
            "10.0.0.0/16",
            "demo-cp-1",
        )
        .unwrap()
    }

    /// Every difference between two JSON values, as `path: left != right` lines.
    fn json_diff(path: &str, left: &Value, right: &Value, out: &mut Vec<String>) {
        match (left, right) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, va) in a {
                    let p = format!("{path}.{k}");
                    match b.get(k) {
                        Some(vb) => json_diff(&p, va, vb, out),
                        None => out.push(format!("{p}: only in generated")),
                    }
                }
                for k in b.keys().filter(|k| !a.contains_key(*k)) {
                    out.push(format!("{path}.{k}: only in golden"));
                }
            }
            (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
                for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                    json_diff(&format!("{path}[{i}]"), va, vb, out);
                }
            }
            _ if left == right => {}
            _ => out.push(format!("{path}: generated {left} != golden {right}")),
        }
    }

    #[test]
    fn golden_base_configs_match_structurally() {
        let Some(dir) = spec_dir() else { return };
        let secrets = crate::SecretsBundle::from_yaml(
            &spec_file(&dir, "talos-fixtures/v1.11/secrets.yaml"),
            "secrets.yaml",
        )
        .unwrap();
        for (role, file) in [
            (Role::ControlPlane, "base-controlplane.yaml"),
            (Role::Worker, "base-worker.yaml"),
        ] {
            let input = MachineConfigInput::new(role, "base", "base", "1.28.0", Contract::V1_11);
            let generated = yaml_to_json(
                &generate_machine_config(&secrets, &input)
                    .unwrap()
                    .to_yaml()
                    .unwrap(),
            );
            let mut golden =
                yaml_to_json(&spec_file(&dir, &format!("talos-fixtures/v1.11/{file}")));
            // `persist` is deprecated and not in the schema; we never emit it.
            assert_eq!(
                golden.as_object_mut().unwrap().remove("persist"),
                Some(json!(true))
            );
            let mut diffs = Vec::new();
            json_diff("", &generated, &golden, &mut diffs);
            assert!(diffs.is_empty(), "{file} differs:\n{}", diffs.join("\n"));
        }
    }

    #[test]
    fn golden_comparison_reports_differences() {
        let Some(dir) = spec_dir() else { return };
        let secrets = crate::SecretsBundle::from_yaml(
            &spec_file(&dir, "talos-fixtures/v1.11/secrets.yaml"),
            "secrets.yaml",
        )
        .unwrap();
        let input =
            MachineConfigInput::new(Role::Worker, "other", "base", "1.28.0", Contract::V1_11);
        let generated = yaml_to_json(
            &generate_machine_config(&secrets, &input)
                .unwrap()
                .to_yaml()
                .unwrap(),
        );
        let golden = yaml_to_json(&spec_file(&dir, "talos-fixtures/v1.11/base-worker.yaml"));
        let mut diffs = Vec::new();
        json_diff("", &generated, &golden, &mut diffs);
        assert_eq!(
            diffs,
            [
                ".cluster.clusterName: generated \"other\" != golden \"base\"",
                ".persist: only in golden"
            ]
        );
    }

    #[test]
    fn overrides_fixture_agrees_on_the_fields_we_support() {
        let Some(dir) = spec_dir() else { return };
        let secrets = crate::SecretsBundle::from_yaml(
            &spec_file(&dir, "talos-fixtures/v1.11/secrets.yaml"),
            "secrets.yaml",
        )
        .unwrap();
        for (role, file) in [
            (Role::ControlPlane, "overrides-controlplane.yaml"),
            (Role::Worker, "overrides-worker.yaml"),
        ] {
            let mut input =
                MachineConfigInput::new(role, "base", "base", "1.28.0", Contract::V1_11);
            input.cert_sans = vec!["foo".into(), "bar".into()];
            input.install_disk = Some("/dev/vda".into());
            input.dns_domain = "example.com".into();
            let ours = yaml_to_json(
                &generate_machine_config(&secrets, &input)
                    .unwrap()
                    .to_yaml()
                    .unwrap(),
            );
            let golden = yaml_to_json(&spec_file(&dir, &format!("talos-fixtures/v1.11/{file}")));
            for pointer in [
                "/machine/certSANs",
                "/cluster/apiServer/certSANs",
                "/machine/install/disk",
                "/cluster/network/dnsDomain",
                "/machine/ca",
                "/cluster/ca",
            ] {
                assert_eq!(
                    ours.pointer(pointer),
                    golden.pointer(pointer),
                    "{file} {pointer}"
                );
            }
        }
    }

    #[test]
    fn golden_fixtures_validate_only_without_persist() {
        let (Some(dir), Some(v)) = (spec_dir(), validator()) else {
            return;
        };
        for name in ["base", "overrides"] {
            for role in ["controlplane", "worker"] {
                let file = format!("talos-fixtures/v1.11/{name}-{role}.yaml");
                let mut doc = yaml_to_json(&spec_file(&dir, &file));
                assert!(!v.is_valid(&doc), "{file} with persist should fail");
                doc.as_object_mut().unwrap().remove("persist");
                let errors = schema_errors(v, &doc);
                assert!(errors.is_empty(), "{file}: {errors:?}");
            }
        }
    }

    #[test]
    fn broken_configs_fail_validation() {
        let Some(v) = validator() else { return };
        let good = render(&hetzner_input(Role::ControlPlane, "v1.11.6"));
        assert!(v.is_valid(&good));
        let breakages: [Edit<Value>; 4] = [
            ("unknown field", |d| d["machine"]["notAField"] = json!(1)),
            ("wrong type", |d| d["debug"] = json!("yes")),
            ("bad enum", |d| {
                d["cluster"]["network"]["cni"]["name"] = json!("cilium")
            }),
            ("bad machine type", |d| {
                d["machine"]["type"] = json!("master")
            }),
        ];
        for (what, breakage) in breakages {
            let mut doc = good.clone();
            breakage(&mut doc);
            assert!(!v.is_valid(&doc), "{what} should fail validation");
        }
    }

    #[test]
    fn every_generated_config_validates() {
        let Some(v) = validator() else { return };
        let mut checked = 0;
        for talos in ["v1.9.6", "v1.10.7", "v1.11.6"] {
            for cni in [Cni::Flannel, Cni::Cilium] {
                for role in [Role::ControlPlane, Role::Worker] {
                    let mut hetzner = hetzner_input(role, talos);
                    hetzner.cni = cni;
                    let contract = Contract::from_talos_version(talos).unwrap();
                    let mut plain = MachineConfigInput::new(
                        role,
                        "plain",
                        "k8s.example.com",
                        contract.default_kubernetes_version(),
                        contract,
                    );
                    plain.cni = cni;
                    for input in [hetzner, plain] {
                        let doc = render(&input);
                        let errors = schema_errors(v, &doc);
                        assert!(errors.is_empty(), "{talos} {cni:?} {role:?}: {errors:?}");
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 24);
    }

    #[test]
    fn hetzner_control_plane_settings() {
        let mut input = hetzner_input(Role::ControlPlane, "v1.11.6");
        input.cert_sans.push("198.51.100.7".to_owned()); // a floating IP
        input.cni = Cni::Cilium;
        let d = render(&input);
        assert_eq!(d["machine"]["type"], "controlplane");
        assert_eq!(
            d["cluster"]["controlPlane"]["endpoint"],
            "https://203.0.113.10:6443"
        );
        assert_eq!(
            d["cluster"]["apiServer"]["certSANs"],
            json!(["203.0.113.10", "198.51.100.7"])
        );
        assert_eq!(
            d["machine"]["certSANs"],
            json!(["203.0.113.10", "198.51.100.7"])
        );
        assert_eq!(d["machine"]["network"]["hostname"], "demo-cp-1");
        assert_eq!(
            d["machine"]["install"]["image"],
            format!(
                "factory.talos.dev/hcloud-installer/{}:v1.11.6",
                crate::VANILLA_SCHEMATIC
            )
        );
        assert_eq!(
            d["machine"]["kubelet"]["extraArgs"],
            json!({"cloud-provider": "external", "rotate-server-certificates": "true"})
        );
        assert_eq!(
            d["machine"]["kubelet"]["nodeIP"]["validSubnets"],
            json!(["10.0.0.0/16"])
        );
        assert_eq!(
            d["machine"]["kubelet"]["image"],
            "ghcr.io/siderolabs/kubelet:v1.34.1"
        );
        assert_eq!(
            d["cluster"]["etcd"]["advertisedSubnets"],
            json!(["10.0.0.0/16"])
        );
        assert_eq!(
            d["cluster"]["externalCloudProvider"],
            json!({"enabled": true})
        );
        assert_eq!(d["cluster"]["network"]["cni"], json!({"name": "none"}));
        assert_eq!(d["cluster"]["proxy"]["disabled"], true);
        assert_eq!(d["cluster"]["clusterName"], "demo");
        // Full CA material on the control plane.
        let b = bundle();
        assert_eq!(d["machine"]["ca"]["key"], b.os_ca().key_base64().expose());
        assert_eq!(
            d["cluster"]["ca"]["key"],
            b.kubernetes_ca().key_base64().expose()
        );
        assert_eq!(d["cluster"]["etcd"]["ca"]["crt"], b.etcd_ca().crt_base64());
        assert_eq!(
            d["cluster"]["serviceAccount"]["key"],
            crate::secrets::base64_of(b.service_account_key_pem().expose())
        );
        assert_eq!(d["machine"]["token"], b.trustd_token().expose());
        assert_eq!(d["cluster"]["token"], b.bootstrap_token().expose());
    }

    #[test]
    fn hetzner_worker_settings() {
        let mut input = hetzner_input(Role::Worker, "v1.10.7");
        input.cni = Cni::Cilium;
        input.hostname = Some("demo-worker-1".to_owned());
        let d = render(&input);
        assert_eq!(d["machine"]["type"], "worker");
        // Talos rejects CA keys on workers.
        assert_eq!(d["machine"]["ca"]["key"], "");
        assert_eq!(d["cluster"]["ca"]["key"], "");
        assert_eq!(d["machine"]["ca"]["crt"], bundle().os_ca().crt_base64());
        for absent in [
            "etcd",
            "apiServer",
            "aggregatorCA",
            "serviceAccount",
            "secretboxEncryptionSecret",
            "proxy",
        ] {
            assert!(d["cluster"].get(absent).is_none(), "{absent} on a worker");
        }
        assert!(d["machine"].get("nodeLabels").is_none());
        assert_eq!(d["cluster"]["externalCloudProvider"]["enabled"], true);
        assert_eq!(d["cluster"]["network"]["cni"]["name"], "none");
        assert_eq!(
            d["machine"]["kubelet"]["extraArgs"]["cloud-provider"],
            "external"
        );
        assert_eq!(
            d["machine"]["kubelet"]["nodeIP"]["validSubnets"],
            json!(["10.0.0.0/16"])
        );
        assert_eq!(d["machine"]["network"]["hostname"], "demo-worker-1");
        assert_eq!(
            d["machine"]["install"]["image"],
            format!(
                "factory.talos.dev/hcloud-installer/{}:v1.10.7",
                crate::VANILLA_SCHEMATIC
            )
        );
    }

    #[test]
    fn talos_1_9_uses_the_legacy_installer_path() {
        let d = render(&hetzner_input(Role::Worker, "v1.9.6"));
        assert_eq!(
            d["machine"]["install"]["image"],
            format!(
                "factory.talos.dev/installer/{}:v1.9.6",
                crate::VANILLA_SCHEMATIC
            )
        );
    }

    #[test]
    fn flannel_keeps_talos_defaults() {
        let d = render(&hetzner_input(Role::ControlPlane, "v1.11.6"));
        assert!(d["cluster"]["network"].get("cni").is_none());
        assert!(d["cluster"]["proxy"].get("disabled").is_none());
        assert_eq!(
            d["cluster"]["proxy"]["image"],
            "registry.k8s.io/kube-proxy:v1.34.1"
        );
    }

    #[test]
    fn yaml_layout_is_talosctl_like() {
        let input = MachineConfigInput::new(
            Role::ControlPlane,
            "base",
            "base",
            "v1.28.0",
            Contract::V1_11,
        );
        let yaml = generate_machine_config(bundle(), &input)
            .unwrap()
            .to_yaml()
            .unwrap();
        assert!(
            yaml.starts_with("version: v1alpha1\ndebug: false\nmachine:\n    type: controlplane\n"),
            "{yaml}"
        );
        assert!(yaml.contains("\n    network: {}\n"), "{yaml}");
        assert!(yaml.contains("\n            service: {}\n"), "{yaml}");
        assert!(yaml.contains("\n    certSANs: []\n"), "{yaml}");
        assert!(
            yaml.contains("\n        podSubnets:\n            - 10.244.0.0/16\n"),
            "{yaml}"
        );
        assert!(!yaml.contains("persist"));
        // Long base64 values stay plain one-line scalars.
        assert!(!yaml.contains(": >") && !yaml.contains(": |"), "{yaml}");
    }

    #[test]
    fn ipv6_endpoint_gets_brackets_and_v6_defaults() {
        let input = MachineConfigInput::new(
            Role::ControlPlane,
            "v6",
            "2001:db8::1",
            "1.34.1",
            Contract::V1_11,
        );
        assert_eq!(input.endpoint_url(), "https://[2001:db8::1]:6443");
        assert_eq!(input.pod_subnets, vec!["fc00:db8:10::/56"]);
        let d = render(&input);
        assert_eq!(
            d["cluster"]["apiServer"]["certSANs"],
            json!(["2001:db8::1"])
        );
        if let Some(v) = validator() {
            assert!(v.is_valid(&d));
        }
    }

    #[test]
    fn input_errors_name_the_field() {
        let base = || hetzner_input(Role::ControlPlane, "v1.11.6");
        let cases: [Edit<MachineConfigInput>; 7] = [
            ("cluster_name", |i| i.cluster_name = " ".into()),
            ("endpoint_host", |i| i.endpoint_host = "https://lb".into()),
            ("endpoint_host", |i| {
                i.endpoint_host = "10.0.0.1:6443".into()
            }),
            ("kubernetes_version", |i| {
                i.kubernetes_version = "latest".into()
            }),
            ("pod_subnets", |i| {
                i.pod_subnets = vec!["10.244.0.0/33".into()]
            }),
            ("hetzner.private_network_cidr", |i| {
                if let Some(h) = i.hetzner.as_mut() {
                    h.private_network_cidr = "10.0.0.0".into();
                }
            }),
            ("hostname", |i| i.hostname = Some("bad host".into())),
        ];
        for (field, breakage) in cases {
            let mut input = base();
            breakage(&mut input);
            let err = generate_machine_config(bundle(), &input).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidInput { field: f, .. } if *f == field),
                "{field}: {err}"
            );
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn debug_does_not_show_the_document() {
        let config =
            generate_machine_config(bundle(), &hetzner_input(Role::ControlPlane, "v1.11.6"))
                .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains(bundle().trustd_token().expose()));
        assert!(debug.contains("ControlPlane"));
        assert_eq!(config.role(), Role::ControlPlane);
        assert_eq!(config.hostname(), Some("demo-cp-1"));
    }
}
