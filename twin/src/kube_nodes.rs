//! The Kubernetes API of bootstrapped Talos clusters: a watch loop that creates one
//! [`KubeCluster`] per bootstrapped cluster, serves it on `<cp public ip>:6443` for every
//! running control plane, and starts and stops kubelets as servers come and go.
//!
//! The loop reacts to [`TalosFleet::changes`] (a node reaches `Running`, a cluster is
//! bootstrapped) and [`TwinState::changes`] (a server powers off or is deleted). A node's kubelet
//! runs while its Talos node is `Running` and its server is `running`; it registers with the
//! node's private IP as InternalIP (the public IP when the server has no network). The cluster is
//! made from a control plane's applied config: Kubernetes CA certificate and key,
//! `cluster.apiServer.certSANs`, `cluster.clusterName`, and the Kubernetes version from the tag
//! of `machine.kubelet.image` (default [`DEFAULT_KUBERNETES_VERSION`]). CCM load balancers and
//! CSI volumes go to the Hetzner twin through [`HetznerCloud`].
//!
//! A cluster whose servers are all deleted is dropped; a later cluster with the same OS CA starts
//! with an empty API.
//!
//! A node that leaves `Running` (Talos `Reboot`/`Upgrade`, Hetzner power-off, reset) stops its
//! kubelet and, on a control plane, its API listener; a node that booted again (its boot count
//! changed) restarts both, so open connections drop as on a real reboot. Per-node phase watchers
//! make the loop see a node go down even though the fleet only announces `Running`. The speed
//! factor of [`TwinState::speed`] is passed on to the clusters.
//!
//! Deviation: the API keeps running while etcd has lost quorum.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use hk8s_twin_kube::{KubeCluster, KubeClusterOptions, NodeRole, ServerHandle};
use hk8s_twin_talos::{MachineConfig, MachineRole, NodePhase, TalosFleet};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::kube_cloud::HetznerCloud;
use hk8s_twin_hetzner::handle::TwinState;
use hk8s_twin_hetzner::model::Id;

/// Port of the Kubernetes API on control planes.
pub const KUBE_API_PORT: u16 = 6443;

/// Kubernetes version served when the config's kubelet image has no tag.
pub const DEFAULT_KUBERNETES_VERSION: &str = "v1.34.1";

/// Servers whose Kubernetes API listens on `:6443` (read by the load balancer health hook).
#[derive(Debug, Default)]
pub struct ApiServing {
    servers: RwLock<HashSet<Id>>,
}

impl ApiServing {
    /// Whether server `id` serves the Kubernetes API.
    pub fn serves(&self, id: Id) -> bool {
        self.servers
            .read()
            .map(|s| s.contains(&id))
            .unwrap_or_else(|p| p.into_inner().contains(&id))
    }

    fn set(&self, ids: HashSet<Id>) {
        match self.servers.write() {
            Ok(mut s) => *s = ids,
            Err(p) => *p.into_inner() = ids,
        }
    }
}

/// One cluster's Kubernetes API as seen in a state dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KubeClusterStatus {
    /// `cluster.clusterName`.
    pub cluster_name: String,
    /// Kubernetes version served.
    pub kubernetes_version: String,
    /// `cluster.apiServer.certSANs` of the config the cluster was made from.
    pub cert_sans: Vec<String>,
    /// Addresses the API is served on (`<cp public ip>:6443`).
    pub api_servers: Vec<SocketAddr>,
    /// Nodes whose kubelet runs, by name.
    pub kubelets: Vec<String>,
    /// `kubelet_started` calls so far (a reboot starts a kubelet again).
    pub kubelet_starts: u64,
}

struct ClusterRun {
    cluster: KubeCluster,
    status: KubeClusterStatus,
    speed: f64,
    /// API listeners per control plane server, with the boot count they were started in.
    servers: BTreeMap<Id, (ServerHandle, u64)>,
    /// Running kubelets by node name, with the boot count they were started in.
    kubelets: BTreeMap<String, u64>,
    /// The kubelet version each running kubelet was started with.
    kubelet_versions: BTreeMap<String, String>,
    /// Mirror pods per (node, component): image and `talos.dev/config-version`.
    static_pods: BTreeMap<(String, String), (String, u64)>,
    /// Images read from each applied config (by config digest).
    images: HashMap<[u8; 32], ConfigImages>,
}

/// The Kubernetes images of one machine config.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ConfigImages {
    kubelet: Option<String>,
    apiserver: Option<String>,
    controller_manager: Option<String>,
    scheduler: Option<String>,
}

