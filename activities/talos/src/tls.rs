//! rustls client configurations for the two Talos API modes.
//!
//! - **Maintenance**: Talos serves an ephemeral self-signed Ed25519 certificate that no CA vouches
//!   for (talosctl `--insecure` sets `InsecureSkipVerify`), and it asks for no client
//!   certificate. The handshake signature is still checked against the presented certificate,
//!   and the caller may pin the SHA-256 of its SubjectPublicKeyInfo (talosctl
//!   `--cert-fingerprint`).
//! - **Secure**: mutual TLS; the server must chain to the talosconfig OS CA and carry the dialled
//!   IP as an IP SAN; the client presents the talosconfig certificate and Ed25519 key.
//!
//! Both set ALPN `h2`: grpc-go (≥ 1.67) servers reject TLS connections without ALPN.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::error::TalosError;

/// The talosconfig credentials for mTLS: OS CA, admin client certificate and its key, all PEM.
#[derive(Clone)]
pub struct TalosCredentials {
    /// PEM of the Talos OS CA certificate (the talosconfig `ca`, base64-decoded).
    pub ca_pem: String,
    /// PEM of the client certificate (talosconfig `crt`).
    pub cert_pem: String,
    /// PEM of the client key (talosconfig `key`); `ED25519 PRIVATE KEY` labels are accepted.
    pub key_pem: String,
}

impl fmt::Debug for TalosCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TalosCredentials")
            .field("ca_pem", &format_args!("<{} bytes>", self.ca_pem.len()))
            .field("cert_pem", &format_args!("<{} bytes>", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Rewrites Talos's non-standard `ED25519 PRIVATE KEY` PEM label to `PRIVATE KEY` (same PKCS#8 DER).
pub fn relabel_ed25519_key(pem: &str) -> String {
    pem.replace(
        "-----BEGIN ED25519 PRIVATE KEY-----",
        "-----BEGIN PRIVATE KEY-----",
    )
    .replace(
        "-----END ED25519 PRIVATE KEY-----",
        "-----END PRIVATE KEY-----",
    )
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Client configuration for maintenance mode: no client certificate, server certificate not
/// verified against any CA (optionally pinned by SPKI SHA-256).
pub fn maintenance_config(spki_sha256: Option<[u8; 32]>) -> Result<ClientConfig, TalosError> {
    let provider = provider();
    let verifier = MaintenanceVerifier {
        algorithms: provider.signature_verification_algorithms,
        spki_sha256,
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TalosError::LoadCredentials {
            what: "tls protocol versions",
            source: Some(Box::new(e)),
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Client configuration for mTLS: roots = OS CA, client identity = talosconfig cert and key.
pub fn secure_config(credentials: &TalosCredentials) -> Result<ClientConfig, TalosError> {
    let mut roots = RootCertStore::empty();
    let mut found = false;
    for cert in CertificateDer::pem_slice_iter(credentials.ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| TalosError::LoadCredentials {
            what: "ca certificate pem",
            source: Some(Box::new(e)),
        })?;
        roots.add(cert).map_err(|e| TalosError::LoadCredentials {
            what: "ca certificate",
            source: Some(Box::new(e)),
        })?;
        found = true;
    }
    if !found {
        return Err(TalosError::LoadCredentials {
            what: "ca certificate pem holds no certificate",
            source: None,
        });
    }
    let chain = CertificateDer::pem_slice_iter(credentials.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TalosError::LoadCredentials {
            what: "client certificate pem",
            source: Some(Box::new(e)),
        })?;
    if chain.is_empty() {
        return Err(TalosError::LoadCredentials {
            what: "client certificate pem holds no certificate",
            source: None,
        });
    }
    let key_pem = relabel_ed25519_key(&credentials.key_pem);
    // The parse error is not attached: it could quote key material.
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| {
        TalosError::LoadCredentials {
            what: "client key pem",
            source: None,
        }
    })?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TalosError::LoadCredentials {
            what: "tls protocol versions",
            source: Some(Box::new(e)),
        })?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| TalosError::LoadCredentials {
            what: "client certificate and key",
            source: Some(Box::new(e)),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// SHA-256 of the SubjectPublicKeyInfo of a DER certificate (talosctl `--cert-fingerprint`).
pub fn spki_sha256(cert_der: &[u8]) -> Option<[u8; 32]> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    Some(Sha256::digest(cert.tbs_certificate.subject_pki.raw).into())
}

/// Accepts the maintenance server's ephemeral certificate (see the module docs for why).
#[derive(Debug)]
struct MaintenanceVerifier {
    algorithms: WebPkiSupportedAlgorithms,
    spki_sha256: Option<[u8; 32]>,
}

impl ServerCertVerifier for MaintenanceVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(pin) = self.spki_sha256
            && spki_sha256(end_entity) != Some(pin)
        {
            return Err(rustls::Error::General(
                "maintenance certificate does not match the pinned fingerprint".into(),
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relabels_talos_ed25519_keys() {
        let pem = "-----BEGIN ED25519 PRIVATE KEY-----\nAAAA\n-----END ED25519 PRIVATE KEY-----\n";
        assert_eq!(
            relabel_ed25519_key(pem),
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        );
    }

    #[test]
    fn secure_config_rejects_empty_ca_and_hides_key() {
        let creds = TalosCredentials {
            ca_pem: String::new(),
            cert_pem: String::new(),
            key_pem: "SECRET-KEY-MATERIAL".into(),
        };
        let err = secure_config(&creds).unwrap_err();
        assert!(err.to_string().contains("ca certificate"));
        assert!(!format!("{creds:?}").contains("SECRET"));
    }

    #[test]
    fn maintenance_config_sets_alpn_h2() {
        let config = maintenance_config(None).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
    }
}
