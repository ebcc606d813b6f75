//! Cloud-backed objects: the `--verify` volume smoke test and the pre-destroy cleanup of
//! LoadBalancer Services and PersistentVolumeClaims (which the CCM and CSI turn into Hetzner
//! load balancers and volumes that destroying the servers would leak).

use k8s_openapi::api::core::v1::{
    Namespace, PersistentVolume, PersistentVolumeClaim, Pod, Service,
};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use serde_json::json;

use crate::client::{KubeClient, Result};
use crate::error::{KubeError, NotReady};
use crate::manifests::csi::CSI_DRIVER;

/// Namespace of the smoke test; deleted (with its volume) once the claim bound.
pub const SMOKE_NAMESPACE: &str = "hk8s-smoke-test";
const SMOKE_CLAIM: &str = "smoke";
const SMOKE_POD: &str = "smoke";
/// Image of the smoke pod: it only has to mount the claim.
pub const SMOKE_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// What [`KubeClient::delete_cloud_backed`] found still present after deleting.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Remaining {
    /// `namespace/name` of LoadBalancer Services still present (being deleted by the CCM).
    pub load_balancers: Vec<String>,
    /// `namespace/name` of PersistentVolumeClaims still present (often held by a running pod).
    pub claims: Vec<String>,
    /// Names of `csi.hetzner.cloud` PersistentVolumes still present (their volume is not gone yet).
    pub volumes: Vec<String>,
}

impl Remaining {
    /// Nothing cloud-backed remains.
    pub fn is_empty(&self) -> bool {
        self.load_balancers.is_empty() && self.claims.is_empty() && self.volumes.is_empty()
    }
}

/// The Hetzner resources the cluster's controllers made, named by the objects they back.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct CloudInventory {
    /// UIDs of `LoadBalancer` Services (the CCM labels their load balancers
    /// `hcloud-ccm/service-uid=<uid>`).
    pub service_uids: Vec<String>,
    /// Hetzner volume ids of `csi.hetzner.cloud` PersistentVolumes (their volume handles).
    pub volume_ids: Vec<i64>,
}

impl KubeClient {
    /// Lists what the CCM and the CSI driver made: LoadBalancer Service UIDs and CSI volume ids.
    pub async fn cloud_backed_inventory(&self) -> Result<CloudInventory> {
        let services: Api<Service> = Api::all(self.client().clone());
        let mut service_uids: Vec<String> = list(&services, "services")
            .await?
            .into_iter()
            .filter(|s| {
                s.spec.as_ref().and_then(|spec| spec.type_.as_deref()) == Some("LoadBalancer")
            })
            .filter_map(|s| s.metadata.uid)
            .collect();
        service_uids.sort();
        let pvs: Api<PersistentVolume> = Api::all(self.client().clone());
        let mut volume_ids: Vec<i64> = list(&pvs, "persistentvolumes")
            .await?
            .into_iter()
            .filter_map(|pv| pv.spec?.csi)
            .filter(|csi| csi.driver == CSI_DRIVER)
            .filter_map(|csi| csi.volume_handle.parse().ok())
            .collect();
        volume_ids.sort_unstable();
        Ok(CloudInventory {
            service_uids,
            volume_ids,
        })
    }

