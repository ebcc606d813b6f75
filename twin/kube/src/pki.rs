//! The cluster's Kubernetes CA: loading it from PEM, the API server's serving certificate,
//! kubelet-serving CSRs and signing approved CSRs.

use std::net::IpAddr;

use base64::Engine;
use chrono::{Datelike, Duration, Utc};
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A failure to load the CA or to make or sign a certificate.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// The CA private key PEM could not be decoded or parsed.
    #[error("load ca private key")]
    LoadKey(#[source] rcgen::Error),
    /// The CA certificate PEM could not be parsed.
    #[error("load ca certificate")]
    LoadCa(#[source] rcgen::Error),
    /// A key or certificate could not be generated.
    #[error("generate certificate")]
    Generate(#[source] rcgen::Error),
    /// A certificate signing request could not be parsed or verified.
    #[error("parse certificate signing request")]
    ParseCsr(#[source] rcgen::Error),
}

/// The cluster's Kubernetes CA (certificate and signing key).
pub struct Ca {
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// A TLS identity: certificate chain and private key.
#[derive(Debug)]
pub struct Identity {
    /// Leaf certificate first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

/// Decodes the first PEM block of `pem`: (label, DER).
pub fn pem_decode(pem: &str) -> Option<(String, Vec<u8>)> {
    let begin = pem.find("-----BEGIN ")?;
    let rest = &pem[begin + 11..];
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

/// Encodes DER as PEM with `label`.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// Wraps a SEC1 (`EC PRIVATE KEY`) P-256 key in PKCS#8, which ring reads.
fn sec1_p256_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
    const EC_PUBLIC_KEY: [u8; 9] = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const PRIME256V1: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let mut alg = Vec::new();
    alg.extend_from_slice(&EC_PUBLIC_KEY);
    alg.extend_from_slice(&PRIME256V1);
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend(der_tlv(0x30, &alg));
    body.extend(der_tlv(0x04, sec1));
    der_tlv(0x30, &body)
}

/// Loads a private key PEM (`PRIVATE KEY` PKCS#8 or `EC PRIVATE KEY` SEC1 P-256).
pub fn load_key(pem: &str) -> Result<KeyPair, PkiError> {
    let (label, der) =
        pem_decode(pem).ok_or(PkiError::LoadKey(rcgen::Error::CouldNotParseKeyPair))?;
    let pkcs8 = if label == "EC PRIVATE KEY" {
        sec1_p256_to_pkcs8(&der)
    } else {
        der
    };
    KeyPair::try_from(pkcs8.as_slice()).map_err(PkiError::LoadKey)
}

fn set_validity(params: &mut CertificateParams, lifetime: Duration) {
    let start = Utc::now() - Duration::days(1);
    let end = Utc::now() + lifetime;
    params.not_before = rcgen::date_time_ymd(start.year(), start.month() as u8, start.day() as u8);
    params.not_after = rcgen::date_time_ymd(end.year(), end.month() as u8, end.day() as u8);
}

fn random_serial(params: &mut CertificateParams) {
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
}

/// A subject alternative name from text: an IP address when it parses as one, else a DNS name.
fn san_of(text: &str) -> Result<SanType, PkiError> {
    match text.parse::<IpAddr>() {
        Ok(ip) => Ok(SanType::IpAddress(ip)),
        Err(_) => Ok(SanType::DnsName(
            text.to_string().try_into().map_err(PkiError::Generate)?,
        )),
    }
}

/// The DNS names kube-apiserver always puts in its serving certificate.
pub const BUILTIN_DNS_SANS: [&str; 5] = [
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "localhost",
];

impl Ca {
    /// Loads the CA from its certificate and key PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        let key = load_key(key_pem)?;
        let (_, der) =
            pem_decode(cert_pem).ok_or(PkiError::LoadCa(rcgen::Error::CouldNotParseCertificate))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(PkiError::LoadCa)?;
        Ok(Ca {
            cert_der: CertificateDer::from(der),
            issuer,
        })
    }

    /// The CA certificate (DER).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// A serving certificate for kube-apiserver on `ip`: SANs = built-in names, `127.0.0.1`,
    /// `ip` and `cert_sans` (IPs or DNS names), ECDSA P-256, 1 year, EKU ServerAuth.
    pub fn serving_identity(&self, cert_sans: &[String], ip: IpAddr) -> Result<Identity, PkiError> {
        let mut sans: Vec<SanType> = Vec::new();
        for name in BUILTIN_DNS_SANS {
            sans.push(san_of(name)?);
        }
        let mut ips: Vec<IpAddr> = vec![ip];
        if let Ok(lo) = "127.0.0.1".parse() {
            ips.push(lo);
        }
        for ip in ips {
            let san = SanType::IpAddress(ip);
            if !sans.contains(&san) {
                sans.push(san);
            }
        }
        for text in cert_sans {
            let san = san_of(text.trim())?;
            if !sans.contains(&san) {
                sans.push(san);
            }
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "kube-apiserver");
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        set_validity(&mut params, Duration::days(365));
        random_serial(&mut params);
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(PkiError::Generate)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(PkiError::Generate)?;
        Ok(Identity {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }

    /// Signs a PEM CSR as kube-controller-manager's signers do: the CSR's subject and SANs,
    /// `server` selects EKU ServerAuth (kubelet-serving) rather than ClientAuth, 1 year.
    /// Returns the certificate PEM.
    pub fn sign_csr(&self, csr_pem: &str, server: bool) -> Result<String, PkiError> {
        let mut csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(PkiError::ParseCsr)?;
        csr.params.is_ca = IsCa::NoCa;
        csr.params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        csr.params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        set_validity(&mut csr.params, Duration::days(365));
        random_serial(&mut csr.params);
        let cert = csr.signed_by(&self.issuer).map_err(PkiError::Generate)?;
        Ok(cert.pem())
    }
}

/// A kubelet-serving CSR as the kubelet makes it: CN `system:node:<name>`, O `system:nodes`,
/// SANs = node name and IP, ECDSA P-256. Returns the CSR PEM.
pub fn kubelet_serving_csr(node_name: &str, ip: IpAddr) -> Result<String, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "system:nodes");
    dn.push(DnType::CommonName, format!("system:node:{node_name}"));
    params.distinguished_name = dn;
    params.subject_alt_names = vec![san_of(node_name)?, SanType::IpAddress(ip)];
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(PkiError::Generate)?;
    let csr = params.serialize_request(&key).map_err(PkiError::Generate)?;
    csr.pem().map_err(PkiError::Generate)
}

/// The user of a client certificate: (CN, O values).
pub fn subject_of(cert_der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .filter_map(|a| a.as_str().ok())
        .next()
        .unwrap_or_default()
        .to_string();
    let groups = cert
        .subject()
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect();
    Some((cn, groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_ca() -> (String, String) {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "kubernetes");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn pem_round_trip() {
        let pem = pem_encode("CERTIFICATE", &[1, 2, 3, 4]);
        assert_eq!(
            pem_decode(&pem),
            Some(("CERTIFICATE".into(), vec![1, 2, 3, 4]))
        );
    }

    #[test]
    fn serving_cert_has_configured_and_builtin_sans() {
        let (crt, key) = test_ca();
        let ca = Ca::from_pem(&crt, &key).unwrap();
        let id = ca
            .serving_identity(
                &["10.0.0.5".into(), "api.example.com".into()],
                "127.1.2.3".parse().unwrap(),
            )
            .unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&id.chain[0]).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| format!("{n}"))
            .collect();
        let text = names.join(",");
        assert!(text.contains("IPAddress(7f:01:02:03)"), "{text}");
        assert!(text.contains("IPAddress(0a:00:00:05)"), "{text}");
        assert!(text.contains("api.example.com"), "{text}");
        assert!(text.contains("kubernetes.default.svc"), "{text}");
    }

    #[test]
    fn kubelet_csr_is_signed_with_its_subject() {
        let (crt, key) = test_ca();
        let ca = Ca::from_pem(&crt, &key).unwrap();
        let csr = kubelet_serving_csr("cp-1", "127.0.0.9".parse().unwrap()).unwrap();
        let pem = ca.sign_csr(&csr, true).unwrap();
        let (_, der) = pem_decode(&pem).unwrap();
        let (cn, groups) = subject_of(&der).unwrap();
        assert_eq!(cn, "system:node:cp-1");
        assert_eq!(groups, vec!["system:nodes".to_string()]);
    }

    #[test]
    fn sec1_key_is_accepted() {
        // Re-encode a PKCS#8 P-256 key as SEC1 (the inner OCTET STRING), as Talos writes it.
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pkcs8 = key.serialize_der();
        let (_, inner) = split_pkcs8(&pkcs8);
        let pem = pem_encode("EC PRIVATE KEY", inner);
        let loaded = load_key(&pem).unwrap();
        assert_eq!(loaded.public_key_raw(), key.public_key_raw());
    }

    /// Returns (header, privateKey OCTET STRING content) of a short PKCS#8 document.
    fn split_pkcs8(der: &[u8]) -> (&[u8], &[u8]) {
        // outer SEQ header (2 or 3 bytes), INT 0 (3), alg SEQ (2 + 19)
        let outer_hdr = if der[1] & 0x80 != 0 {
            2 + (der[1] & 0x7f) as usize
        } else {
            2
        };
        let mut i = outer_hdr + 3;
        i += 2 + der[i + 1] as usize;
        assert_eq!(der[i], 0x04);
        let (len, hdr) = if der[i + 1] & 0x80 != 0 {
            let n = (der[i + 1] & 0x7f) as usize;
            let mut l = 0usize;
            for b in &der[i + 2..i + 2 + n] {
                l = (l << 8) | *b as usize;
            }
            (l, 2 + n)
        } else {
            (der[i + 1] as usize, 2)
        };
        (&der[..i], &der[i + hdr..i + hdr + len])
    }
}
