//! The cluster spec: the YAML file a user writes, parsed and validated before any API call.
//!
//! The format is the seed's (`clusterName`, `hetzner`, `nodes`, `talos`, `kubernetes`, `cni`),
//! accepted as is, plus documented extensions (`network`, `firewall`, `workerPools`).
//! [`ClusterSpec::from_yaml`] parses and validates in one go and reports *every* problem,
//! each naming its field, so a user fixes a file in one round trip.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Longest cluster name: it must leave room for `-worker-NN` in a 63-character server name.
pub const MAX_CLUSTER_NAME_LEN: usize = 40;

/// Hetzner locations and the network zone each belongs to.
pub const LOCATIONS: &[(&str, &str)] = &[
    ("fsn1", "eu-central"),
    ("nbg1", "eu-central"),
    ("hel1", "eu-central"),
    ("ash", "us-east"),
    ("hil", "us-west"),
    ("sin", "ap-southeast"),
];

/// Talos minor versions whose machine-config contract hk8s generates.
pub const SUPPORTED_TALOS_MINORS: &[u64] = &[9, 10, 11];

/// Upper bound on servers per role, a guard against typos such as `count: 300`.
pub const MAX_NODES_PER_POOL: u32 = 100;

/// Load balancer type of the Kubernetes API load balancer.
pub const API_LOAD_BALANCER_TYPE: &str = "lb11";

/// Servers one Hetzner network holds (every node of a cluster is in its network; Hetzner's
/// limit, as documented by hcloud-k8s and kube-hetzner, `reference/peers.md`).
pub const MAX_SERVERS_PER_NETWORK: u32 = 100;

/// Targets a load balancer of `lb_type` takes (`max_targets` of `GET /load_balancer_types`,
/// spec examples: lb11 25, lb21 75, lb31 150); `None` for a type not known here.
pub fn max_load_balancer_targets(lb_type: &str) -> Option<u32> {
    match lb_type {
        "lb11" => Some(25),
        "lb21" => Some(75),
        "lb31" => Some(150),
        _ => None,
    }
}

/// A validated cluster spec.
///
/// Construct it with [`ClusterSpec::from_yaml`] or [`ClusterSpec::from_file`]; every value in it
/// has passed validation, so workflows use it without checking again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSpec {
    /// Cluster name: the `cluster=` label value and the prefix of every resource name.
    pub cluster_name: String,
    /// Where the cluster lives on Hetzner.
    pub hetzner: HetznerSection,
    /// Control-plane and the default worker pool.
    pub nodes: NodesSection,
    /// Talos settings.
    pub talos: TalosSection,
    /// Kubernetes settings.
    pub kubernetes: KubernetesSection,
    /// Container network interface.
    #[serde(default)]
    pub cni: CniSection,
    /// Extension: private network ranges.
    #[serde(default)]
    pub network: NetworkSection,
    /// Extension: who may reach the Talos API (50000) and the Kubernetes API (6443) on servers.
    #[serde(default)]
    pub firewall: FirewallSection,
    /// Extension: extra named worker pools besides `nodes.workers`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub worker_pools: Vec<WorkerPoolSection>,
    /// Extension: how `build-image` makes the Talos snapshots (temporary server types,
    /// locations, the image factory).
    #[serde(default)]
    pub image_builder: ImageBuilderSection,
}

/// The `imageBuilder` section: the temporary servers that write Talos snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageBuilderSection {
    /// Server types for the x86 build, tried in order when Hetzner has no capacity.
    #[serde(default = "ImageBuilderSection::default_x86")]
    pub x86: Vec<String>,
    /// Server types for the arm build, tried in order.
    #[serde(default = "ImageBuilderSection::default_arm")]
    pub arm: Vec<String>,
    /// Locations tried in order (each after all types in the previous one); by default
    /// `hetzner.region`, then the other locations of `hetzner.networkZone`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<String>,
    /// The image factory's base URL (`HK8S_IMAGE_FACTORY` overrides it).
    #[serde(default = "ImageBuilderSection::default_factory")]
    pub factory: String,
    /// The image the temporary server is created from (never booted: rescue writes its disk).
    #[serde(default = "ImageBuilderSection::default_image")]
    pub image: String,
}

/// The public Talos image factory.
pub const DEFAULT_IMAGE_FACTORY: &str = "https://factory.talos.dev";

