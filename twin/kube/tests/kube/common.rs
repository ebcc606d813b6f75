//! Test helpers: a CA and admin certificates (from `hk8s_testkit::pki`), a cluster served on a random loopback IP, and
//! kube-rs clients.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use base64::Engine;
use hk8s_testkit::pki::{self, CertPem, KeyType};
use hk8s_twin_kube::{FakeCloud, KubeCluster, KubeClusterOptions, ServerHandle};

/// A Kubernetes-style CA (ECDSA P-256): (cert PEM, key PEM).
pub fn make_ca(org: &str) -> (String, String) {
    let ca = pki::ca(KeyType::EcdsaP256, org);
    (ca.cert, ca.key)
}

/// A client certificate (cert PEM, key PEM) signed by the CA.
pub fn client_cert(ca: &(String, String), cn: &str, org: &str) -> (String, String) {
    let ca = CertPem {
        cert: ca.0.clone(),
        key: ca.1.clone(),
    };
    let client = pki::client_cert(&ca, KeyType::EcdsaP256, cn, org);
    (client.cert, client.key)
}

/// A random loopback IP other than 127.0.0.1.
pub fn loopback_ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        rand::random_range(10..250),
        rand::random_range(1..250),
        rand::random_range(2..250),
    ))
}

/// A running test cluster.
pub struct Twin {
    pub cluster: KubeCluster,
    pub cloud: Arc<FakeCloud>,
    pub ca: (String, String),
    pub server: ServerHandle,
    pub ip: IpAddr,
}

impl Twin {
    pub async fn start(cert_sans: Vec<String>) -> Twin {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = make_ca("kubernetes");
        let cloud = Arc::new(FakeCloud::new());
        let cluster = KubeCluster::new(KubeClusterOptions {
            cluster_name: "test".into(),
            ca_cert_pem: ca.0.clone(),
            ca_key_pem: ca.1.clone(),
            cert_sans,
            speed: 100.0,
            cloud: cloud.clone(),
            kubernetes_version: "v1.34.1".into(),
        })
        .unwrap();
        let ip = loopback_ip();
        let server = cluster.serve(SocketAddr::new(ip, 0)).await.unwrap();
        Twin {
            cluster,
            cloud,
            ca,
            server,
            ip,
        }
    }

    pub fn admin(&self) -> (String, String) {
        client_cert(&self.ca, "admin", "system:masters")
    }

    pub async fn client(&self) -> kube::Client {
        client_for(self.server.local_addr(), &self.ca.0, Some(self.admin())).await
    }
}

/// A kube-rs client for `https://<addr>` trusting `ca_pem`, with an optional client cert.
pub async fn client_for(
    addr: SocketAddr,
    ca_pem: &str,
    cert: Option<(String, String)>,
) -> kube::Client {
    client_with(addr, ca_pem, cert, true).await
}

/// Like [`client_for`]; `retry: false` turns off kube-rs's default retry of 429/503/504
/// (15 attempts, exponential from 5 ms — minutes in total).
pub async fn client_with(
    addr: SocketAddr,
    ca_pem: &str,
    cert: Option<(String, String)>,
    retry: bool,
) -> kube::Client {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let user = match cert {
        Some((crt, key)) => format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&crt),
            b64(&key)
        ),
        None => "    username: nobody\n".to_string(),
    };
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: https://{addr}\n    certificate-authority-data: {}\nusers:\n- name: admin@test\n  user:\n{user}contexts:\n- name: admin@test\n  context:\n    cluster: test\n    user: admin@test\n    namespace: default\ncurrent-context: admin@test\n",
        b64(ca_pem)
    );
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    config.default_retry = retry;
    kube::Client::try_from(config).unwrap()
}
