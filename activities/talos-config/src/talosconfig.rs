//! The `talosconfig` client file and its admin client certificate.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};

use crate::der::{self, LABEL_CERTIFICATE, LABEL_ED25519};
use crate::error::{Error, Result};
use crate::secret::SecretString;
use crate::secrets::{SecretsBundle, load_signing_key, not_after, random_serial};
use crate::yaml;

/// Validity of the admin client certificate: 1 year (`TalosAPIDefaultCertificateValidityDuration`).
pub const CLIENT_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// The Talos role carried in the client certificate's Organization.
pub const ADMIN_ROLE: &str = "os:admin";

/// A talosconfig: one context named after the cluster with endpoints, nodes, the OS CA and an
/// admin client certificate.
///
/// `Debug` redacts the client key.
#[derive(Clone, PartialEq, Eq)]
pub struct Talosconfig {
    context: String,
    endpoints: Vec<String>,
    nodes: Vec<String>,
    ca_pem: String,
    client_cert_pem: String,
    client_key_pem: SecretString,
}

impl fmt::Debug for Talosconfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Talosconfig")
            .field("context", &self.context)
            .field("endpoints", &self.endpoints)
            .field("nodes", &self.nodes)
            .field("client_key", &self.client_key_pem)
            .finish_non_exhaustive()
    }
}