impl ImageBuilderSection {
    fn default_x86() -> Vec<String> {
        vec!["cx23".into(), "cpx22".into(), "cx33".into()]
    }
    fn default_arm() -> Vec<String> {
        vec!["cax11".into(), "cax21".into()]
    }
    fn default_factory() -> String {
        DEFAULT_IMAGE_FACTORY.into()
    }
    fn default_image() -> String {
        "debian-12".into()
    }

    /// The server types for `arch`.
    pub fn server_types(&self, arch: Arch) -> &[String] {
        match arch {
            Arch::X86 => &self.x86,
            Arch::Arm => &self.arm,
        }
    }

    /// The locations to try: the configured ones, else `region` then the rest of its zone.
    pub fn locations(&self, region: &str, network_zone: &str) -> Vec<String> {
        if !self.locations.is_empty() {
            return self.locations.clone();
        }
        std::iter::once(region.to_string())
            .chain(
                LOCATIONS
                    .iter()
                    .filter(|(l, zone)| *zone == network_zone && *l != region)
                    .map(|(l, _)| l.to_string()),
            )
            .collect()
    }
}

impl Default for ImageBuilderSection {
    fn default() -> Self {
        ImageBuilderSection {
            x86: Self::default_x86(),
            arm: Self::default_arm(),
            locations: Vec::new(),
            factory: Self::default_factory(),
            image: Self::default_image(),
        }
    }
}

/// The `hetzner` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HetznerSection {
    /// Location of servers and the load balancer (`fsn1`, `nbg1`, `hel1`, `ash`, `hil`, `sin`).
    pub region: String,
    /// Network zone of the private subnet; must contain `region`.
    pub network_zone: String,
    /// Names of SSH keys already in the project, added to every server.
    #[serde(default)]
    pub ssh_keys: Vec<String>,
}

/// The `nodes` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodesSection {
    /// Control-plane nodes (odd count, so etcd keeps quorum).
    pub control_plane: PoolSection,
    /// The default worker pool, named `worker`.
    #[serde(default = "PoolSection::no_workers")]
    pub workers: PoolSection,
}

/// Count, server type and architecture of one group of servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PoolSection {
    /// Number of servers.
    pub count: u32,
    /// Hetzner server type, e.g. `cx23`.
    #[serde(rename = "type")]
    pub server_type: String,
    /// CPU architecture.
    #[serde(default)]
    pub arch: Arch,
}

impl PoolSection {
    fn no_workers() -> Self {
        PoolSection {
            count: 0,
            server_type: "cx23".into(),
            arch: Arch::X86,
        }
    }
}

/// An extra worker pool (extension).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerPoolSection {
    /// Pool name: part of server names (`<cluster>-<name>-1`) and the `pool=` label.
    pub name: String,
    /// Number of servers.
    pub count: u32,
    /// Hetzner server type.
    #[serde(rename = "type")]
    pub server_type: String,
    /// CPU architecture.
    #[serde(default)]
    pub arch: Arch,
    /// Location, defaulting to `hetzner.region`; must be in `hetzner.networkZone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// CPU architecture, named as Hetzner names it (`x86`, `arm`); `amd64` and `arm64` are accepted.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// x86-64.
    #[default]
    #[serde(alias = "amd64", alias = "x86_64")]
    X86,
    /// ARM64.
    #[serde(alias = "arm64", alias = "aarch64")]
    Arm,
}

impl Arch {
    /// Hetzner's name (`x86`, `arm`), used in image labels and server-type filters.
    pub fn hetzner_name(self) -> &'static str {
        match self {
            Arch::X86 => "x86",
            Arch::Arm => "arm",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hetzner_name())
    }
}

/// The `talos` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TalosSection {
    /// Talos version, e.g. `v1.11.6`.
    pub version: String,
    /// Image-factory schematic: an ID, or the customization to compute it from; the vanilla
    /// schematic when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schematic: Option<SchematicSection>,
}

/// `talos.schematic`: a ready ID, or extensions and kernel arguments whose ID hk8s computes
/// exactly as the image factory does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SchematicSection {
    /// A 64-character hex schematic ID made elsewhere (factory.talos.dev).
    Id(String),
    /// The customization.
    Customization(SchematicCustomization),
}

