//! YAML output in the style talosctl writes (4-space indent, indented lists, plain scalars).

use serde::Serialize;

use crate::error::{Error, Result};

/// Serializes `value` like Go's yaml.v3 encoder as Talos configures it: 4-space indentation,
/// list items indented under their key, and no folded block scalars (long base64 values stay
/// on one line, as plain scalars).
pub(crate) fn to_string<T: Serialize>(what: &'static str, value: &T) -> Result<String> {
    let mut options = serde_saphyr::SerializerOptions::default();
    options.indent_step = 4;
    options.compact_list_indent = false;
    options.prefer_block_scalars = false;
    serde_saphyr::to_string_with_options(value, options)
        .map_err(|source| Error::SerializeYaml { what, source })
}
