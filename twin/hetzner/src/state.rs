//! The twin's world: resources, actions with durations and locks, the address pool, the request
//! log and the hooks other twin parts register.
//!
//! All state lives in memory behind one [`TwinState`] (cheap to clone). Handlers mutate the
//! [`World`] under a mutex through [`TwinState::mutate`], which afterwards starts the timers of the
//! actions the mutation scheduled and calls the hooks for the events it produced.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::addr::AddrPool;
use crate::catalog::{self, LoadBalancerType, Location, ServerType};
use crate::error::ApiError;
use crate::faults::Faults;
use crate::labels::Labels;
use crate::ratelimit::{Bucket, RateLimit};
use crate::selector::Selector;

/// A Hetzner resource id.
pub type Id = i64;

/// Resource kinds that can be locked by actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A server.
    Server,
    /// An image.
    Image,
    /// A network.
    Network,
    /// A firewall.
    Firewall,
    /// A load balancer.
    LoadBalancer,
    /// A volume.
    Volume,
}

impl Kind {
    /// The `type` used in an action's `resources`.
    pub fn api_name(self) -> &'static str {
        match self {
            Kind::Server => "server",
            Kind::Image => "image",
            Kind::Network => "network",
            Kind::Firewall => "firewall",
            Kind::LoadBalancer => "load_balancer",
            Kind::Volume => "volume",
        }
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
    /// Resources it concerns: (id, type).
    pub resources: Vec<(Id, &'static str)>,
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

/// Everything a booting server is: what the Talos, SSH and Kubernetes twins need.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerBoot {
    /// Server id.
    pub id: Id,
    /// Server name.
    pub name: String,
    /// Public IPv4 (inside the twin's loopback block).
    pub public_ipv4: Option<Ipv4Addr>,
    /// Private IPs, one per attached network.
    pub private_ips: Vec<Ipv4Addr>,
    /// Image the server was created from.
    pub image_id: Option<Id>,
    /// That image's labels (e.g. `os=talos,arch=..,version=..`).
    pub image_labels: Labels,
    /// Whether this boot goes into the rescue system.
    pub rescue: bool,
    /// Public keys authorized for this boot (rescue keys in rescue, else creation keys).
    pub ssh_public_keys: Vec<String>,
    /// Server labels.
    pub labels: Labels,
    /// `x86` or `arm`.
    pub architecture: String,
    /// Server type name.
    pub server_type: String,
    /// Cloud-init user data given at creation.
    pub user_data: Option<String>,
}

/// Callbacks for the other twin parts. Every method defaults to doing nothing.
///
/// Hooks run on a tokio task after the world lock is released; they must not block.
pub trait ServerHooks: Send + Sync {
    /// A server reached `running` (after create, poweron, reset or reboot).
    fn server_running(&self, _boot: &ServerBoot) {}
    /// A server stopped (poweroff, shutdown, or the first half of a reset/reboot).
    fn server_stopped(&self, _id: Id) {}
    /// A server was deleted.
    fn server_deleted(&self, _id: Id) {}
    /// `create_image` finished: snapshot `image_id` holds the disk of `server_id`.
    fn image_created(&self, _server_id: Id, _image_id: Id) {}
    /// Health of a load balancer target; `None` means "healthy iff the server is running".
    /// Called under the world lock: it must be cheap and must not call back into the twin.
    fn target_health(&self, _server_id: Id, _ip: Ipv4Addr, _port: u16) -> Option<bool> {
        None
    }
}

/// The default hooks: nothing happens.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;

impl ServerHooks for NoHooks {}

/// An event for the hooks, produced under the world lock and delivered after it.
#[derive(Debug, Clone)]
pub enum HookEvent {
    /// See [`ServerHooks::server_running`].
    Running(Box<ServerBoot>),
    /// See [`ServerHooks::server_stopped`].
    Stopped(Id),
    /// See [`ServerHooks::server_deleted`].
    Deleted(Id),
    /// See [`ServerHooks::image_created`].
    ImageCreated(Id, Id),
}

/// What happens when an action finishes.
pub type Effect = Box<dyn FnOnce(&mut World) -> Vec<HookEvent> + Send>;

/// An action whose timer must be started once the lock is released.
pub struct Scheduled {
    action: Id,
    delay: Duration,
    effect: Effect,
}

/// Base durations of actions in seconds at speed 1 (realistic latencies).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Latency {
    /// `create_server` until the server is created (then it starts).
    pub server_create: f64,
    /// `start_server` (poweron, and the start after create).
    pub server_start: f64,
    /// `stop_server` (poweroff).
    pub server_poweroff: f64,
    /// `shutdown_server`.
    pub server_shutdown: f64,
    /// `reset_server` / `reboot_server`.
    pub server_reset: f64,
    /// `enable_rescue` / `disable_rescue`.
    pub rescue: f64,
    /// `create_image`.
    pub create_image: f64,
    /// `attach_to_network` / `detach_from_network`.
    pub attach_network: f64,
    /// `delete_server`.
    pub server_delete: f64,
    /// `create_load_balancer`.
    pub lb_create: f64,
    /// Other load balancer actions.
    pub lb_action: f64,
    /// `apply_firewall`, `remove_firewall`, `set_firewall_rules`.
    pub firewall_apply: f64,
    /// Network actions (subnets, routes).
    pub network_action: f64,
    /// `create_volume`.
    pub volume_create: f64,
    /// `attach_volume` / `detach_volume`.
    pub volume_attach: f64,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            server_create: 50.0,
            server_start: 10.0,
            server_poweroff: 5.0,
            server_shutdown: 10.0,
            server_reset: 10.0,
            rescue: 2.0,
            create_image: 120.0,
            attach_network: 3.0,
            server_delete: 5.0,
            lb_create: 15.0,
            lb_action: 3.0,
            firewall_apply: 3.0,
            network_action: 2.0,
            volume_create: 6.0,
            volume_attach: 3.0,
        }
    }
}