/// The schematic customization hk8s supports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SchematicCustomization {
    /// Official system extensions, e.g. `siderolabs/qemu-guest-agent`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<String>,
    /// Extra kernel arguments, e.g. `net.ifnames=0`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_kernel_args: Vec<String>,
}

impl SchematicCustomization {
    fn schematic(&self) -> hk8s_talos_config::Schematic {
        hk8s_talos_config::Schematic {
            extra_kernel_args: self.extra_kernel_args.clone(),
            meta: Vec::new(),
            official_extensions: self.extensions.clone(),
        }
    }
}

impl TalosSection {
    /// The customization as the factory's schematic (vanilla when none or a ready ID is set).
    pub fn factory_schematic(&self) -> hk8s_talos_config::Schematic {
        match &self.schematic {
            Some(SchematicSection::Customization(c)) => c.schematic(),
            _ => hk8s_talos_config::Schematic::default(),
        }
    }

    /// The image-factory schematic ID of the nodes' images (vanilla when none is set).
    ///
    /// Validation has computed it once already, so this cannot fail on a validated spec; an
    /// invalid customization yields the vanilla ID.
    pub fn schematic_id(&self) -> String {
        match &self.schematic {
            None => hk8s_talos_config::VANILLA_SCHEMATIC.to_string(),
            Some(SchematicSection::Id(id)) => id.to_ascii_lowercase(),
            Some(SchematicSection::Customization(c)) => c
                .schematic()
                .id()
                .unwrap_or_else(|_| hk8s_talos_config::VANILLA_SCHEMATIC.to_string()),
        }
    }
}

/// The `kubernetes` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesSection {
    /// Kubernetes version, e.g. `1.34.1` (a leading `v` is accepted).
    pub version: String,
}

/// The `cni` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CniSection {
    /// Which CNI to install.
    #[serde(rename = "type", default)]
    pub cni_type: CniType,
}

/// CNI choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CniType {
    /// Cilium with kube-proxy replacement (Talos CNI `none`, kube-proxy disabled).
    #[default]
    Cilium,
    /// Talos's built-in flannel.
    Flannel,
}

/// Extension: private network ranges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSection {
    /// The Hetzner network's range (RFC 1918).
    #[serde(default = "NetworkSection::default_cidr")]
    pub cidr: Ipv4Net,
    /// The cloud subnet servers get their private IPs from; inside `cidr`.
    #[serde(default = "NetworkSection::default_subnet")]
    pub subnet: Ipv4Net,
    /// Pod network; must not overlap `cidr`.
    #[serde(default = "NetworkSection::default_pods")]
    pub pod_cidr: Ipv4Net,
    /// Service network; must not overlap `cidr` or `podCidr`.
    #[serde(default = "NetworkSection::default_services")]
    pub service_cidr: Ipv4Net,
}

impl NetworkSection {
    fn default_cidr() -> Ipv4Net {
        Ipv4Net::new(std::net::Ipv4Addr::new(10, 0, 0, 0), 16).unwrap_or_default()
    }
    fn default_subnet() -> Ipv4Net {
        Ipv4Net::new(std::net::Ipv4Addr::new(10, 0, 1, 0), 24).unwrap_or_default()
    }
    fn default_pods() -> Ipv4Net {
        Ipv4Net::new(std::net::Ipv4Addr::new(10, 244, 0, 0), 16).unwrap_or_default()
    }
    fn default_services() -> Ipv4Net {
        Ipv4Net::new(std::net::Ipv4Addr::new(10, 96, 0, 0), 12).unwrap_or_default()
    }
}

impl Default for NetworkSection {
    fn default() -> Self {
        NetworkSection {
            cidr: Self::default_cidr(),
            subnet: Self::default_subnet(),
            pod_cidr: Self::default_pods(),
            service_cidr: Self::default_services(),
        }
    }
}

/// Extension: public sources allowed to reach the servers' Talos API and Kubernetes API ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FirewallSection {
    /// CIDRs allowed to reach tcp 50000 and 6443 on the servers' public IPs.
    ///
    /// There is no open-to-the-world default: when this is empty, validation asks for it.
    #[serde(default)]
    pub admin_cidrs: Vec<Ipv4Net>,
}

/// One problem found in a spec, naming its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecIssue {
    /// Dotted path of the field, e.g. `nodes.controlPlane.count`.
    pub field: String,
    /// What is wrong and what would be right.
    pub message: String,
}

