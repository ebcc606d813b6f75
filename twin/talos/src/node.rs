//! A simulated Talos node: its lifecycle task (boot → maintenance → install → configured,
//! reboots, upgrades, power) and the handle the twin and tests hold.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::config::{self, MachineConfig, MachineRole};
use crate::fleet::{TalosFleet, cluster_key};
use crate::pki;
use crate::server::{Listener, ServeMode};
use crate::tls;

/// Options of one simulated node.
#[derive(Clone)]
pub struct NodeOptions {
    /// The server's public IPv4 (tests: `127.x.y.z`, never `127.0.0.1`).
    pub ip: Ipv4Addr,
    /// Hostname (the Hetzner server name); `machine.network.hostname` overrides it.
    pub hostname: String,
    /// Talos version of the booted image, e.g. `v1.11.6`.
    pub talos_version: String,
    /// Architecture reported by `Version`, e.g. `amd64`.
    pub arch: String,
    /// Time speed factor: every delay is divided by it (changeable later with
    /// [`TalosFleet::set_speed`]).
    pub speed: f64,
    /// From power-on until the API listens.
    pub boot_delay: Duration,
    /// After ApplyConfiguration in maintenance mode: install and reboot, before the configured
    /// boot (which then takes `boot_delay`).
    pub install_delay: Duration,
    /// Reboot (and upgrade) downtime, before the next boot.
    pub reboot_delay: Duration,
    /// API port (Talos: 50000).
    pub port: u16,
    /// Size of the system disk reported by `Disks`.
    pub disk_size_bytes: u64,
    /// Hetzner `user_data`: a valid machine config here boots the node configured, skipping
    /// maintenance mode (Talos's hcloud platform reads it from the metadata service).
    pub user_data: Option<Vec<u8>>,
}

impl fmt::Debug for NodeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeOptions")
            .field("ip", &self.ip)
            .field("hostname", &self.hostname)
            .field("talos_version", &self.talos_version)
            .field("speed", &self.speed)
            .field("boot_delay", &self.boot_delay)
            .field("install_delay", &self.install_delay)
            .field("reboot_delay", &self.reboot_delay)
            .field("port", &self.port)
            .field("user_data", &self.user_data.as_ref().map(|d| d.len()))
            .finish()
    }
}

impl NodeOptions {
    /// Options with realistic delays (boot 30 s, install 60 s, reboot 30 s) at speed 1.
    pub fn new(
        ip: Ipv4Addr,
        hostname: impl Into<String>,
        talos_version: impl Into<String>,
    ) -> Self {
        Self {
            ip,
            hostname: hostname.into(),
            talos_version: talos_version.into(),
            arch: "amd64".into(),
            speed: 1.0,
            boot_delay: Duration::from_secs(30),
            install_delay: Duration::from_secs(60),
            reboot_delay: Duration::from_secs(30),
            port: 50000,
            disk_size_bytes: 40 * 1024 * 1024 * 1024,
            user_data: None,
        }
    }
}

/// Where a node is in its life.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum NodePhase {
    /// Powered off: nothing listens.
    Off,
    /// Booting: nothing listens yet.
    Booting,
    /// Maintenance API on `<ip>:50000` (no config yet).
    Maintenance,
    /// Installing and rebooting after ApplyConfiguration: nothing listens.
    Installing,
    /// Configured worker waiting for a control plane of its cluster to issue its apid
    /// certificate (trustd); nothing listens.
    WaitingForCertificates,
    /// Configured: mTLS API on `<ip>:50000`.
    Running,
    /// Rebooting: nothing listens.
    Rebooting,
    /// Upgrading and rebooting: nothing listens.
    Upgrading,
    /// The API could not start (e.g. the port was taken); the text says why.
    Failed(String),
    /// Deleted: the node left the fleet.
    Deleted,
}

/// A node as seen in a state dump or by a test.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeStatus {
    /// IPv4 address.
    pub ip: Ipv4Addr,
    /// Effective hostname.
    pub hostname: String,
    /// Lifecycle phase.
    pub phase: NodePhase,
    /// Role from the applied config.
    pub role: Option<MachineRole>,
    /// `cluster.clusterName` of the applied config.
    pub cluster_name: Option<String>,
    /// Running Talos version tag.
    pub talos_version: String,
    /// Member of its cluster's etcd.
    pub etcd_member: bool,
    /// Its cluster's etcd was bootstrapped.
    pub cluster_bootstrapped: bool,
    /// Completed boots (maintenance or configured API came up).
    pub boots: u64,
}