    /// Condition `volume_smoke_test`: a claim on the default StorageClass binds for a pod.
    ///
    /// # Flow
    /// Ensures namespace [`SMOKE_NAMESPACE`], a 10 Gi claim and a pod mounting it exist (creating
    /// what is missing; the class is `WaitForFirstConsumer`, so the pod triggers provisioning).
    /// If the claim is `Bound`, deletes the namespace (claim, pod and, by reclaim `Delete`, the
    /// Hetzner volume) and returns `Ok`. Otherwise returns retryable [`KubeError::NotReady`].
    ///
    /// # Caveats
    /// One check, no timeout: the caller retries. A namespace still terminating from an earlier
    /// run is reported as not ready.
    pub async fn smoke_test_pvc(&self) -> Result<()> {
        let namespaces: Api<Namespace> = Api::all(self.client().clone());
        let ns = namespaces
            .get_opt(SMOKE_NAMESPACE)
            .await
            .map_err(|source| KubeError::List {
                what: format!("namespace {SMOKE_NAMESPACE}"),
                source,
            })?;
        match ns {
            Some(ns) if ns.metadata.deletion_timestamp.is_some() => {
                return Err(not_ready(format!(
                    "namespace {SMOKE_NAMESPACE} from an earlier test is still terminating"
                )));
            }
            Some(_) => {}
            None => {
                let obj = Namespace {
                    metadata: ObjectMeta {
                        name: Some(SMOKE_NAMESPACE.into()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                create_if_missing(&namespaces, &obj, format!("namespace {SMOKE_NAMESPACE}"))
                    .await?;
            }
        }

        let claims: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client().clone(), SMOKE_NAMESPACE);
        let claim: PersistentVolumeClaim = from_json(json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": { "name": SMOKE_CLAIM, "namespace": SMOKE_NAMESPACE },
            "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "10Gi" } } },
        }))?;
        let existing = claims
            .get_opt(SMOKE_CLAIM)
            .await
            .map_err(|source| KubeError::List {
                what: format!("pvc {SMOKE_NAMESPACE}/{SMOKE_CLAIM}"),
                source,
            })?;
        let phase = match existing {
            Some(c) => c
                .status
                .and_then(|s| s.phase)
                .unwrap_or_else(|| "Pending".into()),
            None => {
                create_if_missing(
                    &claims,
                    &claim,
                    format!("pvc {SMOKE_NAMESPACE}/{SMOKE_CLAIM}"),
                )
                .await?;
                "Pending".into()
            }
        };

        let pods: Api<Pod> = Api::namespaced(self.client().clone(), SMOKE_NAMESPACE);
        let pod: Pod = from_json(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": { "name": SMOKE_POD, "namespace": SMOKE_NAMESPACE },
            "spec": {
                "terminationGracePeriodSeconds": 0,
                "containers": [{
                    "name": "pause",
                    "image": SMOKE_IMAGE,
                    "volumeMounts": [{ "name": "data", "mountPath": "/data" }],
                    "securityContext": { "allowPrivilegeEscalation": false, "runAsNonRoot": true, "runAsUser": 65535,
                        "capabilities": { "drop": ["ALL"] }, "seccompProfile": { "type": "RuntimeDefault" } },
                }],
                "volumes": [{ "name": "data", "persistentVolumeClaim": { "claimName": SMOKE_CLAIM } }],
            },
        }))?;
        create_if_missing(&pods, &pod, format!("pod {SMOKE_NAMESPACE}/{SMOKE_POD}")).await?;

        if phase != "Bound" {
            return Err(not_ready(format!(
                "pvc {SMOKE_NAMESPACE}/{SMOKE_CLAIM} is {phase}"
            )));
        }
        namespaces
            .delete(SMOKE_NAMESPACE, &DeleteParams::foreground())
            .await
            .map_err(|source| KubeError::Delete {
                object: format!("namespace {SMOKE_NAMESPACE}"),
                source,
            })?;
        Ok(())
    }

    /// Deletes every Service of type LoadBalancer and every PersistentVolumeClaim in the cluster,
    /// and the pods that use those claims (a claim in use is never released), then reports what
    /// is still present, including `csi.hetzner.cloud` volumes not yet released.
    ///
    /// Meant for destroy only: it takes every workload's storage away. Idempotent: objects
    /// already gone are fine. Call it until [`Remaining::is_empty`].
    pub async fn delete_cloud_backed(&self) -> Result<Remaining> {
        let services: Api<Service> = Api::all(self.client().clone());
        for svc in list(&services, "services").await? {
            if svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
                && svc.metadata.deletion_timestamp.is_none()
            {
                let (ns, name) = ns_name(&svc.metadata);
                let api: Api<Service> = Api::namespaced(self.client().clone(), &ns);
                delete_if_present(&api, &name, format!("service {ns}/{name}")).await?;
            }
        }
        let claims: Api<PersistentVolumeClaim> = Api::all(self.client().clone());
        let mut deleting = Vec::new();
        for claim in list(&claims, "persistentvolumeclaims").await? {
            let (ns, name) = ns_name(&claim.metadata);
            if claim.metadata.deletion_timestamp.is_none() {
                let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client().clone(), &ns);
                delete_if_present(&api, &name, format!("pvc {ns}/{name}")).await?;
            }
            deleting.push((ns, name));
        }
        // A claim in use keeps its `kubernetes.io/pvc-protection` finalizer until no pod uses
        // it; controllers cannot restart a pod on a claim being deleted, so delete the users.
        if !deleting.is_empty() {
            let pods: Api<Pod> = Api::all(self.client().clone());
            for (ns, name) in pods_using_claims(&list(&pods, "pods").await?, &deleting) {
                let api: Api<Pod> = Api::namespaced(self.client().clone(), &ns);
                delete_if_present(&api, &name, format!("pod {ns}/{name}")).await?;
            }
        }

        let mut remaining = Remaining::default();
        for svc in list(&services, "services").await? {
            if svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer") {
                let (ns, name) = ns_name(&svc.metadata);
                remaining.load_balancers.push(format!("{ns}/{name}"));
            }
        }
        for claim in list(&claims, "persistentvolumeclaims").await? {
            let (ns, name) = ns_name(&claim.metadata);
            remaining.claims.push(format!("{ns}/{name}"));
        }
        let volumes: Api<PersistentVolume> = Api::all(self.client().clone());
        for pv in list(&volumes, "persistentvolumes").await? {
            let driver = pv
                .spec
                .as_ref()
                .and_then(|s| s.csi.as_ref())
                .map(|c| c.driver.as_str());
            if driver == Some(CSI_DRIVER) {
                remaining
                    .volumes
                    .push(pv.metadata.name.clone().unwrap_or_default());
            }
        }
        Ok(remaining)
    }
}

