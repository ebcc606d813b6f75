//! The twin's minimal reading of a Talos machine configuration, and Talos-like validation.
//!
//! Reads only what a simulated node needs: machine type, the OS CA (`machine.ca`), the
//! Kubernetes CA (`cluster.ca`), the control plane endpoint, cluster name/id and hostname.
//! Validation returns the messages of Talos v1.11 `v1alpha1_validation.go` in the
//! hashicorp/multierror layout Talos uses.

use std::fmt;

use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Role of a configured node (`machine.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum MachineRole {
    /// `controlplane` (or the legacy `init`).
    ControlPlane,
    /// `worker`.
    Worker,
}

/// A PEM string whose `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretPem(pub String);

impl fmt::Debug for SecretPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What the twin reads from an applied machine configuration.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    /// `machine.type`.
    pub role: MachineRole,
    /// PEM of `machine.ca.crt` (the Talos OS CA).
    pub os_ca_crt_pem: String,
    /// PEM of `machine.ca.key` (control planes only).
    pub os_ca_key_pem: Option<SecretPem>,
    /// PEM of `cluster.ca.crt` (the Kubernetes CA).
    pub k8s_ca_crt_pem: Option<String>,
    /// PEM of `cluster.ca.key` (control planes only).
    pub k8s_ca_key_pem: Option<SecretPem>,
    /// `cluster.controlPlane.endpoint`.
    pub endpoint: String,
    /// `cluster.clusterName`.
    pub cluster_name: String,
    /// `cluster.id`.
    pub cluster_id: String,
    /// `machine.network.hostname`, when set.
    pub hostname: Option<String>,
    /// `machine.certSANs`.
    pub cert_sans: Vec<String>,
    /// `cluster.apiServer.certSANs` (for a Kubernetes API twin's serving certificate).
    pub api_server_cert_sans: Vec<String>,
    /// SHA-256 of the raw configuration bytes (to recognise a re-apply of the same config).
    pub digest: [u8; 32],
    /// The configuration as applied (other twin parts may read more fields from it).
    pub raw: SecretBytes,
}

/// Bytes whose `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(pub Vec<u8>);

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes redacted>", self.0.len())
    }
}

