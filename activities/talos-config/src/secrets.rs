//! The Talos secrets bundle in the `talosctl gen secrets` YAML format: generation, parsing and
//! validation.

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use rand::RngCore as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyIdMethod, KeyPair, KeyUsagePurpose, SerialNumber, SignatureAlgorithm,
};
use serde::{Deserialize, Serialize};

use crate::contract::Contract;
use crate::der::{self, LABEL_CERTIFICATE, LABEL_EC, LABEL_ED25519, LABEL_PKCS8, LABEL_RSA};
use crate::error::{Error, Result};
use crate::secret::SecretString;
use crate::yaml;

/// Validity of every CA in a bundle: 87600 h (10 years), as `siderolabs/crypto`'s `CAValidityTime`.
pub const CA_VALIDITY: Duration = Duration::from_secs(87_600 * 3600);

/// Size of the RSA service-account key for contracts > v1.6.
const SERVICE_ACCOUNT_RSA_BITS: usize = 4096;

/// A CA certificate and its private key, both as PEM text.
#[derive(Clone, PartialEq, Eq)]
pub struct CertAndKey {
    cert_pem: String,
    key_pem: SecretString,
}

impl CertAndKey {
    /// The certificate, PEM (`CERTIFICATE`).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key, PEM with the label Talos writes (`ED25519 PRIVATE KEY`, `EC PRIVATE KEY`).
    pub fn key_pem(&self) -> &SecretString {
        &self.key_pem
    }

    /// base64 of the certificate PEM, as it appears in bundles and machine configs.
    pub fn crt_base64(&self) -> String {
        STANDARD.encode(&self.cert_pem)
    }

    /// base64 of the key PEM, as it appears in bundles and machine configs.
    pub fn key_base64(&self) -> SecretString {
        SecretString::new(STANDARD.encode(self.key_pem.expose()))
    }
}

impl fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertAndKey")
            .field(
                "crt",
                &format_args!("<{} bytes of PEM>", self.cert_pem.len()),
            )
            .field("key", &self.key_pem)
            .finish()
    }
}

/// The Kubernetes secrets-at-rest encryption secret: exactly one of the two kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncryptionSecret {
    /// `secretboxencryptionsecret` (contracts > v1.2, i.e. everything hk8s generates).
    Secretbox(SecretString),
    /// `aescbcencryptionsecret` (bundles from contracts ≤ v1.2; accepted on import).
    AesCbc(SecretString),
}

/// A complete Talos secrets bundle.
///
/// `Debug` redacts every private value; only the cluster id and certificate sizes show.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretsBundle {
    cluster_id: String,
    cluster_secret: SecretString,
    bootstrap_token: SecretString,
    encryption: EncryptionSecret,
    trustd_token: SecretString,
    etcd: CertAndKey,
    k8s: CertAndKey,
    k8s_aggregator: CertAndKey,
    k8s_service_account_key: SecretString,
    os: CertAndKey,
}

impl fmt::Debug for SecretsBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsBundle")
            .field("cluster_id", &self.cluster_id)
            .field("cluster_secret", &self.cluster_secret)
            .field("bootstrap_token", &self.bootstrap_token)
            .field("encryption", &self.encryption)
            .field("trustd_token", &self.trustd_token)
            .field("etcd", &self.etcd)
            .field("k8s", &self.k8s)
            .field("k8s_aggregator", &self.k8s_aggregator)
            .field("k8s_service_account_key", &self.k8s_service_account_key)
            .field("os", &self.os)
            .finish()
    }
}

impl SecretsBundle {
    /// Generates a fresh bundle for `contract`, with `now` as NotBefore of every CA.
    ///
    /// OS CA Ed25519 (`O=talos`); Kubernetes (`O=kubernetes`), aggregator (empty subject) and
    /// etcd (`O=etcd`) CAs ECDSA P-256; service-account key RSA-4096 (PKCS#1). RSA-4096 key
    /// generation is the slow part (well under a second optimised, seconds in debug builds).
    pub fn generate(contract: Contract, now: SystemTime) -> Result<Self> {
        Self::generate_with_rsa_bits(contract, now, SERVICE_ACCOUNT_RSA_BITS)
    }

