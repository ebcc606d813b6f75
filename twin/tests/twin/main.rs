//! Integration tests of the Hetzner twin, one binary:
//! - `build_image`: a Talos snapshot built through rescue SSH and the image factory, and boots
//!   that must not be Talos,
//! - `routes`: behaviour through `oneshot` (errors, locks, pagination, rate limit, faults, hooks),
//! - `conformance`: every response body validated against the spec's documented 2xx schema,
//! - `socket`: the real socket server and the `hk8s-twin` binary,
//! - `hcloud_python`: the official Python client (hcloud from PyPI) over every endpoint hk8s uses,
//! - `kube`: the Kubernetes API of a bootstrapped Talos cluster, load balancer forwarding, and
//!   the CloudBridge over the twin.

#![allow(clippy::unwrap_used)]

mod build_image;
mod common;
mod conformance;
mod hcloud_python;
mod kube;
mod routes;
mod socket;
mod upgrade;