impl ConfigImages {
    fn of(raw: &[u8]) -> ConfigImages {
        let image = |pointer: &str| config_image(raw, pointer);
        ConfigImages {
            kubelet: image("/machine/kubelet/image"),
            apiserver: image("/cluster/apiServer/image"),
            controller_manager: image("/cluster/controllerManager/image"),
            scheduler: image("/cluster/scheduler/image"),
        }
    }
}

/// The tag of an image reference (`repo:tag[@digest]`).
fn image_tag(image: &str) -> Option<String> {
    let image = image.split('@').next().unwrap_or(image);
    let tag = image.rsplit_once(':')?.1;
    (!tag.contains('/') && !tag.is_empty()).then(|| tag.to_string())
}

/// What readers see: the clusters the loop runs (the loop owns the listeners).
#[derive(Default)]
struct Registry {
    clusters: Vec<(KubeClusterStatus, KubeCluster)>,
}

/// The Kubernetes part of a twin: the clusters it runs. Cheap to clone.
#[derive(Clone)]
pub struct KubeTwin {
    registry: Arc<Mutex<Registry>>,
    serving: Arc<ApiServing>,
    changed: watch::Sender<u64>,
}

impl std::fmt::Debug for KubeTwin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeTwin")
            .field("clusters", &self.clusters())
            .finish()
    }
}

/// A node of the fleet as the loop sees it.
struct NodeView {
    server: Id,
    name: String,
    talos_version: String,
    public_ip: Ipv4Addr,
    internal_ip: Ipv4Addr,
    location: String,
    up: bool,
    boots: u64,
    bootstrapped: bool,
    config: Arc<MachineConfig>,
}

impl KubeTwin {
    /// An empty Kubernetes twin reporting API listeners into `serving`.
    pub fn new(serving: Arc<ApiServing>) -> KubeTwin {
        KubeTwin {
            registry: Arc::new(Mutex::new(Registry::default())),
            serving,
            changed: watch::Sender::new(0),
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every cluster whose Kubernetes API runs, ordered by name.
    pub fn clusters(&self) -> Vec<KubeClusterStatus> {
        let mut out: Vec<KubeClusterStatus> = self
            .registry()
            .clusters
            .iter()
            .map(|(s, _)| s.clone())
            .collect();
        out.sort_by(|a, b| a.cluster_name.cmp(&b.cluster_name));
        out
    }

    /// The Kubernetes API of the cluster named `name` (to read its objects in tests).
    pub fn cluster(&self, name: &str) -> Option<KubeCluster> {
        self.registry()
            .clusters
            .iter()
            .find(|(s, _)| s.cluster_name == name)
            .map(|(_, c)| c.clone())
    }

    /// A receiver that changes after every pass of the watch loop that changed something.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Runs the watch loop until `stop` turns true.
    pub fn spawn(
        &self,
        state: TwinState,
        fleet: TalosFleet,
        mut stop: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut fleet_rx = fleet.changes();
            let mut state_rx = state.changes();
            let (phase_tx, mut phase_rx) = watch::channel(0u64);
            let mut watchers: HashMap<Ipv4Addr, JoinHandle<()>> = HashMap::new();
            // By OS CA certificate PEM (the Talos cluster identity).
            let mut runs: HashMap<String, ClusterRun> = HashMap::new();
            loop {
                fleet_rx.mark_unchanged();
                state_rx.mark_unchanged();
                phase_rx.mark_unchanged();
                watch_phases(&fleet, &mut watchers, &phase_tx);
                me.reconcile(&mut runs, &state, &fleet).await;
                tokio::select! {
                    r = fleet_rx.changed() => if r.is_err() { break },
                    r = state_rx.changed() => if r.is_err() { break },
                    _ = phase_rx.changed() => {},
                    _ = stop.changed() => break,
                }
            }
            for (_, w) in watchers {
                w.abort();
            }
            drop(runs);
            me.registry().clusters.clear();
            me.serving.set(HashSet::new());
        })
    }