    /// [`SecretsBundle::generate`] with a chosen RSA size; tests use a small one for speed.
    pub(crate) fn generate_with_rsa_bits(
        contract: Contract,
        now: SystemTime,
        rsa_bits: usize,
    ) -> Result<Self> {
        let bundle = Self {
            cluster_id: URL_SAFE.encode(random_bytes::<32>()),
            cluster_secret: SecretString::new(STANDARD.encode(random_bytes::<32>())),
            bootstrap_token: SecretString::new(generate_token()),
            encryption: EncryptionSecret::Secretbox(SecretString::new(
                STANDARD.encode(random_bytes::<32>()),
            )),
            trustd_token: SecretString::new(generate_token()),
            etcd: generate_ca("etcd CA", &rcgen::PKCS_ECDSA_P256_SHA256, Some("etcd"), now)?,
            k8s: generate_ca(
                "Kubernetes CA",
                &rcgen::PKCS_ECDSA_P256_SHA256,
                Some("kubernetes"),
                now,
            )?,
            // Talos passes CommonName("front-proxy") but its self-signed CA helper only sets the
            // organization, so the aggregator CA has an empty subject.
            k8s_aggregator: generate_ca(
                "aggregator CA",
                &rcgen::PKCS_ECDSA_P256_SHA256,
                None,
                now,
            )?,
            k8s_service_account_key: generate_service_account_key(contract, rsa_bits)?,
            os: generate_ca("OS CA", &rcgen::PKCS_ED25519, Some("talos"), now)?,
        };
        bundle.validate()?;
        Ok(bundle)
    }

    /// Renders the bundle in the `talosctl gen secrets` YAML format.
    pub fn to_yaml(&self) -> Result<String> {
        let (secretbox, aescbc) = match &self.encryption {
            EncryptionSecret::Secretbox(s) => (Some(s.expose().to_owned()), None),
            EncryptionSecret::AesCbc(s) => (None, Some(s.expose().to_owned())),
        };
        let raw = RawBundle {
            cluster: Some(RawCluster {
                id: Some(self.cluster_id.clone()),
                secret: Some(self.cluster_secret.expose().to_owned()),
            }),
            secrets: Some(RawSecrets {
                bootstraptoken: Some(self.bootstrap_token.expose().to_owned()),
                aescbcencryptionsecret: aescbc,
                secretboxencryptionsecret: secretbox,
            }),
            trustdinfo: Some(RawTrustd {
                token: Some(self.trustd_token.expose().to_owned()),
            }),
            certs: Some(RawCerts {
                etcd: Some(RawPair::from(&self.etcd)),
                k8s: Some(RawPair::from(&self.k8s)),
                k8saggregator: Some(RawPair::from(&self.k8s_aggregator)),
                k8sserviceaccount: Some(RawKey {
                    key: Some(STANDARD.encode(self.k8s_service_account_key.expose())),
                }),
                os: Some(RawPair::from(&self.os)),
            }),
        };
        yaml::to_string("secrets bundle", &raw)
    }

    /// Parses and validates a bundle; `source_name` (usually the file path) names the origin in
    /// errors, together with the dotted field path (e.g. `certs.os.key`).
    pub fn from_yaml(text: &str, source_name: &str) -> Result<Self> {
        let raw: RawBundle = serde_saphyr::from_str(text).map_err(|source| Error::ParseYaml {
            what: "secrets bundle",
            source_name: source_name.to_owned(),
            source: Box::new(source),
        })?;
        let invalid = |p: FieldProblem| Error::InvalidSecrets {
            source_name: source_name.to_owned(),
            field: p.field,
            problem: p.problem,
        };
        let bundle = Self::from_raw(raw).map_err(invalid)?;
        bundle.check().map_err(invalid)?;
        Ok(bundle)
    }

    /// Checks every field: presence, token formats, PEM labels, certificates are CAs, and each
    /// CA key matches its certificate.
    pub fn validate(&self) -> Result<()> {
        self.check().map_err(|p| Error::InvalidSecrets {
            source_name: "(in memory)".to_owned(),
            field: p.field,
            problem: p.problem,
        })
    }

    /// `cluster.id` (URL-safe base64 of 32 random bytes).
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// `cluster.secret`.
    pub fn cluster_secret(&self) -> &SecretString {
        &self.cluster_secret
    }

    /// `secrets.bootstraptoken` (Kubernetes bootstrap token, `[a-z0-9]{6}.[a-z0-9]{16}`).
    pub fn bootstrap_token(&self) -> &SecretString {
        &self.bootstrap_token
    }

    /// The secrets-at-rest encryption secret.
    pub fn encryption_secret(&self) -> &EncryptionSecret {
        &self.encryption
    }

