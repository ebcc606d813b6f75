//! Schematics as the image factory knows them: parsed from YAML, written back in the factory's
//! canonical form (go-yaml v4: 4-space indent, fields in the Go struct's order, empty fields
//! omitted) and identified by the SHA-256 of that form (`../shared/reference/upgrades.md` §4).
//!
//! The twin models `overlay.{image,name}` and `customization.{extraKernelArgs, meta,
//! systemExtensions.officialExtensions, bootloader, secureboot.includeWellKnownCertificates,
//! diskImage.sectorSize}`; an unknown field is a 400 as in the factory, and a known field the
//! twin does not model (e.g. `embeddedMachineConfiguration`) is a 400 that says so.

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The ID of the empty schematic (`customization: {}`), vanilla Talos.
pub const VANILLA_ID: &str = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba";
/// The ID of the Hetzner schematic with `siderolabs/qemu-guest-agent`.
pub const HETZNER_QEMU_GUEST_AGENT_ID: &str =
    "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515";

/// A schematic the twin's factory refuses.
#[derive(Debug, thiserror::Error)]
pub enum SchematicError {
    /// The body is not a schematic (bad YAML, unknown field, wrong type).
    #[error("invalid schematic: {0}")]
    Invalid(String),
    /// A field the real factory accepts but the twin does not model.
    #[error("the twin's image factory does not model {0}")]
    Unsupported(&'static str),
}

/// A schematic (the subset the twin models).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schematic {
    /// Board overlay.
    #[serde(default)]
    pub overlay: Option<Overlay>,
    /// Customization.
    #[serde(default)]
    pub customization: Customization,
}

/// `overlay`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    /// Overlay image.
    #[serde(default)]
    pub image: String,
    /// Overlay name.
    #[serde(default)]
    pub name: String,
    /// Overlay options (not modelled).
    #[serde(default)]
    pub options: Option<serde_json::Value>,
}

/// `customization`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Customization {
    /// Embedded machine configuration (not modelled).
    #[serde(default)]
    pub embedded_machine_configuration: Option<String>,
    /// Extra kernel arguments.
    #[serde(default)]
    pub extra_kernel_args: Vec<String>,
    /// META partition values.
    #[serde(default)]
    pub meta: Vec<Meta>,
    /// System extensions.
    #[serde(default)]
    pub system_extensions: SystemExtensions,
    /// Bootloader (`sd-boot`, `grub`, `dual-boot`).
    #[serde(default)]
    pub bootloader: Option<String>,
    /// SecureBoot settings.
    #[serde(default)]
    pub secureboot: Option<SecureBoot>,
    /// Disk image settings.
    #[serde(default)]
    pub disk_image: Option<DiskImage>,
}

/// One META value.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// Key (0–255).
    pub key: u8,
    /// Value.
    pub value: String,
}

/// `systemExtensions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SystemExtensions {
    /// Official extension names, e.g. `siderolabs/qemu-guest-agent`.
    #[serde(default)]
    pub official_extensions: Vec<String>,
}

/// `secureboot`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecureBoot {
    /// Enroll keys (not modelled).
    #[serde(default)]
    pub enroll_keys: Option<serde_json::Value>,
    /// Include well-known UEFI certificates.
    #[serde(default)]
    pub include_well_known_certificates: bool,
}

/// `diskImage`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiskImage {
    /// Sector size in bytes.
    #[serde(default)]
    pub sector_size: u32,
}

impl Schematic {
    /// Parses a schematic from the YAML (or JSON) body of `POST /schematics`; an empty body is
    /// the empty schematic.
    pub fn parse(body: &str) -> Result<Schematic, SchematicError> {
        if body.trim().is_empty() {
            return Ok(Schematic::default());
        }
        let s: Schematic =
            serde_saphyr::from_str(body).map_err(|e| SchematicError::Invalid(e.to_string()))?;
        if s.customization.embedded_machine_configuration.is_some() {
            return Err(SchematicError::Unsupported(
                "customization.embeddedMachineConfiguration",
            ));
        }
        if s.overlay.as_ref().is_some_and(|o| o.options.is_some()) {
            return Err(SchematicError::Unsupported("overlay.options"));
        }
        if s.customization
            .secureboot
            .as_ref()
            .is_some_and(|s| s.enroll_keys.is_some())
        {
            return Err(SchematicError::Unsupported(
                "customization.secureboot.enrollKeys",
            ));
        }
        for v in s
            .customization
            .extra_kernel_args
            .iter()
            .chain(s.customization.meta.iter().map(|m| &m.value))
        {
            if v.contains('\n') {
                return Err(SchematicError::Unsupported("multi-line strings"));
            }
        }
        Ok(s)
    }