#[derive(Debug)]
pub(crate) enum NodeEvent {
    /// A config was accepted in maintenance mode.
    Applied,
    /// Reboot requested (Reboot RPC or a config change needing one).
    Reboot,
    /// Upgrade to this version tag.
    Upgrade(String),
    PowerOff,
    PowerOn,
    Delete,
}

pub(crate) struct NodeState {
    pub(crate) phase: NodePhase,
    pub(crate) config: Option<Arc<MachineConfig>>,
    pub(crate) staged: Option<Arc<MachineConfig>>,
    pub(crate) version: String,
    pub(crate) boots: u64,
}

/// State of one node shared by its lifecycle task, its API servers and the fleet.
pub(crate) struct NodeShared {
    pub(crate) ip: Ipv4Addr,
    /// Current speed factor (f64 bits); starts at `opts.speed`, changed by
    /// [`TalosFleet::set_speed`].
    speed: AtomicU64,
    pub(crate) opts: NodeOptions,
    state: Mutex<NodeState>,
    events: mpsc::UnboundedSender<NodeEvent>,
    phase_tx: watch::Sender<NodePhase>,
}

impl NodeShared {
    pub(crate) fn scaled(&self, d: Duration) -> Duration {
        d.div_f64(f64::from_bits(self.speed.load(Ordering::Relaxed)))
    }

    pub(crate) fn set_speed(&self, speed: f64) {
        self.speed.store(speed.to_bits(), Ordering::Relaxed);
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, NodeState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn send(&self, event: NodeEvent) {
        // The task ends only on Delete; a send after that has nothing to reach.
        let _ = self.events.send(event);
    }

    pub(crate) fn set_phase(&self, phase: NodePhase) {
        self.lock().phase = phase.clone();
        self.phase_tx.send_replace(phase);
    }

    pub(crate) fn phase(&self) -> NodePhase {
        self.lock().phase.clone()
    }

    pub(crate) fn config(&self) -> Option<Arc<MachineConfig>> {
        self.lock().config.clone()
    }

    /// Effective hostname: `machine.network.hostname`, else the server name.
    pub(crate) fn hostname(&self) -> String {
        self.lock()
            .config
            .as_ref()
            .and_then(|c| c.hostname.clone())
            .unwrap_or_else(|| self.opts.hostname.clone())
    }

    pub(crate) fn cluster_key(&self) -> Option<String> {
        self.lock()
            .config
            .as_ref()
            .map(|c| cluster_key(&c.os_ca_crt_pem))
    }

    pub(crate) fn is_running_cp_of(&self, key: &str) -> bool {
        let state = self.lock();
        state.phase == NodePhase::Running
            && state.config.as_ref().is_some_and(|c| {
                c.role == MachineRole::ControlPlane && cluster_key(&c.os_ca_crt_pem) == key
            })
    }

    pub(crate) fn status(&self, fleet: &TalosFleet) -> NodeStatus {
        let hostname = self.hostname();
        let key = self.cluster_key();
        let (phase, role, cluster_name, version, boots) = {
            let s = self.lock();
            (
                s.phase.clone(),
                s.config.as_ref().map(|c| c.role),
                s.config.as_ref().map(|c| c.cluster_name.clone()),
                s.version.clone(),
                s.boots,
            )
        };
        let (etcd_member, cluster_bootstrapped) = match &key {
            Some(key) => (
                fleet.members(key).iter().any(|m| m.ip == self.ip),
                fleet.is_bootstrapped(key),
            ),
            None => (false, false),
        };
        NodeStatus {
            ip: self.ip,
            hostname,
            phase,
            role,
            cluster_name,
            talos_version: version,
            etcd_member,
            cluster_bootstrapped,
            boots,
        }
    }
}

/// Why a node could not be spawned.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// `spawn` was called outside a tokio runtime.
    #[error("spawn talos node {ip}: no tokio runtime")]
    NoRuntime {
        /// The node's IP.
        ip: Ipv4Addr,
    },
    /// The fleet already has a node with this IP.
    #[error("spawn talos node {ip}: the fleet already has a node with this ip")]
    DuplicateIp {
        /// The node's IP.
        ip: Ipv4Addr,
    },
    /// The speed factor is not a positive finite number.
    #[error("spawn talos node {ip}: invalid speed factor {speed}")]
    InvalidSpeed {
        /// The node's IP.
        ip: Ipv4Addr,
        /// The rejected factor.
        speed: f64,
    },
}

/// Constructor of simulated Talos nodes.
pub struct TalosNode;

