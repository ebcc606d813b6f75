//! Label key/value rules of the Hetzner Cloud API (Docs `#description/labels`).
//!
//! A key is an optional prefix (a DNS subdomain of at most 253 characters followed by `/`) and a
//! name of 1–63 characters that starts and ends with an alphanumeric character and has `-`, `_`,
//! `.` or alphanumerics in between. A value is empty or follows the name rule. The prefix
//! `hetzner.cloud/` is reserved.

use std::collections::BTreeMap;

/// Labels of a resource.
pub type Labels = BTreeMap<String, String>;

/// Whether `s` is a label name (also the rule for non-empty values).
pub fn is_valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 63 {
        return false;
    }
    let alnum = |c: u8| c.is_ascii_alphanumeric();
    alnum(b[0])
        && alnum(b[b.len() - 1])
        && b.iter()
            .all(|&c| alnum(c) || c == b'-' || c == b'_' || c == b'.')
}

fn is_valid_prefix(p: &str) -> bool {
    if p.is_empty() || p.len() > 253 {
        return false;
    }
    p.split('.').all(|part| {
        let b = part.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
    })
}

/// Whether `k` is a valid label key (prefix rules included, reserved prefix excluded).
pub fn is_valid_key(k: &str) -> bool {
    match k.rsplit_once('/') {
        Some((prefix, name)) => {
            is_valid_prefix(prefix) && is_valid_name(name) && !is_reserved(prefix)
        }
        None => is_valid_name(k),
    }
}

fn is_reserved(prefix: &str) -> bool {
    prefix == "hetzner.cloud" || prefix.ends_with(".hetzner.cloud")
}

/// Whether `v` is a valid label value.
pub fn is_valid_value(v: &str) -> bool {
    v.is_empty() || is_valid_name(v)
}

/// Checks every key and value; the error names the first offending pair.
pub fn validate(labels: &Labels) -> Result<(), String> {
    for (k, v) in labels {
        if !is_valid_key(k) {
            return Err(format!("label key '{k}' is invalid"));
        }
        if !is_valid_value(v) {
            return Err(format!("label value '{v}' of key '{k}' is invalid"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for ok in [
            "a",
            "env",
            "managed-by",
            "k8s.io/role",
            "a_b.c-d",
            "x.y.z/A1",
            "hk8s-run",
        ] {
            assert!(is_valid_key(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a b",
            "/a",
            "p/",
            "hetzner.cloud/x",
            "a/b/c",
            &"x".repeat(64),
        ] {
            assert!(!is_valid_key(bad), "{bad}");
        }
    }

    #[test]
    fn values() {
        assert!(is_valid_value(""));
        assert!(is_valid_value("v1.11.6"));
        assert!(!is_valid_value("a b"));
        assert!(!is_valid_value(".a"));
        assert!(!is_valid_value(&"x".repeat(64)));
    }

    #[test]
    fn validate_names_first_bad_pair() {
        let mut l = Labels::new();
        l.insert("ok".into(), "fine".into());
        assert!(validate(&l).is_ok());
        l.insert("bad key".into(), "v".into());
        assert!(validate(&l).unwrap_err().contains("bad key"));
    }
}