/// Why a configuration was refused; the message is what the node returns as `InvalidArgument`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigRejected {
    /// The error text, without any configuration content.
    pub message: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Doc {
    version: Option<String>,
    machine: Machine,
    cluster: Cluster,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Machine {
    #[serde(rename = "type")]
    kind: Option<String>,
    ca: Option<CertKey>,
    #[serde(rename = "certSANs")]
    cert_sans: Vec<String>,
    network: Network,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Network {
    hostname: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Cluster {
    id: Option<String>,
    #[serde(rename = "clusterName")]
    cluster_name: Option<String>,
    #[serde(rename = "controlPlane")]
    control_plane: Option<ControlPlane>,
    ca: Option<CertKey>,
    #[serde(rename = "apiServer")]
    api_server: ApiServer,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ApiServer {
    #[serde(rename = "certSANs")]
    cert_sans: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ControlPlane {
    endpoint: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CertKey {
    crt: Option<String>,
    key: Option<String>,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Decodes a `crt`/`key` value: base64 (standard) of PEM text.
fn decode_pem(field: &str, value: &str) -> Result<String, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| format!("failed to decode {field}: not base64"))?;
    let text =
        String::from_utf8(bytes).map_err(|_| format!("failed to decode {field}: not PEM"))?;
    if !text.contains("-----BEGIN ") {
        return Err(format!("failed to decode {field}: not PEM"));
    }
    Ok(text)
}

/// The Kubernetes images of a raw config: `machine.kubelet.image` and, for `cluster.apiServer`,
/// `cluster.controllerManager`, `cluster.scheduler`, their `image`, as (field, image).
pub fn kubernetes_images(raw: &[u8]) -> Vec<(&'static str, String)> {
    let Ok(text) = std::str::from_utf8(raw) else {
        return Vec::new();
    };
    let Ok(docs) = serde_saphyr::from_multiple::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let Some(doc) = docs
        .iter()
        .find(|d| d.get("version").and_then(|v| v.as_str()) == Some("v1alpha1"))
    else {
        return Vec::new();
    };
    [
        ("machine.kubelet.image", "/machine/kubelet/image"),
        ("cluster.apiServer.image", "/cluster/apiServer/image"),
        (
            "cluster.controllerManager.image",
            "/cluster/controllerManager/image",
        ),
        ("cluster.scheduler.image", "/cluster/scheduler/image"),
    ]
    .into_iter()
    .filter_map(|(field, pointer)| {
        doc.pointer(pointer)
            .and_then(|v| v.as_str())
            .map(|i| (field, i.to_string()))
    })
    .collect()
}

/// The tag of an image reference (`repo:tag[@digest]`).
pub fn image_tag(image: &str) -> Option<&str> {
    let image = image.split('@').next().unwrap_or(image);
    let tag = image.rsplit_once(':')?.1;
    (!tag.contains('/') && !tag.is_empty()).then_some(tag)
}

/// Talos ≥ 1.11 `RuntimeValidate`: every Kubernetes image of the config (the kubelet's; on a
/// control plane also the apiserver's, controller-manager's and scheduler's) must carry a
/// version Talos `talos` runs. `Err` is the multierror text (InvalidArgument).
pub fn validate_kubernetes_window(
    talos: &str,
    raw: &[u8],
    role: MachineRole,
) -> Result<(), String> {
    let Some((1, minor, patch)) = crate::hooks::semver(talos) else {
        return Ok(());
    };
    if minor < 11 {
        return Ok(());
    }
    let (lo, hi) = (minor + 18, minor + 23);
    let talos_plain = format!("1.{minor}.{patch}");
    let errors: Vec<String> = kubernetes_images(raw)
        .into_iter()
        .filter(|(field, _)| role == MachineRole::ControlPlane || *field == "machine.kubelet.image")
        .filter_map(|(_, image)| {
            let (_, k_minor, k_patch) = crate::hooks::semver(image_tag(&image)?)?;
            let k = format!("1.{k_minor}.{k_patch}");
            if k_minor < lo {
                Some(format!(
                    "version of Kubernetes {k} is too old to be used with Talos {talos_plain}"
                ))
            } else if k_minor > hi {
                Some(format!(
                    "version of Kubernetes {k} is too new to be used with Talos {talos_plain}"
                ))
            } else {
                None
            }
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(multierror(&errors))
    }
}

/// Formats errors like hashicorp/multierror, which Talos validation returns.
fn multierror(errors: &[String]) -> String {
    let mut out = if errors.len() == 1 {
        "1 error occurred:\n".to_string()
    } else {
        format!("{} errors occurred:\n", errors.len())
    };
    for e in errors {
        out.push_str("\t* ");
        out.push_str(e);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// Parses and validates a machine configuration as Talos's ApplyConfiguration does.
///
/// Errors never quote the configuration (YAML parser messages can carry source snippets with
/// keys, so only the fact of the failure is reported).
pub fn parse(bytes: &[u8]) -> Result<MachineConfig, ConfigRejected> {
    let reject = |message: String| ConfigRejected { message };
    let text = std::str::from_utf8(bytes)
        .map_err(|_| reject("failed to load config: config is not valid UTF-8".into()))?;
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(text)
        .map_err(|_| reject("failed to load config: failed to parse YAML document".into()))?;
    let doc = docs
        .into_iter()
        .find(|d| d.get("version").and_then(|v| v.as_str()) == Some("v1alpha1"))
        .ok_or_else(|| reject("failed to load config: no v1alpha1 config document found".into()))?;
    // serde's type errors quote the offending value, so only the fact is reported.
    let doc: Doc = serde_json::from_value(doc).map_err(|_| {
        reject("failed to load config: a v1alpha1 field has an unexpected type".into())
    })?;
    debug_assert_eq!(doc.version.as_deref(), Some("v1alpha1"));

    let mut errors = Vec::new();
    let role = match doc.machine.kind.as_deref() {
        Some("controlplane") | Some("init") => Some(MachineRole::ControlPlane),
        Some("worker") => Some(MachineRole::Worker),
        _ => {
            errors.push("unknown machine type".to_string());
            None
        }
    };
    let endpoint = doc
        .cluster
        .control_plane
        .as_ref()
        .and_then(|cp| non_empty(&cp.endpoint))
        .map(str::to_string);
    if endpoint.is_none() {
        errors.push("cluster controlplane endpoint is required".to_string());
    }
    let machine_ca = doc.machine.ca.unwrap_or_default();
    let cluster_ca = doc.cluster.ca.unwrap_or_default();
    match role {
        Some(MachineRole::ControlPlane) if non_empty(&machine_ca.key).is_none() => {
            errors.push(
                "issuing CA key is required for controlplane nodes (.machine.ca.key)".to_string(),
            );
        }
        Some(MachineRole::ControlPlane) => {}
        Some(MachineRole::Worker) => {
            if non_empty(&machine_ca.key).is_some() {
                errors.push(
                    "issuing Talos API CA key is not allowed on non-controlplane nodes (.machine.ca)"
                        .to_string(),
                );
            }
            if non_empty(&cluster_ca.key).is_some() {
                errors.push(
                    "issuing Kubernetes API CA key is not allowed on non-controlplane nodes (.cluster.ca)"
                        .to_string(),
                );
            }
        }
        None => {}
    }
    // Not a Talos validation rule, but the twin cannot serve mTLS without the OS CA.
    let os_ca_crt = match non_empty(&machine_ca.crt) {
        Some(crt) => match decode_pem(".machine.ca.crt", crt) {
            Ok(pem) => Some(pem),
            Err(e) => {
                errors.push(e);
                None
            }
        },
        None => {
            errors.push("issuing CA certificate is required (.machine.ca.crt)".to_string());
            None
        }
    };
    let mut decode_opt = |field: &str, value: &Option<String>| -> Option<String> {
        let value = non_empty(value)?;
        match decode_pem(field, value) {
            Ok(pem) => Some(pem),
            Err(e) => {
                errors.push(e);
                None
            }
        }
    };
    let os_ca_key = decode_opt(".machine.ca.key", &machine_ca.key);
    let k8s_ca_crt = decode_opt(".cluster.ca.crt", &cluster_ca.crt);
    let k8s_ca_key = decode_opt(".cluster.ca.key", &cluster_ca.key);

    let (Some(role), Some(endpoint), Some(os_ca_crt_pem), true) =
        (role, endpoint, os_ca_crt, errors.is_empty())
    else {
        return Err(reject(multierror(&errors)));
    };
    Ok(MachineConfig {
        role,
        os_ca_crt_pem,
        os_ca_key_pem: os_ca_key.map(SecretPem),
        k8s_ca_crt_pem: k8s_ca_crt,
        k8s_ca_key_pem: k8s_ca_key.map(SecretPem),
        endpoint,
        cluster_name: non_empty(&doc.cluster.cluster_name)
            .unwrap_or_default()
            .to_string(),
        cluster_id: non_empty(&doc.cluster.id).unwrap_or_default().to_string(),
        hostname: non_empty(&doc.machine.network.hostname).map(str::to_string),
        cert_sans: doc.machine.cert_sans,
        api_server_cert_sans: doc.cluster.api_server.cert_sans,
        digest: Sha256::digest(bytes).into(),
        raw: SecretBytes(bytes.to_vec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn config(kind: &str, machine_key: &str, cluster_key: &str, endpoint: &str) -> String {
        let crt = b64("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n");
        let key = |k: &str| {
            if k.is_empty() {
                String::new()
            } else {
                b64(&format!(
                    "-----BEGIN {k} PRIVATE KEY-----\nAA==\n-----END {k} PRIVATE KEY-----\n"
                ))
            }
        };
        format!(
            "version: v1alpha1\nmachine:\n  type: {kind}\n  ca:\n    crt: {crt}\n    key: \"{}\"\ncluster:\n  clusterName: c1\n  controlPlane:\n    endpoint: \"{endpoint}\"\n  ca:\n    crt: {crt}\n    key: \"{}\"\n",
            key(machine_key),
            key(cluster_key)
        )
    }

    #[test]
    fn accepts_controlplane_and_worker() {
        let cp =
            parse(config("controlplane", "ED25519", "EC", "https://c1:6443").as_bytes()).unwrap();
        assert_eq!(cp.role, MachineRole::ControlPlane);
        assert_eq!(cp.endpoint, "https://c1:6443");
        assert!(cp.os_ca_key_pem.is_some());
        assert!(!format!("{cp:?}").contains("PRIVATE KEY"));
        let w = parse(config("worker", "", "", "https://c1:6443").as_bytes()).unwrap();
        assert_eq!(w.role, MachineRole::Worker);
        assert!(w.os_ca_key_pem.is_none());
    }

    #[test]
    fn rejects_like_talos() {
        let cases = [
            (
                config("worker", "ED25519", "", "https://c1:6443"),
                "issuing Talos API CA key is not allowed on non-controlplane nodes (.machine.ca)",
            ),
            (
                config("worker", "", "EC", "https://c1:6443"),
                "issuing Kubernetes API CA key is not allowed on non-controlplane nodes (.cluster.ca)",
            ),
            (
                config("controlplane", "", "EC", "https://c1:6443"),
                "issuing CA key is required for controlplane nodes (.machine.ca.key)",
            ),
            (
                config("controlplane", "ED25519", "EC", ""),
                "cluster controlplane endpoint is required",
            ),
            (
                config("router", "", "", "https://c1:6443"),
                "unknown machine type",
            ),
        ];
        for (yaml, want) in cases {
            let err = parse(yaml.as_bytes()).unwrap_err();
            assert!(
                err.message.contains(want),
                "{:?} lacks {want:?}",
                err.message
            );
            assert!(err.message.starts_with("1 error occurred:\n\t* "));
        }
    }

    #[test]
    fn unparsable_yaml_is_rejected_without_echo() {
        let err = parse(b"machine: [unclosed\n  key: SECRETSECRET").unwrap_err();
        assert!(err.message.starts_with("failed to load config"));
        assert!(!err.message.contains("SECRET"));
        let err = parse(b"version: v1alpha1\nmachine:\n  certSANs: SECRETSAN\n").unwrap_err();
        assert!(!err.message.contains("SECRET"), "{}", err.message);
        let err = parse(b"kind: Other\n").unwrap_err();
        assert!(err.message.contains("no v1alpha1"));
    }

    #[test]
    fn reads_the_talos_golden_configs() {
        let Some(dir) = hk8s_testkit::spec_dir() else {
            return;
        };
        for (file, role) in [
            ("base-controlplane.yaml", MachineRole::ControlPlane),
            ("base-worker.yaml", MachineRole::Worker),
            ("overrides-controlplane.yaml", MachineRole::ControlPlane),
            ("overrides-worker.yaml", MachineRole::Worker),
        ] {
            let text = hk8s_testkit::spec_file(&dir, &format!("talos-fixtures/v1.11/{file}"));
            let config = parse(text.as_bytes()).unwrap();
            assert_eq!(config.role, role, "{file}");
            assert_eq!(config.endpoint, "https://base:6443", "{file}");
            assert_eq!(config.cluster_name, "base", "{file}");
            assert!(config.os_ca_crt_pem.contains("BEGIN CERTIFICATE"));
            assert_eq!(
                config.os_ca_key_pem.is_some(),
                role == MachineRole::ControlPlane
            );
            assert_eq!(
                config.k8s_ca_key_pem.is_some(),
                role == MachineRole::ControlPlane
            );
        }
    }

    #[test]
    fn kubernetes_window_from_talos_1_11() {
        let cfg = |k: &str| {
            format!(
                "version: v1alpha1\nmachine:\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:{k}\ncluster:\n  apiServer:\n    image: registry.k8s.io/kube-apiserver:v1.36.0\n"
            )
        };
        assert!(
            validate_kubernetes_window("v1.11.6", cfg("v1.34.1").as_bytes(), MachineRole::Worker)
                .is_ok()
        );
        assert_eq!(
            validate_kubernetes_window("v1.11.6", cfg("v1.35.0").as_bytes(), MachineRole::Worker)
                .unwrap_err(),
            "1 error occurred:\n\t* version of Kubernetes 1.35.0 is too new to be used with Talos 1.11.6\n\n"
        );
        let err = validate_kubernetes_window(
            "v1.11.6",
            cfg("v1.28.0").as_bytes(),
            MachineRole::ControlPlane,
        )
        .unwrap_err();
        assert!(
            err.starts_with("2 errors occurred:\n\t* version of Kubernetes 1.28.0 is too old"),
            "{err}"
        );
        // v1.10 checks in its installer instead.
        assert!(
            validate_kubernetes_window("v1.10.9", cfg("v1.35.0").as_bytes(), MachineRole::Worker)
                .is_ok()
        );
    }
}
