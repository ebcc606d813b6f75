//! Talos nodes for servers booted from a Talos snapshot: the [`ServerHooks`] that start, power
//! and stop `hk8s-twin-talos` nodes on the servers' public IPs, and the `/twin/talos` control
//! route that shows them.
//!
//! [`crate::machines::Machines`] decides from the server's disk whether a boot is Talos and calls
//! [`TalosHooks::boot`]: the node listens on `<public ip>:50000`; power-off, reset and delete act
//! on that node. Rescue boots are not Talos.
//! A load balancer target that is a Talos server is healthy on port 6443 while its Kubernetes
//! API listens (see [`crate::kube_nodes`]); other ports keep the default (healthy iff running).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hk8s_twin_talos::{NodeHandle, NodeOptions, TalosFleet, TalosNode};
use serde_json::json;

use crate::kube_nodes::{ApiServing, KUBE_API_PORT};
use hk8s_twin_hetzner::hooks::{ServerBoot, ServerHooks};
use hk8s_twin_hetzner::model::Id;
use hk8s_twin_hetzner::timeline::{Jitter, Timeline};

/// Starts and stops simulated Talos nodes as servers boot, stop and go away.
pub struct TalosHooks {
    fleet: TalosFleet,
    speed: f64,
    nodes: Mutex<HashMap<Id, NodeHandle>>,
    serving: Arc<ApiServing>,
    jitter: Mutex<Jitter>,
    timeline: Mutex<Timeline>,
}

impl std::fmt::Debug for TalosHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TalosHooks")
            .field("fleet", &self.fleet)
            .field("speed", &self.speed)
            .finish_non_exhaustive()
    }
}

impl TalosHooks {
    /// Hooks that run nodes of `fleet` at `speed`.
    pub fn new(fleet: TalosFleet, speed: f64) -> Self {
        TalosHooks {
            fleet,
            speed,
            nodes: Mutex::new(HashMap::new()),
            serving: Arc::new(ApiServing::default()),
            jitter: Mutex::new(Jitter::default()),
            timeline: Mutex::new(Timeline::default()),
        }
    }

    /// Draws each node's boot and install durations with `jitter` from now on.
    pub fn set_jitter(&self, jitter: Jitter) {
        *lock(&self.jitter) = jitter;
    }

    /// The boot, install and configured-boot durations (wall seconds) each node was given.
    pub fn timeline(&self) -> std::sync::MutexGuard<'_, Timeline> {
        lock(&self.timeline)
    }

    /// The servers whose Kubernetes API listens (kept by [`crate::kube_nodes::KubeTwin`]); load
    /// balancer targets are healthy on port 6443 only while it does.
    pub fn serving(&self) -> Arc<ApiServing> {
        self.serving.clone()
    }

    /// The fleet (for state dumps and tests).
    pub fn fleet(&self) -> &TalosFleet {
        &self.fleet
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, HashMap<Id, NodeHandle>> {
        self.nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn is_talos(boot: &ServerBoot) -> bool {
    boot.image_labels.get("os").map(String::as_str) == Some("talos")
}

impl TalosHooks {
    /// Boots server `boot` into Talos `version`, or (`None`: its disk holds no Talos for its
    /// architecture, or it boots into rescue) powers its node off. A node that exists is powered
    /// on again with the state it had.
    pub fn boot(&self, boot: &ServerBoot, version: Option<&str>) {
        let mut nodes = self.nodes();
        let Some(version) = version.filter(|_| !boot.rescue) else {
            if let Some(node) = nodes.get(&boot.id) {
                node.power_off();
            }
            return;
        };
        if let Some(node) = nodes.get(&boot.id) {
            node.power_on();
            return;
        }
        let Some(ip) = boot.public_ipv4 else { return };
        let mut opts = NodeOptions::new(ip, boot.name.clone(), version.to_string());
        opts.arch = if boot.architecture == "arm" {
            "arm64".into()
        } else {
            "amd64".into()
        };
        opts.speed = self.speed;
        // Each node gets its own (seeded) boot and install durations; the configured boot
        // after the install takes the same boot delay again.
        {
            let mut jitter = lock(&self.jitter);
            opts.boot_delay = opts.boot_delay.mul_f64(jitter.apply(1.0));
            opts.install_delay = opts.install_delay.mul_f64(jitter.apply(1.0));
        }
        {
            let wall = |d: std::time::Duration| d.as_secs_f64() / self.speed;
            let mut timeline = lock(&self.timeline);
            timeline.record(boot.id, &boot.name, "boot", wall(opts.boot_delay));
            timeline.record(boot.id, &boot.name, "install", wall(opts.install_delay));
            timeline.record(
                boot.id,
                &boot.name,
                "configured_boot",
                wall(opts.boot_delay),
            );
        }
        opts.user_data = boot.user_data.clone().map(String::into_bytes);
        match TalosNode::spawn(&self.fleet, opts) {
            Ok(node) => {
                nodes.insert(boot.id, node);
            }
            Err(e) => {
                tracing::warn!(server = %boot.name, %ip, error = %e, "cannot start the Talos node")
            }
        }
    }
}

/// Used alone (without [`crate::machines::Machines`]), a server boots Talos when its image is
/// labelled `os=talos` (version from the `version` label).
impl ServerHooks for TalosHooks {
    fn server_running(&self, boot: &ServerBoot) {
        let version = is_talos(boot).then(|| {
            boot.image_labels
                .get("version")
                .cloned()
                .unwrap_or_else(|| "v1.11.6".into())
        });
        self.boot(boot, version.as_deref());
    }

    fn server_stopped(&self, id: Id) {
        if let Some(node) = self.nodes().get(&id) {
            node.power_off();
        }
    }

    fn server_deleted(&self, id: Id) {
        if let Some(node) = self.nodes().remove(&id) {
            node.stop();
        }
    }

    fn target_health(&self, server_id: Id, _ip: std::net::Ipv4Addr, port: u16) -> Option<bool> {
        if port != KUBE_API_PORT || !self.nodes().contains_key(&server_id) {
            return None;
        }
        Some(self.serving.serves(server_id))
    }
}

/// `GET /twin/talos`: nodes (phase, role, version), clusters (bootstrapped, etcd members) and
/// call counts per node and method.
pub fn router(hooks: Arc<TalosHooks>) -> Router {
    Router::new()
        .route("/twin/talos", get(control_talos))
        .with_state(hooks)
}

async fn control_talos(State(hooks): State<Arc<TalosHooks>>) -> Response {
    let fleet = hooks.fleet();
    axum::Json(json!({
        "nodes": fleet.nodes(),
        "clusters": fleet.clusters(),
        "calls": fleet.call_counts(),
    }))
    .into_response()
}
