//! Just enough DER and PEM to move private keys between the encodings ring produces (PKCS#8)
//! and the ones Talos writes (SEC1 `EC PRIVATE KEY`, PKCS#8 v1 `ED25519 PRIVATE KEY`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_CONTEXT_0: u8 = 0xa0;
const TAG_CONTEXT_1: u8 = 0xa1;

/// DER of OID 1.2.840.10045.2.1 (id-ecPublicKey), without tag and length.
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// DER of OID 1.2.840.10045.3.1.7 (prime256v1 / P-256), without tag and length.
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of OID 1.3.101.112 (Ed25519), without tag and length.
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// PEM label Talos uses for Ed25519 private keys (non-standard; rustls does not know it).
pub(crate) const LABEL_ED25519: &str = "ED25519 PRIVATE KEY";
/// PEM label for SEC1 ECDSA private keys.
pub(crate) const LABEL_EC: &str = "EC PRIVATE KEY";
/// PEM label for PKCS#1 RSA private keys.
pub(crate) const LABEL_RSA: &str = "RSA PRIVATE KEY";
/// PEM label for PKCS#8 private keys.
pub(crate) const LABEL_PKCS8: &str = "PRIVATE KEY";
/// PEM label for certificates.
pub(crate) const LABEL_CERTIFICATE: &str = "CERTIFICATE";

/// One tag-length-value element: `(tag, contents, rest of input)`.
type Tlv<'a> = (u8, &'a [u8], &'a [u8]);

/// Reads one DER element from the front of `input`.
fn read_tlv(input: &[u8]) -> Result<Tlv<'_>, String> {
    let (&tag, rest) = input.split_first().ok_or("truncated DER: missing tag")?;
    let (&first, rest) = rest.split_first().ok_or("truncated DER: missing length")?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err("unsupported DER length encoding".to_owned());
        }
        let (len_bytes, rest) = rest.split_at(n);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    if rest.len() < len {
        return Err("truncated DER: element longer than input".to_owned());
    }
    let (value, rest) = rest.split_at(len);
    Ok((tag, value, rest))
}

/// Reads one element and checks its tag.
fn expect<'a>(input: &'a [u8], tag: u8, what: &str) -> Result<(&'a [u8], &'a [u8]), String> {
    let (actual, value, rest) = read_tlv(input)?;
    if actual != tag {
        return Err(format!(
            "expected {what} (tag {tag:#04x}), found tag {actual:#04x}"
        ));
    }
    Ok((value, rest))
}

/// Encodes one DER element.
fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
    out
}

/// Splits a PKCS#8 `PrivateKeyInfo` into (algorithm identifier contents, private key octets).
fn split_pkcs8(pkcs8: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let (seq, _) = expect(pkcs8, TAG_SEQUENCE, "PKCS#8 sequence")?;
    let (_version, rest) = expect(seq, TAG_INTEGER, "PKCS#8 version")?;
    let (alg, rest) = expect(rest, TAG_SEQUENCE, "PKCS#8 algorithm")?;
    let (key, _) = expect(rest, TAG_OCTET_STRING, "PKCS#8 private key")?;
    Ok((alg, key))
}

/// Re-encodes any Ed25519 PKCS#8 document (ring writes v2 with the public key) as the
/// 48-byte PKCS#8 v1 document Go's `x509.MarshalPKCS8PrivateKey` produces.
pub(crate) fn ed25519_pkcs8_v1(pkcs8: &[u8]) -> Result<Vec<u8>, String> {
    let (alg, key) = split_pkcs8(pkcs8)?;
    let (oid, _) = expect(alg, TAG_OID, "algorithm OID")?;
    if oid != OID_ED25519 {
        return Err("not an Ed25519 key".to_owned());
    }
    let (seed, _) = expect(key, TAG_OCTET_STRING, "Ed25519 seed")?;
    if seed.len() != 32 {
        return Err(format!("Ed25519 seed has {} bytes, want 32", seed.len()));
    }
    let mut body = tlv(TAG_INTEGER, &[0]);
    body.extend(tlv(TAG_SEQUENCE, &tlv(TAG_OID, OID_ED25519)));
    body.extend(tlv(TAG_OCTET_STRING, &tlv(TAG_OCTET_STRING, seed)));
    Ok(tlv(TAG_SEQUENCE, &body))
}

