//! rustls server configurations of a simulated node: maintenance (no client auth) and
//! configured (mTLS against the OS CA, client EKU exactly `[ClientAuth]`).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};

use crate::pki::ServerIdentity;

/// A TLS configuration error.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The server certificate or key was refused by rustls.
    #[error("build tls server config")]
    ServerConfig(#[source] rustls::Error),
    /// The OS CA certificate could not be used as a client-auth root.
    #[error("build client certificate verifier")]
    ClientVerifier(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Maintenance mode: TLS 1.2+, ALPN h2, no client certificate requested.
pub fn maintenance_config(identity: ServerIdentity) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::ServerConfig)?
        .with_no_client_auth()
        .with_single_cert(identity.chain, identity.key)
        .map_err(TlsError::ServerConfig)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Configured mode: a client certificate chaining to `os_ca` is required.
pub fn secure_config(
    identity: ServerIdentity,
    os_ca: CertificateDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(os_ca)
        .map_err(|e| TlsError::ClientVerifier(Box::new(e)))?;
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::ClientVerifier(Box::new(e)))?;
    let verifier = Arc::new(ClientAuthEkuVerifier { inner });
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::ServerConfig)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain, identity.key)
        .map_err(TlsError::ServerConfig)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// True when a certificate's EKU extension is exactly `[ClientAuth]` (apid's
/// `apidCheckExtKeyUsage` rule for non-CA client certificates).
pub fn eku_is_client_auth_only(cert_der: &[u8]) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert_der) else {
        return false;
    };
    match cert.extended_key_usage() {
        Ok(Some(ext)) => {
            let eku = ext.value;
            eku.client_auth
                && !eku.any
                && !eku.server_auth
                && !eku.code_signing
                && !eku.email_protection
                && !eku.time_stamping
                && !eku.ocsp_signing
                && eku.other.is_empty()
        }
        _ => false,
    }
}

/// WebPKI client verification plus the EKU rule, so a violating certificate fails the handshake.
#[derive(Debug)]
struct ClientAuthEkuVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for ClientAuthEkuVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if !eku_is_client_auth_only(end_entity) {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::InvalidPurpose,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The Talos roles (`O=` values) of a client certificate.
pub fn roles_of(cert_der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert_der) else {
        return Vec::new();
    };
    cert.subject()
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect()
}