impl TalosNode {
    /// Powers on a node booted from a Talos image: after `boot_delay / speed` it serves the
    /// maintenance API on `<ip>:<port>` (or, with a valid config in `user_data`, the configured
    /// API). Cheap and synchronous; must be called inside a tokio runtime.
    pub fn spawn(fleet: &TalosFleet, opts: NodeOptions) -> Result<NodeHandle, SpawnError> {
        let ip = opts.ip;
        if !(opts.speed.is_finite() && opts.speed > 0.0) {
            return Err(SpawnError::InvalidSpeed {
                ip,
                speed: opts.speed,
            });
        }
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| SpawnError::NoRuntime { ip })?;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (phase_tx, _) = watch::channel(NodePhase::Booting);
        let shared = Arc::new(NodeShared {
            ip,
            speed: AtomicU64::new(opts.speed.to_bits()),
            state: Mutex::new(NodeState {
                phase: NodePhase::Booting,
                config: None,
                staged: None,
                version: opts.talos_version.clone(),
                boots: 0,
            }),
            opts,
            events: events_tx,
            phase_tx,
        });
        {
            let mut state = fleet.lock();
            if state.nodes.contains_key(&ip) {
                return Err(SpawnError::DuplicateIp { ip });
            }
            state.nodes.insert(ip, shared.clone());
        }
        fleet.notify();
        runtime.spawn(lifecycle(fleet.clone(), shared.clone(), events_rx));
        Ok(NodeHandle {
            fleet: fleet.clone(),
            shared,
        })
    }
}

/// Handle of a spawned node. Cheap to clone; dropping it leaves the node running.
#[derive(Clone)]
pub struct NodeHandle {
    fleet: TalosFleet,
    shared: Arc<NodeShared>,
}

impl fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeHandle")
            .field("ip", &self.shared.ip)
            .finish()
    }
}

impl NodeHandle {
    pub(crate) fn from_parts(fleet: TalosFleet, shared: Arc<NodeShared>) -> Self {
        Self { fleet, shared }
    }

    /// The node's IP.
    pub fn ip(&self) -> Ipv4Addr {
        self.shared.ip
    }

    /// The API address `<ip>:<port>`.
    pub fn api_addr(&self) -> SocketAddr {
        SocketAddr::from((self.shared.ip, self.shared.opts.port))
    }

    /// Current status.
    pub fn status(&self) -> NodeStatus {
        self.shared.status(&self.fleet)
    }

    /// The applied machine configuration, once there is one.
    pub fn config(&self) -> Option<Arc<MachineConfig>> {
        self.shared.config()
    }

    /// Power cycle (Hetzner reset): off, then boot again from the disk.
    pub fn reset(&self) {
        self.shared.send(NodeEvent::PowerOff);
        self.shared.send(NodeEvent::PowerOn);
    }

    /// Waits until the node reaches `phase`.
    pub async fn wait_for_phase(&self, phase: NodePhase) {
        let mut rx = self.shared.phase_tx.subscribe();
        // wait_for checks the current value first; an Err means the node was dropped.
        let _ = rx.wait_for(|p| *p == phase).await;
    }

    /// Waits until `pred` holds for the node's status (checked at every phase or fleet change).
    pub async fn wait_until(&self, mut pred: impl FnMut(&NodeStatus) -> bool) {
        let mut phase = self.shared.phase_tx.subscribe();
        let mut fleet = self.fleet.subscribe();
        loop {
            phase.mark_unchanged();
            fleet.mark_unchanged();
            if pred(&self.status()) {
                return;
            }
            tokio::select! {
                r = phase.changed() => if r.is_err() { return },
                r = fleet.changed() => if r.is_err() { return },
            }
        }
    }

    /// Powers the server off: listeners close at once, the disk (applied config) is kept.
    pub fn power_off(&self) {
        self.shared.send(NodeEvent::PowerOff);
    }

    /// Powers the server on again (boots from its disk: maintenance or configured).
    pub fn power_on(&self) {
        self.shared.send(NodeEvent::PowerOn);
    }

    /// Deletes the server: listeners close, the node leaves the fleet (etcd membership stays,
    /// as a real etcd keeps a dead member until it is removed).
    pub fn stop(&self) {
        self.fleet.lock().nodes.remove(&self.shared.ip);
        self.fleet.notify();
        self.shared.send(NodeEvent::Delete);
    }
}

/// What interrupted a wait.
enum Interrupt {
    PowerOff,
    Delete,
}

