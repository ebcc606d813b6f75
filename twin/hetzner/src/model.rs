//! The resource model: the structs of every Hetzner resource the twin keeps (servers, images,
//! SSH keys, networks, firewalls, load balancers, placement groups, volumes, actions), their ids
//! and the [`Kind`]s an action can lock. Plain data; the [`World`](crate::world::World) holds
//! them and the routes render them.

use std::net::Ipv4Addr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::catalog::{LoadBalancerType, Location, ServerType};
use crate::labels::Labels;

/// A Hetzner resource id.
pub type Id = i64;

/// The kind of a Hetzner resource: what an action concerns or locks, what an id in a path names
/// and what a `not_found` error says is missing. [`Kind::api_name`] is the one place it becomes
/// the API's string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A server.
    Server,
    /// An image.
    Image,
    /// An SSH key.
    SshKey,
    /// A network.
    Network,
    /// A firewall.
    Firewall,
    /// A load balancer.
    LoadBalancer,
    /// A placement group.
    PlacementGroup,
    /// A volume.
    Volume,
    /// An action.
    Action,
}

impl Kind {
    /// The kinds with action endpoints (`/v1/{collection}/actions`, ...).
    pub const WITH_ACTIONS: [Kind; 6] = [
        Kind::Server,
        Kind::Image,
        Kind::Network,
        Kind::Firewall,
        Kind::LoadBalancer,
        Kind::Volume,
    ];

    /// The API's name: the `type` in an action's `resources`, the subject of `not_found`.
    pub fn api_name(self) -> &'static str {
        match self {
            Kind::Server => "server",
            Kind::Image => "image",
            Kind::SshKey => "ssh_key",
            Kind::Network => "network",
            Kind::Firewall => "firewall",
            Kind::LoadBalancer => "load_balancer",
            Kind::PlacementGroup => "placement_group",
            Kind::Volume => "volume",
            Kind::Action => "action",
        }
    }

    /// The path segment of its collection, e.g. `load_balancers`.
    pub fn collection(self) -> &'static str {
        match self {
            Kind::Server => "servers",
            Kind::Image => "images",
            Kind::SshKey => "ssh_keys",
            Kind::Network => "networks",
            Kind::Firewall => "firewalls",
            Kind::LoadBalancer => "load_balancers",
            Kind::PlacementGroup => "placement_groups",
            Kind::Volume => "volumes",
            Kind::Action => "actions",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.api_name())
    }
}

/// Server status values of the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerStatus {
    /// Being created.
    Initializing,
    /// Booting.
    Starting,
    /// Running.
    Running,
    /// Shutting down.
    Stopping,
    /// Powered off.
    Off,
}

impl ServerStatus {
    /// The spec's string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initializing => "initializing",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Off => "off",
        }
    }
}

/// A server's attachment to a network.
#[derive(Debug, Clone)]
pub struct PrivateNet {
    /// Network id.
    pub network: Id,
    /// Primary private IP.
    pub ip: Ipv4Addr,
    /// Additional IPs.
    pub alias_ips: Vec<Ipv4Addr>,
    /// MAC address of the interface.
    pub mac_address: String,
}

/// A server.
#[derive(Debug, Clone)]
pub struct Server {
    /// Id.
    pub id: Id,
    /// Unique name.
    pub name: String,
    /// Status.
    pub status: ServerStatus,
    /// Creation time.
    pub created: DateTime<Utc>,
    /// Its server type.
    pub server_type: &'static ServerType,
    /// Its location.
    pub location: &'static Location,
    /// The image it was created from (or rebuilt with).
    pub image: Option<Id>,
    /// Labels.
    pub labels: Labels,
    /// Public IPv4 from the twin's loopback block.
    pub public_ipv4: Option<Ipv4Addr>,
    /// Public IPv6 /64 (documentation prefix; nothing listens there).
    pub public_ipv6: Option<String>,
    /// Id of the Primary IP holding `public_ipv4` (created with the server, deleted with it).
    pub primary_ipv4: Option<Id>,
    /// Id of the Primary IP holding `public_ipv6`.
    pub primary_ipv6: Option<Id>,
    /// Network attachments.
    pub private_net: Vec<PrivateNet>,
    /// Placement group.
    pub placement_group: Option<Id>,
    /// Whether the next boot goes into rescue.
    pub rescue_enabled: bool,
    /// Public keys authorized in the rescue system.
    pub rescue_ssh_keys: Vec<String>,
    /// Public keys given at creation.
    pub ssh_keys: Vec<String>,
    /// Cloud-init user data given at creation.
    pub user_data: Option<String>,
    /// Delete protection.
    pub protect_delete: bool,
}

