//! Integration tests of the Kubernetes twin, one binary:
//! - `api_shapes`: discovery, CRDs, raw response shapes, status subresources, kubelet restarts
//!   and the Talos fixture CA, through kube-rs;
//! - `kube_rs`: the API through kube-rs's own client and types over real TLS (apply, watch,
//!   controllers, CSRs, eviction, the cloud controllers, TLS and auth failures);
//! - `kubectl`: kubectl against the twin (skipped locally without `kubectl`, a failure under CI);
//! - `common`: the shared fixture (a CA, admin certificates, a cluster on a random loopback IP,
//!   kube-rs clients).

#![allow(clippy::unwrap_used)]

mod api_shapes;
mod common;
mod kube_rs;
mod kubectl;