    fn nodes(state: &TwinState, fleet: &TalosFleet) -> Vec<NodeView> {
        let locations: HashMap<Id, String> = {
            let w = state.world();
            w.servers
                .values()
                .map(|s| (s.id, s.location.name.to_string()))
                .collect()
        };
        let mut out = Vec::new();
        for s in state.servers() {
            let Some(ip) = s.public_ipv4 else { continue };
            let Some(handle) = fleet.handle(ip) else {
                continue;
            };
            let Some(config) = handle.config() else {
                continue;
            };
            let status = handle.status();
            out.push(NodeView {
                server: s.id,
                name: status.hostname.clone(),
                talos_version: status.talos_version.clone(),
                public_ip: ip,
                internal_ip: s.private_ips.first().map(|(_, ip)| *ip).unwrap_or(ip),
                location: locations.get(&s.id).cloned().unwrap_or_default(),
                // The kubelet (and a control plane's static pods) run until the upgrade's
                // stopServices phase.
                up: matches!(status.phase, NodePhase::Running | NodePhase::Upgrading)
                    && status.services_up
                    && s.status == "running",
                boots: status.boots,
                bootstrapped: status.cluster_bootstrapped,
                config,
            });
        }
        out
    }

    async fn reconcile(
        &self,
        runs: &mut HashMap<String, ClusterRun>,
        state: &TwinState,
        fleet: &TalosFleet,
    ) {
        let speed = state.speed();
        let nodes = Self::nodes(state, fleet);
        let mut by_cluster: HashMap<String, Vec<&NodeView>> = HashMap::new();
        for n in &nodes {
            by_cluster
                .entry(n.config.os_ca_crt_pem.clone())
                .or_default()
                .push(n);
        }
        let mut changed = false;
        // Make clusters that were bootstrapped.
        for (key, members) in &by_cluster {
            if runs.contains_key(key) || !members.iter().any(|n| n.bootstrapped) {
                continue;
            }
            let Some(cp) = members.iter().find(|n| {
                n.config.role == MachineRole::ControlPlane
                    && n.config.k8s_ca_crt_pem.is_some()
                    && n.config.k8s_ca_key_pem.is_some()
            }) else {
                continue;
            };
            match new_cluster(state, cp, speed) {
                Ok(run) => {
                    runs.insert(key.clone(), run);
                    changed = true;
                }
                Err(e) => tracing::warn!(
                    cluster = %cp.config.cluster_name, error = %e,
                    "cannot start the Kubernetes API"
                ),
            }
        }
        for (key, run) in runs.iter_mut() {
            if run.speed != speed && run.cluster.set_speed(speed).is_ok() {
                run.speed = speed;
            }
            let members: &[&NodeView] = by_cluster.get(key).map(Vec::as_slice).unwrap_or(&[]);
            changed |= sync_cluster(run, members).await;
        }
        // A cluster whose servers are all deleted is gone (its listeners and kubelets with it).
        let before = runs.len();
        runs.retain(|key, _| by_cluster.contains_key(key));
        changed |= runs.len() != before;
        let serving: HashSet<Id> = runs
            .values()
            .flat_map(|r| r.servers.keys().copied())
            .collect();
        self.serving.set(serving);
        self.registry().clusters = runs
            .values()
            .map(|r| (r.status.clone(), r.cluster.clone()))
            .collect();
        if changed {
            self.changed.send_modify(|g| *g = g.wrapping_add(1));
        }
    }
}

/// `GET /twin/kube`: the clusters whose Kubernetes API runs (name, version, certSANs, API
/// addresses, kubelets, node objects) and the load balancer listeners with their backends.
pub fn router(kube: KubeTwin, lbs: crate::lb_forward::LbForwarding) -> axum::Router {
    axum::Router::new()
        .route("/twin/kube", axum::routing::get(control_kube))
        .with_state((kube, lbs))
}

async fn control_kube(
    axum::extract::State((kube, lbs)): axum::extract::State<(
        KubeTwin,
        crate::lb_forward::LbForwarding,
    )>,
) -> axum::Json<serde_json::Value> {
    let clusters: Vec<serde_json::Value> = kube
        .clusters()
        .into_iter()
        .map(|c| {
            let nodes: Vec<serde_json::Value> = kube
                .cluster(&c.cluster_name)
                .map(|k| k.objects("", "nodes"))
                .unwrap_or_default();
            let mut v = serde_json::to_value(&c).unwrap_or_default();
            v["nodes"] = serde_json::Value::Array(nodes);
            v
        })
        .collect();
    let listeners: Vec<serde_json::Value> = lbs
        .listeners()
        .into_iter()
        .map(|(l, b)| serde_json::json!({"listen": l, "backends": b}))
        .collect();
    axum::Json(serde_json::json!({"clusters": clusters, "load_balancer_listeners": listeners}))
}

/// The tag of `machine.kubelet.image` in a raw machine config, e.g. `v1.34.1`.
pub fn kubelet_version(raw: &[u8]) -> Option<String> {
    image_tag(&config_image(raw, "/machine/kubelet/image")?)
}

