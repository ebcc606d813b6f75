//! The Kubernetes client: construction, ordered server-side apply, the `hcloud` Secret, CSR approval.

use std::collections::HashMap;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use serde_json::{Value, json};

use crate::csr::{CsrFacts, Decision, NodeIdentity, decide};
use crate::error::KubeError;
use crate::manifests::{ADDON_NAMESPACE, HCLOUD_SECRET_NAME, hcloud_secret};
use crate::order::apply_order;
use crate::secret::HcloudToken;

/// Field manager of every server-side apply hk8s makes.
pub const FIELD_MANAGER: &str = "hk8s";

/// Result alias of this crate.
pub type Result<T, E = KubeError> = std::result::Result<T, E>;

/// A kube-rs client for one cluster. Every method is one idempotent activity.
#[derive(Clone)]
pub struct KubeClient {
    client: kube::Client,
}

impl std::fmt::Debug for KubeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeClient")
    }
}

/// What [`KubeClient::apply_all`] applied, in apply order.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ApplyReport {
    /// `Kind namespace/name` of each applied object.
    pub applied: Vec<String>,
}

/// What [`KubeClient::approve_kubelet_serving_csrs`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct CsrReport {
    /// Names of the CSRs approved by this call.
    pub approved: Vec<String>,
    /// Pending kubelet-serving CSRs left alone, with the reason.
    pub refused: Vec<(String, String)>,
}

