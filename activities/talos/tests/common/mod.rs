//! Test PKI and machine configs (own rcgen generation; not hk8s-talos-config) and twin helpers.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use base64::Engine;
use hk8s_talos::TalosCredentials;
use hk8s_twin_talos::{NodeHandle, NodeOptions, NodePhase, TalosFleet, TalosNode};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// A CA with its PEMs.
pub struct Ca {
    pub crt_pem: String,
    /// Key PEM as Talos writes it (`ED25519 PRIVATE KEY` for Ed25519).
    pub key_pem: String,
    params: CertificateParams,
    key: KeyPair,
}

impl Ca {
    fn new(alg: &'static rcgen::SignatureAlgorithm, org: &str) -> Ca {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, org);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.self_signed(&key).unwrap();
        let mut key_pem = key.serialize_pem();
        if alg == &rcgen::PKCS_ED25519 {
            key_pem = key_pem.replace("PRIVATE KEY", "ED25519 PRIVATE KEY");
        }
        Ca {
            crt_pem: cert.pem(),
            key_pem,
            params,
            key,
        }
    }

    /// Talos OS CA: Ed25519, O=talos.
    pub fn os() -> Ca {
        Ca::new(&rcgen::PKCS_ED25519, "talos")
    }

    /// Kubernetes CA: ECDSA P-256, O=kubernetes.
    pub fn k8s() -> Ca {
        Ca::new(&rcgen::PKCS_ECDSA_P256_SHA256, "kubernetes")
    }

    /// A talosconfig-style client certificate: Ed25519, O=<role>, no CN, EKU ClientAuth only.
    pub fn client(&self, role: &str) -> TalosCredentials {
        self.client_with_eku(role, vec![ExtendedKeyUsagePurpose::ClientAuth])
    }

    pub fn client_with_eku(
        &self,
        role: &str,
        eku: Vec<ExtendedKeyUsagePurpose>,
    ) -> TalosCredentials {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, role);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = eku;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        TalosCredentials {
            ca_pem: self.crt_pem.clone(),
            cert_pem: cert.pem(),
            key_pem: key
                .serialize_pem()
                .replace("PRIVATE KEY", "ED25519 PRIVATE KEY"),
        }
    }
}

/// The secrets of one test cluster.
pub struct Cluster {
    pub name: String,
    pub endpoint: String,
    pub os: Ca,
    pub k8s: Ca,
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

impl Cluster {
    pub fn new(name: &str) -> Cluster {
        Cluster {
            name: name.into(),
            endpoint: format!("https://{name}.example:6443"),
            os: Ca::os(),
            k8s: Ca::k8s(),
        }
    }

    /// A minimal v1alpha1 config with the fields the twin reads.
    pub fn config(&self, kind: &str, hostname: &str) -> Vec<u8> {
        let cp = kind == "controlplane";
        self.config_with(
            kind,
            hostname,
            if cp { &self.os.key_pem } else { "" },
            if cp { &self.k8s.key_pem } else { "" },
            &self.endpoint,
        )
    }

    pub fn config_with(
        &self,
        kind: &str,
        hostname: &str,
        os_key: &str,
        k8s_key: &str,
        endpoint: &str,
    ) -> Vec<u8> {
        let opt = |pem: &str| {
            if pem.is_empty() {
                String::new()
            } else {
                b64(pem)
            }
        };
        format!(
            "version: v1alpha1\ndebug: false\nmachine:\n  type: {kind}\n  token: abcdef.0123456789abcdef\n  ca:\n    crt: {}\n    key: \"{}\"\n  certSANs: []\n  network:\n    hostname: {hostname}\ncluster:\n  id: dGVzdA==\n  secret: c2VjcmV0\n  controlPlane:\n    endpoint: \"{endpoint}\"\n  clusterName: {}\n  ca:\n    crt: {}\n    key: \"{}\"\n",
            b64(&self.os.crt_pem),
            opt(os_key),
            self.name,
            b64(&self.k8s.crt_pem),
            opt(k8s_key),
        )
        .into_bytes()
    }

    pub fn admin(&self) -> TalosCredentials {
        self.os.client("os:admin")
    }
}

/// Spawns a fast node at `ip` (never 127.0.0.1).
pub fn spawn(fleet: &TalosFleet, ip: Ipv4Addr, hostname: &str) -> NodeHandle {
    let mut opts = NodeOptions::new(ip, hostname, "v1.11.6");
    opts.speed = 1000.0;
    opts.boot_delay = Duration::from_secs(5);
    opts.install_delay = Duration::from_secs(10);
    opts.reboot_delay = Duration::from_secs(5);
    TalosNode::spawn(fleet, opts).unwrap()
}

/// Bounded wait (a hang fails the test instead of blocking the suite).
pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

pub async fn wait_phase(node: &NodeHandle, phase: NodePhase) {
    within(
        &format!("{} {phase:?}", node.ip()),
        node.wait_for_phase(phase),
    )
    .await;
}

pub fn addr(node: &NodeHandle) -> SocketAddr {
    node.api_addr()
}