/// One logged API request.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedRequest {
    /// Sequence number.
    pub seq: u64,
    /// HTTP method.
    pub method: String,
    /// Path with query.
    pub path: String,
    /// Route template, e.g. `POST /v1/servers/{id}/actions/poweron`.
    pub endpoint: String,
    /// Response status.
    pub status: u16,
    /// When the request arrived (RFC 3339).
    pub time: String,
}

/// The request log of the Hetzner API.
#[derive(Debug, Default)]
pub struct RequestLog {
    next: u64,
    entries: Vec<LoggedRequest>,
    counts: BTreeMap<String, u64>,
    mutating: u64,
}

impl RequestLog {
    /// Records one request.
    pub fn record(&mut self, method: &str, path: &str, endpoint: &str, status: u16) {
        self.next += 1;
        *self.counts.entry(endpoint.to_string()).or_default() += 1;
        if method != "GET" && method != "HEAD" {
            self.mutating += 1;
        }
        self.entries.push(LoggedRequest {
            seq: self.next,
            method: method.to_string(),
            path: path.to_string(),
            endpoint: endpoint.to_string(),
            status,
            time: Utc::now().to_rfc3339(),
        });
    }

    /// Forgets everything.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// The log as JSON: `{requests, counts, total, mutating}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.entries,
            "counts": self.counts,
            "total": self.entries.len(),
            "mutating": self.mutating,
        })
    }

    /// Calls per endpoint template.
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }

    /// Number of non-GET calls.
    pub fn mutating(&self) -> u64 {
        self.mutating
    }
}

/// All resources.
pub struct World {
    next_id: Id,
    /// Servers.
    pub servers: BTreeMap<Id, Server>,
    /// Images (system images and snapshots).
    pub images: BTreeMap<Id, Image>,
    /// SSH keys.
    pub ssh_keys: BTreeMap<Id, SshKey>,
    /// Networks.
    pub networks: BTreeMap<Id, Network>,
    /// Firewalls.
    pub firewalls: BTreeMap<Id, Firewall>,
    /// Load balancers.
    pub load_balancers: BTreeMap<Id, LoadBalancer>,
    /// Placement groups.
    pub placement_groups: BTreeMap<Id, PlacementGroup>,
    /// Volumes.
    pub volumes: BTreeMap<Id, Volume>,
    /// Actions.
    pub actions: BTreeMap<Id, Action>,
    /// Public IPv4 pool.
    pub pool: AddrPool,
    /// Current speed factor.
    pub speed: f64,
    /// Base durations.
    pub latency: Latency,
    /// Whether `k!=v` / `notin` match resources without `k`.
    pub negative_selector_matches_missing: bool,
    running: BTreeSet<Id>,
    pending: Vec<Scheduled>,
    events: Vec<HookEvent>,
    hooks: Arc<dyn ServerHooks>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("servers", &self.servers.len())
            .field("actions", &self.actions.len())
            .finish_non_exhaustive()
    }
}

