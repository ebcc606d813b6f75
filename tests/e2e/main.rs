//! End-to-end tests: the real `hk8s` binary against `hk8s-twin serve` in its own process.
//!
//! - `create`: create → exactly the expected resources → create again sends no mutating call →
//!   destroy → nothing labelled is left; API requests per server.
//! - `contrib`: the systemd units and the CronJob of `contrib/` validate and run a command line
//!   the binary accepts.
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
//! - `upgrade`: upgrade-cluster from Talos v1.10.9 / Kubernetes 1.33.6 to v1.11.6 / 1.34.1 with
//!   etcd quorum kept and one Upgrade RPC per node, `--plan`, `--unattended`, refusals, faults.
//! - `queue`: `--queue --dedup` from two processes is one run, a worker runs it; two workers,
//!   the holder killed inside an activity, the other takes over after expiry.
//! - `bench_smoke`: the create benchmark's figures on a 1 + 1 cluster (see `hk8s_tests::bench`).
//! - `newcomer`: a bad token, an unreachable endpoint, deprecated types, a read-only token, a
//!   stale cluster lock, another machine's secrets bundle, and two journals racing for one
//!   cluster (ten times: one proceeds, one secrets bundle on the nodes).
//! - `live`: the same scenario against the real Hetzner API when `HCLOUD_TOKEN` is set.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod bench_smoke;
mod config;
mod contrib;
mod crash;
mod create;
mod faults;
mod image;
mod kube;
mod live;
mod newcomer;
mod queue;
mod secrets;
mod upgrade;

/// Twin speed for the tests: realistic durations divided by this.
pub const SPEED: f64 = 2000.0;
