//! Image-factory schematics and their IDs, computed locally.
//!
//! The factory's ID (`pkg/schematic/schematic.go` `ID()`) is the lower-hex sha256 of
//! `yaml.Marshal(Schematic)` (go.yaml.in/yaml/v4): 4-space indent, sequences indented under
//! their key, `customization` always present, its fields in the order
//! `extraKernelArgs, meta, systemExtensions` and omitted when empty, lists in the order given
//! (`../shared/reference/upgrades.md` §4). [`Schematic::canonical_yaml`] renders exactly that
//! for the fields hk8s supports, and refuses values the Go encoder would quote, so the ID is
//! right or the input is refused, never silently different.

use sha2::{Digest, Sha256};

/// A schematic hk8s can express: official system extensions, extra kernel arguments and
/// `meta` values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schematic {
    /// `customization.extraKernelArgs`, e.g. `net.ifnames=0`.
    pub extra_kernel_args: Vec<String>,
    /// `customization.meta`: (key, value) pairs.
    pub meta: Vec<(u8, String)>,
    /// `customization.systemExtensions.officialExtensions`, e.g. `siderolabs/qemu-guest-agent`.
    pub official_extensions: Vec<String>,
}

/// A schematic value the canonical encoding cannot carry unquoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct SchematicError {
    /// The field, e.g. `extensions[1]`.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

/// Words YAML 1.1/1.2 reads as booleans or null, which the Go encoder quotes.
const AMBIGUOUS: &[&str] = &[
    "y", "yes", "n", "no", "true", "false", "on", "off", "null", "~",
];

/// Whether go-yaml writes `s` as a plain scalar: starts with a letter or digit, holds only
/// `[A-Za-z0-9._/=,:+@-]`, no `: `, does not end with `:`, is not a number, bool or null.
fn plain(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/=,:+@-".contains(c))
        && !s.ends_with(':')
        && !AMBIGUOUS.contains(&s.to_ascii_lowercase().as_str())
        && s.parse::<f64>().is_err()
        && !s.starts_with("0x")
        && !s.starts_with("0o")
}

impl Schematic {
    /// Checks every value can be encoded canonically; errors name the field
    /// (`extraKernelArgs[0]`, `extensions[1]`, `meta[0].value`).
    pub fn validate(&self) -> Result<(), SchematicError> {
        let check = |field: String, value: &str| {
            if plain(value) {
                Ok(())
            } else {
                Err(SchematicError {
                    field,
                    problem: format!(
                        "{value:?} is not a plain word (letters, digits and ._/=,:+@- , starting \
                         with a letter or digit, not a number or yes/no)"
                    ),
                })
            }
        };
        for (i, arg) in self.extra_kernel_args.iter().enumerate() {
            check(format!("extraKernelArgs[{i}]"), arg)?;
        }
        for (i, (_, value)) in self.meta.iter().enumerate() {
            check(format!("meta[{i}].value"), value)?;
        }
        for (i, ext) in self.official_extensions.iter().enumerate() {
            check(format!("extensions[{i}]"), ext)?;
            if !ext.contains('/') {
                return Err(SchematicError {
                    field: format!("extensions[{i}]"),
                    problem: format!(
                        "{ext:?} is not an official extension name like siderolabs/qemu-guest-agent"
                    ),
                });
            }
        }
        Ok(())
    }

    /// The factory's canonical YAML of this schematic.
    pub fn canonical_yaml(&self) -> Result<String, SchematicError> {
        self.validate()?;
        if self.extra_kernel_args.is_empty()
            && self.meta.is_empty()
            && self.official_extensions.is_empty()
        {
            return Ok("customization: {}\n".into());
        }
        let mut out = String::from("customization:\n");
        if !self.extra_kernel_args.is_empty() {
            out.push_str("    extraKernelArgs:\n");
            for arg in &self.extra_kernel_args {
                out.push_str(&format!("        - {arg}\n"));
            }
        }
        if !self.meta.is_empty() {
            out.push_str("    meta:\n");
            for (key, value) in &self.meta {
                out.push_str(&format!("        - key: {key}\n          value: {value}\n"));
            }
        }
        if !self.official_extensions.is_empty() {
            out.push_str("    systemExtensions:\n        officialExtensions:\n");
            for ext in &self.official_extensions {
                out.push_str(&format!("            - {ext}\n"));
            }
        }
        Ok(out)
    }

    /// The schematic ID: lower-hex sha256 of [`Schematic::canonical_yaml`].
    pub fn id(&self) -> Result<String, SchematicError> {
        let digest = Sha256::digest(self.canonical_yaml()?.as_bytes());
        Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::VANILLA_SCHEMATIC;

    #[test]
    fn upgrades_md_test_vectors() {
        assert_eq!(Schematic::default().id().unwrap(), VANILLA_SCHEMATIC);
        let args = Schematic {
            extra_kernel_args: vec!["noapic".into(), "nolapic".into()],
            ..Schematic::default()
        };
        assert_eq!(
            args.canonical_yaml().unwrap(),
            "customization:\n    extraKernelArgs:\n        - noapic\n        - nolapic\n"
        );
        let id = args.id().unwrap();
        assert!(id.starts_with("9cba8e32") && id.ends_with("a06c"), "{id}");
        let meta = Schematic {
            meta: vec![(10, "foo".into())],
            ..Schematic::default()
        };
        let id = meta.id().unwrap();
        assert!(id.starts_with("d308a2a5") && id.ends_with("9a7f"), "{id}");
        let qemu = Schematic {
            official_extensions: vec!["siderolabs/qemu-guest-agent".into()],
            ..Schematic::default()
        };
        assert_eq!(
            qemu.id().unwrap(),
            "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515"
        );
    }

    #[test]
    fn values_the_encoder_would_quote_are_refused_naming_the_field() {
        for bad in ["", "yes", "1.5", "a: b", "-x", "a'b", "x:"] {
            let s = Schematic {
                extra_kernel_args: vec!["ok".into(), bad.into()],
                ..Schematic::default()
            };
            let err = s.id().unwrap_err();
            assert_eq!(err.field, "extraKernelArgs[1]", "{bad:?}");
        }
        let s = Schematic {
            official_extensions: vec!["qemu-guest-agent".into()],
            ..Schematic::default()
        };
        assert_eq!(s.id().unwrap_err().field, "extensions[0]");
        let ok = Schematic {
            extra_kernel_args: vec!["net.ifnames=0".into(), "console=ttyS0,115200".into()],
            ..Schematic::default()
        };
        assert!(ok.id().is_ok());
    }
}
