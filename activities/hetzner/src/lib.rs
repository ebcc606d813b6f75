//! Idempotent Hetzner Cloud activities behind one facade over the hcloud crate.

mod actions;
mod client;
mod config;
mod error;
mod firewall;
mod load_balancer;
mod placement;
pub mod labels;
mod network;
mod outcome;
mod pacing;
pub mod rules;

pub use actions::ActionId;
pub use client::Hetzner;
pub use config::{ApiToken, DEFAULT_ENDPOINT, HetznerConfig, Pacing};
pub use error::{ErrorClass, ErrorKind, HetznerError};
pub use labels::Role;
pub use network::{NetworkInfo, NetworkSpec};
pub use outcome::{DeleteOutcome, EnsureOutcome};
pub use firewall::{FirewallInfo, FirewallSpec};
pub use load_balancer::{API_PORT, LoadBalancerInfo, LoadBalancerSpec};
pub use placement::{PlacementGroupInfo, PlacementGroupSpec};
