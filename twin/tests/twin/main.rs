//! Integration tests of the Hetzner twin, one binary:
//! - `routes`: behaviour through `oneshot` (errors, locks, pagination, rate limit, faults, hooks),
//! - `conformance`: every response body validated against the spec's documented 2xx schema,
//! - `socket`: the real socket server and the `hk8s-twin` binary.

#![allow(clippy::unwrap_used)]

mod common;
mod conformance;
mod routes;
mod socket;
