//! Talos machine-config contracts (which Talos versions we render for) and installer images.

use crate::error::{Error, Result};

/// Vanilla image-factory schematic: sha256 of the canonical schematic `customization: {}\n`.
pub const VANILLA_SCHEMATIC: &str =
    "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba";

/// A Talos machine-config version contract hk8s can render.
///
/// Contracts v1.8 through v1.11 produce the same documents apart from the default Kubernetes
/// version, so the variants differ mainly in [`Contract::default_kubernetes_version`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Contract {
    /// Talos v1.9.x.
    V1_9,
    /// Talos v1.10.x.
    V1_10,
    /// Talos v1.11.x (the reference version).
    V1_11,
}

/// A parsed `vMAJOR.MINOR[.PATCH]` Talos version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TalosVersion {
    major: u32,
    minor: u32,
}

fn parse_version(version: &str) -> Result<TalosVersion> {
    let err = || Error::ParseTalosVersion {
        version: version.to_owned(),
    };
    let trimmed = version.trim();
    let digits = trimmed.strip_prefix('v').unwrap_or(trimmed);
    // Allow pre-release/build suffixes such as `1.11.0-beta.1`.
    let core = digits.split(['-', '+']).next().unwrap_or_default();
    let mut parts = core.split('.');
    let mut number = || -> Result<u32> {
        let part = parts.next().ok_or_else(err)?;
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        part.parse().map_err(|_| err())
    };
    let major = number()?;
    let minor = number()?;
    if let Some(patch) = parts.next()
        && (patch.is_empty() || !patch.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(err());
    }
    if parts.next().is_some() {
        return Err(err());
    }
    Ok(TalosVersion { major, minor })
}

impl Contract {
    /// The contract for a Talos version string such as `v1.11.6` (the `v` is optional).
    pub fn from_talos_version(version: &str) -> Result<Self> {
        let parsed = parse_version(version)?;
        match (parsed.major, parsed.minor) {
            (1, 9) => Ok(Self::V1_9),
            (1, 10) => Ok(Self::V1_10),
            (1, 11) => Ok(Self::V1_11),
            _ => Err(Error::UnsupportedTalosVersion {
                version: version.trim().to_owned(),
            }),
        }
    }

    /// The Kubernetes version `talosctl gen config` of this Talos minor uses by default.
    pub fn default_kubernetes_version(self) -> &'static str {
        match self {
            Self::V1_9 => "1.32.4",
            Self::V1_10 => "1.33.4",
            Self::V1_11 => "1.34.1",
        }
    }

    /// Whether the image factory serves a platform-specific (`hcloud-installer`) image.
    pub fn supports_unified_installer(self) -> bool {
        self >= Self::V1_10
    }
}

/// The image-factory installer image for Hetzner Cloud for `talos_version` (e.g. `v1.11.6`).
///
/// Talos ≥ 1.10: `factory.talos.dev/hcloud-installer/<schematic>:<version>`;
/// Talos 1.9: the legacy `factory.talos.dev/installer/<schematic>:<version>`.
/// `schematic` defaults to [`VANILLA_SCHEMATIC`].
pub fn hcloud_installer_image(talos_version: &str, schematic: Option<&str>) -> Result<String> {
    let contract = Contract::from_talos_version(talos_version)?;
    let schematic = schematic.unwrap_or(VANILLA_SCHEMATIC);
    if schematic.len() != 64 || !schematic.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidInput {
            field: "schematic",
            problem: format!("{schematic:?} is not a 64-character hex image-factory schematic ID"),
        });
    }
    let trimmed = talos_version.trim();
    let version = if trimmed.starts_with('v') {
        trimmed.to_owned()
    } else {
        format!("v{trimmed}")
    };
    let repo = if contract.supports_unified_installer() {
        "hcloud-installer"
    } else {
        "installer"
    };
    Ok(format!("factory.talos.dev/{repo}/{schematic}:{version}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_versions() {
        assert_eq!(
            Contract::from_talos_version("v1.11.6").unwrap(),
            Contract::V1_11
        );
        assert_eq!(
            Contract::from_talos_version("1.10.7").unwrap(),
            Contract::V1_10
        );
        assert_eq!(
            Contract::from_talos_version("v1.9").unwrap(),
            Contract::V1_9
        );
        assert_eq!(
            Contract::from_talos_version("v1.11.0-beta.1").unwrap(),
            Contract::V1_11
        );
    }

    #[test]
    fn rejects_unsupported_versions_with_the_range() {
        let err = Contract::from_talos_version("v1.12.0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported Talos version v1.12.0 (supported: v1.9–v1.11)"
        );
        assert!(matches!(
            Contract::from_talos_version("v1.8.4"),
            Err(Error::UnsupportedTalosVersion { .. })
        ));
        assert!(matches!(
            Contract::from_talos_version("v2.0.0"),
            Err(Error::UnsupportedTalosVersion { .. })
        ));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "v", "latest", "v1", "v1.x.0", "v1.11.6.1", "v1.11."] {
            assert!(
                matches!(
                    Contract::from_talos_version(bad),
                    Err(Error::ParseTalosVersion { .. })
                ),
                "{bad:?} should not parse"
            );
        }
    }

    #[test]
    fn installer_images() {
        assert_eq!(
            hcloud_installer_image("v1.11.6", None).unwrap(),
            format!("factory.talos.dev/hcloud-installer/{VANILLA_SCHEMATIC}:v1.11.6")
        );
        assert_eq!(
            hcloud_installer_image("1.10.7", None).unwrap(),
            format!("factory.talos.dev/hcloud-installer/{VANILLA_SCHEMATIC}:v1.10.7")
        );
        assert_eq!(
            hcloud_installer_image("v1.9.6", None).unwrap(),
            format!("factory.talos.dev/installer/{VANILLA_SCHEMATIC}:v1.9.6")
        );
        let custom = "a".repeat(64);
        assert_eq!(
            hcloud_installer_image("v1.11.6", Some(&custom)).unwrap(),
            format!("factory.talos.dev/hcloud-installer/{custom}:v1.11.6")
        );
        assert!(hcloud_installer_image("v1.11.6", Some("nope")).is_err());
        assert!(hcloud_installer_image("v1.12.0", None).is_err());
    }

    #[test]
    fn default_kubernetes_versions() {
        assert_eq!(Contract::V1_9.default_kubernetes_version(), "1.32.4");
        assert_eq!(Contract::V1_10.default_kubernetes_version(), "1.33.4");
        assert_eq!(Contract::V1_11.default_kubernetes_version(), "1.34.1");
    }
}
