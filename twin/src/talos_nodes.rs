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
use axum::routing::{get, post};
use hk8s_twin_talos::{
    NodeHandle, NodeOptions, TalosFleet, TalosNode, UpgradeFault, UpgradeFaultKind,
};
use http::StatusCode;
use serde_json::{Value, json};

use crate::kube_nodes::{ApiServing, KUBE_API_PORT, KubeTwin};
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
    /// Boots server `boot` into Talos `(version, schematic)`, or (`None`: its disk holds no
    /// Talos for its architecture, or it boots into rescue) powers its node off. A node that
    /// exists is powered on again with the state it had (an upgraded node keeps its version).
    pub fn boot(&self, boot: &ServerBoot, image: Option<(&str, &str)>) {
        let mut nodes = self.nodes();
        let Some((version, schematic)) = image.filter(|_| !boot.rescue) else {
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
        opts.schematic = schematic.to_string();
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
        self.boot(
            boot,
            version
                .as_deref()
                .map(|v| (v, hk8s_twin_talos::hooks::VANILLA_SCHEMATIC)),
        );
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

/// The PodDisruptionBudget the `pdb_never_allows` fault creates.
pub const FAULT_PDB: &str = "hk8s-twin-fault-pdb";

/// The control routes of the Talos nodes (see the README's control API table):
/// `GET /twin/talos` (nodes with their upgrade counters and cordon state, clusters with the
/// etcd health minimum, call counts, upgrade faults), `POST|GET|DELETE /twin/talos/faults`
/// and `POST /twin/talos/reset-counters`.
pub fn router(hooks: Arc<TalosHooks>, kube: KubeTwin) -> Router {
    Router::new()
        .route("/twin/talos", get(control_talos))
        .route(
            "/twin/talos/faults",
            get(control_faults)
                .post(control_add_fault)
                .delete(control_clear_faults),
        )
        .route("/twin/talos/reset-counters", post(control_reset))
        .with_state((hooks, kube))
}

type Ctl = State<(Arc<TalosHooks>, KubeTwin)>;

async fn control_talos(State((hooks, kube)): Ctl) -> Response {
    let fleet = hooks.fleet();
    let nodes: Vec<Value> = fleet
        .nodes()
        .into_iter()
        .map(|n| {
            let node = n
                .cluster_name
                .as_deref()
                .and_then(|c| kube.cluster(c))
                .and_then(|c| c.object("", "nodes", "", &n.hostname));
            let mut v = serde_json::to_value(&n).unwrap_or_default();
            v["cordoned"] = json!(
                node.as_ref()
                    .is_some_and(|o| o["spec"]["unschedulable"] == true)
            );
            v["talos_cordoned"] = json!(node.as_ref().is_some_and(|o| {
                o["metadata"]["annotations"][hk8s_twin_kube::node_ops::CORDONED_ANNOTATION]
                    == "true"
            }));
            v["kubelet_version"] = node
                .as_ref()
                .map(|o| o["status"]["nodeInfo"]["kubeletVersion"].clone())
                .unwrap_or(Value::Null);
            v
        })
        .collect();
    axum::Json(json!({
        "nodes": nodes,
        "clusters": fleet.clusters(),
        "calls": fleet.call_counts(),
        "upgrade_faults": fleet.upgrade_faults(),
        "pdb_faults": pdb_faults(&kube),
    }))
    .into_response()
}

fn pdb_faults(kube: &KubeTwin) -> Vec<Value> {
    kube.clusters()
        .iter()
        .filter_map(|c| kube.cluster(&c.cluster_name))
        .flat_map(|c| c.objects("policy", "poddisruptionbudgets"))
        .filter(|p| p["metadata"]["name"] == FAULT_PDB)
        .map(|p| json!({"namespace": p["metadata"]["namespace"]}))
        .collect()
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": {"code": "invalid_input", "message": message}})),
    )
        .into_response()
}

/// `POST /twin/talos/faults` with `{kind, node?, count?}` (an upgrade fault: `never_returns`,
/// `boot_rollback`, `installer_refuses`, `locked`; `node` is an IP or hostname, absent = any
/// node) or `{kind: "pdb_never_allows", namespace?}` (a PodDisruptionBudget with
/// `maxUnavailable: 0` selecting every pod of the namespace, default `default`, in every
/// running cluster).
async fn control_add_fault(State((hooks, kube)): Ctl, body: axum::body::Bytes) -> Response {
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(format!("body is not JSON: {e}")),
    };
    let Some(kind) = body["kind"].as_str() else {
        return bad_request("kind is required".into());
    };
    if kind == "pdb_never_allows" {
        let ns = body["namespace"].as_str().unwrap_or("default");
        let mut made = 0;
        for c in kube.clusters() {
            let Some(cluster) = kube.cluster(&c.cluster_name) else {
                continue;
            };
            let pdb = json!({
                "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {"name": FAULT_PDB, "namespace": ns},
                "spec": {"maxUnavailable": 0, "selector": {}},
            });
            if cluster
                .create_object("policy", "poddisruptionbudgets", pdb)
                .is_ok()
            {
                made += 1;
            }
        }
        if made == 0 {
            return bad_request(format!(
                "no running cluster took the PodDisruptionBudget in namespace {ns} (no cluster yet, or it exists already)"
            ));
        }
        return (
            StatusCode::CREATED,
            axum::Json(json!({"kind": kind, "namespace": ns})),
        )
            .into_response();
    }
    let fault_kind: UpgradeFaultKind = match serde_json::from_value(json!(kind)) {
        Ok(k) => k,
        Err(_) => {
            return bad_request(format!(
                "unknown fault kind {kind:?} (never_returns, boot_rollback, installer_refuses, locked, pdb_never_allows)"
            ));
        }
    };
    let fleet = hooks.fleet();
    let ip = match body["node"].as_str() {
        None => None,
        Some(target) => match target.parse::<std::net::Ipv4Addr>().ok().or_else(|| {
            fleet
                .nodes()
                .into_iter()
                .find(|n| n.hostname == target)
                .map(|n| n.ip)
        }) {
            Some(ip) => Some(ip),
            None => return bad_request(format!("node {target:?} is not a Talos node of the twin")),
        },
    };
    let count = match body.get("count") {
        None => 1,
        Some(c) => match c.as_u64().and_then(|c| u32::try_from(c).ok()) {
            Some(c) => c,
            None => return bad_request("count must be a non-negative integer".into()),
        },
    };
    let id = fleet.add_upgrade_fault(UpgradeFault {
        id: 0,
        ip,
        kind: fault_kind,
        count,
        fired: 0,
    });
    (StatusCode::CREATED, axum::Json(json!({"id": id}))).into_response()
}

async fn control_faults(State((hooks, kube)): Ctl) -> Response {
    axum::Json(json!({
        "upgrade_faults": hooks.fleet().upgrade_faults(),
        "pdb_faults": pdb_faults(&kube),
    }))
    .into_response()
}

async fn control_clear_faults(State((hooks, kube)): Ctl) -> Response {
    hooks.fleet().clear_upgrade_faults();
    for c in kube.clusters() {
        if let Some(cluster) = kube.cluster(&c.cluster_name) {
            for p in cluster.objects("policy", "poddisruptionbudgets") {
                if p["metadata"]["name"] == FAULT_PDB {
                    let ns = p["metadata"]["namespace"].as_str().unwrap_or_default();
                    cluster.delete_object("policy", "poddisruptionbudgets", ns, FAULT_PDB);
                }
            }
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn control_reset(State((hooks, _)): Ctl) -> Response {
    hooks.fleet().reset_upgrade_counters();
    StatusCode::NO_CONTENT.into_response()
}