/// An image: a system image or a snapshot.
#[derive(Debug, Clone)]
pub struct Image {
    /// Id.
    pub id: Id,
    /// `system`, `snapshot` or `backup`.
    pub kind: &'static str,
    /// `available` or `creating`.
    pub status: &'static str,
    /// Name (system images only).
    pub name: Option<String>,
    /// Description.
    pub description: String,
    /// Compressed size in GB.
    pub image_size: Option<f64>,
    /// Disk size in GB.
    pub disk_size: f64,
    /// Creation time.
    pub created: DateTime<Utc>,
    /// The server it was made from.
    pub created_from: Option<(Id, String)>,
    /// Bound server (backups).
    pub bound_to: Option<Id>,
    /// OS flavour.
    pub os_flavor: String,
    /// OS version.
    pub os_version: Option<String>,
    /// `x86` or `arm`.
    pub architecture: &'static str,
    /// Labels.
    pub labels: Labels,
}

/// An SSH key.
#[derive(Debug, Clone)]
pub struct SshKey {
    /// Id.
    pub id: Id,
    /// Unique name.
    pub name: String,
    /// MD5 fingerprint, colon separated.
    pub fingerprint: String,
    /// The OpenSSH public key line.
    pub public_key: String,
    /// Labels.
    pub labels: Labels,
    /// Creation time.
    pub created: DateTime<Utc>,
}

/// A subnet of a network.
#[derive(Debug, Clone)]
pub struct Subnet {
    /// `cloud`, `server` or `vswitch`.
    pub kind: String,
    /// Range.
    pub ip_range: Ipv4Net,
    /// Network zone.
    pub network_zone: String,
    /// Gateway (the network's first address).
    pub gateway: Ipv4Addr,
    /// vSwitch id for `vswitch` subnets.
    pub vswitch_id: Option<i64>,
}

/// A route of a network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// Destination range.
    pub destination: String,
    /// Gateway IP.
    pub gateway: String,
}

/// A private network.
#[derive(Debug, Clone)]
pub struct Network {
    /// Id.
    pub id: Id,
    /// Unique name.
    pub name: String,
    /// Range (RFC 1918).
    pub ip_range: Ipv4Net,
    /// Subnets.
    pub subnets: Vec<Subnet>,
    /// Routes.
    pub routes: Vec<Route>,
    /// Labels.
    pub labels: Labels,
    /// Creation time.
    pub created: DateTime<Utc>,
    /// vSwitch route export.
    pub expose_routes_to_vswitch: bool,
}

/// A firewall rule, as in requests and responses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// `in` or `out`.
    pub direction: String,
    /// `tcp`, `udp`, `icmp`, `esp` or `gre`.
    pub protocol: String,
    /// Port or range (tcp/udp only).
    #[serde(default)]
    pub port: Option<String>,
    /// Source CIDRs (direction `in`).
    #[serde(default)]
    pub source_ips: Vec<String>,
    /// Destination CIDRs (direction `out`).
    #[serde(default)]
    pub destination_ips: Vec<String>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
}

/// What a firewall is applied to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyTo {
    /// One server.
    Server(Id),
    /// Servers matching a label selector.
    LabelSelector(String),
}

/// A firewall.
#[derive(Debug, Clone)]
pub struct Firewall {
    /// Id.
    pub id: Id,
    /// Unique name.
    pub name: String,
    /// Labels.
    pub labels: Labels,
    /// Rules.
    pub rules: Vec<Rule>,
    /// Resources.
    pub applied_to: Vec<ApplyTo>,
    /// Creation time.
    pub created: DateTime<Utc>,
}

/// A load balancer health check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// `tcp` or `http`.
    pub protocol: String,
    /// Port checked on targets.
    pub port: i64,
    /// Seconds between checks.
    pub interval: i64,
    /// Seconds per check.
    pub timeout: i64,
    /// Failures before a target is unhealthy.
    pub retries: i64,
    /// HTTP check settings, echoed as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<serde_json::Value>,
}