/// Sleeps `d`, returning early on PowerOff/Delete (other events are dropped: nothing listens).
async fn sleep_or_power(
    d: Duration,
    events: &mut mpsc::UnboundedReceiver<NodeEvent>,
) -> Result<(), Interrupt> {
    let sleep = tokio::time::sleep(d);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return Ok(()),
            event = events.recv() => match event {
                Some(NodeEvent::PowerOff) => return Err(Interrupt::PowerOff),
                Some(NodeEvent::Delete) | None => return Err(Interrupt::Delete),
                Some(_) => {}
            },
        }
    }
}

/// Waits while powered off; returns false when the node is deleted.
async fn wait_power_on(events: &mut mpsc::UnboundedReceiver<NodeEvent>) -> bool {
    loop {
        match events.recv().await {
            Some(NodeEvent::PowerOn) => return true,
            Some(NodeEvent::Delete) | None => return false,
            Some(_) => {}
        }
    }
}

/// How a served phase ended.
enum Served {
    Applied,
    Reboot,
    Upgrade(String),
    PowerOff,
    Delete,
}

async fn serve_until_event(
    listener: Listener,
    events: &mut mpsc::UnboundedReceiver<NodeEvent>,
) -> Served {
    let ended = loop {
        match events.recv().await {
            Some(NodeEvent::Applied) => break Served::Applied,
            Some(NodeEvent::Reboot) => break Served::Reboot,
            Some(NodeEvent::Upgrade(v)) => break Served::Upgrade(v),
            Some(NodeEvent::PowerOff) => break Served::PowerOff,
            Some(NodeEvent::Delete) | None => break Served::Delete,
            Some(NodeEvent::PowerOn) => {}
        }
    };
    match ended {
        // Let the in-flight reply reach the client, then go away.
        Served::Applied | Served::Reboot | Served::Upgrade(_) => listener.shutdown().await,
        Served::PowerOff | Served::Delete => listener.kill(),
    }
    ended
}