impl fmt::Display for SpecIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why a spec was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read cluster spec {path}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The YAML did not parse into the spec's shape (syntax, unknown or missing field, wrong type).
    #[error("{source_name}: {message}")]
    Parse {
        /// The file name or `<built-in example>`.
        source_name: String,
        /// The parser's message, with the location and field it names.
        message: String,
    },
    /// The spec parsed but broke one or more rules.
    #[error("{source_name}: invalid cluster spec:\n{}", format_issues(.issues))]
    Invalid {
        /// The file name or `<built-in example>`.
        source_name: String,
        /// Every problem found, each naming its field.
        issues: Vec<SpecIssue>,
    },
}

fn format_issues(issues: &[SpecIssue]) -> String {
    issues
        .iter()
        .map(|i| format!("  - {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Node role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Runs etcd and the Kubernetes control plane.
    ControlPlane,
    /// Runs workloads.
    Worker,
}

impl ClusterSpec {
    /// Reads, parses and validates a spec file.
    pub fn from_file(path: &Path) -> Result<ClusterSpec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// Parses and validates spec text; `source_name` names it in errors.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<ClusterSpec, SpecError> {
        let spec: ClusterSpec = serde_saphyr::from_str(text).map_err(|e| SpecError::Parse {
            source_name: source_name.to_string(),
            message: e.to_string(),
        })?;
        let issues = spec.issues();
        if issues.is_empty() {
            Ok(spec)
        } else {
            Err(SpecError::Invalid {
                source_name: source_name.to_string(),
                issues,
            })
        }
    }

    /// Every rule the spec breaks, section by section; empty when valid.
    pub fn issues(&self) -> Vec<SpecIssue> {
        let mut issues = Issues::default();
        if let Err(message) = check_cluster_name(&self.cluster_name) {
            issues.push("clusterName", message);
        }
        self.hetzner.check(&mut issues);
        self.nodes.check(&mut issues);
        check_worker_pools(&self.worker_pools, &self.hetzner, &mut issues);
        self.talos.check(&mut issues);
        self.kubernetes.check(&mut issues);
        self.network.check(&mut issues);
        self.firewall.check(&mut issues);
        self.image_builder.check(&self.hetzner, &mut issues);
        self.check_scale_limits(&mut issues);
        issues.0
    }

    /// Hetzner's scale limits: every server fits the one network, and the control planes
    /// (the API load balancer's targets) fit its type. Placement groups need no check: the
    /// plan splits them at 10 servers.
    fn check_scale_limits(&self, issues: &mut Issues) {
        let pools: u32 = self.worker_pools.iter().map(|p| p.count).sum();
        let servers = self.nodes.control_plane.count + self.nodes.workers.count + pools;
        if servers > MAX_SERVERS_PER_NETWORK {
            let field = if pools > 0 {
                "workerPools"
            } else {
                "nodes.workers.count"
            };
            issues.push(
                field,
                format!(
                    "the cluster has {servers} servers ({} control planes, {} workers, {pools} in \
                     workerPools), more than the {MAX_SERVERS_PER_NETWORK} a Hetzner network holds",
                    self.nodes.control_plane.count, self.nodes.workers.count
                ),
            );
        }
        let lb_type = API_LOAD_BALANCER_TYPE;
        if let Some(max) = max_load_balancer_targets(lb_type)
            && self.nodes.control_plane.count > max
        {
            issues.push(
                "nodes.controlPlane.count",
                format!(
                    "{} control planes are more than the {max} targets of the API load balancer \
                     (type {lb_type})",
                    self.nodes.control_plane.count
                ),
            );
        }
    }

    /// Kubernetes version without a leading `v`.
    pub fn kubernetes_version(&self) -> &str {
        self.kubernetes
            .version
            .strip_prefix('v')
            .unwrap_or(&self.kubernetes.version)
    }
}

/// The issues found so far; each section's checker adds its own.
#[derive(Default)]
struct Issues(Vec<SpecIssue>);

impl Issues {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(SpecIssue {
            field: field.into(),
            message: message.into(),
        });
    }

    /// A pool's `count` bound and `type` shape; `base` is the pool's field path.
    fn check_pool(&mut self, base: &str, count: u32, server_type: &str) {
        if count > MAX_NODES_PER_POOL {
            self.push(
                format!("{base}.count"),
                format!(
                    "{count} is more than the {MAX_NODES_PER_POOL} servers hk8s allows per pool"
                ),
            );
        }
        let ok = !server_type.is_empty()
            && server_type.len() <= 32
            && server_type
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            self.push(
                format!("{base}.type"),
                format!("{server_type:?} is not a Hetzner server type name like cx23"),
            );
        }
    }

    /// A location is known and lies in `network_zone`; `field` names where it was written.
    fn check_location(&mut self, field: &str, location: &str, network_zone: &str) {
        match location_zone(location) {
            None => self.push(
                field,
                format!("unknown location {location:?} (known: {})", known_locations()),
            ),
            Some(zone) if zone != network_zone => self.push(
                field,
                format!(
                    "location {location} is in network zone {zone}, outside hetzner.networkZone {network_zone}"
                ),
            ),
            Some(_) => {}
        }
    }
}