/// The image at `pointer` (e.g. `/cluster/apiServer/image`) of the v1alpha1 document.
fn config_image(raw: &[u8], pointer: &str) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(text).ok()?;
    docs.iter()
        .find(|d| d.get("version").and_then(|v| v.as_str()) == Some("v1alpha1"))?
        .pointer(pointer)?
        .as_str()
        .map(str::to_string)
}

fn new_cluster(
    state: &TwinState,
    cp: &NodeView,
    speed: f64,
) -> Result<ClusterRun, hk8s_twin_kube::KubeError> {
    let config = &cp.config;
    let version =
        kubelet_version(&config.raw.0).unwrap_or_else(|| DEFAULT_KUBERNETES_VERSION.to_string());
    let cloud = Arc::new(HetznerCloud::new(state.clone(), &cp.location));
    let cluster = KubeCluster::new(KubeClusterOptions {
        cluster_name: config.cluster_name.clone(),
        ca_cert_pem: config.k8s_ca_crt_pem.clone().unwrap_or_default(),
        ca_key_pem: config
            .k8s_ca_key_pem
            .as_ref()
            .map(|k| k.0.clone())
            .unwrap_or_default(),
        cert_sans: config.api_server_cert_sans.clone(),
        speed,
        cloud,
        kubernetes_version: version.clone(),
    })?;
    Ok(ClusterRun {
        cluster,
        status: KubeClusterStatus {
            cluster_name: config.cluster_name.clone(),
            kubernetes_version: version,
            cert_sans: config.api_server_cert_sans.clone(),
            api_servers: Vec::new(),
            kubelets: Vec::new(),
            kubelet_starts: 0,
        },
        speed,
        servers: BTreeMap::new(),
        kubelets: BTreeMap::new(),
        kubelet_versions: BTreeMap::new(),
        static_pods: BTreeMap::new(),
        images: HashMap::new(),
    })
}

/// Serves the API on running control planes and starts/stops kubelets; true if anything changed.
async fn sync_cluster(run: &mut ClusterRun, members: &[&NodeView]) -> bool {
    let mut changed = false;
    let up_cps: BTreeMap<Id, (Ipv4Addr, u64)> = members
        .iter()
        .filter(|n| n.up && n.config.role == MachineRole::ControlPlane)
        .map(|n| (n.server, (n.public_ip, n.boots)))
        .collect();
    let before = run.servers.len();
    // Listeners of control planes that went down or booted again are closed.
    run.servers
        .retain(|id, (_, boots)| up_cps.get(id).is_some_and(|(_, b)| b == boots));
    changed |= run.servers.len() != before;
    for (id, (ip, boots)) in &up_cps {
        if run.servers.contains_key(id) {
            continue;
        }
        let addr = SocketAddr::from((*ip, KUBE_API_PORT));
        match run.cluster.serve(addr).await {
            Ok(h) => {
                run.servers.insert(*id, (h, *boots));
                changed = true;
            }
            Err(e) => tracing::warn!(%addr, error = %e, "cannot serve the Kubernetes API"),
        }
    }
    let up: BTreeMap<&str, &NodeView> = members
        .iter()
        .filter(|n| n.up)
        .map(|n| (n.name.as_str(), *n))
        .collect();
    let stopped: Vec<String> = run
        .kubelets
        .iter()
        .filter(|(k, boots)| up.get(k.as_str()).is_none_or(|n| n.boots != **boots))
        .map(|(k, _)| k.clone())
        .collect();
    for name in stopped {
        run.cluster.kubelet_stopped(&name);
        run.kubelets.remove(&name);
        changed = true;
    }
    let cluster_version = run.status.kubernetes_version.clone();
    for (name, n) in up {
        let images = run
            .images
            .entry(n.config.digest)
            .or_insert_with(|| ConfigImages::of(&n.config.raw.0))
            .clone();
        let kubelet_version = images
            .kubelet
            .as_deref()
            .and_then(image_tag)
            .unwrap_or_else(|| cluster_version.clone());
        // A new kubelet image restarts the kubelet (ApplyConfiguration without reboot).
        if run.kubelets.contains_key(name)
            && run.kubelet_versions.get(name) != Some(&kubelet_version)
        {
            run.cluster.kubelet_stopped(name);
            run.kubelets.remove(name);
            changed = true;
        }
        if !run.kubelets.contains_key(name) {
            let role = match n.config.role {
                MachineRole::ControlPlane => NodeRole::ControlPlane,
                MachineRole::Worker => NodeRole::Worker,
            };
            run.cluster.set_kubelet_version(name, &kubelet_version);
            run.cluster
                .kubelet_started(name, IpAddr::V4(n.internal_ip), role);
            run.kubelets.insert(name.to_string(), n.boots);
            run.kubelet_versions
                .insert(name.to_string(), kubelet_version.clone());
            run.status.kubelet_starts += 1;
            changed = true;
        }
        run.cluster
            .set_os_image(name, &format!("Talos ({})", n.talos_version));
        if n.config.role == MachineRole::ControlPlane {
            changed |= sync_static_pods(run, n, &images, &cluster_version);
        }
    }
    run.status.api_servers = run.servers.values().map(|(h, _)| h.local_addr()).collect();
    run.status.kubelets = run.kubelets.keys().cloned().collect();
    changed
}

