//! End-to-end tests: the real `hk8s` binary against `hk8s-twin serve` in its own process.
//!
//! - `create`: create → exactly the expected resources → create again sends no mutating call →
//!   destroy → nothing labelled is left; API requests per server.
//! - `config`: bad configs fail with the field named and zero API calls.
//! - `crash`: SIGKILL at every step boundary and at seeded random instants, then resume; the
//!   final cloud state equals an uninterrupted run's.
//! - `image`: build-image on a twin with no snapshot (one snapshot per arch, nothing temporary
//!   left), the boot check, dead runs' leftovers, create-cluster building what is missing, and
//!   SIGKILL at every step boundary and at 20 seeded request counts, then resume.
//! - `faults`: 429, 5xx, `locked`, `conflict` and dropped connections at 10 % of calls.
//! - `secrets`: no secret value in the journal, its WAL or the CLI's output.
//! - `kube`: a complete cluster (Ready nodes, addons, a volume, a LoadBalancer Service) and a
//!   destroy that leaves nothing, also when the cluster's API no longer answers.
//! - `newcomer`: a bad token, an unreachable endpoint, deprecated types, a read-only token, a
//!   stale cluster lock, another machine's secrets bundle, and two journals racing for one
//!   cluster (ten times: one proceeds, one secrets bundle on the nodes).
//! - `live`: the same scenario against the real Hetzner API when `HCLOUD_TOKEN` is set.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod config;
mod crash;
mod create;
mod faults;
mod image;
mod kube;
mod live;
mod newcomer;
mod secrets;

/// Twin speed for the tests: realistic durations divided by this.
pub const SPEED: f64 = 2000.0;