impl HetznerSection {
    fn check(&self, issues: &mut Issues) {
        match location_zone(&self.region) {
            None => issues.push(
                "hetzner.region",
                format!(
                    "unknown location {:?} (known: {})",
                    self.region,
                    known_locations()
                ),
            ),
            Some(zone) if zone != self.network_zone => issues.push(
                "hetzner.networkZone",
                format!(
                    "location {} is in network zone {zone}, not {:?}",
                    self.region, self.network_zone
                ),
            ),
            Some(_) => {}
        }
        for (i, key) in self.ssh_keys.iter().enumerate() {
            if key.trim().is_empty() {
                issues.push(format!("hetzner.sshKeys[{i}]"), "must not be empty");
            }
        }
    }
}

impl NodesSection {
    fn check(&self, issues: &mut Issues) {
        let control_plane = &self.control_plane;
        if control_plane.count == 0 || control_plane.count.is_multiple_of(2) {
            issues.push(
                "nodes.controlPlane.count",
                format!(
                    "must be odd (1, 3, 5, …) so etcd keeps quorum; got {}",
                    control_plane.count
                ),
            );
        }
        issues.check_pool(
            "nodes.controlPlane",
            control_plane.count,
            &control_plane.server_type,
        );
        issues.check_pool(
            "nodes.workers",
            self.workers.count,
            &self.workers.server_type,
        );
    }
}

/// The `workerPools` list: unique DNS-label names (the default pools' names are reserved),
/// at least one server each, and locations inside `hetzner.networkZone`.
fn check_worker_pools(pools: &[WorkerPoolSection], hetzner: &HetznerSection, issues: &mut Issues) {
    // The default pools' names (`cp`, `worker`, as in server names) are taken.
    let mut pool_names: BTreeSet<&str> =
        [hk8s_hetzner::Role::ControlPlane, hk8s_hetzner::Role::Worker]
            .map(hk8s_hetzner::Role::short_name)
            .into_iter()
            .collect();
    for (i, pool) in pools.iter().enumerate() {
        let base = format!("workerPools[{i}]");
        if let Err(message) = check_dns_label(&pool.name, 12) {
            issues.push(format!("{base}.name"), message);
        } else if !pool_names.insert(pool.name.as_str()) {
            issues.push(
                format!("{base}.name"),
                format!(
                    "pool name {:?} is used twice (cp and worker are reserved)",
                    pool.name
                ),
            );
        }
        issues.check_pool(&base, pool.count, &pool.server_type);
        if pool.count == 0 {
            issues.push(format!("{base}.count"), "must be at least 1");
        }
        if let Some(location) = &pool.location {
            issues.check_location(&format!("{base}.location"), location, &hetzner.network_zone);
        }
    }
}

impl TalosSection {
    fn check(&self, issues: &mut Issues) {
        match parse_version(self.version.strip_prefix('v').unwrap_or("")) {
            Some((1, minor, _)) if SUPPORTED_TALOS_MINORS.contains(&minor) => {}
            Some(_) => issues.push(
                "talos.version",
                format!(
                    "unsupported Talos version {} (supported: v1.9.x, v1.10.x, v1.11.x)",
                    self.version
                ),
            ),
            None => issues.push(
                "talos.version",
                format!("{:?} is not a version like v1.11.6", self.version),
            ),
        }
        match &self.schematic {
            Some(SchematicSection::Id(id))
                if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                issues.push(
                    "talos.schematic",
                    "must be a 64-character hex image-factory schematic id, or \
                     { extensions: [...], extraKernelArgs: [...] }",
                );
            }
            Some(SchematicSection::Customization(c)) => {
                if let Err(e) = c.schematic().validate() {
                    issues.push(format!("talos.schematic.{}", e.field), e.problem);
                }
            }
            _ => {}
        }
    }
}