    /// `trustdinfo.token` (becomes `machine.token`).
    pub fn trustd_token(&self) -> &SecretString {
        &self.trustd_token
    }

    /// `certs.etcd`.
    pub fn etcd_ca(&self) -> &CertAndKey {
        &self.etcd
    }

    /// `certs.k8s` (the Kubernetes CA).
    pub fn kubernetes_ca(&self) -> &CertAndKey {
        &self.k8s
    }

    /// `certs.k8saggregator`.
    pub fn aggregator_ca(&self) -> &CertAndKey {
        &self.k8s_aggregator
    }

    /// `certs.k8sserviceaccount.key`, PEM (`RSA PRIVATE KEY`, or `EC PRIVATE KEY` in old bundles).
    pub fn service_account_key_pem(&self) -> &SecretString {
        &self.k8s_service_account_key
    }

    /// `certs.os` (the Talos API CA, Ed25519).
    pub fn os_ca(&self) -> &CertAndKey {
        &self.os
    }

    fn from_raw(raw: RawBundle) -> Result<Self, FieldProblem> {
        let cluster = raw.cluster.unwrap_or_default();
        let secrets = raw.secrets.unwrap_or_default();
        let trustd = raw.trustdinfo.unwrap_or_default();
        let certs = raw.certs.unwrap_or_default();
        let encryption = match (
            non_empty(secrets.secretboxencryptionsecret),
            non_empty(secrets.aescbcencryptionsecret),
        ) {
            (Some(s), None) => EncryptionSecret::Secretbox(SecretString::new(s)),
            (None, Some(s)) => EncryptionSecret::AesCbc(SecretString::new(s)),
            (None, None) => {
                return Err(FieldProblem::new(
                    "secrets.secretboxencryptionsecret",
                    "missing (one of secretboxencryptionsecret or aescbcencryptionsecret is required)",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(FieldProblem::new(
                    "secrets.aescbcencryptionsecret",
                    "both secretboxencryptionsecret and aescbcencryptionsecret are set; keep one",
                ));
            }
        };
        Ok(Self {
            cluster_id: required(cluster.id, "cluster.id")?,
            cluster_secret: required(cluster.secret, "cluster.secret")?.into(),
            bootstrap_token: required(secrets.bootstraptoken, "secrets.bootstraptoken")?.into(),
            encryption,
            trustd_token: required(trustd.token, "trustdinfo.token")?.into(),
            etcd: pair(certs.etcd, "certs.etcd")?,
            k8s: pair(certs.k8s, "certs.k8s")?,
            k8s_aggregator: pair(certs.k8saggregator, "certs.k8saggregator")?,
            k8s_service_account_key: decode_pem_field(
                certs.k8sserviceaccount.and_then(|k| k.key),
                "certs.k8sserviceaccount.key",
            )?
            .into(),
            os: pair(certs.os, "certs.os")?,
        })
    }

    fn check(&self) -> Result<(), FieldProblem> {
        if self.cluster_id.is_empty() {
            return Err(FieldProblem::new("cluster.id", "empty"));
        }
        if self.cluster_secret.expose().is_empty() {
            return Err(FieldProblem::new("cluster.secret", "empty"));
        }
        check_token(self.bootstrap_token.expose(), "secrets.bootstraptoken")?;
        check_token(self.trustd_token.expose(), "trustdinfo.token")?;
        let (field, secret) = match &self.encryption {
            EncryptionSecret::Secretbox(s) => ("secrets.secretboxencryptionsecret", s),
            EncryptionSecret::AesCbc(s) => ("secrets.aescbcencryptionsecret", s),
        };
        match STANDARD.decode(secret.expose()) {
            Ok(bytes) if bytes.len() == 32 => {}
            Ok(bytes) => {
                return Err(FieldProblem::new(
                    field,
                    format!("decodes to {} bytes, want 32", bytes.len()),
                ));
            }
            Err(e) => return Err(FieldProblem::new(field, format!("not base64: {e}"))),
        }
        check_ca(&self.etcd, "certs.etcd")?;
        check_ca(&self.k8s, "certs.k8s")?;
        check_ca(&self.k8s_aggregator, "certs.k8saggregator")?;
        check_ca(&self.os, "certs.os")?;
        check_service_account_key(self.k8s_service_account_key.expose())
            .map_err(|p| FieldProblem::new("certs.k8sserviceaccount.key", p))?;
        Ok(())
    }
}

/// A field path and what is wrong with it.
#[derive(Debug)]
struct FieldProblem {
    field: String,
    problem: String,
}

impl FieldProblem {
    fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

fn required(value: Option<String>, field: &str) -> Result<String, FieldProblem> {
    match value {
        None => Err(FieldProblem::new(field, "missing")),
        Some(v) if v.trim().is_empty() => Err(FieldProblem::new(field, "empty")),
        Some(v) => Ok(v),
    }
}

/// base64 → UTF-8 PEM text.
fn decode_pem_field(value: Option<String>, field: &str) -> Result<String, FieldProblem> {
    let b64 = required(value, field)?;
    let bytes = STANDARD
        .decode(b64.trim())
        .map_err(|e| FieldProblem::new(field, format!("not base64: {e}")))?;
    String::from_utf8(bytes).map_err(|_| FieldProblem::new(field, "base64 content is not PEM text"))
}

fn pair(raw: Option<RawPair>, field: &str) -> Result<CertAndKey, FieldProblem> {
    let raw = raw.ok_or_else(|| FieldProblem::new(field, "missing"))?;
    Ok(CertAndKey {
        cert_pem: decode_pem_field(raw.crt, &format!("{field}.crt"))?,
        key_pem: decode_pem_field(raw.key, &format!("{field}.key"))?.into(),
    })
}

fn check_token(token: &str, field: &str) -> Result<(), FieldProblem> {
    let ok = token.len() == 23
        && token.bytes().enumerate().all(|(i, b)| {
            if i == 6 {
                b == b'.'
            } else {
                b.is_ascii_lowercase() || b.is_ascii_digit()
            }
        });
    if ok {
        Ok(())
    } else {
        Err(FieldProblem::new(
            field,
            "not a token of the form [a-z0-9]{6}.[a-z0-9]{16}",
        ))
    }
}

/// The certificate must parse, be a CA, and the key must match its public key.
fn check_ca(ca: &CertAndKey, field: &str) -> Result<(), FieldProblem> {
    let crt_field = format!("{field}.crt");
    let key_field = format!("{field}.key");
    let (label, der) =
        der::pem_decode(&ca.cert_pem).map_err(|e| FieldProblem::new(&crt_field, e))?;
    if label != LABEL_CERTIFICATE {
        return Err(FieldProblem::new(
            &crt_field,
            format!("PEM label is {label:?}, want \"CERTIFICATE\""),
        ));
    }
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| FieldProblem::new(&crt_field, format!("not an X.509 certificate: {e}")))?;
    if !cert.is_ca() {
        return Err(FieldProblem::new(
            &crt_field,
            "certificate is not a CA (BasicConstraints CA:TRUE missing)",
        ));
    }
    let cert_public = cert.public_key().subject_public_key.data.to_vec();
    let key_public = private_key_public_bytes(ca.key_pem.expose())
        .map_err(|e| FieldProblem::new(&key_field, e))?;
    if key_public != cert_public {
        return Err(FieldProblem::new(
            &key_field,
            format!("private key does not match the certificate in {crt_field}"),
        ));
    }
    Ok(())
}

/// Loads an Ed25519 or ECDSA private key PEM (any label Talos writes or accepts) for signing.
pub(crate) fn load_signing_key(pem: &str) -> Result<KeyPair, String> {
    let (label, der) = der::pem_decode(pem)?;
    let pkcs8 = match label.as_str() {
        LABEL_ED25519 | LABEL_PKCS8 => der,
        LABEL_EC => der::ec_sec1_to_pkcs8(&der)?,
        other => return Err(format!("unsupported private key PEM label {other:?}")),
    };
    KeyPair::try_from(pkcs8.as_slice()).map_err(|e| format!("unreadable private key: {e}"))
}

/// The raw public key (Ed25519 32 bytes, or the uncompressed EC point) of a private key PEM.
fn private_key_public_bytes(pem: &str) -> Result<Vec<u8>, String> {
    let (label, der) = der::pem_decode(pem)?;
    if label == LABEL_EC {
        // Reading the point straight from SEC1 also covers curves ring cannot load.
        let point = der::ec_sec1_public_key(&der)?;
        // Make sure the key itself is usable, not only its embedded public half.
        load_signing_key(pem)?;
        return Ok(point);
    }
    Ok(load_signing_key(pem)?.public_key_raw().to_vec())
}

fn check_service_account_key(pem: &str) -> Result<(), String> {
    use rsa::pkcs1::DecodeRsaPrivateKey as _;
    let (label, der) = der::pem_decode(pem)?;
    match label.as_str() {
        LABEL_RSA => {
            let key = rsa::RsaPrivateKey::from_pkcs1_der(&der)
                .map_err(|e| format!("unreadable RSA private key: {e}"))?;
            key.validate()
                .map_err(|e| format!("invalid RSA private key: {e}"))?;
            Ok(())
        }
        LABEL_EC => load_signing_key(pem).map(|_| ()),
        other => Err(format!(
            "PEM label is {other:?}, want \"RSA PRIVATE KEY\" (or \"EC PRIVATE KEY\" in old bundles)"
        )),
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    rand::rng().fill_bytes(&mut buf);
    buf
}

/// `[a-z0-9]{6}.[a-z0-9]{16}` with unbiased characters (bytes ≥ 252 are rejected, then mod 36).
fn generate_token() -> String {
    const CHARS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let mut pick = |n: usize| -> String {
        let mut out = String::with_capacity(n);
        while out.len() < n {
            let b = (rng.next_u32() & 0xff) as u8;
            if b < 252 {
                out.push(char::from(CHARS[usize::from(b % 36)]));
            }
        }
        out
    };
    let head = pick(6);
    let tail = pick(16);
    format!("{head}.{tail}")
}

/// `now + validity`, or an error for a clock so far in the future that it overflows.
pub(crate) fn not_after(now: SystemTime, validity: Duration) -> Result<SystemTime> {
    now.checked_add(validity)
        .ok_or_else(|| Error::InvalidInput {
            field: "now",
            problem: format!("{now:?} plus {validity:?} is out of range"),
        })
}

/// A random positive serial below 2^128.
pub(crate) fn random_serial() -> SerialNumber {
    SerialNumber::from_slice(&random_bytes::<16>())
}

/// A self-signed CA as `siderolabs/crypto` makes it: CA:TRUE (critical), KeyUsage
/// DigitalSignature + CertSign (critical), EKU ServerAuth + ClientAuth, random 20-byte SKI,
/// random serial, validity `now .. now + 10 years`, subject `O=<org>` or empty.
fn generate_ca(
    what: &'static str,
    alg: &'static SignatureAlgorithm,
    organization: Option<&str>,
    now: SystemTime,
) -> Result<CertAndKey> {
    let key = KeyPair::generate_for(alg).map_err(|source| Error::GenerateKey { what, source })?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    params.distinguished_name = dn;
    params.not_before = now.into();
    params.not_after = not_after(now, CA_VALIDITY)?.into();
    params.serial_number = Some(random_serial());
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.key_identifier_method = KeyIdMethod::PreSpecified(random_bytes::<20>().to_vec());
    let cert = params
        .self_signed(&key)
        .map_err(|source| Error::SignCertificate { what, source })?;
    let key_pem = if alg == &rcgen::PKCS_ED25519 {
        let v1 = der::ed25519_pkcs8_v1(key.serialized_der())
            .map_err(|problem| Error::EncodeKey { what, problem })?;
        der::pem_encode(LABEL_ED25519, &v1)
    } else {
        let sec1 = der::ec_pkcs8_to_sec1(key.serialized_der())
            .map_err(|problem| Error::EncodeKey { what, problem })?;
        der::pem_encode(LABEL_EC, &sec1)
    };
    Ok(CertAndKey {
        cert_pem: der::pem_encode(LABEL_CERTIFICATE, cert.der()),
        key_pem: SecretString::new(key_pem),
    })
}

/// The Kubernetes service-account signing key.
///
/// Talos uses RSA-4096 (PKCS#1 `RSA PRIVATE KEY`) for contracts newer than v1.6 — every
/// contract hk8s supports — and ECDSA P-256 before that.
///
/// About RUSTSEC-2023-0071 (the "Marvin" timing side channel in the `rsa` crate): it concerns
/// RSA *decryption* with a private key observed by an attacker. hk8s only generates this key
/// and writes it out; the cluster's kube-apiserver (Go) signs service-account tokens with it.
/// No decryption ever happens in hk8s, so the advisory does not apply here.
fn generate_service_account_key(contract: Contract, bits: usize) -> Result<SecretString> {
    use rsa::pkcs1::{EncodeRsaPrivateKey as _, LineEnding};
    match contract {
        Contract::V1_9 | Contract::V1_10 | Contract::V1_11 => {
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits)
                .map_err(|source| Error::GenerateRsaKey { source })?;
            let pem = key
                .to_pkcs1_pem(LineEnding::LF)
                .map_err(|source| Error::EncodeRsaKey { source })?;
            Ok(SecretString::new(pem.as_str()))
        }
    }
}

// ---- YAML shape (yaml.v3 lower-cased Go field names; every field optional so that a missing
// field can be reported by its path instead of as a serde error).

#[derive(Debug, Default, Serialize, Deserialize)]
struct RawBundle {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cluster: Option<RawCluster>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secrets: Option<RawSecrets>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trustdinfo: Option<RawTrustd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    certs: Option<RawCerts>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RawCluster {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RawSecrets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bootstraptoken: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aescbcencryptionsecret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secretboxencryptionsecret: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RawTrustd {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RawCerts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etcd: Option<RawPair>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k8s: Option<RawPair>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k8saggregator: Option<RawPair>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k8sserviceaccount: Option<RawKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    os: Option<RawPair>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RawPair {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

impl From<&CertAndKey> for RawPair {
    fn from(ca: &CertAndKey) -> Self {
        Self {
            crt: Some(ca.crt_base64()),
            key: Some(ca.key_base64().expose().to_owned()),
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RawKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

/// Standard base64 of PEM text, the encoding of every `crt`/`key` in Talos documents.
pub(crate) fn base64_of(pem: &str) -> String {
    STANDARD.encode(pem)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use x509_parser::prelude::*;

    use super::*;
    use crate::testutil::{bundle, shared, spec_dir, spec_file, test_now, yaml_to_json};

    fn parse_cert(pem: &str) -> Vec<u8> {
        let (label, der) = der::pem_decode(pem).unwrap();
        assert_eq!(label, "CERTIFICATE");
        der
    }

    fn unix(t: SystemTime) -> i64 {
        t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
    }

    /// Asserts everything the reference says about a Talos CA.
    fn assert_talos_ca(ca: &CertAndKey, organization: Option<&str>, ed25519: bool) {
        let der = parse_cert(ca.cert_pem());
        let (rest, cert) = parse_x509_certificate(&der).unwrap();
        assert!(rest.is_empty());
        assert_eq!(cert.version(), X509Version::V3);

        let orgs: Vec<_> = cert
            .subject()
            .iter_organization()
            .map(|o| o.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            orgs,
            organization.map(|o| vec![o.to_owned()]).unwrap_or_default()
        );
        assert_eq!(
            cert.subject().iter().count(),
            usize::from(organization.is_some())
        );
        assert_eq!(cert.subject().as_raw(), cert.issuer().as_raw());

        let (alg, key_label) = if ed25519 {
            (
                x509_parser::oid_registry::OID_SIG_ED25519,
                "ED25519 PRIVATE KEY",
            )
        } else {
            (
                x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA256,
                "EC PRIVATE KEY",
            )
        };
        assert_eq!(cert.signature_algorithm.algorithm, alg);
        if !ed25519 {
            let params = cert.public_key().algorithm.parameters.as_ref().unwrap();
            assert_eq!(
                params.as_oid().unwrap(),
                x509_parser::oid_registry::OID_EC_P256
            );
        }
        assert_eq!(der::pem_decode(ca.key_pem().expose()).unwrap().0, key_label);

        assert_eq!(cert.validity().not_before.timestamp(), unix(test_now()));
        assert_eq!(
            cert.validity().not_after.timestamp(),
            unix(test_now()) + 87_600 * 3600
        );

        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(bc.critical);
        assert!(bc.value.ca);
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical);
        assert!(ku.value.digital_signature() && ku.value.key_cert_sign());
        assert_eq!(
            ku.value.flags,
            1 | (1 << 5),
            "only DigitalSignature + CertSign"
        );
        let eku = cert.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.server_auth && eku.value.client_auth);
        assert!(!eku.value.any && eku.value.other.is_empty() && !eku.value.code_signing);
        assert!(cert.subject_alternative_name().unwrap().is_none());

        let ski = cert
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.len()),
                _ => None,
            });
        assert_eq!(ski, Some(20));
        assert!(cert.raw_serial().len() <= 17);
        cert.verify_signature(None).unwrap();
    }

    #[test]
    fn generated_cas_match_the_reference() {
        let b = bundle();
        assert_talos_ca(b.os_ca(), Some("talos"), true);
        assert_talos_ca(b.kubernetes_ca(), Some("kubernetes"), false);
        assert_talos_ca(b.aggregator_ca(), None, false);
        assert_talos_ca(b.etcd_ca(), Some("etcd"), false);
    }

    #[test]
    fn generated_keys_use_talos_encodings() {
        let b = bundle();
        // Ed25519: PKCS#8 v1, 48 bytes, as Go writes it.
        let (_, os_key) = der::pem_decode(b.os_ca().key_pem().expose()).unwrap();
        assert_eq!(os_key.len(), 48);
        // ECDSA: SEC1 with the named-curve parameter (Go refuses SEC1 without it).
        for ca in [b.kubernetes_ca(), b.aggregator_ca(), b.etcd_ca()] {
            let (_, sec1) = der::pem_decode(ca.key_pem().expose()).unwrap();
            let p256_param = [
                0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
            ];
            assert!(sec1.windows(p256_param.len()).any(|w| w == p256_param));
        }
    }

    #[test]
    fn service_account_key_is_rsa_4096_pkcs1() {
        use rsa::pkcs1::DecodeRsaPrivateKey as _;
        use rsa::traits::PublicKeyParts as _;
        let pem = bundle().service_account_key_pem().expose();
        assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        let key = rsa::RsaPrivateKey::from_pkcs1_pem(pem).unwrap();
        assert_eq!(key.size() * 8, 4096);
    }

    #[test]
    fn tokens_and_secrets_have_the_talos_formats() {
        let b = bundle();
        assert_eq!(b.cluster_id().len(), 44);
        assert_eq!(URL_SAFE.decode(b.cluster_id()).unwrap().len(), 32);
        assert_eq!(
            STANDARD.decode(b.cluster_secret().expose()).unwrap().len(),
            32
        );
        match b.encryption_secret() {
            EncryptionSecret::Secretbox(s) => {
                assert_eq!(STANDARD.decode(s.expose()).unwrap().len(), 32)
            }
            other => panic!("unexpected {other:?}"),
        }
        for token in [b.bootstrap_token(), b.trustd_token()] {
            check_token(token.expose(), "t").unwrap();
        }
        assert_ne!(b.bootstrap_token(), b.trustd_token());
    }

    #[test]
    fn token_characters_cover_the_alphabet() {
        // 200 tokens × 22 characters: every one of the 36 characters shows up (the chance that
        // one is missing is below 1e-60), and nothing else does.
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let t = generate_token();
            check_token(&t, "t").unwrap();
            seen.extend(t.chars().filter(|c| *c != '.'));
        }
        assert_eq!(seen.len(), 36);
    }

    #[test]
    fn created_file_is_0600_and_round_trips() {
        let (b, text, mode) = shared();
        assert_eq!(*mode, 0o600);
        let back = SecretsBundle::from_yaml(text, "secrets.yaml").unwrap();
        assert_eq!(&back, b);
        assert_eq!(back.to_yaml().unwrap(), *text);
        // The layout talosctl writes.
        let json = yaml_to_json(text);
        let keys = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(keys(&json), ["certs", "cluster", "secrets", "trustdinfo"]);
        assert_eq!(
            keys(&json["certs"]),
            ["etcd", "k8s", "k8saggregator", "k8sserviceaccount", "os"]
        );
        assert_eq!(
            keys(&json["secrets"]),
            ["bootstraptoken", "secretboxencryptionsecret"]
        );
        assert!(text.starts_with("cluster:\n    id: "), "{text}");
    }

    #[test]
    fn debug_output_leaks_no_secret() {
        let b = bundle();
        let debug = format!("{b:?}");
        for secret in [
            b.cluster_secret().expose(),
            b.bootstrap_token().expose(),
            b.trustd_token().expose(),
            b.os_ca().key_pem().expose(),
            b.kubernetes_ca().key_pem().expose(),
            b.service_account_key_pem().expose(),
        ] {
            assert!(!debug.contains(secret));
        }
        assert!(!debug.contains(&b.os_ca().key_base64().expose().to_owned()));
        assert!(!debug.contains("PRIVATE KEY"));
        assert!(debug.contains("[redacted]"));
    }

    #[test]
    fn fixture_bundle_parses_and_round_trips() {
        let Some(dir) = spec_dir() else { return };
        let text = spec_file(&dir, "talos-fixtures/v1.11/secrets.yaml");
        let b = SecretsBundle::from_yaml(&text, "secrets.yaml").unwrap();
        assert_eq!(
            b.cluster_id(),
            "0raF93qnkMvF-FZNuvyGozXNdLiT2FOWSlyBaW4PR-w="
        );
        assert_eq!(b.bootstrap_token().expose(), "inn7ol.u4ehnti8qyls9ymo");
        // Old fixture: EC service-account key.
        assert!(
            b.service_account_key_pem()
                .expose()
                .starts_with("-----BEGIN EC PRIVATE KEY-----")
        );
        let again = b.to_yaml().unwrap();
        assert_eq!(SecretsBundle::from_yaml(&again, "again").unwrap(), b);
        // Structurally identical to the file talosctl wrote (comments aside).
        assert_eq!(yaml_to_json(&again), yaml_to_json(&text));
    }

    /// The generated bundle's YAML with one edit applied.
    fn edited(edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut json = yaml_to_json(&bundle().to_yaml().unwrap());
        edit(&mut json);
        serde_saphyr::to_string(&json).unwrap()
    }

    fn import_error(edit: impl FnOnce(&mut serde_json::Value)) -> String {
        SecretsBundle::from_yaml(&edited(edit), "/tmp/imported.yaml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let err = import_error(|j| {
            j["certs"]["os"].as_object_mut().unwrap().remove("key");
        });
        assert_eq!(
            err,
            "invalid secrets bundle /tmp/imported.yaml: field certs.os.key: missing"
        );
        let err = import_error(|j| {
            j.as_object_mut().unwrap().remove("trustdinfo");
        });
        assert!(err.contains("field trustdinfo.token: missing"), "{err}");
        let err = import_error(|j| j["certs"]["etcd"]["crt"] = "not base64!".into());
        assert!(err.contains("field certs.etcd.crt: not base64"), "{err}");
        let err =
            import_error(|j| j["secrets"]["bootstraptoken"] = "ABCDEF.0123456789abcdef".into());
        assert!(
            err.contains("field secrets.bootstraptoken: not a token"),
            "{err}"
        );
        let err = import_error(|j| j["cluster"]["secret"] = "".into());
        assert!(err.contains("field cluster.secret: empty"), "{err}");
    }

    #[test]
    fn mismatched_or_wrong_keys_are_rejected() {
        let err = import_error(|j| {
            let k8s_key = j["certs"]["k8s"]["key"].clone();
            j["certs"]["etcd"]["key"] = k8s_key;
        });
        assert!(
            err.contains("field certs.etcd.key: private key does not match the certificate"),
            "{err}"
        );
        let err = import_error(|j| {
            let key = j["certs"]["os"]["key"].clone();
            j["certs"]["k8sserviceaccount"]["key"] = key;
        });
        assert!(
            err.contains("field certs.k8sserviceaccount.key: PEM label"),
            "{err}"
        );
        let err = import_error(|j| {
            // A leaf-like certificate in place of a CA: use the key (not a cert) PEM.
            let key = j["certs"]["k8s"]["key"].clone();
            j["certs"]["k8s"]["crt"] = key;
        });
        assert!(err.contains("field certs.k8s.crt: PEM label"), "{err}");
    }

    #[test]
    fn encryption_secret_must_be_exactly_one() {
        let err = import_error(|j| {
            j["secrets"]["aescbcencryptionsecret"] =
                j["secrets"]["secretboxencryptionsecret"].clone();
        });
        assert!(
            err.contains("field secrets.aescbcencryptionsecret: both"),
            "{err}"
        );
        let text = edited(|j| {
            let s = j["secrets"].as_object_mut().unwrap();
            let v = s.remove("secretboxencryptionsecret").unwrap();
            s.insert("aescbcencryptionsecret".into(), v);
        });
        let b = SecretsBundle::from_yaml(&text, "old.yaml").unwrap();
        assert!(matches!(b.encryption_secret(), EncryptionSecret::AesCbc(_)));
        assert!(b.to_yaml().unwrap().contains("aescbcencryptionsecret: "));
    }

    #[test]
    fn yaml_syntax_errors_name_the_source() {
        let err = SecretsBundle::from_yaml("cluster: [", "/x/secrets.yaml").unwrap_err();
        assert!(matches!(err, Error::ParseYaml { .. }));
        assert!(err.to_string().contains("/x/secrets.yaml"), "{err}");
    }
}