fn not_ready(summary: String) -> KubeError {
    KubeError::NotReady(NotReady {
        condition: "volume_smoke_test",
        summary,
    })
}

fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| KubeError::InvalidManifest {
        object: "smoke test".into(),
        reason: e.to_string(),
    })
}

fn ns_name(meta: &ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

async fn list<K>(api: &Api<K>, what: &str) -> Result<Vec<K>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(|source| KubeError::List {
            what: what.to_owned(),
            source,
        })
}

async fn create_if_missing<K>(api: &Api<K>, obj: &K, label: String) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(source) => Err(KubeError::Create {
            object: label,
            source,
        }),
    }
}

async fn delete_if_present<K>(api: &Api<K>, name: &str, label: String) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(KubeError::Delete {
            object: label,
            source,
        }),
    }
}

/// `(namespace, name)` of the pods that mount one of `claims` (`(namespace, claim name)`).
pub(crate) fn pods_using_claims(
    pods: &[Pod],
    claims: &[(String, String)],
) -> Vec<(String, String)> {
    pods.iter()
        .filter(|pod| {
            let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
            pod.spec
                .as_ref()
                .and_then(|s| s.volumes.as_ref())
                .is_some_and(|vols| {
                    vols.iter().any(|v| {
                        v.persistent_volume_claim.as_ref().is_some_and(|c| {
                            claims
                                .iter()
                                .any(|(cns, cname)| cns == ns && *cname == c.claim_name)
                        })
                    })
                })
        })
        .map(|pod| ns_name(&pod.metadata))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, name: &str, claim: Option<&str>) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": name, "namespace": ns },
            "spec": {
                "containers": [{ "name": "c", "image": "x" }],
                "volumes": claim.map(|c| vec![json!({ "name": "d", "persistentVolumeClaim": { "claimName": c } })]).unwrap_or_default(),
            },
        }))
        .unwrap_or_default()
    }

    #[test]
    fn only_pods_mounting_a_deleted_claim_in_their_namespace_are_chosen() {
        let pods = [
            pod("shop", "db", Some("data")),
            pod("shop", "web", None),
            pod("other", "db", Some("data")),
            pod("shop", "cache", Some("cache")),
        ];
        let chosen = pods_using_claims(&pods, &[("shop".into(), "data".into())]);
        assert_eq!(chosen, [("shop".to_owned(), "db".to_owned())]);
        assert!(pods_using_claims(&pods, &[]).is_empty());
    }

    #[test]
    fn remaining_is_empty_only_without_anything() {
        assert!(Remaining::default().is_empty());
        let r = Remaining {
            volumes: vec!["pvc-1".into()],
            ..Default::default()
        };
        assert!(!r.is_empty());
    }
}
