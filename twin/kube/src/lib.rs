//! The twin's Kubernetes API server, written from the Kubernetes API conventions (it imports
//! no product crate, so a misunderstanding in the product's kube-rs usage is not mirrored).
//!
//! A [`KubeCluster`] holds one cluster's objects and controllers; [`KubeCluster::serve`]
//! serves them on `<cp-ip>:6443` (and [`KubeCluster::serve_forwarded`] on the load
//! balancer's address, presenting a control plane's certificate).
//!
//! **TLS and auth**: serving certificate (ECDSA P-256) signed by the cluster's Kubernetes CA
//! with SANs `kubernetes`, `kubernetes.default`, `kubernetes.default.svc`,
//! `kubernetes.default.svc.cluster.local`, `localhost`, `127.0.0.1`, the listening (or
//! backend) IP and the config's certSANs. Client certificates are requested, not required:
//! a request without one, or with one the cluster CA did not sign, is answered `401
//! Unauthorized` with a Status body (kube-apiserver with anonymous auth disabled). Users in
//! group `system:masters` may do everything; other authenticated users get `403`.
//!
//! **Endpoints**: `/version`, `/healthz`, `/livez`, `/readyz`, `/api` (APIVersions),
//! `/api/v1` and `/apis/<group>/<version>` (APIResourceList), `/apis` (APIGroupList),
//! `/apis/<group>` (APIGroup). Built-in kinds: see [`discovery`]; CRDs add their served
//! versions to discovery once created (and get `Established`).
//!
//! **Verbs** on every kind: get; list (`labelSelector` with `=`, `==`, `!=`, `in`, `notin`,
//! exists, `!key`; `fieldSelector` with `=`, `==`, `!=` on any dotted path such as
//! `metadata.name`, `metadata.namespace`, `spec.nodeName`, `status.phase`; `limit` and
//! `continue`); watch (`?watch=true`: newline-delimited `ADDED`/`MODIFIED`/`DELETED` events
//! from `resourceVersion`, or the current objects first when it is absent or `0`;
//! `sendInitialEvents` ends the initial objects with a `BOOKMARK`; `timeoutSeconds`; a
//! `410 Expired` ERROR event when the history is exceeded); create (`generateName`);
//! update (PUT, resourceVersion precondition → 409); patch with
//! `application/apply-patch+yaml` (server-side apply: `fieldManager` required, `force`,
//! resourceVersion precondition, managedFields per manager at map-leaf granularity with lists
//! atomic, 409 `FieldManagerConflict` Status), `application/merge-patch+json`,
//! `application/json-patch+json`, `application/strategic-merge-patch+json` (approximated:
//! named lists merge by `name`); delete (propagation: dependents by ownerReferences are
//! deleted unless `Orphan`; deleting a namespace deletes its objects; `default`,
//! `kube-system`, `kube-public` cannot be deleted); deletecollection. Subresources:
//! `status` (get, put, patch; writes to the main resource keep `.status` of kinds with a
//! status subresource), `pods/eviction` (PodDisruptionBudget `minAvailable` /
//! `maxUnavailable` respected, else 429), `certificatesigningrequests/approval` (put,
//! patch), `scale` (get, put, patch), `namespaces/finalize`. metadata: uid, resourceVersion
//! (one global counter), creationTimestamp, generation (bumped when anything but metadata and
//! status changes), managedFields. Errors are `Status` objects with reason NotFound,
//! AlreadyExists, Conflict, Invalid, BadRequest, Unauthorized, Forbidden, ... and the code.
//!
//! **Controllers**: see [`controllers`](crate#controllers) below — node registration via
//! [`KubeCluster::kubelet_started`], readiness, CCM, workloads, scheduler, CSR signing, CSI
//! volumes and CCM load balancers, acting on the cloud through [`CloudBridge`].
//!
//! # Controllers
//!
//! - Nodes: `Ready=True` once the node's pod of a CNI DaemonSet (in `kube-system`, name
//!   containing cilium, calico, flannel, kube-router, weave, canal or antrea) runs.
//! - CCM: once a `hcloud-cloud-controller-manager…` pod runs in `kube-system` and Secret
//!   `kube-system/hcloud` has `token` and `network`: `providerID hcloud://<id>`, addresses,
//!   uninitialized taint removed.
//! - Deployments → ReplicaSets → Pods, StatefulSets and DaemonSets → Pods, a scheduler that
//!   honours taints, tolerations, nodeSelector and cordon; pods run after a start delay.
//! - Approved CSRs are signed by the cluster CA.
//! - PVCs of a `csi.hetzner.cloud` class bind once a `hcloud-csi-controller…` pod runs,
//!   creating a volume through [`CloudBridge`] labelled like the real driver; deleting the
//!   PVC deletes the PV and the volume.
//! - Services of type LoadBalancer get a load balancer labelled `hcloud-ccm/service-uid`.
//!
//! # Not implemented
//!
//! Finalizers and graceful deletion (deletes are immediate), admission (defaults beyond a few
//! pod fields, validation of object schemas), RBAC for non-admin users, aggregated discovery
//! (`application/json;g=apidiscovery.k8s.io` is answered with the legacy documents),
//! OpenAPI (`/openapi/v2`, `/openapi/v3` → 404), protobuf, table output, `dryRun`, exec/logs/
//! port-forward, Endpoints/EndpointSlices controllers, Jobs, node affinity and pod
//! (anti-)affinity, StatefulSet volumeClaimTemplates, watch label-selector transitions
//! (an object leaving a selector is not sent as DELETED).

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod api;
mod apply;
pub mod cloud;
mod cloud_controllers;
mod cluster;
mod controllers;
pub mod discovery;
mod patch;
pub mod pki;
mod proto;
mod selector;
mod server;
pub mod status;
mod store;
mod table;
pub mod tls;

pub use cloud::{
    CloudBridge, CloudError, FakeCloud, FakeLoadBalancer, FakeVolume, LoadBalancerSpec, ServerInfo,
    VolumeSpec,
};
pub use cluster::{KubeCluster, KubeClusterOptions, KubeError, NodeRole};
pub use server::ServerHandle;