    /// The canonical YAML the factory hashes (and returns as `schematic`).
    pub fn canonical_yaml(&self) -> String {
        let mut out = String::new();
        if let Some(o) = &self.overlay
            && (!o.image.is_empty() || !o.name.is_empty())
        {
            out.push_str("overlay:\n");
            if !o.image.is_empty() {
                out.push_str(&format!("    image: {}\n", scalar(&o.image)));
            }
            if !o.name.is_empty() {
                out.push_str(&format!("    name: {}\n", scalar(&o.name)));
            }
        }
        let c = &self.customization;
        let mut body = String::new();
        if !c.extra_kernel_args.is_empty() {
            body.push_str("    extraKernelArgs:\n");
            for a in &c.extra_kernel_args {
                body.push_str(&format!("        - {}\n", scalar(a)));
            }
        }
        if !c.meta.is_empty() {
            body.push_str("    meta:\n");
            for m in &c.meta {
                body.push_str(&format!(
                    "        - key: {}\n          value: {}\n",
                    m.key,
                    scalar(&m.value)
                ));
            }
        }
        if !c.system_extensions.official_extensions.is_empty() {
            body.push_str("    systemExtensions:\n        officialExtensions:\n");
            for e in &c.system_extensions.official_extensions {
                body.push_str(&format!("            - {}\n", scalar(e)));
            }
        }
        if let Some(b) = c.bootloader.as_deref().filter(|b| !b.is_empty()) {
            body.push_str(&format!("    bootloader: {}\n", scalar(b)));
        }
        if let Some(sb) = &c.secureboot
            && sb.include_well_known_certificates
        {
            body.push_str("    secureboot:\n        includeWellKnownCertificates: true\n");
        }
        if let Some(d) = &c.disk_image
            && d.sector_size != 0
        {
            body.push_str(&format!(
                "    diskImage:\n        sectorSize: {}\n",
                d.sector_size
            ));
        }
        if body.is_empty() {
            out.push_str("customization: {}\n");
        } else {
            out.push_str("customization:\n");
            out.push_str(&body);
        }
        out
    }

    /// The schematic ID: lower-hex SHA-256 of [`Schematic::canonical_yaml`].
    pub fn id(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_yaml().as_bytes()))
    }
}

/// A string scalar as go-yaml writes it: plain when that reads back as the same string,
/// double-quoted when plain would read as another type, single-quoted otherwise.
fn scalar(s: &str) -> String {
    let resolves_elsewhere = matches!(
        s.to_ascii_lowercase().as_str(),
        "" | "~" | "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
    ) || s.parse::<f64>().is_ok()
        || s.starts_with("0x")
        || s.starts_with("0o");
    if resolves_elsewhere {
        return format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    }
    let first_bad = s.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@` ".contains(c));
    let inner_bad = s.contains(": ") || s.contains(" #") || s.ends_with(' ') || s.ends_with(':');
    if first_bad || inner_bad {
        return format!("'{}'", s.replace('\'', "''"));
    }
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_of(yaml: &str) -> String {
        Schematic::parse(yaml).unwrap().id()
    }

    #[test]
    fn ids_match_the_factory() {
        // Byte-exact IDs from upgrades.md §4 (the full ones, and the prefixes/suffixes given).
        assert_eq!(id_of(""), VANILLA_ID);
        assert_eq!(id_of("customization: {}\n"), VANILLA_ID);
        assert_eq!(
            id_of(
                "customization:\n  systemExtensions:\n    officialExtensions: [siderolabs/qemu-guest-agent]\n"
            ),
            HETZNER_QEMU_GUEST_AGENT_ID
        );
        let kernel = id_of("customization:\n  extraKernelArgs:\n    - noapic\n    - nolapic\n");
        assert!(
            kernel.starts_with("9cba8e32") && kernel.ends_with("a06c"),
            "{kernel}"
        );
        let meta = id_of("customization:\n  meta:\n    - key: 10\n      value: foo\n");
        assert!(
            meta.starts_with("d308a2a5") && meta.ends_with("9a7f"),
            "{meta}"
        );
    }

    #[test]
    fn canonical_form_and_refusals() {
        let s = Schematic::parse(
            "customization:\n  bootloader: sd-boot\n  extraKernelArgs: [\"net.ifnames=0\", \"yes\"]\n",
        )
        .unwrap();
        assert_eq!(
            s.canonical_yaml(),
            "customization:\n    extraKernelArgs:\n        - net.ifnames=0\n        - \"yes\"\n    bootloader: sd-boot\n"
        );
        assert!(matches!(
            Schematic::parse("customization:\n  nope: 1\n"),
            Err(SchematicError::Invalid(_))
        ));
        assert!(matches!(
            Schematic::parse("bogus: 1\n"),
            Err(SchematicError::Invalid(_))
        ));
        assert!(matches!(
            Schematic::parse("customization:\n  embeddedMachineConfiguration: x\n"),
            Err(SchematicError::Unsupported(_))
        ));
    }
}
