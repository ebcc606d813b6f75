//! Step keys and input hashes.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Checks that a step key is a non-empty name of ASCII letters, digits and `/ - _ . : @ =`.
///
/// Keys are names such as `network`, `server/cp-1` or `talos/apply/cp-1`, never call counters, so
/// concurrency and replay agree on them.
pub fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("a step key must not be empty".to_string());
    }
    if key.len() > 200 {
        return Err(format!("step key `{key}` is longer than 200 characters"));
    }
    if let Some(bad) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/-_.:@=".contains(*c)))
    {
        return Err(format!(
            "step key `{key}` contains {bad:?}; use letters, digits and / - _ . : @ ="
        ));
    }
    Ok(())
}

/// The activity name recorded for a step: the first segment of its key (`server/cp-1` → `server`).
pub fn activity_of(key: &str) -> &str {
    key.split('/').next().unwrap_or(key)
}

/// The sha256 (hex) of the canonical JSON of `input`: object keys sorted, no whitespace.
pub fn input_hash<T: Serialize + ?Sized>(input: &T) -> Result<String, serde_json::Error> {
    let value = serde_json::to_value(input)?;
    let mut canonical = String::new();
    write_canonical(&value, &mut canonical);
    Ok(hex::encode(Sha256::digest(canonical.as_bytes())))
}

/// Writes `value` as JSON with sorted object keys, whatever `serde_json`'s map order is.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// A 64-bit seed for retry jitter, stable for one run and step.
pub fn jitter_seed(run_id: &str, key: &str) -> u64 {
    let digest = Sha256::digest(format!("{run_id}\n{key}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_names() {
        assert!(validate_key("server/cp-1").is_ok());
        assert!(validate_key("talos/apply/cp-1").is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key("server cp").is_err());
        assert_eq!(activity_of("server/cp-1"), "server");
        assert_eq!(activity_of("network"), "network");
    }

    #[test]
    fn hash_ignores_key_order_but_not_values() {
        let a = input_hash(&json!({"b": 1, "a": [1, {"y": 2, "x": "s"}]})).unwrap();
        let b = input_hash(&json!({"a": [1, {"x": "s", "y": 2}], "b": 1})).unwrap();
        let c = input_hash(&json!({"a": [1, {"x": "s", "y": 3}], "b": 1})).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 64);
        // Pinned: the hash is part of the journal format.
        assert_eq!(
            input_hash(&json!({"n": 1})).unwrap(),
            hex::encode(Sha256::digest(br#"{"n":1}"#))
        );
    }

    #[test]
    fn seeds_differ_per_step() {
        assert_eq!(jitter_seed("r", "a"), jitter_seed("r", "a"));
        assert_ne!(jitter_seed("r", "a"), jitter_seed("r", "b"));
    }
}
