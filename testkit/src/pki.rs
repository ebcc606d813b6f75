//! Test certificate authorities: a self-signed CA and client certificates it signs, as PEM, for
//! tests that stand up TLS servers (the Kubernetes and Talos twins, the product's clients).
//!
//! The certificates are throwaway (generated per call, no expiry checks relied on); a panic here
//! is a test set-up failure.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SignatureAlgorithm,
};

/// The key type of a generated certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA P-256 with SHA-256 (the Kubernetes CA of a Talos cluster).
    EcdsaP256,
    /// Ed25519 (the Talos OS CA and its clients).
    Ed25519,
}

impl KeyType {
    fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }
}

/// A certificate and its private key, both PEM (the key as PKCS#8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPem {
    /// The certificate, PEM.
    pub cert: String,
    /// The private key, PKCS#8 PEM.
    pub key: String,
}

/// A self-signed CA with organization `org` (key usages: certificate signing, digital signature).
pub fn ca(key_type: KeyType, org: &str) -> CertPem {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate_for(key_type.algorithm()).expect("generate a key");
    let cert = params.self_signed(&key).expect("self-sign the CA");
    CertPem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// A client certificate (`clientAuth`) signed by `ca`, with common name `cn` and organization
/// `org` (Kubernetes reads them as user and group, Talos reads the organization as its role).
pub fn client_cert(ca: &CertPem, key_type: KeyType, cn: &str, org: &str) -> CertPem {
    let ca_key = KeyPair::from_pem(&ca.key).expect("the CA key is PKCS#8 PEM");
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key).expect("the CA certificate parses");
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, org);
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate_for(key_type.algorithm()).expect("generate a key");
    let cert = params
        .signed_by(&key, &issuer)
        .expect("sign the client certificate");
    CertPem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_certificate_names_its_issuer() {
        let authority = ca(KeyType::EcdsaP256, "kubernetes");
        let client = client_cert(&authority, KeyType::Ed25519, "admin", "system:masters");
        assert!(authority.cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(client.key.contains("PRIVATE KEY"));
        assert_ne!(client.cert, authority.cert);
    }
}