impl KubernetesSection {
    fn check(&self, issues: &mut Issues) {
        let version = self.version.strip_prefix('v').unwrap_or(&self.version);
        match parse_version(version) {
            Some((1, minor, _)) if (28..=40).contains(&minor) => {}
            Some(_) => issues.push(
                "kubernetes.version",
                format!(
                    "unsupported Kubernetes version {} (1.28 or newer)",
                    self.version
                ),
            ),
            None => issues.push(
                "kubernetes.version",
                format!("{:?} is not a version like 1.34.1", self.version),
            ),
        }
    }
}

impl NetworkSection {
    fn check(&self, issues: &mut Issues) {
        if !is_rfc1918(&self.cidr) {
            issues.push(
                "network.cidr",
                format!("{} is not a private (RFC 1918) range", self.cidr),
            );
        }
        if !self.cidr.contains(&self.subnet) {
            issues.push(
                "network.subnet",
                format!("{} is not inside network.cidr {}", self.subnet, self.cidr),
            );
        } else if self.subnet.prefix_len() > 28 {
            issues.push(
                "network.subnet",
                format!(
                    "{} is too small for the cluster's servers (use /24)",
                    self.subnet
                ),
            );
        }
        if overlaps(&self.pod_cidr, &self.cidr) {
            issues.push(
                "network.podCidr",
                format!("{} overlaps network.cidr {}", self.pod_cidr, self.cidr),
            );
        }
        if overlaps(&self.service_cidr, &self.cidr) || overlaps(&self.service_cidr, &self.pod_cidr)
        {
            issues.push(
                "network.serviceCidr",
                format!(
                    "{} overlaps network.cidr or network.podCidr",
                    self.service_cidr
                ),
            );
        }
    }
}

impl FirewallSection {
    fn check(&self, issues: &mut Issues) {
        if self.admin_cidrs.is_empty() {
            issues.push(
                "firewall.adminCidrs",
                "required: the CIDRs allowed to reach the Talos API (tcp 50000) and the \
                 Kubernetes API (tcp 6443) on the servers, e.g. [\"203.0.113.7/32\"] for your \
                 own address; hk8s does not open them to the world by default",
            );
        }
    }
}

impl ImageBuilderSection {
    fn check(&self, hetzner: &HetznerSection, issues: &mut Issues) {
        for (arch, types) in [("x86", &self.x86), ("arm", &self.arm)] {
            if types.is_empty() {
                issues.push(
                    format!("imageBuilder.{arch}"),
                    "needs at least one server type",
                );
            }
            for (i, t) in types.iter().enumerate() {
                issues.check_pool(&format!("imageBuilder.{arch}[{i}]"), 1, t);
            }
        }
        for (i, location) in self.locations.iter().enumerate() {
            issues.check_location(
                &format!("imageBuilder.locations[{i}]"),
                location,
                &hetzner.network_zone,
            );
        }
        if let Err(message) = check_factory_url(&self.factory) {
            issues.push("imageBuilder.factory", message);
        }
        if self.image.trim().is_empty() {
            issues.push("imageBuilder.image", "must not be empty");
        }
    }
}

/// An image-factory base URL: `http(s)://host[:port][/path]`, no query, no quotes or spaces.
pub fn check_factory_url(url: &str) -> Result<(), String> {
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() > "http://".len()
        && url.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(b, b'\'' | b'"' | b'\\' | b'`' | b'$' | b';' | b'?' | b'#')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{url:?} is not an http(s) base URL like {DEFAULT_IMAGE_FACTORY}"
        ))
    }
}

/// The network zone of a known Hetzner location.
fn location_zone(location: &str) -> Option<&'static str> {
    LOCATIONS
        .iter()
        .find(|(known, _)| *known == location)
        .map(|(_, zone)| *zone)
}