impl KubeClient {
    /// A client from an in-memory kubeconfig (YAML), using its current context.
    ///
    /// The bytes are parsed, never logged; parse errors do not echo the file.
    pub async fn from_kubeconfig(bytes: &[u8]) -> Result<Self> {
        // kube-rs builds its rustls config with the process default provider; hk8s uses ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let text = std::str::from_utf8(bytes).map_err(|_| KubeError::Kubeconfig {
            message: "not UTF-8".to_owned(),
        })?;
        let kubeconfig = Kubeconfig::from_yaml(text).map_err(|e| KubeError::Kubeconfig {
            message: kubeconfig_error_kind(&e),
        })?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| KubeError::Kubeconfig {
                    message: kubeconfig_error_kind(&e),
                })?;
        let client = kube::Client::try_from(config).map_err(KubeError::BuildClient)?;
        Ok(KubeClient { client })
    }

    /// Wraps an existing kube-rs client.
    pub fn from_client(client: kube::Client) -> Self {
        KubeClient { client }
    }

    /// The underlying kube-rs client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// Server-side applies `objects` (field manager `hk8s`, forced) in [`apply_order`].
    ///
    /// # Flow
    /// Validates every object's identity first and refuses Secrets, so no token can sit in a
    /// list that might be logged or journaled (nothing is sent when one object fails), then for
    /// each object in order maps `apiVersion`/`kind` to a served resource by discovery (cached per
    /// kind within the call) and applies it. Namespaced objects without a namespace go to `default`.
    ///
    /// # Guarantees
    /// Idempotent: applying the same set again changes nothing and succeeds.
    ///
    /// # Errors
    /// The first failure stops the call. A kind not served yet (a CRD applied moments ago) is a
    /// retryable [`KubeError::Discovery`]; calling again re-applies everything.
    pub async fn apply_all(&self, objects: &[Value]) -> Result<ApplyReport> {
        let order = apply_order(objects)?;
        if let Some((_, id)) = order
            .iter()
            .find(|(_, id)| id.group.is_empty() && id.kind == "Secret")
        {
            return Err(KubeError::InvalidManifest {
                object: id.to_string(),
                reason: "secrets are not applied from manifest lists; use apply_hcloud_secret"
                    .to_owned(),
            });
        }
        let mut resources: HashMap<(String, String, String), (ApiResource, ApiCapabilities)> =
            HashMap::new();
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        let mut report = ApplyReport::default();
        for (index, id) in order {
            let key = (id.group.clone(), id.version.clone(), id.kind.clone());
            if !resources.contains_key(&key) {
                let gvk = GroupVersionKind::gvk(&id.group, &id.version, &id.kind);
                let found = kube::discovery::pinned_kind(&self.client, &gvk)
                    .await
                    .map_err(|source| KubeError::Discovery {
                        api_version: id.api_version(),
                        kind: id.kind.clone(),
                        source,
                    })?;
                resources.insert(key.clone(), found);
            }
            let Some((resource, caps)) = resources.get(&key) else {
                continue;
            };
            let mut object = objects[index].clone();
            let api: Api<DynamicObject> = match caps.scope {
                Scope::Cluster => Api::all_with(self.client.clone(), resource),
                Scope::Namespaced => {
                    let ns = id.namespace.clone().unwrap_or_else(|| "default".to_owned());
                    object["metadata"]["namespace"] = Value::from(ns.as_str());
                    Api::namespaced_with(self.client.clone(), &ns, resource)
                }
            };
            let label = match caps.scope {
                Scope::Cluster => format!("{} {}", id.kind, id.name),
                Scope::Namespaced => format!(
                    "{} {}/{}",
                    id.kind,
                    object["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("default"),
                    id.name
                ),
            };
            api.patch(&id.name, &pp, &Patch::Apply(&object))
                .await
                .map_err(|source| KubeError::Apply {
                    object: label.clone(),
                    source,
                })?;
            tracing::debug!(object = %label, "applied");
            report.applied.push(label);
        }
        Ok(report)
    }

    /// Applies the `kube-system/hcloud` Secret (token + network id) by server-side apply.
    ///
    /// Kept apart from [`KubeClient::apply_all`] so that no secret ever sits in a manifest list.
    /// Errors keep only the HTTP status and reason, never the request or response body.
    pub async fn apply_hcloud_secret(&self, token: &HcloudToken, network_id: i64) -> Result<()> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ADDON_NAMESPACE);
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        let secret = hcloud_secret(token, network_id);
        match api
            .patch(HCLOUD_SECRET_NAME, &pp, &Patch::Apply(&secret))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) => Err(KubeError::ApplySecret {
                code: status.code,
                reason: status.reason.clone(),
            }),
            Err(other) => Err(KubeError::ApplySecret {
                code: 0,
                reason: transport_kind(&other).to_owned(),
            }),
        }
    }

    /// Approves the pending kubelet-serving CSRs whose requester, subject, usages and SANs match
    /// one of `nodes` (see [`crate::csr`]); everything else is left pending and reported.
    ///
    /// One pass, no waiting: call it again while nodes are still joining. The approvals are
    /// sent [`APPROVALS_IN_FLIGHT`] at a time: a hundred nodes joining at once each wait for
    /// one, and one by one they queued behind each other's round trips.
    pub async fn approve_kubelet_serving_csrs(&self, nodes: &[NodeIdentity]) -> Result<CsrReport> {
        use futures::stream::{StreamExt as _, TryStreamExt as _};

        let api: Api<CertificateSigningRequest> = Api::all(self.client.clone());
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|source| KubeError::List {
                what: "certificatesigningrequests".to_owned(),
                source,
            })?;
        let mut report = CsrReport::default();
        let mut approve = Vec::new();
        for csr in list.items {
            let facts = csr_facts(&csr);
            match decide(&facts, nodes) {
                Decision::Ignore => {}
                Decision::Refuse(reason) => {
                    tracing::warn!(csr = %facts.name, %reason, "kubelet-serving csr left pending");
                    report.refused.push((facts.name, reason));
                }
                Decision::Approve => approve.push(facts.name),
            }
        }
        let patch = json!({ "status": { "conditions": [{
            "type": "Approved",
            "status": "True",
            "reason": "Hk8sNodeIdentityVerified",
            "message": "requester, subject and SANs match a node of this cluster",
        }]}});
        let (api, patch) = (&api, &patch);
        report.approved = futures::stream::iter(approve)
            .map(|name| async move {
                api.patch_approval(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map_err(|source| KubeError::ApproveCsr {
                        name: name.clone(),
                        source,
                    })?;
                Ok::<_, KubeError>(name)
            })
            .buffered(APPROVALS_IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(report)
    }
}

/// How many CSR approvals [`KubeClient::approve_kubelet_serving_csrs`] has in flight at once.
pub const APPROVALS_IN_FLIGHT: usize = 16;

