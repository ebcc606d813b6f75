//! Certificates the simulated nodes make: the maintenance certificate, the apid server
//! certificate signed by the OS CA, and the admin kubeconfig client certificate.

use std::net::Ipv4Addr;
use std::time::Duration;

use chrono::{Datelike, Timelike, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate error of the twin's PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A private key PEM could not be loaded.
    #[error("load private key")]
    LoadKey(#[source] rcgen::Error),
    /// A CA certificate PEM could not be loaded.
    #[error("load ca certificate")]
    LoadCa(#[source] rcgen::Error),
    /// Generating a key or certificate failed.
    #[error("generate certificate")]
    Generate(#[source] rcgen::Error),
}

/// A server certificate chain and key for rustls.
pub struct ServerIdentity {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// PKCS#8 key of the leaf.
    pub key: PrivateKeyDer<'static>,
}

/// Sets NotBefore = now − `backdate` and NotAfter = now + `lifetime`.
fn set_validity(params: &mut CertificateParams, backdate: Duration, lifetime: Duration) {
    let t = Utc::now();
    let now = rcgen::date_time_ymd(t.year(), t.month() as u8, t.day() as u8)
        + Duration::from_secs(u64::from(t.num_seconds_from_midnight()));
    params.not_before = now - backdate;
    params.not_after = now + lifetime;
}

fn der_len(len: usize) -> Vec<u8> {
    if len < 0x80 {
        vec![len as u8]
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        let mut out = vec![0x80 | bytes.len() as u8];
        out.extend(bytes);
        out
    }
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_len(content.len()));
    out.extend_from_slice(content);
    out
}

/// Wraps a SEC1 `EC PRIVATE KEY` (P-256) in PKCS#8, which ring needs.
fn sec1_p256_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { id-ecPublicKey, prime256v1 }
    const ALG: &[u8] = &[
        0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
        0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ];
    let mut content = vec![0x02, 0x01, 0x00];
    content.extend_from_slice(ALG);
    content.extend(der_tlv(0x04, sec1));
    der_tlv(0x30, &content)
}

/// Parses a private key PEM as Talos writes them: `ED25519 PRIVATE KEY` (PKCS#8 under a custom
/// label), `EC PRIVATE KEY` (SEC1, P-256) or `PRIVATE KEY` (PKCS#8).
pub fn load_key(pem: &str) -> Result<KeyPair, PkiError> {
    let (label, der) =
        pem_decode(pem).ok_or(PkiError::LoadKey(rcgen::Error::CouldNotParseKeyPair))?;
    let pkcs8 = match label.as_str() {
        "EC PRIVATE KEY" => sec1_p256_to_pkcs8(&der),
        _ => der,
    };
    KeyPair::try_from(pkcs8.as_slice()).map_err(PkiError::LoadKey)
}

/// Decodes the first PEM block: (label, DER).
fn pem_decode(pem: &str) -> Option<(String, Vec<u8>)> {
    use base64::Engine;
    let start = pem.find("-----BEGIN ")?;
    let rest = &pem[start + 11..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_string();
    let body_start = label_end + 5;
    let end_marker = format!("-----END {label}-----");
    let body_end = rest.find(&end_marker)?;
    let body: String = rest[body_start..body_end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()?;
    Some((label, der))
}

/// DER of the first certificate in a PEM string.
pub fn cert_der(pem: &str) -> Option<CertificateDer<'static>> {
    let (label, der) = pem_decode(pem)?;
    (label == "CERTIFICATE").then(|| CertificateDer::from(der))
}

fn leaf_params(not_after: Duration) -> CertificateParams {
    let mut params = CertificateParams::default();
    set_validity(&mut params, Duration::ZERO, not_after);
    let mut serial = [0u8; 16];
    rand_fill(&mut serial);
    serial[0] &= 0x7f;
    params.serial_number = Some(serial.to_vec().into());
    params
}

fn rand_fill(buf: &mut [u8]) {
    // uuid v4 draws from the OS RNG.
    for chunk in buf.chunks_mut(16) {
        let bytes = uuid::Uuid::new_v4().into_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

/// The maintenance-mode identity: an ephemeral self-signed Ed25519 CA with an empty subject and
/// a 24 h Ed25519 server certificate with the node IP as IP SAN.
pub fn maintenance_identity(ip: Ipv4Addr) -> Result<ServerIdentity, PkiError> {
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(PkiError::Generate)?;
    let mut ca_params = leaf_params(Duration::from_secs(24 * 3600));
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    ca_params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(PkiError::Generate)?;
    let mut params = leaf_params(Duration::from_secs(24 * 3600));
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::IpAddress(ip.into())];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(PkiError::Generate)?;
    Ok(ServerIdentity {
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    })
}

/// The configured apid identity: Ed25519 leaf signed by the OS CA, CN = hostname, IP SAN = node
/// IP, DNS SANs = hostname + `machine.certSANs`, EKU ServerAuth, 24 h.
pub fn apid_identity(
    ip: Ipv4Addr,
    hostname: &str,
    cert_sans: &[String],
    os_ca_crt_pem: &str,
    os_ca_key_pem: &str,
) -> Result<ServerIdentity, PkiError> {
    let ca_key = load_key(os_ca_key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(os_ca_crt_pem, ca_key).map_err(PkiError::LoadCa)?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(PkiError::Generate)?;
    let mut params = leaf_params(Duration::from_secs(24 * 3600));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, hostname);
    params.distinguished_name = dn;
    let mut sans = vec![SanType::IpAddress(ip.into())];
    for name in std::iter::once(hostname).chain(cert_sans.iter().map(String::as_str)) {
        if let Ok(addr) = name.parse::<std::net::IpAddr>() {
            sans.push(SanType::IpAddress(addr));
        } else if let Ok(dns) = name.to_string().try_into() {
            sans.push(SanType::DnsName(dns));
        }
    }
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(PkiError::Generate)?;
    Ok(ServerIdentity {
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    })
}

/// The admin kubeconfig client certificate: ECDSA P-256, CN=admin, O=system:masters, signed by
/// the Kubernetes CA, valid from now − 10 s for 365 days. Returns (cert PEM, key PEM).
///
/// The key is written as PKCS#8 `PRIVATE KEY` (Talos writes SEC1 `EC PRIVATE KEY`; kubectl and
/// kube-rs read both).
pub fn admin_client_cert(
    k8s_ca_crt_pem: &str,
    k8s_ca_key_pem: &str,
) -> Result<(String, String), PkiError> {
    let ca_key = load_key(k8s_ca_key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(k8s_ca_crt_pem, ca_key).map_err(PkiError::LoadCa)?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(PkiError::Generate)?;
    let mut params = leaf_params(Duration::from_secs(365 * 24 * 3600));
    set_validity(
        &mut params,
        Duration::from_secs(10),
        Duration::from_secs(365 * 24 * 3600),
    );
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "system:masters");
    dn.push(DnType::CommonName, "admin");
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(PkiError::Generate)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths() {
        assert_eq!(der_len(5), vec![5]);
        assert_eq!(der_len(0x80), vec![0x81, 0x80]);
        assert_eq!(der_len(0x1234), vec![0x82, 0x12, 0x34]);
    }

    #[test]
    fn loads_sec1_ec_key_from_talos_fixture() {
        // spec/talos-fixtures/v1.11/secrets.yaml holds Go-generated keys (SEC1 with parameters).
        let Some(dir) = hk8s_testkit::spec_dir() else {
            return;
        };
        let text = hk8s_testkit::spec_file(&dir, "talos-fixtures/v1.11/secrets.yaml");
        let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        use base64::Engine;
        let b64 = |v: &serde_json::Value| {
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(v.as_str().unwrap())
                    .unwrap(),
            )
            .unwrap()
        };
        let k8s_key = b64(&doc["certs"]["k8s"]["key"]);
        assert!(k8s_key.contains("EC PRIVATE KEY"));
        let k8s_crt = b64(&doc["certs"]["k8s"]["crt"]);
        let (cert, _key) = admin_client_cert(&k8s_crt, &k8s_key).unwrap();
        assert!(cert.contains("BEGIN CERTIFICATE"));
        let os_key = b64(&doc["certs"]["os"]["key"]);
        assert!(os_key.contains("ED25519 PRIVATE KEY"));
        let os_crt = b64(&doc["certs"]["os"]["crt"]);
        apid_identity(Ipv4Addr::new(127, 77, 0, 1), "n1", &[], &os_crt, &os_key).unwrap();
    }
}
