//! The [`World`]: every resource table, the public address pool, the speed factor and base
//! [`Latency`], and the action timers and hook events a mutation leaves for the handle. The
//! action engine ([`crate::actions`]) and the world queries ([`crate::queries`]) are its methods.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::addr::AddrPool;
use crate::catalog;
use crate::hooks::{HookEvent, NoHooks, ServerHooks};
use crate::labels::Labels;
use crate::model::{
    Action, Firewall, Id, Image, LoadBalancer, Network, PlacementGroup, Server, SshKey, Volume,
};
use crate::timeline::{Jitter, Timeline};

/// What happens when an action finishes.
pub type Effect = Box<dyn FnOnce(&mut World) -> Vec<HookEvent> + Send>;

/// An action whose timer must be started once the lock is released.
pub struct Scheduled {
    pub(crate) action: Id,
    pub(crate) delay: Duration,
    pub(crate) effect: Effect,
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
    /// Seeded jitter of server create and start durations.
    pub jitter: Jitter,
    /// The durations applied to each server (for the critical path).
    pub timeline: Timeline,
    pub(crate) running: BTreeSet<Id>,
    pub(crate) pending: Vec<Scheduled>,
    pub(crate) events: Vec<HookEvent>,
    pub(crate) hooks: Arc<dyn ServerHooks>,
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
    pub(crate) fn new(pool: AddrPool, speed: f64) -> Self {
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
            jitter: Jitter::default(),
            timeline: Timeline::default(),
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

    /// `base_secs` with the next jitter factor applied (still at speed 1).
    pub fn jittered(&mut self, base_secs: f64) -> f64 {
        self.jitter.apply(base_secs)
    }

    /// Scales a base duration by the speed factor.
    pub fn scaled(&self, base_secs: f64) -> Duration {
        Duration::from_secs_f64((base_secs / self.speed).max(0.0))
    }
}