/// A load balancer service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// `tcp`, `http` or `https`.
    pub protocol: String,
    /// Port the LB listens on.
    pub listen_port: i64,
    /// Port on the targets.
    pub destination_port: i64,
    /// PROXY protocol.
    pub proxyprotocol: bool,
    /// Health check.
    pub health_check: HealthCheck,
    /// HTTP settings, echoed as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<serde_json::Value>,
}

/// What a load balancer target points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// One server.
    Server(Id),
    /// Servers matching a selector.
    LabelSelector(String),
    /// An external IP.
    Ip(String),
}

/// A load balancer target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// What it points at.
    pub kind: TargetKind,
    /// Forward over the private network.
    pub use_private_ip: bool,
}

/// A load balancer.
#[derive(Debug, Clone)]
pub struct LoadBalancer {
    /// Id.
    pub id: Id,
    /// Unique name.
    pub name: String,
    /// Type.
    pub lb_type: &'static LoadBalancerType,
    /// Location.
    pub location: &'static Location,
    /// `round_robin` or `least_connections`.
    pub algorithm: String,
    /// Services.
    pub services: Vec<Service>,
    /// Targets.
    pub targets: Vec<Target>,
    /// Labels.
    pub labels: Labels,
    /// Creation time.
    pub created: DateTime<Utc>,
    /// Public IPv4 from the twin's loopback block.
    pub public_ipv4: Option<Ipv4Addr>,
    /// Public IPv6 (documentation prefix).
    pub public_ipv6: Option<String>,
    /// Public interface enabled.
    pub public_interface: bool,
    /// Network attachments: (network, ip).
    pub private_net: Vec<(Id, Ipv4Addr)>,
}

/// A block storage volume.
#[derive(Debug, Clone)]
pub struct Volume {
    /// Id.
    pub id: Id,
    /// Unique name.
    pub name: String,
    /// Size in GB.
    pub size: i64,
    /// Location.
    pub location: &'static Location,
    /// Filesystem given at creation (`xfs`, `ext4`), if any.
    pub format: Option<String>,
    /// The server it is attached to.
    pub server: Option<Id>,
    /// `creating` or `available`.
    pub status: &'static str,
    /// Labels.
    pub labels: Labels,
    /// Delete protection.
    pub protect_delete: bool,
    /// Creation time.
    pub created: DateTime<Utc>,
}

/// A placement group.
#[derive(Debug, Clone)]
pub struct PlacementGroup {
    /// Id.
    pub id: Id,
    /// Unique name.
    pub name: String,
    /// Always `spread`.
    pub kind: String,
    /// Labels.
    pub labels: Labels,
    /// Creation time.
    pub created: DateTime<Utc>,
}

/// Action status values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionStatus {
    /// Still running.
    Running,
    /// Finished well.
    Success,
    /// Failed.
    Error,
}

impl ActionStatus {
    /// The spec's string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Success => "success",
            Self::Error => "error",
        }
    }
}

/// An action.
#[derive(Debug, Clone)]
pub struct Action {
    /// Id.
    pub id: Id,
    /// Command, e.g. `create_server`.
    pub command: String,
    /// Status.
    pub status: ActionStatus,
    /// Start time.
    pub started: DateTime<Utc>,
    /// End time.
    pub finished: Option<DateTime<Utc>>,
    /// Resources it concerns: (id, kind).
    pub resources: Vec<(Id, Kind)>,
    /// Error (code, message) of a failed action.
    pub error: Option<(String, String)>,
    /// Scaled duration.
    pub duration: Duration,
    /// The resource it locks while running.
    pub lock: Option<(Kind, Id)>,
}

impl Action {
    /// Progress 0..=100, estimated from the elapsed share of the duration while running.
    pub fn progress(&self) -> i64 {
        match self.status {
            ActionStatus::Running => {
                let elapsed = (Utc::now() - self.started).num_milliseconds().max(0) as f64;
                let total = self.duration.as_millis().max(1) as f64;
                ((elapsed / total) * 100.0).clamp(0.0, 99.0) as i64
            }
            _ => 100,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_renders_its_api_name_and_collection() {
        for kind in
            Kind::WITH_ACTIONS
                .into_iter()
                .chain([Kind::SshKey, Kind::PlacementGroup, Kind::Action])
        {
            assert_eq!(kind.collection(), format!("{}s", kind.api_name()));
            assert_eq!(kind.to_string(), kind.api_name());
        }
        assert_eq!(Kind::LoadBalancer.api_name(), "load_balancer");
    }
}
