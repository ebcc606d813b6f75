//! The twin's Hetzner Cloud API, written from `spec/hcloud-openapi.json`: the resources, actions
//! with scaled durations and `locked`, label selectors, pagination, rate limits, fault injection
//! and the `/v1` routes. `hk8s-twin` wires it to the Talos and Kubernetes twins and serves it.
//!
//! # Brief overview
//!
//! - [`TwinState`] ([`handle`]) holds everything (cheap to clone); handlers change the
//!   [`World`] ([`world`]) through [`TwinState::mutate`], which starts the timers of the actions
//!   a change scheduled and calls the [`ServerHooks`] ([`hooks`]) other twin parts register.
//!   Read it with [`TwinState::servers`] and [`TwinState::load_balancers`].
//! - The world's jobs have one module each: the resource structs ([`model`]), the action
//!   engine ([`actions`]), lookups, label selection and IP allocation ([`queries`]) and the
//!   request log ([`request_log`]), seeded jitter and the applied durations per server
//!   ([`timeline`]).
//! - [`router`] is the API as an axum router (paths include `/v1`), for
//!   `tower::ServiceExt::oneshot` tests; [`routes`] holds one module per resource.
//! - [`seed::seed_talos`] adds a Talos snapshot; [`faults`], [`ratelimit`] and the request log
//!   are what the control API of `hk8s-twin` drives.
//!
//! **Architecture Invariant:** this crate imports no product crate, no other twin crate and not
//! the `hcloud` crate.
//!
//! # Example
//!
//! ```
//! let state = hk8s_twin_hetzner::TwinState::new(
//!     "127.200.0.0/20".parse().expect("a /20"),
//!     1000.0,
//!     None,
//!     hk8s_twin_hetzner::RateLimit::default(),
//! );
//! let _router: axum::Router = hk8s_twin_hetzner::router(state.clone());
//! assert!(state.servers().is_empty());
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod actions;
pub mod addr;
pub mod catalog;
pub mod error;
pub mod faults;
pub mod handle;
pub mod hooks;
pub mod labels;
pub mod model;
pub mod queries;
pub mod ratelimit;
pub mod request_log;
pub mod routes;
pub mod seed;
pub mod selector;
pub mod timeline;
pub mod world;

pub use crate::addr::AddrBlock;
pub use crate::error::ApiError;
pub use crate::handle::{LoadBalancerInfo, ServerInfo, TargetInfo, TwinState};
pub use crate::hooks::{NoHooks, ServerBoot, ServerHooks};
pub use crate::labels::Labels;
pub use crate::model::{Id, Kind};
pub use crate::ratelimit::RateLimit;
pub use crate::routes::router;
pub use crate::world::{Latency, World};