/// The control-plane static pods of `n` follow its applied config: each component's image
/// (default: the cluster version's upstream image), a config version bumped at every image
/// change, and the apiserver's `/version`.
fn sync_static_pods(
    run: &mut ClusterRun,
    n: &NodeView,
    images: &ConfigImages,
    cluster_version: &str,
) -> bool {
    let mut changed = false;
    let mut pods = Vec::new();
    for (component, image) in [
        ("kube-apiserver", &images.apiserver),
        ("kube-controller-manager", &images.controller_manager),
        ("kube-scheduler", &images.scheduler),
    ] {
        let image = image
            .clone()
            .unwrap_or_else(|| format!("registry.k8s.io/{component}:{cluster_version}"));
        let key = (n.name.clone(), component.to_string());
        let version = match run.static_pods.get(&key) {
            Some((current, v)) if *current == image => *v,
            Some((_, v)) => v + 1,
            None => 1,
        };
        if run.static_pods.get(&key) != Some(&(image.clone(), version)) {
            run.static_pods.insert(key, (image.clone(), version));
            changed = true;
        }
        if component == "kube-apiserver" {
            let v = image_tag(&image).unwrap_or_else(|| cluster_version.to_string());
            run.cluster
                .set_apiserver_version(IpAddr::V4(n.public_ip), &v);
        }
        pods.push(hk8s_twin_kube::StaticPod {
            component: component.to_string(),
            image,
            config_version: version,
        });
    }
    run.cluster
        .set_static_pods(&n.name, IpAddr::V4(n.internal_ip), &pods);
    changed
}

/// One task per fleet node that bumps `tx` whenever the node's phase changes (the fleet itself
/// only announces nodes reaching `Running`); tasks of nodes that left the fleet are stopped.
fn watch_phases(
    fleet: &TalosFleet,
    watchers: &mut HashMap<Ipv4Addr, JoinHandle<()>>,
    tx: &watch::Sender<u64>,
) {
    let ips: HashSet<Ipv4Addr> = fleet.nodes().into_iter().map(|n| n.ip).collect();
    watchers.retain(|ip, task| {
        let keep = ips.contains(ip) && !task.is_finished();
        if !keep {
            task.abort();
        }
        keep
    });
    for ip in ips {
        if watchers.contains_key(&ip) {
            continue;
        }
        let Some(handle) = fleet.handle(ip) else {
            continue;
        };
        let tx = tx.clone();
        watchers.insert(
            ip,
            tokio::spawn(async move {
                loop {
                    let phase = handle.status().phase;
                    handle.wait_until(|s| s.phase != phase).await;
                    let now = handle.status().phase;
                    if now == phase || now == NodePhase::Deleted {
                        // The node is gone (its channels closed) or deleted.
                        tx.send_modify(|g| *g = g.wrapping_add(1));
                        return;
                    }
                    tx.send_modify(|g| *g = g.wrapping_add(1));
                }
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_version_from_the_image_tag() {
        let cfg = b"version: v1alpha1\nmachine:\n  type: worker\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.34.1\n";
        assert_eq!(kubelet_version(cfg).as_deref(), Some("v1.34.1"));
        let cfg = b"version: v1alpha1\nmachine:\n  kubelet:\n    image: registry:5000/kubelet\n";
        assert_eq!(kubelet_version(cfg), None);
        assert_eq!(kubelet_version(b"version: v1alpha1\n"), None);
    }

    #[test]
    fn serving_set_is_replaced() {
        let s = ApiServing::default();
        s.set([1, 2].into());
        assert!(s.serves(1) && !s.serves(3));
        s.set(HashSet::new());
        assert!(!s.serves(1));
    }
}
