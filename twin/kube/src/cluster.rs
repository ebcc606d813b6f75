//! [`KubeCluster`]: one cluster's API state, its servers and its controllers.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::cloud::CloudBridge;
use crate::pki::{Ca, PkiError, kubelet_serving_csr};
use crate::server::{self, ServerHandle};
use crate::store::{Store, timestamp};
use crate::tls::{Authenticator, TlsError};

/// How a [`KubeCluster`] is made.
#[derive(Clone)]
pub struct KubeClusterOptions {
    /// Cluster name (used in messages).
    pub cluster_name: String,
    /// The cluster's Kubernetes CA certificate (PEM).
    pub ca_cert_pem: String,
    /// The CA key (PEM: `EC PRIVATE KEY` as Talos writes it, or PKCS#8 `PRIVATE KEY`).
    pub ca_key_pem: String,
    /// `cluster.apiServer.certSANs` of the applied config (IPs or DNS names).
    pub cert_sans: Vec<String>,
    /// Speed factor: controller delays are divided by it.
    pub speed: f64,
    /// The cloud the simulated CCM and CSI driver act on.
    pub cloud: Arc<dyn CloudBridge>,
    /// Kubernetes version served at `/version` and reported by kubelets (`v1.34.1`).
    pub kubernetes_version: String,
}

impl std::fmt::Debug for KubeClusterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeClusterOptions")
            .field("cluster_name", &self.cluster_name)
            .field("cert_sans", &self.cert_sans)
            .field("speed", &self.speed)
            .field("kubernetes_version", &self.kubernetes_version)
            .finish_non_exhaustive()
    }
}

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
}

/// One cluster's Kubernetes API: the object store, the servers on `<ip>:6443` and the
/// controllers. Cheap to clone; controllers stop when the last clone is dropped.
#[derive(Clone)]
pub struct KubeCluster {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KubeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCluster")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

fn valid_speed(speed: f64) -> Result<f64, KubeError> {
    if speed.is_finite() && speed > 0.0 {
        Ok(speed)
    } else {
        Err(KubeError::InvalidSpeed(speed))
    }
}

impl KubeCluster {
    /// Loads the CA and starts the controllers (needs a tokio runtime).
    pub fn new(options: KubeClusterOptions) -> Result<KubeCluster, KubeError> {
        let speed = valid_speed(options.speed)?;
        let handle = tokio::runtime::Handle::try_current().map_err(KubeError::StartControllers)?;
        let ca =
            Ca::from_pem(&options.ca_cert_pem, &options.ca_key_pem).map_err(KubeError::LoadCa)?;
        let authenticator =
            Authenticator::new(ca.cert_der().clone()).map_err(KubeError::BuildTls)?;
        let notify = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            name: options.cluster_name,
            ca,
            authenticator,
            cert_sans: options.cert_sans,
            cloud: options.cloud,
            speed: Mutex::new(speed),
            version: Mutex::new(options.kubernetes_version),
            store: Mutex::new(Store::new()),
            kubelets: Mutex::new(BTreeMap::new()),
            notify: notify.clone(),
        });
        handle.spawn(crate::controllers::run(Arc::downgrade(&inner), notify));
        Ok(KubeCluster { inner })
    }

    /// Serves the API on `addr` (port 0 picks one) with a serving certificate whose SANs are
    /// the built-in names, `127.0.0.1`, `addr`'s IP and the configured certSANs.
    pub async fn serve(&self, addr: SocketAddr) -> Result<ServerHandle, KubeError> {
        server::serve(self.inner.clone(), addr, addr.ip()).await
    }

    /// Serves the API on `addr` as a TCP load balancer in front of the control plane at
    /// `backend_ip` would: clients see that control plane's certificate, so `addr`'s IP is
    /// only trusted when it is in the configured certSANs. Which control plane is named does
    /// not matter to clients of `addr`; stop the handle while no control plane is healthy.
    pub async fn serve_forwarded(
        &self,
        addr: SocketAddr,
        backend_ip: IpAddr,
    ) -> Result<ServerHandle, KubeError> {
        server::serve(self.inner.clone(), addr, backend_ip).await
    }

    /// A kubelet started: registers the Node if new (NotReady, taints
    /// `node.cloudprovider.kubernetes.io/uninitialized=true:NoSchedule` and
    /// `node.kubernetes.io/not-ready:NoSchedule`, plus the control-plane taint on control
    /// planes) and files its kubelet-serving CSR once.
    pub fn kubelet_started(&self, node_name: &str, internal_ip: IpAddr, role: NodeRole) {
        lock(&self.inner.kubelets).insert(
            node_name.to_string(),
            Kubelet {
                ip: internal_ip,
                role,
                running: true,
            },
        );
        let version = self.inner.version();
        {
            let mut store = self.inner.store();
            register_node(&mut store, node_name, internal_ip, role, &version);
            let has_csr = store
                .list("certificates.k8s.io", "certificatesigningrequests", None)
                .iter()
                .any(|c| {
                    c["spec"]["username"] == json!(format!("system:node:{node_name}"))
                        && c["spec"]["signerName"] == "kubernetes.io/kubelet-serving"
                });
            if !has_csr {
                match kubelet_serving_csr(node_name, internal_ip) {
                    Ok(pem) => file_csr(&mut store, node_name, &pem),
                    Err(e) => tracing::warn!(error = %e, node = node_name, "kubelet csr"),
                }
            }
        }
        self.inner.notify.notify_one();
    }

    /// A kubelet stopped (reboot, shutdown): its Node turns `Ready=Unknown` and gets the
    /// `node.kubernetes.io/unreachable` taint until [`KubeCluster::kubelet_started`].
    pub fn kubelet_stopped(&self, node_name: &str) {
        if let Some(k) = lock(&self.inner.kubelets).get_mut(node_name) {
            k.running = false;
        }
        self.inner.notify.notify_one();
    }

    /// Sets the version served at `/version` (kubelets report it at their next start).
    pub fn set_kubernetes_version(&self, version: &str) {
        *lock(&self.inner.version) = version.to_string();
    }

    /// Sets the speed factor.
    pub fn set_speed(&self, speed: f64) -> Result<(), KubeError> {
        *lock(&self.inner.speed) = valid_speed(speed)?;
        self.inner.notify.notify_one();
        Ok(())
    }

    /// Every object of one resource (`group` "" for core), for state dumps and tests.
    pub fn objects(&self, group: &str, plural: &str) -> Vec<Value> {
        self.inner.store().list(group, plural, None)
    }

    /// One object, for state dumps and tests.
    pub fn object(&self, group: &str, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        self.inner
            .store()
            .get(group, plural, namespace, name)
            .cloned()
    }
}