/// The decision inputs of a CSR object.
pub(crate) fn csr_facts(csr: &CertificateSigningRequest) -> CsrFacts {
    let decided = csr
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| matches!(c.type_.as_str(), "Approved" | "Denied" | "Failed"))
        });
    CsrFacts {
        name: csr.metadata.name.clone().unwrap_or_default(),
        signer_name: csr.spec.signer_name.clone(),
        username: csr.spec.username.clone().unwrap_or_default(),
        groups: csr.spec.groups.clone().unwrap_or_default(),
        usages: csr.spec.usages.clone().unwrap_or_default(),
        request: csr.spec.request.0.clone(),
        decided,
    }
}

/// A short, secret-free description of a kubeconfig error (its Display may quote file contents).
fn kubeconfig_error_kind(e: &kube::config::KubeconfigError) -> String {
    use kube::config::KubeconfigError as K;
    match e {
        K::CurrentContextNotSet => "current-context is not set".to_owned(),
        K::LoadContext(c) => format!("context {c:?} not found"),
        K::LoadClusterOfContext(c) => format!("cluster {c:?} not found"),
        K::KindMismatch | K::ApiVersionMismatch => "not a kind: Config v1 document".to_owned(),
        K::MissingClusterUrl => "cluster server url missing".to_owned(),
        K::ParseClusterUrl(_) => "cluster server url does not parse".to_owned(),
        K::Parse(_) => "not a kubeconfig document".to_owned(),
        _ => "invalid certificate, key or auth data".to_owned(),
    }
}

/// A secret-free name for a transport error.
fn transport_kind(e: &kube::Error) -> &'static str {
    match e {
        kube::Error::HyperError(_) => "connection error",
        kube::Error::Service(_) => "transport error",
        kube::Error::SerdeError(_) => "unreadable response",
        _ => "client error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csr::tests::{csr_pem, facts, node};
    use k8s_openapi::ByteString;
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestCondition, CertificateSigningRequestSpec,
        CertificateSigningRequestStatus,
    };

    #[tokio::test]
    async fn bad_kubeconfigs_fail_without_echoing_content() {
        for text in [
            "secret-looking: [unclosed",
            "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n",
        ] {
            let err = KubeClient::from_kubeconfig(text.as_bytes())
                .await
                .err()
                .unwrap_or_else(|| panic!("accepted {text}"));
            assert!(!err.to_string().contains("secret-looking"), "{err}");
            assert_eq!(err.class(), crate::ErrorClass::Permanent);
        }
    }

    #[tokio::test]
    async fn valid_kubeconfig_builds_a_client() {
        let text = "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:6443\n    insecure-skip-tls-verify: true\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\nusers:\n- name: u\n  user:\n    token: abc\n";
        let client = KubeClient::from_kubeconfig(text.as_bytes()).await;
        assert!(client.is_ok(), "{:?}", client.err());
    }

    #[test]
    fn csr_objects_map_to_decision_facts() {
        let pem = csr_pem(
            "system:node:demo-worker-1",
            "system:nodes",
            vec![rcgen::SanType::IpAddress([10, 0, 1, 3].into())],
        );
        let mut csr = CertificateSigningRequest {
            metadata: kube::core::ObjectMeta {
                name: Some("csr-abc".into()),
                ..Default::default()
            },
            spec: CertificateSigningRequestSpec {
                request: ByteString(pem.clone()),
                signer_name: crate::csr::KUBELET_SERVING_SIGNER.into(),
                username: Some("system:node:demo-worker-1".into()),
                groups: Some(vec!["system:nodes".into()]),
                usages: Some(vec!["digital signature".into(), "server auth".into()]),
                ..Default::default()
            },
            status: None,
        };
        let f = csr_facts(&csr);
        assert_eq!(f.name, "csr-abc");
        assert_eq!(f.request, pem);
        assert_eq!(decide(&f, &[node()]), Decision::Approve);
        assert_eq!(f.usages, facts(pem).usages);
        csr.status = Some(CertificateSigningRequestStatus {
            conditions: Some(vec![CertificateSigningRequestCondition {
                type_: "Denied".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            certificate: None,
        });
        assert_eq!(decide(&csr_facts(&csr), &[node()]), Decision::Ignore);
    }
}
