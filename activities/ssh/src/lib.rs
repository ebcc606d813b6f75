//! SSH into a Hetzner rescue system and write a disk image there, with every step checked.
//!
//! - [`BuilderKey`]: the image build's ed25519 key pair, derived in memory from secret material
//!   the caller holds (it is never stored: the same material gives the same key after a crash);
//!   its public half is what Hetzner's `POST /ssh_keys` and `enable_rescue` get.
//! - [`probe`]: connects as `root`, learns the host key (to pin it for the rest of the run) and
//!   the machine's architecture (`uname -m`).
//! - [`write_image`]: connects with the pinned host key and runs [`write_command`], a
//!   `set -o pipefail` pipeline `wget | xz -d | dd … conv=fsync && sync`; the exit status and the
//!   byte count `dd` reports are checked.
//!
//! Every failure is one [`SshError`] whose [`SshError::class`] says whether trying again can
//! help (the rescue system still booting) or not (a wrong host key, a refused key, a failed
//! pipeline). This crate reads no environment and knows nothing of Hetzner's API.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod error;
mod image;
mod key;
mod session;

pub use error::{ErrorClass, SshError, SshErrorKind};
pub use image::{ImageWrite, WriteOptions, parse_dd_bytes, write_command, write_image};
pub use key::{BuilderKey, HostKeyFingerprint};
pub use session::{Endpoint, Probe, probe};