fn catalog_created() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-01-01T00:00:00+00:00")
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now())
}

impl World {
    fn new(pool: AddrPool, speed: f64) -> Self {
        let mut images = BTreeMap::new();
        for i in catalog::SYSTEM_IMAGES {
            images.insert(
                i.id,
                Image {
                    id: i.id,
                    kind: "system",
                    status: "available",
                    name: Some(i.name.to_string()),
                    description: i.description.to_string(),
                    image_size: None,
                    disk_size: 5.0,
                    created: catalog_created(),
                    created_from: None,
                    bound_to: None,
                    os_flavor: i.os_flavor.to_string(),
                    os_version: Some(i.os_version.to_string()),
                    architecture: i.architecture,
                    labels: Labels::new(),
                },
            );
        }
        Self {
            next_id: 1000,
            servers: BTreeMap::new(),
            images,
            ssh_keys: BTreeMap::new(),
            networks: BTreeMap::new(),
            firewalls: BTreeMap::new(),
            load_balancers: BTreeMap::new(),
            placement_groups: BTreeMap::new(),
            volumes: BTreeMap::new(),
            actions: BTreeMap::new(),
            pool,
            speed,
            latency: Latency::default(),
            negative_selector_matches_missing: true,
            running: BTreeSet::new(),
            pending: Vec::new(),
            events: Vec::new(),
            hooks: Arc::new(NoHooks),
        }
    }

    /// A fresh id (one counter for all resources and actions, so ids never repeat).
    pub fn next_id(&mut self) -> Id {
        self.next_id += 1;
        self.next_id
    }

    /// Scales a base duration by the speed factor.
    pub fn scaled(&self, base_secs: f64) -> Duration {
        Duration::from_secs_f64((base_secs / self.speed).max(0.0))
    }

