//! Seeding the world with what a test or the sandbox needs before any request: Talos
//! snapshots (as if an image build had run). A leaf next to `state`, used by the control API,
//! `Twin::start` and tests.

use chrono::Utc;

use crate::error::ApiError;
use crate::handle::TwinState;
use crate::labels::Labels;
use crate::model::{Id, Image};
use crate::world::World;

/// Maps `x86`/`amd64` → `x86` and `arm`/`arm64`/`aarch64` → `arm`.
pub fn hetzner_arch(arch: &str) -> Option<&'static str> {
    match arch {
        "x86" | "amd64" | "x86_64" => Some("x86"),
        "arm" | "arm64" | "aarch64" => Some("arm"),
        _ => None,
    }
}

/// Adds an available Talos snapshot labelled `os=talos,arch=<arch>,version=<version>` (plus
/// `extra` labels) and returns its id. `arch` is kept verbatim in the label; the image's
/// architecture is derived from it.
pub fn seed_talos(w: &mut World, arch: &str, version: &str, extra: Labels) -> Result<Id, ApiError> {
    let architecture = hetzner_arch(arch)
        .ok_or_else(|| ApiError::invalid_field("arch", "arch must be x86/amd64 or arm/arm64"))?;
    let mut labels = extra;
    labels.insert("os".into(), "talos".into());
    labels.insert("arch".into(), arch.to_string());
    labels.insert("version".into(), version.to_string());
    crate::labels::validate(&labels).map_err(|m| ApiError::invalid_field("labels", m))?;
    let id = w.next_id();
    w.images.insert(
        id,
        Image {
            id,
            kind: "snapshot",
            status: "available",
            name: None,
            description: format!("Talos Linux {version} ({arch})"),
            image_size: Some(0.2),
            disk_size: 20.0,
            created: Utc::now(),
            created_from: None,
            bound_to: None,
            os_flavor: "unknown".into(),
            os_version: None,
            architecture,
            labels,
        },
    );
    Ok(id)
}

impl TwinState {
    /// Seeds an available Talos snapshot labelled `os=talos,arch=<arch>,version=<version>` plus
    /// `extra`; `arch` is `x86`/`amd64` or `arm`/`arm64`.
    pub fn seed_talos_snapshot(
        &self,
        arch: &str,
        version: &str,
        extra: Labels,
    ) -> Result<Id, ApiError> {
        self.mutate(|w| seed_talos(w, arch, version, extra))
    }
}