pub(crate) fn register_node(
    store: &mut Store,
    name: &str,
    ip: IpAddr,
    role: NodeRole,
    version: &str,
) {
    let Some(rt) = store.find_type("", "v1", "nodes") else {
        return;
    };
    if let Some(existing) = store.get("", "nodes", "", name).cloned() {
        let mut node = existing;
        node["status"]["nodeInfo"]["kubeletVersion"] = json!(version);
        let _ = store.replace(&rt, node);
        return;
    }
    let mut labels = json!({
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
    });
    let mut taints = vec![
        json!({"key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true", "effect": "NoSchedule"}),
        json!({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule", "timeAdded": timestamp()}),
    ];
    if role == NodeRole::ControlPlane {
        labels["node-role.kubernetes.io/control-plane"] = json!("");
        taints
            .push(json!({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}));
    }
    let now = timestamp();
    let cond = |t: &str, s: &str, reason: &str, msg: &str| {
        json!({"type": t, "status": s, "reason": reason, "message": msg,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach": "true"},
        },
        "spec": {"taints": taints},
        "status": {
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "False", "KubeletNotReady", "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized"),
            ],
            "addresses": [{"type": "InternalIP", "address": ip.to_string()}, {"type": "Hostname", "address": name}],
            "capacity": {"cpu": "2", "memory": "3927804Ki", "pods": "110", "ephemeral-storage": "39937312Ki"},
            "allocatable": {"cpu": "1950m", "memory": "3497724Ki", "pods": "110", "ephemeral-storage": "36574258364"},
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "kubeletVersion": version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "osImage": "Talos",
                "containerRuntimeVersion": "containerd://2.1.4",
                "kernelVersion": "6.12.57-talos",
                "machineID": uuid::Uuid::new_v4().simple().to_string(),
                "systemUUID": uuid::Uuid::new_v4().to_string(),
                "bootID": uuid::Uuid::new_v4().to_string(),
            },
        },
    });
    if let Err(e) = store.create(&rt, node) {
        tracing::warn!(error = ?e, node = name, "register node");
    }
}

fn file_csr(store: &mut Store, node_name: &str, pem: &str) {
    let Some(rt) = store.find_type("certificates.k8s.io", "v1", "certificatesigningrequests")
    else {
        return;
    };
    let suffix: String = (0..5)
        .map(|_| {
            let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
            alphabet[rand::random_range(0..alphabet.len())] as char
        })
        .collect();
    let csr = json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": format!("csr-{suffix}")},
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(pem),
            "signerName": "kubernetes.io/kubelet-serving",
            "usages": ["digital signature", "server auth"],
            "username": format!("system:node:{node_name}"),
            "groups": ["system:nodes", "system:authenticated"],
        },
        "status": {},
    });
    if let Err(e) = store.create(&rt, csr) {
        tracing::warn!(error = ?e, node = node_name, "file kubelet csr");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::FakeCloud;

    fn options(cert: &str, key: &str, speed: f64) -> KubeClusterOptions {
        KubeClusterOptions {
            cluster_name: "t".into(),
            ca_cert_pem: cert.into(),
            ca_key_pem: key.into(),
            cert_sans: vec![],
            speed,
            cloud: Arc::new(FakeCloud::new()),
            kubernetes_version: "v1.34.1".into(),
        }
    }

    #[tokio::test]
    async fn bad_ca_and_bad_speed_are_refused() {
        let err = KubeCluster::new(options("nope", "nope", 1.0)).unwrap_err();
        assert!(matches!(err, KubeError::LoadCa(_)), "{err:?}");
        let err = KubeCluster::new(options("nope", "nope", 0.0)).unwrap_err();
        assert!(matches!(err, KubeError::InvalidSpeed(_)), "{err:?}");
    }

    #[test]
    fn needs_a_runtime() {
        let err = KubeCluster::new(options("nope", "nope", 1.0)).unwrap_err();
        assert!(matches!(err, KubeError::StartControllers(_)), "{err:?}");
    }
}