    /// Starts an action that runs for `base_secs / speed` and then applies `effect`.
    pub fn start_action(
        &mut self,
        command: &str,
        resources: Vec<(Id, &'static str)>,
        lock: Option<(Kind, Id)>,
        base_secs: f64,
        effect: Effect,
    ) -> Id {
        let id = self.next_id();
        let duration = self.scaled(base_secs);
        self.actions.insert(
            id,
            Action {
                id,
                command: command.to_string(),
                status: ActionStatus::Running,
                started: Utc::now(),
                finished: None,
                resources,
                error: None,
                duration,
                lock,
            },
        );
        self.running.insert(id);
        self.pending.push(Scheduled {
            action: id,
            delay: duration,
            effect,
        });
        id
    }

    /// Records an action that is already finished (e.g. a no-op poweron).
    pub fn finished_action(&mut self, command: &str, resources: Vec<(Id, &'static str)>) -> Id {
        let id = self.next_id();
        let now = Utc::now();
        self.actions.insert(
            id,
            Action {
                id,
                command: command.to_string(),
                status: ActionStatus::Success,
                started: now,
                finished: Some(now),
                resources,
                error: None,
                duration: Duration::ZERO,
                lock: None,
            },
        );
        id
    }

    /// Whether a running action locks this resource.
    pub fn is_locked(&self, kind: Kind, id: Id) -> bool {
        self.running.iter().any(|a| {
            self.actions
                .get(a)
                .is_some_and(|a| a.lock == Some((kind, id)))
        })
    }

    /// 423 `locked` if the resource has a running action.
    pub fn ensure_unlocked(&self, kind: Kind, id: Id) -> Result<(), ApiError> {
        if self.is_locked(kind, id) {
            Err(ApiError::locked())
        } else {
            Ok(())
        }
    }

    /// Queues an event for the hooks.
    pub fn emit(&mut self, e: HookEvent) {
        self.events.push(e);
    }

    /// Finishes a running action successfully and applies its effect.
    fn complete(&mut self, action: Id, effect: Effect) -> Vec<HookEvent> {
        if !self.running.remove(&action) {
            return Vec::new();
        }
        if let Some(a) = self.actions.get_mut(&action) {
            a.status = ActionStatus::Success;
            a.finished = Some(Utc::now());
        }
        effect(self)
    }

    /// Marks an action failed with an error code and message.
    pub fn fail_action(&mut self, action: Id, code: &str, message: &str) {
        self.running.remove(&action);
        if let Some(a) = self.actions.get_mut(&action) {
            a.status = ActionStatus::Error;
            a.finished = Some(Utc::now());
            a.error = Some((code.to_string(), message.to_string()));
        }
    }

    /// Parses a selector (422 `invalid_input` when it does not parse).
    pub fn selector(&self, s: &str) -> Result<Selector, ApiError> {
        Selector::parse(s).map_err(|e| ApiError::invalid_input(e.to_string()))
    }

    /// Whether `labels` match `sel` under the configured semantics.
    pub fn selects(&self, sel: &Selector, labels: &Labels) -> bool {
        sel.matches_with(labels, self.negative_selector_matches_missing)
    }

    /// Servers matching a selector string (an unparsable selector matches nothing).
    pub fn servers_matching(&self, selector: &str) -> Vec<Id> {
        match Selector::parse(selector) {
            Ok(sel) => self
                .servers
                .values()
                .filter(|s| self.selects(&sel, &s.labels))
                .map(|s| s.id)
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Firewalls applied to a server, directly or by label selector.
    pub fn firewalls_of(&self, server: Id) -> Vec<Id> {
        let Some(s) = self.servers.get(&server) else {
            return Vec::new();
        };
        self.firewalls
            .values()
            .filter(|f| {
                f.applied_to.iter().any(|a| match a {
                    ApplyTo::Server(id) => *id == server,
                    ApplyTo::LabelSelector(sel) => {
                        Selector::parse(sel).is_ok_and(|sel| self.selects(&sel, &s.labels))
                    }
                })
            })
            .map(|f| f.id)
            .collect()
    }

    /// The boot description of a server; clears the rescue flag when booting into rescue.
    pub fn boot(&mut self, id: Id) -> Option<ServerBoot> {
        let s = self.servers.get_mut(&id)?;
        let rescue = s.rescue_enabled;
        s.rescue_enabled = false;
        let s = self.servers.get(&id)?;
        let image_labels = s
            .image
            .and_then(|i| self.images.get(&i))
            .map(|i| i.labels.clone())
            .unwrap_or_default();
        Some(ServerBoot {
            id,
            name: s.name.clone(),
            public_ipv4: s.public_ipv4,
            private_ips: s.private_net.iter().map(|p| p.ip).collect(),
            image_id: s.image,
            image_labels,
            rescue,
            ssh_public_keys: if rescue {
                s.rescue_ssh_keys.clone()
            } else {
                s.ssh_keys.clone()
            },
            labels: s.labels.clone(),
            architecture: s.server_type.architecture.to_string(),
            server_type: s.server_type.name.to_string(),
            user_data: s.user_data.clone(),
        })
    }

    /// Private IPs in use in a network (servers, load balancers, gateway).
    pub fn used_private_ips(&self, network: Id) -> BTreeSet<Ipv4Addr> {
        let mut used = BTreeSet::new();
        for s in self.servers.values() {
            for p in s.private_net.iter().filter(|p| p.network == network) {
                used.insert(p.ip);
                used.extend(p.alias_ips.iter().copied());
            }
        }
        for lb in self.load_balancers.values() {
            for (n, ip) in &lb.private_net {
                if *n == network {
                    used.insert(*ip);
                }
            }
        }
        if let Some(n) = self.networks.get(&network) {
            used.extend(n.subnets.iter().map(|s| s.gateway));
        }
        used
    }

    /// Picks a free IP in a subnet of `network` in `zone` (types `cloud` or `server`).
    pub fn allocate_private_ip(&self, network: Id, zone: &str) -> Result<Ipv4Addr, ApiError> {
        let n = self
            .networks
            .get(&network)
            .ok_or_else(|| ApiError::invalid_field("network", "network not found"))?;
        let used = self.used_private_ips(network);
        for sub in n
            .subnets
            .iter()
            .filter(|s| s.network_zone == zone && (s.kind == "cloud" || s.kind == "server"))
        {
            if let Some(ip) = sub.ip_range.hosts().find(|ip| !used.contains(ip)) {
                return Ok(ip);
            }
        }
        Err(ApiError::unprocessable(
            "no_subnet_available",
            "no subnet or IP is available in the network",
        ))
    }

    /// The private IPs of a server's target health, resolved load balancer targets.
    pub fn resolve_targets(&self, lb: &LoadBalancer) -> Vec<(Id, bool)> {
        let mut out: Vec<(Id, bool)> = Vec::new();
        for t in &lb.targets {
            let ids = match &t.kind {
                TargetKind::Server(id) => vec![*id],
                TargetKind::LabelSelector(sel) => self.servers_matching(sel),
                TargetKind::Ip(_) => Vec::new(),
            };
            for id in ids {
                if !out.iter().any(|(x, _)| *x == id) {
                    out.push((id, t.use_private_ip));
                }
            }
        }
        out
    }

    /// Health of a server behind a load balancer on `port`.
    pub fn target_healthy(
        &self,
        lb: &LoadBalancer,
        server: Id,
        use_private: bool,
        port: u16,
    ) -> bool {
        let Some(s) = self.servers.get(&server) else {
            return false;
        };
        let ip = if use_private {
            lb.private_net
                .iter()
                .find_map(|(n, _)| s.private_net.iter().find(|p| p.network == *n).map(|p| p.ip))
        } else {
            s.public_ipv4
        };
        let default = s.status == ServerStatus::Running;
        match ip {
            Some(ip) => self
                .hooks
                .target_health(server, ip, port)
                .unwrap_or(default),
            None => false,
        }
    }
}

struct Shared {
    world: Mutex<World>,
    token: RwLock<Option<String>>,
    bucket: Mutex<Bucket>,
    faults: Mutex<Faults>,
    log: Mutex<RequestLog>,
    hooks: RwLock<Arc<dyn ServerHooks>>,
    changes: tokio::sync::watch::Sender<u64>,
}

/// Shared handle to the twin's state; clones share everything.
#[derive(Clone)]
pub struct TwinState(Arc<Shared>);

impl std::fmt::Debug for TwinState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwinState").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Read-only view of a server for other twin parts (e.g. LB forwarding).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerInfo {
    /// Id.
    pub id: Id,
    /// Name.
    pub name: String,
    /// Status string of the spec.
    pub status: String,
    /// Labels.
    pub labels: Labels,
    /// Public IPv4.
    pub public_ipv4: Option<Ipv4Addr>,
    /// Private IPs as (network, ip).
    pub private_ips: Vec<(Id, Ipv4Addr)>,
    /// Image id.
    pub image_id: Option<Id>,
    /// Rescue enabled for the next boot.
    pub rescue_enabled: bool,
}

/// A resolved load balancer target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo {
    /// Server id.
    pub server_id: Id,
    /// The address traffic goes to (private IP if `use_private_ip`, else public).
    pub ip: Option<Ipv4Addr>,
    /// Whether the private network is used.
    pub use_private_ip: bool,
    /// Whether the server is running.
    pub running: bool,
}

/// Read-only view of a load balancer for other twin parts.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadBalancerInfo {
    /// Id.
    pub id: Id,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: Labels,
    /// Public IPv4 (loopback block).
    pub public_ipv4: Option<Ipv4Addr>,
    /// Private IPs as (network, ip).
    pub private_ips: Vec<(Id, Ipv4Addr)>,
    /// Services as (protocol, listen_port, destination_port).
    pub services: Vec<(String, u16, u16)>,
    /// Resolved targets (label selectors expanded, duplicates removed).
    pub targets: Vec<TargetInfo>,
}

impl TwinState {
    /// A new state with a public address pool, speed factor, token and rate limit.
    pub fn new(pool_net: Ipv4Net, speed: f64, token: Option<String>, rate: RateLimit) -> Self {
        Self(Arc::new(Shared {
            world: Mutex::new(World::new(AddrPool::new(pool_net), speed)),
            token: RwLock::new(token),
            bucket: Mutex::new(Bucket::new(rate)),
            faults: Mutex::new(Faults::default()),
            log: Mutex::new(RequestLog::default()),
            hooks: RwLock::new(Arc::new(NoHooks)),
            changes: tokio::sync::watch::channel(0).0,
        }))
    }

