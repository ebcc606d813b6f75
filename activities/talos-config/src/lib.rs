//! Talos secrets bundles, machine configs and talosconfig files, generated in Rust.
//!
//! Everything here is pure computation plus private file writes: no network, no async.
//!
//! - [`SecretsBundle`]: the `talosctl gen secrets` bundle (cluster id/secret, tokens,
//!   secretbox secret, OS CA Ed25519, Kubernetes/aggregator/etcd CAs ECDSA P-256,
//!   service-account key RSA-4096), generated, parsed, validated and rendered as YAML.
//! - [`SecretsStore`]: the bundle in a cluster's state folder, created once and never
//!   regenerated silently.
//! - [`generate_machine_config`]: control-plane and worker configs for the v1.9–v1.11
//!   contracts, plain talosctl output or with the Hetzner settings hk8s needs.
//! - [`Talosconfig`]: the client file with an `os:admin` Ed25519 client certificate, plus
//!   PEMs ready for rustls.
//! - [`write_private`]: atomic mode-0600 writes.
//! - [`versions`]: what each Talos release line accepts (upgrade sources, Kubernetes window,
//!   etcd), the facts the upgrade planner walks.
//!
//! ```no_run
//! use std::path::Path;
//! use std::time::SystemTime;
//! use hk8s_talos_config::{
//!     Cni, Contract, MachineConfigInput, Role, SecretsStore, Talosconfig,
//!     generate_machine_config, write_private,
//! };
//!
//! # fn main() -> hk8s_talos_config::Result<()> {
//! let dir = Path::new("/home/me/.local/state/hk8s/clusters/demo");
//! let contract = Contract::from_talos_version("v1.11.6")?;
//! let bundle = match SecretsStore::load(dir)? {
//!     Some(bundle) => bundle,
//!     None => SecretsStore::create_new(dir, contract, SystemTime::now())?,
//! };
//!
//! let mut input = MachineConfigInput::hetzner(
//!     Role::ControlPlane, "demo", "203.0.113.10", "1.34.1", "v1.11.6", None,
//!     "10.0.0.0/16", "demo-cp-1",
//! )?;
//! input.cni = Cni::Cilium;
//! let yaml = generate_machine_config(&bundle, &input)?.to_yaml()?;
//!
//! let talosconfig = Talosconfig::new(
//!     "demo", vec!["203.0.113.11".into()], vec!["203.0.113.11".into()], &bundle,
//!     SystemTime::now(),
//! )?;
//! write_private(&dir.join("talosconfig"), talosconfig.to_yaml()?.as_bytes())?;
//! let (client_cert_pem, client_key_pem) = talosconfig.client_identity_pem();
//! # let _ = (yaml, client_cert_pem, client_key_pem);
//! # Ok(())
//! # }
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod contract;
mod der;
mod error;
mod files;
mod machine_config;
mod schematic;
mod secret;
mod secrets;
mod talosconfig;
mod v1alpha1;
pub mod versions;
mod yaml;

#[cfg(test)]
mod testutil;

pub use contract::{Contract, VANILLA_SCHEMATIC, hcloud_installer_image};
pub use error::{Error, Result};
pub use files::{SECRETS_FILE, SecretsStore, TALOSCONFIG_FILE, write_private, write_private_new};
pub use machine_config::{
    Cni, ComponentVersions, HetznerSettings, KUBERNETES_API_PORT, MachineConfig,
    MachineConfigInput, Role, generate_machine_config,
};
pub use schematic::{Schematic, SchematicError};
pub use secret::SecretString;
pub use secrets::{CA_VALIDITY, CertAndKey, EncryptionSecret, SecretsBundle};
pub use talosconfig::{ADMIN_ROLE, CLIENT_CERT_VALIDITY, Talosconfig};
