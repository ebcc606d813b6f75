//! [`BuilderKey`]: the ed25519 key of one image build, derived in memory.

use std::fmt;
use std::sync::Arc;

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{HashAlg, PrivateKey, PublicKey};
use sha2::{Digest, Sha256};

use crate::error::{SshError, SshErrorKind};

/// An ed25519 key pair that exists only in memory.
///
/// [`BuilderKey::derive`] computes it as HMAC-SHA256(`material`, `context`) used as the ed25519
/// seed: whoever holds the material (the API token, which can enable rescue with any key anyway)
/// gets the same key again after a crash, so a resumed build reaches the rescue system it
/// started, and the key is never written anywhere. `Debug` shows only the fingerprint.
#[derive(Clone)]
pub struct BuilderKey {
    private: Arc<PrivateKey>,
}

impl fmt::Debug for BuilderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BuilderKey({})", self.fingerprint())
    }
}

/// A host key's SHA-256 fingerprint as OpenSSH prints it (`SHA256:…`).
pub type HostKeyFingerprint = String;

impl BuilderKey {
    /// The key for `context` (e.g. `<run id>/amd64`) from secret `material`.
    pub fn derive(material: &[u8], context: &str) -> BuilderKey {
        let seed = hmac_sha256(
            material,
            format!("hk8s image-builder key v1\0{context}").as_bytes(),
        );
        let pair = Ed25519Keypair::from_seed(&seed);
        BuilderKey {
            private: Arc::new(PrivateKey::from(pair)),
        }
    }

    /// The public key as an OpenSSH line (`ssh-ed25519 AAAA… hk8s-image-builder`).
    pub fn public_openssh(&self) -> Result<String, SshError> {
        let mut public: PublicKey = self.private.public_key().clone();
        public.set_comment("hk8s-image-builder");
        public
            .to_openssh()
            .map_err(|e| SshError::new(SshErrorKind::Config, "encode public key", e.to_string()))
    }

    /// The public key's SHA-256 fingerprint (`SHA256:…`).
    pub fn fingerprint(&self) -> String {
        self.private
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string()
    }

    /// A short, label- and name-safe id of the public key: 8 lowercase hex characters of the
    /// SHA-256 of its OpenSSH encoding.
    pub fn short_id(&self) -> String {
        let digest = Sha256::digest(self.fingerprint().as_bytes());
        hex8(&digest)
    }

    pub(crate) fn private(&self) -> Arc<PrivateKey> {
        self.private.clone()
    }
}

fn hex8(bytes: &[u8]) -> String {
    bytes.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// HMAC-SHA256 (RFC 2104).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn derivation_is_stable_per_context_and_secret_in_debug() {
        let a = BuilderKey::derive(b"token", "run/amd64");
        let b = BuilderKey::derive(b"token", "run/amd64");
        let c = BuilderKey::derive(b"token", "run/arm64");
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
        assert_ne!(
            a.fingerprint(),
            BuilderKey::derive(b"other", "run/amd64").fingerprint()
        );
        let line = a.public_openssh().unwrap();
        assert!(line.starts_with("ssh-ed25519 AAAA"), "{line}");
        assert!(format!("{a:?}").starts_with("BuilderKey(SHA256:"));
        assert_eq!(a.short_id().len(), 8);
    }
}
