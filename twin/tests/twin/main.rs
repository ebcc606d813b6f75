//! Integration tests of the Hetzner twin, one binary:
//! - `routes`: behaviour through `oneshot` (errors, locks, pagination, rate limit, faults, hooks),
//! - `conformance`: every response body validated against the spec's documented 2xx schema,
//! - `socket`: the real socket server and the `hk8s-twin` binary,
//! - `kube`: the Kubernetes API of a bootstrapped Talos cluster, load balancer forwarding, and
//!   the CloudBridge over the twin.

#![allow(clippy::unwrap_used)]

mod common;
mod conformance;
mod kube;
mod routes;
mod socket;