impl Talosconfig {
    /// Issues a fresh admin client certificate from the bundle's OS CA and builds the
    /// talosconfig for `cluster` (context name), `endpoints` (control-plane public IPs) and
    /// `nodes`.
    ///
    /// The client certificate: Ed25519, subject `O=os:admin` without CN, KeyUsage
    /// DigitalSignature, ExtKeyUsage ClientAuth only, no BasicConstraints, random serial,
    /// valid `now .. now + 1 year`.
    pub fn new(
        cluster: &str,
        endpoints: Vec<String>,
        nodes: Vec<String>,
        bundle: &SecretsBundle,
        now: SystemTime,
    ) -> Result<Self> {
        if cluster.trim().is_empty() {
            return Err(Error::InvalidInput {
                field: "cluster",
                problem: "empty".to_owned(),
            });
        }
        let os = bundle.os_ca();
        let ca_key =
            load_signing_key(os.key_pem().expose()).map_err(|problem| Error::InvalidSecrets {
                source_name: "(in memory)".to_owned(),
                field: "certs.os.key".to_owned(),
                problem,
            })?;
        let issuer = Issuer::from_ca_cert_pem(os.cert_pem(), ca_key).map_err(|source| {
            Error::LoadSigningCa {
                what: "OS CA",
                source,
            }
        })?;
        let what = "admin client";
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .map_err(|source| Error::GenerateKey { what, source })?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, ADMIN_ROLE);
        params.distinguished_name = dn;
        params.not_before = now.into();
        params.not_after = not_after(now, CLIENT_CERT_VALIDITY)?.into();
        params.serial_number = Some(random_serial());
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|source| Error::SignCertificate { what, source })?;
        let v1 = der::ed25519_pkcs8_v1(key.serialized_der())
            .map_err(|problem| Error::EncodeKey { what, problem })?;
        Ok(Self {
            context: cluster.to_owned(),
            endpoints,
            nodes,
            ca_pem: os.cert_pem().to_owned(),
            client_cert_pem: der::pem_encode(LABEL_CERTIFICATE, cert.der()),
            client_key_pem: SecretString::new(der::pem_encode(LABEL_ED25519, &v1)),
        })
    }

    /// Parses a talosconfig (its current context); `source_name` names the origin in errors.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<Self> {
        let file: RawTalosconfig =
            serde_saphyr::from_str(text).map_err(|source| Error::ParseYaml {
                what: "talosconfig",
                source_name: source_name.to_owned(),
                source: Box::new(source),
            })?;
        let invalid = |field: String, problem: String| Error::InvalidTalosconfig {
            source_name: source_name.to_owned(),
            field,
            problem,
        };
        if file.context.is_empty() {
            return Err(invalid("context".to_owned(), "missing".to_owned()));
        }
        let mut contexts = file.contexts;
        let ctx = contexts.remove(&file.context).ok_or_else(|| {
            invalid(
                format!("contexts.{}", file.context),
                "the current context is not defined".to_owned(),
            )
        })?;
        let field = |name: &str| format!("contexts.{}.{name}", file.context);
        let decode = |value: Option<String>, name: &str, label: &[&str]| -> Result<String> {
            let b64 = value
                .filter(|v| !v.is_empty())
                .ok_or_else(|| invalid(field(name), "missing".to_owned()))?;
            let bytes = STANDARD
                .decode(b64.trim())
                .map_err(|e| invalid(field(name), format!("not base64: {e}")))?;
            let pem = String::from_utf8(bytes)
                .map_err(|_| invalid(field(name), "base64 content is not PEM text".to_owned()))?;
            let (found, _) = der::pem_decode(&pem).map_err(|e| invalid(field(name), e))?;
            if !label.contains(&found.as_str()) {
                return Err(invalid(
                    field(name),
                    format!("PEM label is {found:?}, want one of {label:?}"),
                ));
            }
            Ok(pem)
        };
        Ok(Self {
            ca_pem: decode(ctx.ca, "ca", &[LABEL_CERTIFICATE])?,
            client_cert_pem: decode(ctx.crt, "crt", &[LABEL_CERTIFICATE])?,
            client_key_pem: decode(
                ctx.key,
                "key",
                &[LABEL_ED25519, der::LABEL_PKCS8, der::LABEL_EC],
            )?
            .into(),
            context: file.context,
            endpoints: ctx.endpoints,
            nodes: ctx.nodes,
        })
    }

    /// The talosconfig YAML, as talosctl reads it. Contains the client key: write it with
    /// [`crate::write_private`].
    pub fn to_yaml(&self) -> Result<String> {
        let mut contexts = BTreeMap::new();
        contexts.insert(
            self.context.clone(),
            RawContext {
                endpoints: self.endpoints.clone(),
                nodes: self.nodes.clone(),
                ca: Some(STANDARD.encode(&self.ca_pem)),
                crt: Some(STANDARD.encode(&self.client_cert_pem)),
                key: Some(STANDARD.encode(self.client_key_pem.expose())),
            },
        );
        yaml::to_string(
            "talosconfig",
            &RawTalosconfig {
                context: self.context.clone(),
                contexts,
            },
        )
    }

    /// The context (cluster) name.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// Talos API endpoints (control-plane public IPs).
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Default target nodes.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// The client certificate and key as PEM that rustls/tonic accept: the key's
    /// `ED25519 PRIVATE KEY` label is rewritten to `PRIVATE KEY` (same PKCS#8 DER).
    pub fn client_identity_pem(&self) -> (String, SecretString) {
        (
            self.client_cert_pem.clone(),
            SecretString::new(der::relabel_ed25519_for_rustls(
                self.client_key_pem.expose(),
            )),
        )
    }

    /// The OS CA certificate (PEM) that Talos API server certificates chain to.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RawTalosconfig {
    #[serde(default)]
    context: String,
    #[serde(default)]
    contexts: BTreeMap<String, RawContext>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RawContext {
    /// No `skip_serializing_if`: talosctl always writes `endpoints` (even `[]`).
    #[serde(default)]
    endpoints: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    nodes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use x509_parser::prelude::*;

    use super::*;
    use crate::testutil::{bundle, spec_dir, spec_file, test_now, yaml_to_json};

    fn demo() -> Talosconfig {
        Talosconfig::new(
            "demo",
            vec!["203.0.113.11".into(), "203.0.113.12".into()],
            vec!["203.0.113.11".into()],
            bundle(),
            test_now(),
        )
        .unwrap()
    }

    fn cert_der(pem: &str) -> Vec<u8> {
        der::pem_decode(pem).unwrap().1
    }

    #[test]
    fn client_certificate_matches_the_reference() {
        let tc = demo();
        let der = cert_der(&tc.client_cert_pem);
        let (_, cert) = parse_x509_certificate(&der).unwrap();
        assert_eq!(
            cert.signature_algorithm.algorithm,
            x509_parser::oid_registry::OID_SIG_ED25519
        );
        assert_eq!(
            cert.public_key().algorithm.algorithm,
            x509_parser::oid_registry::OID_SIG_ED25519
        );
        // Subject O=os:admin only, no CN.
        let orgs: Vec<_> = cert
            .subject()
            .iter_organization()
            .map(|o| o.as_str().unwrap())
            .collect();
        assert_eq!(orgs, ["os:admin"]);
        assert_eq!(cert.subject().iter_common_name().count(), 0);
        assert_eq!(cert.subject().iter().count(), 1);

        let now = test_now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        assert_eq!(cert.validity().not_before.timestamp(), now);
        assert_eq!(cert.validity().not_after.timestamp(), now + 365 * 24 * 3600);

        let ku = cert.key_usage().unwrap().unwrap();
        assert_eq!(ku.value.flags, 1, "DigitalSignature only");
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth);
        assert!(!eku.server_auth && !eku.any && eku.other.is_empty());
        assert!(cert.basic_constraints().unwrap().is_none());
        assert!(!cert.is_ca());

        // Issued by the OS CA: issuer name, AKI = CA SKI, signature verifies with the CA key.
        let ca_der = cert_der(bundle().os_ca().cert_pem());
        let (_, ca) = parse_x509_certificate(&ca_der).unwrap();
        assert_eq!(cert.issuer().as_raw(), ca.subject().as_raw());
        let ski = ca
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            });
        let aki = cert
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            });
        assert!(ski.is_some());
        assert_eq!(aki, ski);
        cert.verify_signature(Some(ca.public_key())).unwrap();
        // And not with some other CA key.
        let k8s_der = cert_der(bundle().kubernetes_ca().cert_pem());
        let (_, k8s) = parse_x509_certificate(&k8s_der).unwrap();
        assert!(cert.verify_signature(Some(k8s.public_key())).is_err());
    }

    #[test]
    fn yaml_has_the_talosctl_shape_and_round_trips() {
        let tc = demo();
        let yaml = tc.to_yaml().unwrap();
        let json = yaml_to_json(&yaml);
        assert_eq!(json["context"], "demo");
        let ctx = &json["contexts"]["demo"];
        assert_eq!(
            ctx["endpoints"],
            serde_json::json!(["203.0.113.11", "203.0.113.12"])
        );
        assert_eq!(ctx["nodes"], serde_json::json!(["203.0.113.11"]));
        assert_eq!(ctx["ca"], bundle().os_ca().crt_base64());
        let key_pem =
            String::from_utf8(STANDARD.decode(ctx["key"].as_str().unwrap()).unwrap()).unwrap();
        assert!(key_pem.starts_with("-----BEGIN ED25519 PRIVATE KEY-----\n"));
        let back = Talosconfig::from_yaml(&yaml, "talosconfig").unwrap();
        assert_eq!(back, tc);
        assert_eq!(back.context(), "demo");
        assert_eq!(back.endpoints().len(), 2);
        assert_eq!(back.nodes(), ["203.0.113.11"]);
    }

    #[test]
    fn empty_endpoints_are_still_written() {
        let tc = Talosconfig::new("demo", vec![], vec![], bundle(), test_now()).unwrap();
        let yaml = tc.to_yaml().unwrap();
        assert!(yaml.contains("endpoints: []"), "{yaml}");
        assert!(!yaml.contains("nodes:"), "{yaml}");
    }

    #[test]
    fn rustls_ready_pems() {
        let tc = demo();
        let (cert, key) = tc.client_identity_pem();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(key.expose().starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(key.expose().ends_with("-----END PRIVATE KEY-----\n"));
        // The key loads as standard PKCS#8 and belongs to the certificate.
        let kp = rcgen::KeyPair::from_pem(key.expose()).unwrap();
        let der = cert_der(&cert);
        let (_, parsed) = parse_x509_certificate(&der).unwrap();
        assert_eq!(
            kp.public_key_raw(),
            &parsed.public_key().subject_public_key.data[..]
        );
        assert_eq!(tc.ca_pem(), bundle().os_ca().cert_pem());
        assert!(!format!("{tc:?}").contains(key.expose()));
    }

    #[test]
    fn written_file_is_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp
            .path()
            .join("clusters/demo")
            .join(crate::TALOSCONFIG_FILE);
        crate::write_private(&path, demo().to_yaml().unwrap().as_bytes()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let back = Talosconfig::from_yaml(&text, "talosconfig").unwrap();
        assert_eq!(back.context(), "demo");
        assert_eq!(back.ca_pem(), bundle().os_ca().cert_pem());
    }

    #[test]
    fn works_with_an_imported_fixture_bundle() {
        let Some(dir) = spec_dir() else { return };
        let b = SecretsBundle::from_yaml(
            &spec_file(&dir, "talos-fixtures/v1.11/secrets.yaml"),
            "secrets.yaml",
        )
        .unwrap();
        let tc = Talosconfig::new("base", vec!["10.5.0.2".into()], vec![], &b, test_now()).unwrap();
        let ca_der = cert_der(b.os_ca().cert_pem());
        let (_, ca) = parse_x509_certificate(&ca_der).unwrap();
        let der = cert_der(&tc.client_cert_pem);
        let (_, cert) = parse_x509_certificate(&der).unwrap();
        cert.verify_signature(Some(ca.public_key())).unwrap();
    }

    #[test]
    fn from_yaml_errors_name_the_field() {
        let yaml = demo().to_yaml().unwrap();
        let mut json = yaml_to_json(&yaml);
        json["contexts"]["demo"]
            .as_object_mut()
            .unwrap()
            .remove("crt");
        let text = serde_saphyr::to_string(&json).unwrap();
        let err = Talosconfig::from_yaml(&text, "/home/me/talosconfig").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid talosconfig /home/me/talosconfig: field contexts.demo.crt: missing"
        );
        let mut json = yaml_to_json(&yaml);
        json["context"] = "other".into();
        let text = serde_saphyr::to_string(&json).unwrap();
        let err = Talosconfig::from_yaml(&text, "tc").unwrap_err().to_string();
        assert!(
            err.contains("field contexts.other: the current context is not defined"),
            "{err}"
        );
    }

    #[test]
    fn empty_cluster_name_is_rejected() {
        assert!(matches!(
            Talosconfig::new(" ", vec![], vec![], bundle(), test_now()),
            Err(Error::InvalidInput {
                field: "cluster",
                ..
            })
        ));
    }
}
