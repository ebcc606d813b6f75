//! The twin's Kubernetes API server, written from the Kubernetes API conventions (it imports
//! no product crate, so a misunderstanding in the product's kube-rs usage is not mirrored).
//!
//! A [`KubeCluster`] holds one cluster's objects and controllers; [`KubeCluster::serve`]
//! serves them on `<cp-ip>:6443` and [`KubeCluster::serve_forwarded`] on the load balancer's
//! address (presenting a control plane's certificate, as a TCP load balancer does). Nodes
//! appear through [`KubeCluster::kubelet_started`]; the CCM and CSI controllers act on the
//! cloud through [`CloudBridge`] ([`LoadBalancerSpec`], [`VolumeSpec`], [`ServerInfo`]);
//! [`FakeCloud`] implements it in memory for tests.
//!
//! # TLS and authentication
//!
//! Serving certificate (ECDSA P-256, 1 year) signed by the cluster's Kubernetes CA, SANs
//! `kubernetes`, `kubernetes.default`, `kubernetes.default.svc`,
//! `kubernetes.default.svc.cluster.local`, `localhost`, `127.0.0.1`, the listening (or
//! backend) IP and the config's certSANs — so a load balancer IP missing from certSANs fails
//! client verification as it would for real. Client certificates are requested, not
//! required: a request without one, or with one the cluster CA did not sign (WebPKI, EKU
//! ClientAuth), is answered `401 Unauthorized` with a Status body, as kube-apiserver with
//! anonymous auth disabled does (it verifies client certificates in its authenticator, not in
//! the handshake). Users in group `system:masters` may do everything; others get `403`.
//!
//! # Endpoints
//!
//! `/version`, `/healthz`, `/livez`, `/readyz`; discovery `/api` (APIVersions), `/apis`
//! (APIGroupList), `/apis/<group>` (APIGroup), `/api/v1` and `/apis/<group>/<version>`
//! (APIResourceList, subresources included); aggregated discovery v2 (APIGroupDiscoveryList)
//! on `/api` and `/apis` when the Accept header asks for it. Built-in kinds (see
//! [`discovery`]): core v1 namespaces, nodes, pods, services, secrets, configmaps,
//! serviceaccounts, persistentvolumeclaims, persistentvolumes, endpoints, events,
//! limitranges, resourcequotas; apps/v1, batch/v1, rbac, storage, certificates, policy,
//! apiextensions, coordination, networking, scheduling, admissionregistration, discovery
//! (all v1). CustomResourceDefinitions add their served versions once created and get
//! `Established`.
//!
//! OpenAPI (the `openapi` module, source): `/openapi/v3` (the discovery document, one
//! `serverRelativeURL` with a content hash per group version), `/openapi/v3/api/v1` and
//! `/openapi/v3/apis/<group>/<version>` (OpenAPI 3.0: paths with their operations, each with
//! `x-kubernetes-group-version-kind` and the `fieldValidation` parameter; component schemas with
//! `x-kubernetes-group-version-kind`), `/openapi/v2` (Swagger 2.0, JSON only). Schemas are not
//! written here: built-in kinds' come from `k8s-openapi`'s generated `schemars` schemas
//! (Kubernetes 1.34), custom resources' from their CRD's `openAPIV3Schema`. So kubectl's
//! default `--validate=strict` works: it finds the `fieldValidation` parameter and lets the
//! server validate, and `kubectl explain` reads the v3 schemas. Writes (create, update, merge
//! and strategic patches, apply) honour `fieldValidation`: `Strict` rejects fields the schema
//! does not declare (400, `strict decoding error: unknown field "spec.replicaz"`; for apply
//! `.spec.replicaz: field not declared in schema`), `Warn` (the default) answers with one
//! `Warning: 299` header per field, `Ignore` says nothing.
//!
//! # Verbs
//!
//! On every kind: get; list (`labelSelector` `=`, `==`, `!=`, `in`, `notin`, exists,
//! `!key`; `fieldSelector` `=`, `==`, `!=` on any dotted path such as `metadata.name`,
//! `spec.nodeName`, `involvedObject.uid`; `limit`/`continue`); watch (`?watch=true`,
//! newline-delimited `ADDED`/`MODIFIED`/`DELETED` from `resourceVersion`, current objects
//! first when it is absent or `0`, `sendInitialEvents` with the initial-events-end
//! `BOOKMARK`, `timeoutSeconds`, `410 Expired` ERROR event beyond the history); create
//! (`generateName`); update (resourceVersion precondition → 409); patch:
//! `application/apply-patch+yaml` (server-side apply: `fieldManager` required, `force`,
//! resourceVersion precondition, managedFields per manager at map-leaf granularity with lists
//! atomic, 409 `FieldManagerConflict` Status, a no-op apply writes nothing),
//! `merge-patch+json`, `json-patch+json`, `strategic-merge-patch+json` (approximated: lists
//! of objects merge by `name`); delete (dependents by ownerReferences deleted unless
//! `Orphan`; a namespace's objects go with it; `default`, `kube-system`, `kube-public` are
//! protected); deletecollection. Subresources: `status` (writes to the main resource keep
//! `.status`, status writes keep the rest), `pods/eviction` (PodDisruptionBudget
//! `minAvailable`/`maxUnavailable` → 429), `certificatesigningrequests/approval`, `scale`,
//! `namespaces/finalize`. Server-side printing: `as=Table` responses for kubectl `get`.
//! Protobuf request bodies: CertificateSigningRequest only (kubectl `certificate approve`);
//! others get 415. metadata: uid, resourceVersion (one global counter), creationTimestamp,
//! generation, managedFields. Secrets: `stringData` folds into `data`. Services: clusterIP
//! and node ports allocated, kept across updates; `default/kubernetes` exists. Errors are
//! `Status` objects (NotFound, AlreadyExists, Conflict, Invalid, BadRequest, Unauthorized,
//! Forbidden, MethodNotAllowed, UnsupportedMediaType, TooManyRequests, Expired).
//!
//! # Controllers (delays divided by the speed factor)
//!
//! Base delays at speed 1: pod scheduled → Running 8 s, CNI pod Running → node Ready 5 s,
//! CCM node initialization 3 s, CSI volume 5 s, CCM load balancer 10 s. Controllers run in
//! one tokio task per cluster, woken by every API write and at the next due delay.
//!
//! - Nodes: registered NotReady with taints `node.cloudprovider.kubernetes.io/uninitialized`
//!   and `node.kubernetes.io/not-ready` (+ control-plane); `Ready` once the node's pod of a
//!   CNI DaemonSet runs (a DaemonSet in `kube-system` whose name contains cilium, calico,
//!   flannel, kube-router, weave, canal or antrea); `Unknown` + unreachable taint while the
//!   kubelet is stopped; cordon adds the unschedulable taint. One kubelet-serving CSR per node.
//! - Workloads: Deployment → ReplicaSet → Pods, StatefulSet and DaemonSet → Pods; a scheduler
//!   honouring taints/tolerations, nodeSelector and cordon; pods run after a start delay when
//!   the kubelet runs and the pod uses the host network or the node is Ready; status fields of
//!   every workload; pod GC for deleted nodes; approved CSRs signed by the cluster CA.
//! - CCM, load balancers and CSI volumes: see the `cloud_controllers` module (source) —
//!   initialization with `providerID hcloud://<id>`, LB per LoadBalancer Service labelled
//!   `hcloud-ccm/service-uid`, volumes labelled like the real CSI driver, both deleted with
//!   their Service / PVC.
//!
//! # Not implemented
//!
//! Finalizers and graceful deletion (deletes are immediate, so an LB or volume is deleted
//! after its object is gone, not before), admission, schema validation beyond unknown fields
//! (types, formats, required fields, duplicate fields; fields that Warn or Ignore let through
//! are kept, where kube-apiserver drops them), `/openapi/v2` as gnostic protobuf (kubectl asks
//! only for that and gets `406`; it needs v2 only for `explain --output=plaintext-openapiv2`
//! and where v3 is missing), protobuf beyond CSRs, RBAC
//! beyond `system:masters`, `dryRun`, exec/logs/port-forward/proxy, Endpoints/EndpointSlices,
//! Jobs, node and pod (anti-)affinity, StatefulSet volumeClaimTemplates, Table output for
//! watches, selector transitions in watches (an object leaving a selector is not sent as
//! DELETED), node leases and heartbeats.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod api;
mod apply;
pub mod cloud;
mod cloud_controllers;
mod cluster;
mod controllers;
mod delete;
pub mod discovery;
pub mod node_ops;
mod objects;
mod openapi;
mod patch;
pub mod pki;
mod proto;
mod registration;
mod request;
mod selector;
mod server;
mod state;
pub mod status;
mod store;
mod table;
pub mod tls;
mod watch;
mod workloads;

pub use cloud::{
    CloudBridge, CloudError, FakeCloud, FakeLoadBalancer, FakeVolume, LoadBalancerSpec, ServerInfo,
    VolumeSpec,
};
pub use cluster::{KubeCluster, KubeClusterOptions};
pub use controllers::NODE_READY;
pub use node_ops::{EvictError, StaticPod};
pub use server::ServerHandle;
pub use state::{KubeError, NodeRole};
pub use workloads::POD_START;
