//! The state one cluster's parts share: [`Inner`] (object store, kubelets, CA, settings) read by
//! the API server and the controllers, the kubelets' record, what the controllers remember
//! between passes, and the crate's error type. A leaf: it imports no request or controller code.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::cloud::CloudBridge;
use crate::pki::{Ca, PkiError};
use crate::store::Store;
use crate::tls::{Authenticator, TlsError};

/// A failure of a [`KubeCluster`] operation.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The cluster CA (certificate or key PEM) could not be loaded.
    #[error("load kubernetes ca")]
    LoadCa(#[source] PkiError),
    /// The API server's serving certificate could not be made.
    #[error("make serving certificate")]
    MakeServingCert(#[source] PkiError),
    /// The TLS configuration could not be built.
    #[error("build tls config")]
    BuildTls(#[source] TlsError),
    /// The listening socket could not be bound.
    #[error("bind kubernetes api on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The speed factor is not a positive finite number.
    #[error("speed must be a positive number, got {0}")]
    InvalidSpeed(f64),
    /// There is no tokio runtime to run the controllers on.
    #[error("start controllers")]
    StartControllers(#[source] tokio::runtime::TryCurrentError),
}

/// The role of a node, from its machine config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    /// Control plane: label `node-role.kubernetes.io/control-plane` and its NoSchedule taint.
    ControlPlane,
    /// Worker.
    Worker,
}

/// What the twin knows about a node's kubelet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Kubelet {
    pub ip: IpAddr,
    pub role: NodeRole,
    pub running: bool,
}

pub(crate) struct Inner {
    pub name: String,
    pub ca: Ca,
    pub authenticator: Authenticator,
    pub cert_sans: Vec<String>,
    pub cloud: Arc<dyn CloudBridge>,
    pub speed: Mutex<f64>,
    pub version: Mutex<String>,
    pub store: Mutex<Store>,
    pub kubelets: Mutex<BTreeMap<String, Kubelet>>,
    /// Per-node kubelet versions (default: `version`).
    pub kubelet_versions: Mutex<HashMap<String, String>>,
    /// Per-listener API server versions, by listening IP (default: `version`).
    pub apiserver_versions: Mutex<HashMap<IpAddr, String>>,
    pub notify: Arc<Notify>,
}

/// Locks a mutex, recovering the data if a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    pub fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub fn speed(&self) -> f64 {
        *lock(&self.speed)
    }

    pub fn version(&self) -> String {
        lock(&self.version).clone()
    }

    /// The version `node`'s kubelet reports.
    pub fn kubelet_version(&self, node: &str) -> String {
        lock(&self.kubelet_versions)
            .get(node)
            .cloned()
            .unwrap_or_else(|| self.version())
    }

    /// The version the API server listening on `ip` reports.
    pub fn apiserver_version(&self, ip: IpAddr) -> String {
        lock(&self.apiserver_versions)
            .get(&ip)
            .cloned()
            .unwrap_or_else(|| self.version())
    }
}

/// What the controllers remember between passes: when each delayed step was first asked
/// about, the next wake-up, and the load balancers and events already made.
#[derive(Default)]
pub(crate) struct ControllerState {
    pub(crate) first_seen: HashMap<String, Instant>,
    pub(crate) next: Option<Instant>,
    pub(crate) load_balancers: HashMap<String, i64>,
    pub(crate) events: HashSet<String>,
}

impl ControllerState {
    /// True once `base` seconds (scaled) passed since `key` was first asked about.
    pub(crate) fn due(&mut self, key: &str, base: f64, speed: f64) -> bool {
        let now = Instant::now();
        let first = *self.first_seen.entry(key.to_string()).or_insert(now);
        let at = first + Duration::from_secs_f64(base / speed);
        if now >= at {
            true
        } else {
            self.next = Some(self.next.map_or(at, |n| n.min(at)));
            false
        }
    }

    pub(crate) fn done(&mut self, key: &str) {
        self.first_seen.remove(key);
    }
}