/// Converts a P-256 PKCS#8 document into SEC1 `ECPrivateKey` with the named-curve parameter,
/// as Go's `x509.MarshalECPrivateKey` writes it (Go refuses SEC1 without the curve OID).
pub(crate) fn ec_pkcs8_to_sec1(pkcs8: &[u8]) -> Result<Vec<u8>, String> {
    let (alg, key) = split_pkcs8(pkcs8)?;
    let (oid, rest) = expect(alg, TAG_OID, "algorithm OID")?;
    if oid != OID_EC_PUBLIC_KEY {
        return Err("not an EC key".to_owned());
    }
    let (curve, _) = expect(rest, TAG_OID, "curve OID")?;
    if curve != OID_P256 {
        return Err("not a P-256 key".to_owned());
    }
    let (inner, _) = expect(key, TAG_SEQUENCE, "ECPrivateKey")?;
    let (_version, rest) = expect(inner, TAG_INTEGER, "ECPrivateKey version")?;
    let (scalar, mut rest) = expect(rest, TAG_OCTET_STRING, "EC private scalar")?;
    let mut public_key = None;
    while !rest.is_empty() {
        let (tag, value, next) = read_tlv(rest)?;
        if tag == TAG_CONTEXT_1 {
            public_key = Some(value);
        }
        rest = next;
    }
    let public_key = public_key.ok_or("ECPrivateKey has no public key")?;
    let mut body = tlv(TAG_INTEGER, &[1]);
    body.extend(tlv(TAG_OCTET_STRING, scalar));
    body.extend(tlv(TAG_CONTEXT_0, &tlv(TAG_OID, OID_P256)));
    body.extend(tlv(TAG_CONTEXT_1, public_key));
    Ok(tlv(TAG_SEQUENCE, &body))
}

/// Wraps a SEC1 P-256 `ECPrivateKey` into PKCS#8 so ring (via rcgen) can load it.
pub(crate) fn ec_sec1_to_pkcs8(sec1: &[u8]) -> Result<Vec<u8>, String> {
    let (inner, _) = expect(sec1, TAG_SEQUENCE, "ECPrivateKey")?;
    let (_version, rest) = expect(inner, TAG_INTEGER, "ECPrivateKey version")?;
    let (_scalar, mut rest) = expect(rest, TAG_OCTET_STRING, "EC private scalar")?;
    let mut has_public = false;
    while !rest.is_empty() {
        let (tag, value, next) = read_tlv(rest)?;
        if tag == TAG_CONTEXT_0 {
            let (curve, _) = expect(value, TAG_OID, "curve OID")?;
            if curve != OID_P256 {
                return Err("not a P-256 key".to_owned());
            }
        }
        has_public |= tag == TAG_CONTEXT_1;
        rest = next;
    }
    if !has_public {
        return Err("ECPrivateKey has no public key".to_owned());
    }
    let mut alg = tlv(TAG_OID, OID_EC_PUBLIC_KEY);
    alg.extend(tlv(TAG_OID, OID_P256));
    let mut body = tlv(TAG_INTEGER, &[0]);
    body.extend(tlv(TAG_SEQUENCE, &alg));
    body.extend(tlv(TAG_OCTET_STRING, sec1));
    Ok(tlv(TAG_SEQUENCE, &body))
}

/// Returns the public key bits of a SEC1 `ECPrivateKey`'s `[1] BIT STRING`, without the
/// unused-bits byte (an uncompressed point).
pub(crate) fn ec_sec1_public_key(sec1: &[u8]) -> Result<Vec<u8>, String> {
    let (inner, _) = expect(sec1, TAG_SEQUENCE, "ECPrivateKey")?;
    let (_version, mut rest) = expect(inner, TAG_INTEGER, "ECPrivateKey version")?;
    while !rest.is_empty() {
        let (tag, value, next) = read_tlv(rest)?;
        if tag == TAG_CONTEXT_1 {
            let (bits, _) = expect(value, TAG_BIT_STRING, "public key bit string")?;
            let (_unused, point) = bits.split_first().ok_or("empty public key")?;
            return Ok(point.to_vec());
        }
        rest = next;
    }
    Err("ECPrivateKey has no public key".to_owned())
}

