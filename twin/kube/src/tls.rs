//! TLS for the API server: the serving certificate, and client certificates requested but
//! checked per request, so that a missing or foreign client certificate is answered
//! `401 Unauthorized` as kube-apiserver does with anonymous auth disabled (kube-apiserver
//! requests client certificates without requiring them and verifies them in its x509
//! authenticator, not in the handshake).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};

use crate::pki::{Identity, subject_of};

/// A TLS configuration error.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The serving certificate or key was refused by rustls.
    #[error("build tls server config")]
    ServerConfig(#[source] rustls::Error),
    /// The CA certificate could not be used to verify client certificates.
    #[error("build client certificate verifier")]
    ClientVerifier(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The authenticated user of a connection: certificate CN and O values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User name (CN).
    pub name: String,
    /// Groups (O).
    pub groups: Vec<String>,
}

/// Verifies client certificates against the cluster CA (WebPKI rules: chain, validity,
/// EKU ClientAuth).
#[derive(Debug, Clone)]
pub struct Authenticator {
    verifier: Arc<dyn ClientCertVerifier>,
}

impl Authenticator {
    /// An authenticator for certificates signed by `ca`.
    pub fn new(ca: CertificateDer<'static>) -> Result<Authenticator, TlsError> {
        let mut roots = RootCertStore::empty();
        roots
            .add(ca)
            .map_err(|e| TlsError::ClientVerifier(Box::new(e)))?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| TlsError::ClientVerifier(Box::new(e)))?;
        Ok(Authenticator { verifier })
    }

    /// The user of a presented chain, or None when it does not verify.
    pub fn authenticate(&self, chain: &[CertificateDer<'_>]) -> Option<User> {
        let (leaf, intermediates) = chain.split_first()?;
        self.verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .ok()?;
        let (name, groups) = subject_of(leaf)?;
        Some(User { name, groups })
    }
}

/// Requests a client certificate (hinting the cluster CA), accepts any or none at the TLS
/// layer while still checking the handshake signature; [`Authenticator`] decides per request.
#[derive(Debug)]
struct RequestClientCert {
    hints: Vec<DistinguishedName>,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The server configuration: serving identity, optional client certificates, ALPN h2 and
/// http/1.1.
pub fn server_config(
    identity: Identity,
    ca: &CertificateDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let hints = x509_parser::parse_x509_certificate(ca)
        .map(|(_, c)| vec![DistinguishedName::from(c.subject().as_raw().to_vec())])
        .unwrap_or_default();
    let verifier = Arc::new(RequestClientCert {
        hints,
        provider: provider(),
    });
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::ServerConfig)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain, identity.key)
        .map_err(TlsError::ServerConfig)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
