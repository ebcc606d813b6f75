//! A simulated Talos node: its lifecycle task (boot → maintenance → install → configured,
//! reboots, upgrades, power) and the handle the twin and tests hold.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::api::Api;
use crate::config::{self, MachineConfig, MachineRole};
use crate::fleet::TalosFleet;
use crate::node_state::{
    NodeEvent, NodeOptions, NodePhase, NodeShared, NodeState, NodeStatus, cluster_key,
};
use crate::pki;
use crate::proto::{machine_stage, sequence_action};
use crate::server::{Listener, ServeMode};
use crate::tls;
use crate::upgrade::{self, AfterSequence, Installed};

/// Sets the node's phase and records the etcd health of its cluster.
fn set_phase(fleet: &TalosFleet, node: &NodeShared, phase: NodePhase) {
    if !matches!(phase, NodePhase::Running | NodePhase::Upgrading) {
        node.lock().services_up = false;
    }
    node.set_phase(phase);
    fleet.observe_etcd();
}

/// A new boot brought the API up: a new boot ID, a fresh event buffer, and what an upgrade
/// left to install.
fn begin_boot(node: &NodeShared) {
    let mut s = node.lock();
    s.boots += 1;
    s.boot_id = uuid::Uuid::new_v4().to_string();
    s.new_boot_events();
    s.upgrade = None;
    if let Some((version, schematic, platform)) = s.pending.take() {
        s.version = version;
        s.schematic = schematic;
        s.platform = platform;
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
                boot_id: String::new(),
                schematic: opts.schematic.clone(),
                platform: "hcloud".into(),
                services_up: false,
                upgrade_rpcs_accepted: 0,
                upgrades_started: 0,
                upgrade: None,
                last_upgrade: None,
                pulled: Default::default(),
                pending: None,
                events: Default::default(),
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

impl TalosFleet {
    /// A handle to the node at `ip` (to power it off/on or delete it without keeping the
    /// handle `spawn` returned).
    pub fn handle(&self, ip: Ipv4Addr) -> Option<NodeHandle> {
        let node = self.node_shared(ip)?;
        Some(NodeHandle::from_parts(self.clone(), node))
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
        self.fleet.status_of(&self.shared)
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
        self.fleet.observe_etcd();
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
    Upgrade(AfterSequence),
    PowerOff,
    Delete,
}

async fn serve_until_event(
    fleet: &TalosFleet,
    node: &Arc<NodeShared>,
    listener: Listener,
    events: &mut mpsc::UnboundedReceiver<NodeEvent>,
) -> Served {
    let ended = loop {
        match events.recv().await {
            Some(NodeEvent::Applied) => break Served::Applied,
            Some(NodeEvent::Reboot) => break Served::Reboot,
            Some(NodeEvent::Upgrade(run)) => {
                set_phase(fleet, node, NodePhase::Upgrading);
                // The API keeps listening while the sequence runs.
                let after = upgrade::run(fleet, node, *run, events).await;
                break Served::Upgrade(after);
            }
            Some(NodeEvent::PowerOff) => break Served::PowerOff,
            Some(NodeEvent::Delete) | None => break Served::Delete,
            Some(NodeEvent::PowerOn) => {}
        }
    };
    // Open event streams end (EOF) with this boot.
    node.lock().new_boot_events();
    match ended {
        // Let in-flight replies and the ended event streams reach the clients, then go away.
        Served::Applied | Served::Reboot | Served::Upgrade(_) => listener.shutdown().await,
        // Power-off and delete drop every connection.
        Served::PowerOff | Served::Delete => listener.kill().await,
    }
    ended
}

/// Keeps the node down; returns false on Delete, true on PowerOff (power on boots again).
async fn hang(events: &mut mpsc::UnboundedReceiver<NodeEvent>) -> bool {
    loop {
        match events.recv().await {
            Some(NodeEvent::PowerOff) => return true,
            Some(NodeEvent::Delete) | None => return false,
            Some(_) => {}
        }
    }
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
        match Listener::bind(
            addr,
            tls.clone(),
            Api::new(fleet.clone(), node.clone()),
            mode,
        )
        .await
        {
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
            set_phase(&fleet, &node, NodePhase::Off);
            if !wait_power_on(&mut events).await {
                break;
            }
        }
        powered = true;
        // Boot.
        set_phase(&fleet, &node, NodePhase::Booting);
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
                set_phase(&fleet, &node, NodePhase::Installing);
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
                set_phase(&fleet, &node, NodePhase::Rebooting);
                if let Err(i) =
                    sleep_or_power(node.scaled(node.opts.reboot_delay), &mut events).await
                {
                    match i {
                        Interrupt::PowerOff => powered = false,
                        Interrupt::Delete => break,
                    }
                }
            }
            Served::Upgrade(after) => {
                let pending = |i: Installed| Some((i.version, i.schematic, i.platform));
                let (next, downtime) = match after {
                    AfterSequence::Delete => break,
                    AfterSequence::PowerOff(next) => {
                        node.lock().pending = next.and_then(pending);
                        powered = false;
                        continue;
                    }
                    AfterSequence::Reboot { next, extra } => {
                        (next.and_then(pending), node.opts.reboot_delay + extra)
                    }
                    // The new slot fails to boot and the bootloader reverts: two reboots.
                    AfterSequence::Rollback => {
                        (None, node.opts.reboot_delay * 2 + node.opts.boot_delay)
                    }
                    AfterSequence::Hang(next) => {
                        set_phase(&fleet, &node, NodePhase::Rebooting);
                        node.lock().pending = pending(next);
                        if !hang(&mut events).await {
                            break;
                        }
                        powered = false;
                        continue;
                    }
                };
                set_phase(&fleet, &node, NodePhase::Rebooting);
                node.lock().pending = next;
                if let Err(i) = sleep_or_power(node.scaled(downtime), &mut events).await {
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
    set_phase(&fleet, &node, NodePhase::Deleted);
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
    begin_boot(node);
    set_phase(fleet, node, NodePhase::Maintenance);
    serve_until_event(fleet, node, listener, events).await
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
            set_phase(fleet, node, NodePhase::WaitingForCertificates);
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
    begin_boot(node);
    {
        let mut s = node.lock();
        s.publish_stage(
            machine_stage::BOOTING,
            false,
            &[
                ("nodeReady", "node is not ready"),
                ("staticPods", "static pods are not ready"),
            ],
        );
        let boot_actor = uuid::Uuid::new_v4().to_string();
        for action in [sequence_action::START, sequence_action::STOP] {
            s.publish(
                &boot_actor,
                "SequenceEvent",
                &crate::proto::SequenceEvent {
                    sequence: "boot".into(),
                    action,
                    error: None,
                },
            );
        }
        s.publish_stage(machine_stage::RUNNING, true, &[]);
        s.services_up = true;
    }
    // BOOTING/RUNNING uncordons a node Talos cordoned (only with the annotation).
    if let Some(hooks) = fleet.cluster_hooks() {
        hooks.uncordon(&config.cluster_name, &hostname);
    }
    set_phase(fleet, node, NodePhase::Running);
    if config.role == MachineRole::ControlPlane {
        fleet.control_plane_running(&key, node.ip, &hostname);
    }
    fleet.observe_etcd();
    fleet.notify();
    serve_until_event(fleet, node, listener, events).await
}

/// Records a failure and waits for a power event.
async fn failed(
    node: &Arc<NodeShared>,
    message: String,
    events: &mut mpsc::UnboundedReceiver<NodeEvent>,
) -> Served {
    tracing::warn!(ip = %node.ip, error = %message, "talos twin: node api failed to start");
    node.set_phase(NodePhase::Failed(message));
    node.lock().services_up = false;
    loop {
        match events.recv().await {
            Some(NodeEvent::PowerOff) => return Served::PowerOff,
            Some(NodeEvent::Delete) | None => return Served::Delete,
            Some(_) => {}
        }
    }
}