fn known_locations() -> String {
    LOCATIONS
        .iter()
        .map(|(l, _)| *l)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A cluster name must be a Hetzner label value and a DNS-label prefix of server names.
fn check_cluster_name(name: &str) -> Result<(), String> {
    check_dns_label(name, MAX_CLUSTER_NAME_LEN)
}

fn check_dns_label(name: &str, max: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > max {
        return Err(format!("{name:?} is longer than {max} characters"));
    }
    let bytes = name.as_bytes();
    let valid = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if !valid || !bytes[0].is_ascii_lowercase() || bytes[bytes.len() - 1] == b'-' {
        return Err(format!(
            "{name:?} must be lowercase letters, digits and '-', start with a letter and not end with '-' \
             (it becomes a label value and a server-name prefix)"
        ));
    }
    Ok(())
}

fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((major, minor, patch))
}

fn is_rfc1918(net: &Ipv4Net) -> bool {
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
        .iter()
        .filter_map(|s| s.parse::<Ipv4Net>().ok())
        .any(|private| private.contains(net))
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The built-in example cluster (`examples/cluster.yaml`), used by `--sandbox` without `--config`.
pub const EXAMPLE_YAML: &str = include_str!("../../examples/cluster.yaml");

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "
clusterName: demo
hetzner:
  region: fsn1
  networkZone: eu-central
  sshKeys: [ops]
nodes:
  controlPlane: { count: 3, type: cx23, arch: x86 }
  workers: { count: 2, type: cax21, arch: arm }
talos:
  version: v1.11.6
kubernetes:
  version: 1.34.1
cni:
  type: cilium
firewall:
  adminCidrs: [203.0.113.7/32]
";

    fn issues_of(yaml: &str) -> Vec<String> {
        match ClusterSpec::from_yaml(yaml, "test.yaml") {
            Ok(_) => vec![],
            Err(SpecError::Invalid { issues, .. }) => issues.into_iter().map(|i| i.field).collect(),
            Err(e) => vec![format!("parse: {e}")],
        }
    }

    #[test]
    fn seed_format_parses() {
        let spec = ClusterSpec::from_yaml(SEED, "seed").unwrap();
        assert_eq!(spec.cluster_name, "demo");
        assert_eq!(spec.nodes.workers.arch, Arch::Arm);
        let plan = spec.node_plan();
        let names: Vec<_> = plan.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "demo-cp-1",
                "demo-cp-2",
                "demo-cp-3",
                "demo-worker-1",
                "demo-worker-2"
            ]
        );
        assert_eq!(spec.arches().len(), 2);
        assert_eq!(spec.network.cidr.to_string(), "10.0.0.0/16");
    }

    #[test]
    fn example_file_is_valid() {
        ClusterSpec::from_yaml(EXAMPLE_YAML, "examples/cluster.yaml").unwrap();
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases: &[(&str, &str, &str)] = &[
            ("clusterName: demo", "clusterName: Demo_1", "clusterName"),
            (
                "count: 3, type: cx23",
                "count: 2, type: cx23",
                "nodes.controlPlane.count",
            ),
            (
                "count: 3, type: cx23",
                "count: 3, type: CX 22",
                "nodes.controlPlane.type",
            ),
            ("region: fsn1", "region: mars1", "hetzner.region"),
            (
                "networkZone: eu-central",
                "networkZone: us-east",
                "hetzner.networkZone",
            ),
            ("version: v1.11.6", "version: v1.12.0", "talos.version"),
            ("version: v1.11.6", "version: latest", "talos.version"),
            ("version: 1.34.1", "version: one", "kubernetes.version"),
            (
                "adminCidrs: [203.0.113.7/32]",
                "adminCidrs: []",
                "firewall.adminCidrs",
            ),
        ];
        for (from, to, field) in cases {
            let yaml = SEED.replacen(from, to, 1);
            assert_ne!(yaml, SEED, "{from} not found in seed");
            assert_eq!(issues_of(&yaml), vec![field.to_string()], "{to}");
        }
    }

    #[test]
    fn bad_cidr_and_arch_are_parse_errors_naming_the_field() {
        let yaml = SEED.replace(
            "adminCidrs: [203.0.113.7/32]",
            "adminCidrs: [203.0.113.7/33]",
        );
        let err = ClusterSpec::from_yaml(&yaml, "c.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("adminCidrs"), "{err}");
        let yaml = SEED.replace("arch: arm", "arch: sparc");
        let err = ClusterSpec::from_yaml(&yaml, "c.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("c.yaml") && err.contains("sparc"), "{err}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let yaml = SEED.replace("clusterName: demo", "clusterName: demo\nclustername: demo");
        let err = ClusterSpec::from_yaml(&yaml, "c.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("clustername"), "{err}");
    }

    #[test]
    fn network_extension_is_checked() {
        let yaml = format!("{SEED}network:\n  cidr: 8.8.0.0/16\n  subnet: 10.0.1.0/24\n");
        assert_eq!(issues_of(&yaml), ["network.cidr", "network.subnet"]);
        let yaml = format!("{SEED}network:\n  podCidr: 10.0.0.0/8\n");
        assert_eq!(issues_of(&yaml), ["network.podCidr", "network.serviceCidr"]);
    }

    #[test]
    fn worker_pools_extend_the_plan() {
        let yaml = format!(
            "{SEED}workerPools:\n  - {{ name: big, count: 2, type: cx43, location: nbg1 }}\n  - {{ name: big, count: 1, type: cx43, location: ash }}\n"
        );
        assert_eq!(
            issues_of(&yaml),
            ["workerPools[1].name", "workerPools[1].location"]
        );
        let yaml = format!(
            "{SEED}workerPools:\n  - {{ name: big, count: 2, type: cx43, location: nbg1 }}\n"
        );
        let spec = ClusterSpec::from_yaml(&yaml, "c").unwrap();
        let plan = spec.node_plan();
        assert_eq!(plan.len(), 7);
        assert_eq!(plan[6].name, "demo-big-2");
        assert_eq!(plan[6].location, "nbg1");
    }

    #[test]
    fn schematic_customization_gets_the_factory_id() {
        let yaml = SEED.replace(
            "version: v1.11.6\n",
            "version: v1.11.6\n  schematic:\n    extensions: [siderolabs/qemu-guest-agent]\n",
        );
        let spec = ClusterSpec::from_yaml(&yaml, "c").unwrap();
        assert_eq!(
            spec.talos.schematic_id(),
            "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515"
        );
        let vanilla = ClusterSpec::from_yaml(SEED, "c").unwrap();
        assert_eq!(
            vanilla.talos.schematic_id(),
            hk8s_talos_config::VANILLA_SCHEMATIC
        );
        let yaml = SEED.replace(
            "version: v1.11.6\n",
            "version: v1.11.6\n  schematic:\n    extensions: [qemu-guest-agent]\n    extraKernelArgs: [\"yes\"]\n",
        );
        assert_eq!(issues_of(&yaml), ["talos.schematic.extraKernelArgs[0]"]);
    }

    #[test]
    fn image_builder_section_is_checked() {
        let yaml =
            format!("{SEED}imageBuilder:\n  x86: []\n  locations: [ash]\n  factory: ftp://x\n");
        assert_eq!(
            issues_of(&yaml),
            [
                "imageBuilder.x86",
                "imageBuilder.locations[0]",
                "imageBuilder.factory"
            ]
        );
    }

    #[test]
    fn all_issues_reported_at_once() {
        let yaml = SEED
            .replace("count: 3, type: cx23", "count: 4, type: cx23")
            .replace("region: fsn1", "region: xx1");
        let err = ClusterSpec::from_yaml(&yaml, "c.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nodes.controlPlane.count") && err.contains("hetzner.region"),
            "{err}"
        );
    }

    #[test]
    fn scale_limits_name_their_field() {
        let yaml = EXAMPLE_YAML.replace("    count: 2\n", "    count: 98\n");
        let err = ClusterSpec::from_yaml(&yaml, "c.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nodes.workers.count: the cluster has 101 servers"),
            "{err}"
        );
        assert!(
            err.contains("more than the 100 a Hetzner network holds"),
            "{err}"
        );
        let yaml = EXAMPLE_YAML.replace("    count: 2\n", "    count: 97\n");
        ClusterSpec::from_yaml(&yaml, "c.yaml").unwrap();
        let yaml = EXAMPLE_YAML.replace("    count: 3 ", "    count: 27 ");
        let err = ClusterSpec::from_yaml(&yaml, "c.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nodes.controlPlane.count: 27 control planes are more than the 25 targets of the API load balancer (type lb11)"),
            "{err}"
        );
    }
}
