//! Just enough of the Kubernetes protobuf encoding to read what kubectl sends as protobuf for
//! the calls it makes against the twin: `CertificateSigningRequest` (metadata name and
//! resourceVersion, status conditions — `kubectl certificate approve|deny`). Other protobuf
//! bodies are refused with 415.

use serde_json::{Value, json};

/// The `k8s\0` prefix of protobuf-encoded objects.
const MAGIC: &[u8] = b"k8s\x00";

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(out);
        }
    }
    None
}

fn fields(buf: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let field = match key & 7 {
            0 => Field::Varint(varint(buf, &mut pos)?),
            1 => {
                pos += 8;
                Field::Other
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                let bytes = buf.get(pos..pos.checked_add(len)?)?;
                pos += len;
                Field::Bytes(bytes)
            }
            5 => {
                pos += 4;
                Field::Other
            }
            _ => return None,
        };
        out.push((key >> 3, field));
    }
    Some(out)
}

fn string(b: &[u8]) -> Value {
    json!(String::from_utf8_lossy(b))
}

fn time(b: &[u8]) -> Value {
    let secs = fields(b)
        .unwrap_or_default()
        .into_iter()
        .find_map(|(n, f)| match (n, f) {
            (1, Field::Varint(v)) => Some(v as i64),
            _ => None,
        })
        .unwrap_or(0);
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
        .unwrap_or(Value::Null)
}

fn object_meta(b: &[u8]) -> Value {
    let mut meta = json!({});
    for (n, f) in fields(b).unwrap_or_default() {
        if let Field::Bytes(v) = f {
            match n {
                1 => meta["name"] = string(v),
                3 => meta["namespace"] = string(v),
                6 => meta["resourceVersion"] = string(v),
                _ => {}
            }
        }
    }
    meta
}

fn csr_condition(b: &[u8]) -> Value {
    let mut c = json!({});
    for (n, f) in fields(b).unwrap_or_default() {
        if let Field::Bytes(v) = f {
            match n {
                1 => c["type"] = string(v),
                2 => c["reason"] = string(v),
                3 => c["message"] = string(v),
                4 => c["lastUpdateTime"] = time(v),
                5 => c["lastTransitionTime"] = time(v),
                6 => c["status"] = string(v),
                _ => {}
            }
        }
    }
    c
}

fn csr(raw: &[u8]) -> Option<Value> {
    let mut obj =
        json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest"});
    for (n, f) in fields(raw)? {
        match (n, f) {
            (1, Field::Bytes(m)) => obj["metadata"] = object_meta(m),
            (3, Field::Bytes(status)) => {
                let conditions: Vec<Value> = fields(status)?
                    .into_iter()
                    .filter_map(|(n, f)| match (n, f) {
                        (1, Field::Bytes(c)) => Some(csr_condition(c)),
                        _ => None,
                    })
                    .collect();
                obj["status"] = json!({"conditions": conditions});
            }
            _ => {}
        }
    }
    Some(obj)
}

/// Decodes a protobuf body into JSON, for the kinds listed in the module doc.
pub fn decode(body: &[u8]) -> Option<Value> {
    let envelope = body.strip_prefix(MAGIC)?;
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (n, f) in fields(envelope)? {
        match (n, f) {
            (1, Field::Bytes(type_meta)) => {
                for (tn, tf) in fields(type_meta)? {
                    if let (2, Field::Bytes(k)) = (tn, tf) {
                        kind = String::from_utf8_lossy(k).into_owned();
                    }
                }
            }
            (2, Field::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    match kind.as_str() {
        "CertificateSigningRequest" => csr(raw),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(field: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![((field << 3) | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn decodes_a_csr_approval() {
        let meta = [ld(1, b"csr-abc"), ld(6, b"42")].concat();
        let cond = [ld(1, b"Approved"), ld(2, b"KubectlApprove"), ld(6, b"True")].concat();
        let status = ld(1, &cond);
        let raw = [ld(1, &meta), ld(3, &status)].concat();
        let type_meta = [
            ld(1, b"certificates.k8s.io/v1"),
            ld(2, b"CertificateSigningRequest"),
        ]
        .concat();
        let body = [MAGIC.to_vec(), ld(1, &type_meta), ld(2, &raw)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(v["metadata"]["name"], "csr-abc");
        assert_eq!(v["metadata"]["resourceVersion"], "42");
        assert_eq!(v["status"]["conditions"][0]["type"], "Approved");
        assert_eq!(v["status"]["conditions"][0]["status"], "True");
        assert!(decode(b"not protobuf").is_none());
    }
}
