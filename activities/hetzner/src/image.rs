//! `find_talos_image`: the Talos snapshot for an architecture and version.

use std::fmt;

use hcloud::apis::images_api;
use hcloud::models;
use serde::{Deserialize, Serialize};

use crate::client::{Hetzner, PER_PAGE};
use crate::error::HetznerError;
use crate::labels::{self, LABEL_MANAGED_BY, Labels, MANAGED_BY_VALUE};

/// Label key `os` on Talos snapshots (value `talos`).
pub const LABEL_OS: &str = "os";
/// Label key `arch` on Talos snapshots (value `amd64` or `arm64`).
pub const LABEL_ARCH: &str = "arch";
/// Label key `version` on Talos snapshots (value e.g. `v1.11.3`).
pub const LABEL_VERSION: &str = "version";

/// A CPU architecture, named as Talos names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// x86-64 (Hetzner `x86`).
    Amd64,
    /// AArch64 (Hetzner `arm`).
    Arm64,
}

impl Arch {
    /// The label value and Talos name: `amd64` or `arm64`.
    pub fn label_value(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// Hetzner's name: `x86` or `arm`.
    pub fn hetzner_name(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86",
            Arch::Arm64 => "arm",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label_value())
    }
}

/// The labels a Talos snapshot built by hk8s carries:
/// `os=talos,arch=<arch>,version=<version>,managed-by=hk8s`.
pub fn talos_image_labels(arch: Arch, version: &str) -> Labels {
    let mut out = Labels::new();
    out.insert(LABEL_OS.into(), "talos".into());
    out.insert(LABEL_ARCH.into(), arch.label_value().into());
    out.insert(LABEL_VERSION.into(), version.into());
    out.insert(LABEL_MANAGED_BY.into(), MANAGED_BY_VALUE.into());
    out
}

/// The selector [`Hetzner::find_talos_image`] uses: `os=talos,arch=<arch>,version=<v>`.
///
/// `managed-by=hk8s` is deliberately not required: a snapshot is not a cluster
/// resource, is never deleted by destroy, and a Talos snapshot uploaded by another tool
/// with these labels is just as bootable.
pub fn talos_image_selector(arch: Arch, version: &str) -> String {
    format!(
        "{LABEL_OS}=talos,{LABEL_ARCH}={},{LABEL_VERSION}={version}",
        arch.label_value()
    )
}

/// A Talos snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Hetzner image id (what `ServerSpec::image_id` wants).
    pub id: i64,
    /// Description.
    pub description: String,
    /// Architecture.
    pub arch: Arch,
    /// Talos version.
    pub version: String,
    /// Creation time as Hetzner reports it (RFC 3339).
    pub created: String,
}

impl Hetzner {
    /// Finds the newest available Talos snapshot for `arch` and `version`.
    ///
    /// One `GET /images?type=snapshot&status=available&architecture=…&label_selector=…`
    /// (more only if there are over 50 matches). `Ok(None)` when there is none: the
    /// caller builds one.
    pub async fn find_talos_image(
        &self,
        arch: Arch,
        version: &str,
    ) -> Result<Option<ImageInfo>, HetznerError> {
        labels::validate_label_value(version)?;
        let selector = talos_image_selector(arch, version);
        let cfg = self.cfg();
        let images = self
            .list_all(
                "find talos image",
                |page| {
                    images_api::list_images(
                        cfg,
                        images_api::ListImagesParams {
                            r#type: Some(vec!["snapshot".into()]),
                            status: Some(vec!["available".into()]),
                            architecture: Some(arch.hetzner_name().into()),
                            label_selector: Some(selector.clone()),
                            page: Some(page),
                            per_page: Some(PER_PAGE),
                            ..Default::default()
                        },
                    )
                },
                |r| (r.images, r.meta.pagination.next_page),
            )
            .await?;
        Ok(newest(images, arch).map(|image| ImageInfo {
            id: image.id,
            description: image.description,
            arch,
            version: version.to_string(),
            created: image.created,
        }))
    }
}

/// The newest available image of `arch` (by creation time, then id).
pub(crate) fn newest(images: Vec<models::Image>, arch: Arch) -> Option<models::Image> {
    let want_arch = match arch {
        Arch::Amd64 => models::Architecture::X86,
        Arch::Arm64 => models::Architecture::Arm,
    };
    images
        .into_iter()
        .filter(|i| {
            i.architecture == want_arch
                && i.status == models::image::Status::Available
                && i.deleted.is_none()
        })
        .max_by(|a, b| {
            let ta = chrono::DateTime::parse_from_rfc3339(&a.created).ok();
            let tb = chrono::DateTime::parse_from_rfc3339(&b.created).ok();
            ta.cmp(&tb).then(a.id.cmp(&b.id))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_and_labels_agree() {
        assert_eq!(
            talos_image_selector(Arch::Arm64, "v1.11.3"),
            "os=talos,arch=arm64,version=v1.11.3"
        );
        let labels = talos_image_labels(Arch::Arm64, "v1.11.3");
        let joined: Vec<_> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            joined,
            [
                "arch=arm64",
                "managed-by=hk8s",
                "os=talos",
                "version=v1.11.3"
            ]
        );
        assert_eq!(Arch::Amd64.hetzner_name(), "x86");
    }

    fn image(id: i64, created: &str, arch: models::Architecture) -> models::Image {
        serde_json::from_value(serde_json::json!({
            "architecture": match arch { models::Architecture::X86 => "x86", models::Architecture::Arm => "arm" },
            "bound_to": null, "created": created, "created_from": null, "deleted": null,
            "deprecated": null, "description": "talos", "disk_size": 20.0, "id": id,
            "image_size": 0.3, "labels": {}, "name": null, "os_flavor": "unknown",
            "os_version": null, "protection": {"delete": false}, "rapid_deploy": false,
            "status": "available", "type": "snapshot"
        }))
        .unwrap()
    }

    #[test]
    fn newest_wins() {
        let images = vec![
            image(5, "2026-01-01T00:00:00+00:00", models::Architecture::X86),
            image(3, "2026-03-01T00:00:00+00:00", models::Architecture::X86),
            image(9, "2026-04-01T00:00:00+00:00", models::Architecture::Arm),
        ];
        assert_eq!(newest(images.clone(), Arch::Amd64).unwrap().id, 3);
        assert_eq!(newest(images, Arch::Arm64).unwrap().id, 9);
        assert!(newest(vec![], Arch::Amd64).is_none());
    }
}