/// Binds the API, retrying briefly (a previous listener may still be closing).
async fn bind(
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    fleet: &TalosFleet,
    node: &Arc<NodeShared>,
    mode: ServeMode,
) -> Result<Listener, String> {
    let mut last = String::new();
    for _ in 0..50 {
        match Listener::bind(addr, tls.clone(), fleet.clone(), node.clone(), mode).await {
            Ok(listener) => return Ok(listener),
            Err(e) => last = format!("bind {addr}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(last)
}

/// The node's life. Runs until Delete.
async fn lifecycle(
    fleet: TalosFleet,
    node: Arc<NodeShared>,
    mut events: mpsc::UnboundedReceiver<NodeEvent>,
) {
    let addr = SocketAddr::from((node.ip, node.opts.port));
    // Hetzner user_data: a valid config is on the "disk" from the first boot.
    if let Some(data) = &node.opts.user_data {
        match config::parse(data) {
            Ok(config) => node.lock().config = Some(Arc::new(config)),
            Err(e) => {
                tracing::warn!(ip = %node.ip, error = %e.message, "talos twin: user_data is not a valid machine config; booting to maintenance")
            }
        }
    }
    let mut powered = true;
    loop {
        if !powered {
            node.set_phase(NodePhase::Off);
            if !wait_power_on(&mut events).await {
                break;
            }
        }
        powered = true;
        // Boot.
        node.set_phase(NodePhase::Booting);
        match sleep_or_power(node.scaled(node.opts.boot_delay), &mut events).await {
            Ok(()) => {}
            Err(Interrupt::PowerOff) => {
                powered = false;
                continue;
            }
            Err(Interrupt::Delete) => break,
        }
        {
            let mut state = node.lock();
            if let Some(staged) = state.staged.take() {
                state.config = Some(staged);
            }
        }
        let served = match node.config() {
            None => serve_maintenance(&fleet, &node, addr, &mut events).await,
            Some(config) => serve_configured(&fleet, &node, addr, config, &mut events).await,
        };
        match served {
            Served::Applied => {
                node.set_phase(NodePhase::Installing);
                if let Err(i) =
                    sleep_or_power(node.scaled(node.opts.install_delay), &mut events).await
                {
                    match i {
                        Interrupt::PowerOff => powered = false,
                        Interrupt::Delete => break,
                    }
                }
            }
            Served::Reboot => {
                node.set_phase(NodePhase::Rebooting);
                if let Err(i) =
                    sleep_or_power(node.scaled(node.opts.reboot_delay), &mut events).await
                {
                    match i {
                        Interrupt::PowerOff => powered = false,
                        Interrupt::Delete => break,
                    }
                }
            }
            Served::Upgrade(version) => {
                node.set_phase(NodePhase::Upgrading);
                let result = sleep_or_power(node.scaled(node.opts.reboot_delay), &mut events).await;
                // The installer finished writing before the reboot; the new version boots.
                node.lock().version = version;
                if let Err(i) = result {
                    match i {
                        Interrupt::PowerOff => powered = false,
                        Interrupt::Delete => break,
                    }
                }
            }
            Served::PowerOff => powered = false,
            Served::Delete => break,
        }
    }
    node.set_phase(NodePhase::Deleted);
}

async fn serve_maintenance(
    fleet: &TalosFleet,
    node: &Arc<NodeShared>,
    addr: SocketAddr,
    events: &mut mpsc::UnboundedReceiver<NodeEvent>,
) -> Served {
    let tls = match pki::maintenance_identity(node.ip)
        .map_err(|e| e.to_string())
        .and_then(|id| tls::maintenance_config(id).map_err(|e| e.to_string()))
    {
        Ok(tls) => tls,
        Err(e) => return failed(node, e, events).await,
    };
    let listener = match bind(addr, tls, fleet, node, ServeMode::Maintenance).await {
        Ok(l) => l,
        Err(e) => return failed(node, e, events).await,
    };
    node.lock().boots += 1;
    node.set_phase(NodePhase::Maintenance);
    serve_until_event(listener, events).await
}

async fn serve_configured(
    fleet: &TalosFleet,
    node: &Arc<NodeShared>,
    addr: SocketAddr,
    config: Arc<MachineConfig>,
    events: &mut mpsc::UnboundedReceiver<NodeEvent>,
) -> Served {
    let key = cluster_key(&config.os_ca_crt_pem);
    fleet.register_config(
        &key,
        &config.cluster_name,
        config.role,
        config.os_ca_key_pem.as_ref(),
    );
    // Control planes sign their apid certificate with their own OS CA key. Workers get theirs
    // from trustd on a control plane; the twin takes the key a control plane registered.
    let ca_key = match &config.os_ca_key_pem {
        Some(key) => key.clone(),
        None => {
            node.set_phase(NodePhase::WaitingForCertificates);
            let mut changed = fleet.subscribe();
            loop {
                if let Some(k) = fleet.os_ca_key(&key) {
                    break k;
                }
                tokio::select! {
                    r = changed.changed() => if r.is_err() { return Served::Delete },
                    event = events.recv() => match event {
                        Some(NodeEvent::PowerOff) => return Served::PowerOff,
                        Some(NodeEvent::Delete) | None => return Served::Delete,
                        Some(_) => {}
                    },
                }
            }
        }
    };
    let hostname = node.hostname();
    let Some(os_ca_der) = pki::cert_der(&config.os_ca_crt_pem) else {
        return failed(
            node,
            "machine.ca.crt is not a PEM certificate".into(),
            events,
        )
        .await;
    };
    let tls = match pki::apid_identity(
        node.ip,
        &hostname,
        &config.cert_sans,
        &config.os_ca_crt_pem,
        &ca_key.0,
    )
    .map_err(|e| e.to_string())
    .and_then(|id| tls::secure_config(id, os_ca_der).map_err(|e| e.to_string()))
    {
        Ok(tls) => tls,
        Err(e) => return failed(node, e, events).await,
    };
    let listener = match bind(addr, tls, fleet, node, ServeMode::Configured).await {
        Ok(l) => l,
        Err(e) => return failed(node, e, events).await,
    };
    node.lock().boots += 1;
    node.set_phase(NodePhase::Running);
    if config.role == MachineRole::ControlPlane {
        fleet.control_plane_running(&key, node.ip, &hostname);
    }
    fleet.notify();
    serve_until_event(listener, events).await
}

/// Records a failure and waits for a power event.
async fn failed(
    node: &Arc<NodeShared>,
    message: String,
    events: &mut mpsc::UnboundedReceiver<NodeEvent>,
) -> Served {
    tracing::warn!(ip = %node.ip, error = %message, "talos twin: node api failed to start");
    node.set_phase(NodePhase::Failed(message));
    loop {
        match events.recv().await {
            Some(NodeEvent::PowerOff) => return Served::PowerOff,
            Some(NodeEvent::Delete) | None => return Served::Delete,
            Some(_) => {}
        }
    }
}

impl NodeShared {
    /// Takes a config in maintenance mode; false when the node already left maintenance (a
    /// concurrent apply won).
    pub(crate) fn accept_maintenance_config(&self, config: MachineConfig) -> bool {
        {
            let mut state = self.lock();
            if state.phase != NodePhase::Maintenance {
                return false;
            }
            state.config = Some(Arc::new(config));
            state.phase = NodePhase::Installing;
        }
        self.phase_tx.send_replace(NodePhase::Installing);
        true
    }
}
