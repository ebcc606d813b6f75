//! [`KubeCluster`]: the facade of one cluster: makes its shared state, starts its controllers
//! and its API servers, and takes kubelet events.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::cloud::CloudBridge;
use crate::pki::{Ca, kubelet_serving_csr};
use crate::registration::{file_csr, register_node};
use crate::server::{self, ServerHandle};
use crate::state::{Inner, KubeError, Kubelet, NodeRole, lock};
use crate::store::Store;
use crate::tls::Authenticator;

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

/// One cluster's Kubernetes API: the object store, the servers on `<ip>:6443` and the
/// controllers. Cheap to clone; controllers stop when the last clone is dropped.
#[derive(Clone)]
pub struct KubeCluster {
    pub(crate) inner: Arc<Inner>,
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
            kubelet_versions: Mutex::new(Default::default()),
            apiserver_versions: Mutex::new(Default::default()),
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
        let version = self.inner.kubelet_version(node_name);
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