/// PEM-encodes DER the way Go's `encoding/pem` does (64-column lines, LF).
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Decodes the first PEM block of `text`: `(label, der)`.
pub(crate) fn pem_decode(text: &str) -> Result<(String, Vec<u8>), String> {
    let mut lines = text.lines().map(str::trim);
    let label = loop {
        let line = lines.next().ok_or("no PEM block found")?;
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            break label.to_owned();
        }
    };
    let end = format!("-----END {label}-----");
    let mut body = String::new();
    let mut closed = false;
    for line in lines {
        if line == end {
            closed = true;
            break;
        }
        if line.contains(':') {
            // PEM headers (Proc-Type etc.) mean an encrypted key; Talos never writes them.
            return Err("PEM headers (encrypted keys) are not supported".to_owned());
        }
        body.push_str(line);
    }
    if !closed {
        return Err(format!("PEM block {label:?} has no END line"));
    }
    let der = STANDARD
        .decode(body.as_bytes())
        .map_err(|e| format!("PEM block {label:?} body is not base64: {e}"))?;
    Ok((label, der))
}

/// Rewrites Talos's `ED25519 PRIVATE KEY` PEM label to the standard `PRIVATE KEY` (same DER),
/// which rustls and rcgen accept.
pub(crate) fn relabel_ed25519_for_rustls(pem: &str) -> String {
    pem.replace(
        &format!("-----BEGIN {LABEL_ED25519}-----"),
        &format!("-----BEGIN {LABEL_PKCS8}-----"),
    )
    .replace(
        &format!("-----END {LABEL_ED25519}-----"),
        &format!("-----END {LABEL_PKCS8}-----"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_round_trips_long_lengths() {
        let value = vec![7u8; 300];
        let encoded = tlv(TAG_OCTET_STRING, &value);
        assert_eq!(&encoded[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let (tag, decoded, rest) = read_tlv(&encoded).unwrap();
        assert_eq!(tag, TAG_OCTET_STRING);
        assert_eq!(decoded, &value[..]);
        assert!(rest.is_empty());
    }

    #[test]
    fn truncated_der_is_an_error() {
        assert!(read_tlv(&[0x30, 0x05, 0x01]).is_err());
        assert!(read_tlv(&[]).is_err());
    }

    #[test]
    fn ec_key_survives_pkcs8_sec1_pkcs8() {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let sec1 = ec_pkcs8_to_sec1(kp.serialized_der()).unwrap();
        let pkcs8 = ec_sec1_to_pkcs8(&sec1).unwrap();
        let back = rcgen::KeyPair::try_from(pkcs8.as_slice()).unwrap();
        assert_eq!(back.public_key_raw(), kp.public_key_raw());
        assert_eq!(ec_sec1_public_key(&sec1).unwrap(), kp.public_key_raw());
    }

    #[test]
    fn ed25519_v1_is_48_bytes_and_loads() {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let v1 = ed25519_pkcs8_v1(kp.serialized_der()).unwrap();
        assert_eq!(v1.len(), 48);
        let back = rcgen::KeyPair::try_from(v1.as_slice()).unwrap();
        assert_eq!(back.public_key_raw(), kp.public_key_raw());
    }

    #[test]
    fn pem_round_trip_and_relabel() {
        let der: Vec<u8> = (0..=200u8).collect();
        let pem = pem_encode(LABEL_ED25519, &der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        let (label, back) = pem_decode(&pem).unwrap();
        assert_eq!(label, LABEL_ED25519);
        assert_eq!(back, der);
        let relabeled = relabel_ed25519_for_rustls(&pem);
        assert!(relabeled.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(pem_decode(&relabeled).unwrap().1, der);
    }

    #[test]
    fn pem_without_end_is_an_error() {
        assert!(pem_decode("-----BEGIN CERTIFICATE-----\nAAAA\n").is_err());
        assert!(pem_decode("nothing here").is_err());
    }
}