    /// Locks the world for reading or direct manipulation (no timers, no hooks).
    pub fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.0.world)
    }

    /// Runs a mutation; afterwards starts the timers of scheduled actions and delivers hook
    /// events. Must be called inside a tokio runtime for timers to run; without one, actions
    /// complete at once.
    pub fn mutate<R>(
        &self,
        f: impl FnOnce(&mut World) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        let (r, pending, events) = {
            let mut w = self.world();
            let r = f(&mut w);
            (
                r,
                std::mem::take(&mut w.pending),
                std::mem::take(&mut w.events),
            )
        };
        self.deliver(events);
        for p in pending {
            self.spawn(p);
        }
        if r.is_ok() {
            self.bump();
        }
        r
    }

    fn bump(&self) {
        self.0.changes.send_modify(|g| *g += 1);
    }

    /// A receiver that sees a new generation number after every successful mutation and every
    /// finished action (e.g. to re-read [`TwinState::load_balancers`] for forwarding).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.changes.subscribe()
    }

    fn spawn(&self, p: Scheduled) {
        let state = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(async move {
                    tokio::time::sleep(p.delay).await;
                    state.finish(p.action, p.effect);
                });
            }
            Err(_) => state.finish(p.action, p.effect),
        }
    }

    fn finish(&self, action: Id, effect: Effect) {
        let (mut events, pending, more) = {
            let mut w = self.world();
            let ev = w.complete(action, effect);
            (
                ev,
                std::mem::take(&mut w.pending),
                std::mem::take(&mut w.events),
            )
        };
        events.extend(more);
        self.deliver(events);
        for p in pending {
            self.spawn(p);
        }
        self.bump();
    }

    fn deliver(&self, events: Vec<HookEvent>) {
        if events.is_empty() {
            return;
        }
        let hooks = self
            .0
            .hooks
            .read()
            .map(|h| h.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        for e in events {
            match e {
                HookEvent::Running(b) => hooks.server_running(&b),
                HookEvent::Stopped(id) => hooks.server_stopped(id),
                HookEvent::Deleted(id) => hooks.server_deleted(id),
                HookEvent::ImageCreated(s, i) => hooks.image_created(s, i),
            }
        }
    }

    /// Registers the hooks of the other twin parts (replacing the previous ones).
    pub fn set_hooks(&self, hooks: Arc<dyn ServerHooks>) {
        match self.0.hooks.write() {
            Ok(mut h) => *h = hooks.clone(),
            Err(p) => *p.into_inner() = hooks.clone(),
        }
        self.world().hooks = hooks;
    }

    /// The expected bearer token (`None`: any non-empty token is accepted).
    pub fn token(&self) -> Option<String> {
        self.0.token.read().map(|t| t.clone()).unwrap_or(None)
    }

    /// The speed factor.
    pub fn speed(&self) -> f64 {
        self.world().speed
    }

    /// Changes the speed factor for actions started from now on.
    pub fn set_speed(&self, speed: f64) {
        if speed.is_finite() && speed > 0.0 {
            self.world().speed = speed;
        }
    }

    /// Replaces the base durations of actions started from now on.
    pub fn set_latency(&self, latency: Latency) {
        self.world().latency = latency;
    }

    /// Installs a fault rule (same shape as `POST /twin/faults`).
    pub fn add_fault(
        &self,
        rule: crate::faults::FaultRule,
    ) -> Result<u64, crate::faults::InvalidRule> {
        self.faults().add(rule)
    }

    /// The rate-limit bucket.
    pub fn bucket(&self) -> MutexGuard<'_, Bucket> {
        lock(&self.0.bucket)
    }

    /// The installed faults.
    pub fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.0.faults)
    }

    /// The request log.
    pub fn log(&self) -> MutexGuard<'_, RequestLog> {
        lock(&self.0.log)
    }

    /// All servers with their labels and addresses.
    pub fn servers(&self) -> Vec<ServerInfo> {
        let w = self.world();
        w.servers
            .values()
            .map(|s| ServerInfo {
                id: s.id,
                name: s.name.clone(),
                status: s.status.as_str().to_string(),
                labels: s.labels.clone(),
                public_ipv4: s.public_ipv4,
                private_ips: s.private_net.iter().map(|p| (p.network, p.ip)).collect(),
                image_id: s.image,
                rescue_enabled: s.rescue_enabled,
            })
            .collect()
    }

    /// All load balancers with services and resolved targets.
    pub fn load_balancers(&self) -> Vec<LoadBalancerInfo> {
        let w = self.world();
        w.load_balancers
            .values()
            .map(|lb| {
                let targets = w
                    .resolve_targets(lb)
                    .into_iter()
                    .filter_map(|(id, private)| {
                        let s = w.servers.get(&id)?;
                        let ip = if private {
                            lb.private_net.iter().find_map(|(n, _)| {
                                s.private_net.iter().find(|p| p.network == *n).map(|p| p.ip)
                            })
                        } else {
                            s.public_ipv4
                        };
                        Some(TargetInfo {
                            server_id: id,
                            ip,
                            use_private_ip: private,
                            running: s.status == ServerStatus::Running,
                        })
                    })
                    .collect();
                LoadBalancerInfo {
                    id: lb.id,
                    name: lb.name.clone(),
                    labels: lb.labels.clone(),
                    public_ipv4: lb.public_ipv4,
                    private_ips: lb.private_net.clone(),
                    services: lb
                        .services
                        .iter()
                        .map(|s| {
                            (
                                s.protocol.clone(),
                                u16::try_from(s.listen_port).unwrap_or(0),
                                u16::try_from(s.destination_port).unwrap_or(0),
                            )
                        })
                        .collect(),
                    targets,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn state(speed: f64) -> TwinState {
        TwinState::new(
            "127.200.0.0/20".parse().unwrap(),
            speed,
            None,
            RateLimit::default(),
        )
    }

    #[derive(Default)]
    struct Counting {
        deleted: AtomicUsize,
    }
    impl ServerHooks for Counting {
        fn server_deleted(&self, _id: Id) {
            self.deleted.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn action_locks_until_its_timer_fires() {
        let st = state(1.0);
        let id = st
            .mutate(|w| {
                Ok(w.start_action(
                    "poweron",
                    vec![(7, "server")],
                    Some((Kind::Server, 7)),
                    10.0,
                    Box::new(|_| vec![HookEvent::Deleted(7)]),
                ))
            })
            .unwrap();
        let hooks = Arc::new(Counting::default());
        st.set_hooks(hooks.clone());
        let mut changes = st.changes();
        let seen = *changes.borrow_and_update();
        assert!(st.world().is_locked(Kind::Server, 7));
        assert!(!st.world().is_locked(Kind::Server, 8));
        tokio::time::sleep(Duration::from_secs(11)).await;
        let w = st.world();
        assert!(!w.is_locked(Kind::Server, 7));
        assert_eq!(w.actions[&id].status, ActionStatus::Success);
        assert_eq!(w.actions[&id].progress(), 100);
        drop(w);
        assert_eq!(hooks.deleted.load(Ordering::SeqCst), 1);
        assert!(changes.has_changed().unwrap());
        assert!(*changes.borrow_and_update() > seen);
    }

    #[test]
    fn speed_scales_durations() {
        let st = state(1000.0);
        assert_eq!(st.world().scaled(60.0), Duration::from_millis(60));
        st.set_speed(-1.0);
        assert_eq!(st.speed(), 1000.0);
    }

    #[test]
    fn request_log_counts_endpoints_and_mutations() {
        let mut l = RequestLog::default();
        l.record("GET", "/v1/servers", "GET /v1/servers", 200);
        l.record("POST", "/v1/servers", "POST /v1/servers", 201);
        l.record("GET", "/v1/servers?page=2", "GET /v1/servers", 200);
        assert_eq!(l.counts()["GET /v1/servers"], 2);
        assert_eq!(l.mutating(), 1);
        assert_eq!(l.to_json()["total"], 3);
    }
}
