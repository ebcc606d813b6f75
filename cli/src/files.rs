//! Cluster files every runner can reach: with a PostgreSQL journal, a cluster's secrets bundle,
//! talosconfig and kubeconfig are sealed with the operator's key (`HK8S_FILES_KEY`) and kept
//! in the journal's `cluster_files` table; each runner restores them into its own state folder
//! (`<state>/clusters/<name>/`, 0600) before it acts, and stores what an activity wrote before
//! the step is journaled. A SQLite journal keeps them in the state folder only, as before.
//!
//! # The key and the seal
//!
//! `HK8S_FILES_KEY` is 32 random bytes in base64 (`head -c 32 /dev/urandom | base64`). Each
//! file is sealed with ChaCha20-Poly1305 (ring, the crypto library rustls already uses here:
//! no new dependency, no OpenSSL) under a fresh random 96-bit nonce, with
//! `hk8s-cluster-file/v1/<cluster>/<name>` as associated data, so a sealed file cannot be
//! passed off as another cluster's or another file. Stored: base64 of `v1:` + nonce +
//! ciphertext and tag. A wrong key, or a changed blob, fails to open with a sentence naming the
//! file. Chosen over `age`: same AEAD family without a passphrase KDF on every file and without
//! a new dependency tree; the price is that only hk8s opens the blobs (`hk8s kubeconfig`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context as _, anyhow, bail};

use crate::exit::{Failure, usage};
use base64::Engine as _;
use hk8s_journal::Journal;
use hk8s_runtime::{Event, Observer};
use hk8s_workflows::talos::{KUBECONFIG_FILE, SECRETS_FILE, TALOSCONFIG_FILE};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

/// The files of a cluster's state folder that the store keeps.
pub const FILES: [&str; 3] = [SECRETS_FILE, TALOSCONFIG_FILE, KUBECONFIG_FILE];

const VERSION_TAG: &[u8] = b"v1:";

/// The operator's key for cluster files (never printed, never journaled).
pub struct FilesKey(LessSafeKey);

impl std::fmt::Debug for FilesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FilesKey(…)")
    }
}

impl FilesKey {
    /// Parses `HK8S_FILES_KEY`'s value: base64 of exactly 32 bytes.
    ///
    /// # Errors
    /// Not base64, or not 32 bytes (the message never quotes the value).
    pub fn parse(value: &str) -> anyhow::Result<FilesKey> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .map_err(|_| anyhow!("HK8S_FILES_KEY is not base64 (make one with `head -c 32 /dev/urandom | base64`)"))?;
        if bytes.len() != 32 {
            bail!(
                "HK8S_FILES_KEY holds {} bytes, not 32 (make one with `head -c 32 /dev/urandom | base64`)",
                bytes.len()
            );
        }
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
            .map_err(|_| anyhow!("HK8S_FILES_KEY is not a usable key"))?;
        Ok(FilesKey(LessSafeKey::new(key)))
    }

    fn aad(cluster: &str, name: &str) -> Vec<u8> {
        format!("hk8s-cluster-file/v1/{cluster}/{name}").into_bytes()
    }

    /// Seals `plaintext` as file `name` of `cluster`.
    ///
    /// # Errors
    /// The system random source failed.
    pub fn seal(&self, cluster: &str, name: &str, plaintext: &[u8]) -> anyhow::Result<String> {
        let mut nonce = [0_u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| anyhow!("no random bytes for a nonce"))?;
        let mut buf = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(cluster, name)),
                &mut buf,
            )
            .map_err(|_| anyhow!("cannot seal {name} of cluster {cluster}"))?;
        let mut out = VERSION_TAG.to_vec();
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    /// Opens what [`FilesKey::seal`] made for the same cluster and name.
    ///
    /// # Errors
    /// Another key, another cluster or name, or a changed blob.
    pub fn open(&self, cluster: &str, name: &str, sealed: &str) -> anyhow::Result<Vec<u8>> {
        let refuse = || {
            anyhow!(
                "cannot open the stored {name} of cluster {cluster}: HK8S_FILES_KEY is not the key \
                 it was sealed with, or the stored copy was changed"
            )
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| refuse())?;
        let rest = bytes.strip_prefix(VERSION_TAG).ok_or_else(refuse)?;
        if rest.len() < NONCE_LEN {
            return Err(refuse());
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| refuse())?;
        let mut buf = ciphertext.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(Self::aad(cluster, name)), &mut buf)
            .map_err(|_| refuse())?;
        Ok(plain.to_vec())
    }
}

/// A cluster's files in a shared journal, as one runner syncs them with its state folder.
pub struct ClusterFiles {
    journal: Arc<Journal>,
    key: FilesKey,
    cluster: String,
    dir: PathBuf,
    /// The content hash of each file as last stored or restored by this process.
    known: Mutex<HashMap<&'static str, [u8; 32]>>,
}

impl std::fmt::Debug for ClusterFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterFiles")
            .field("cluster", &self.cluster)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// `HK8S_FILES_KEY`, required with a PostgreSQL journal (where other runners need the files);
/// `None` for a SQLite journal (the files stay in the state folder).
///
/// # Errors
/// A PostgreSQL journal without the key, or a malformed key.
pub fn key_for(journal: &Journal) -> anyhow::Result<Option<FilesKey>> {
    if !journal.is_postgres() {
        return Ok(None);
    }
    match std::env::var("HK8S_FILES_KEY") {
        Ok(v) if !v.trim().is_empty() => FilesKey::parse(&v).map(Some),
        _ => bail!(
            "HK8S_FILES_KEY is not set: with a PostgreSQL journal the cluster's secrets bundle, \
             talosconfig and kubeconfig are kept in the journal sealed with it, so every runner \
             can continue a run; set the same key (32 random bytes in base64, e.g. \
             `head -c 32 /dev/urandom | base64`) on every runner"
        ),
    }
}

impl ClusterFiles {
    /// The store of `cluster`'s files for this runner's folder `dir`.
    pub fn new(journal: Arc<Journal>, key: FilesKey, cluster: &str, dir: &Path) -> ClusterFiles {
        ClusterFiles {
            journal,
            key,
            cluster: cluster.to_owned(),
            dir: dir.to_owned(),
            known: Mutex::new(HashMap::new()),
        }
    }

    /// Writes every stored file into the state folder (0600), replacing a local copy that
    /// differs: the store is what the run's other runners wrote. Returns the names restored.
    ///
    /// # Errors
    /// The journal cannot be read, a file does not open with the key, or cannot be written.
    pub fn restore(&self) -> anyhow::Result<Vec<String>> {
        let stored = self
            .journal
            .cluster_files(&self.cluster)
            .context("cannot read the cluster's files from the journal")?;
        let mut restored = Vec::new();
        for file in stored {
            let Some(name) = FILES.iter().find(|n| **n == file.name) else {
                continue;
            };
            let plain = self.key.open(&self.cluster, name, &file.sealed)?;
            let path = self.dir.join(name);
            let local = std::fs::read(&path).ok();
            if local.as_deref() != Some(plain.as_slice()) {
                hk8s_talos_config_write(&path, &plain)?;
                restored.push((*name).to_owned());
            }
            self.remember(name, &plain);
        }
        Ok(restored)
    }

    /// Stores every file of the state folder that changed since this process last stored or
    /// restored it. Returns the names stored.
    ///
    /// # Errors
    /// A file cannot be read, or the journal write failed.
    pub fn store_changed(&self) -> anyhow::Result<Vec<&'static str>> {
        let mut stored = Vec::new();
        for name in FILES {
            let path = self.dir.join(name);
            let Ok(plain) = std::fs::read(&path) else {
                continue;
            };
            let hash: [u8; 32] = Sha256::digest(&plain).into();
            let known = self
                .known
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(name)
                .copied();
            if known == Some(hash) {
                continue;
            }
            let sealed = self.key.seal(&self.cluster, name, &plain)?;
            self.journal
                .put_cluster_file(&self.cluster, name, &sealed, chrono::Utc::now())
                .with_context(|| {
                    format!(
                        "cannot store {name} of cluster {} in the journal",
                        self.cluster
                    )
                })?;
            self.remember(name, &plain);
            stored.push(name);
        }
        Ok(stored)
    }

    fn remember(&self, name: &'static str, plain: &[u8]) {
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name, Sha256::digest(plain).into());
    }

    /// `inner`, plus: whenever an activity returned (before its step is journaled) and when a
    /// step completed, the files it wrote are stored. A failure is printed; the step's own
    /// outcome decides the run.
    pub fn observer(self: &Arc<Self>, inner: Observer) -> Observer {
        let files = Arc::clone(self);
        Arc::new(move |event: &Event| {
            if matches!(
                event,
                Event::ActivityReturned { ok: true, .. } | Event::StepCompleted { .. }
            ) && let Err(e) = files.store_changed()
            {
                eprintln!("warning: {e:#}");
            }
            inner(event);
        })
    }
}

/// `hk8s kubeconfig|talosconfig <cluster>`: restores the cluster's files from a PostgreSQL
/// journal into the state folder (0600) and prints the path of `name`.
///
/// # Errors
/// No such file in the journal nor in the state folder (exit 2); journal or key errors.
pub fn write_out(
    journal_arg: &Option<PathBuf>,
    cluster: &str,
    name: &str,
) -> Result<std::process::ExitCode, crate::exit::Failure> {
    let journal = Arc::new(crate::history::open_journal(journal_arg)?);
    cluster_files(&journal, cluster)?;
    let path = cluster_dir(cluster)?.join(name);
    if !path.is_file() {
        return Err(crate::exit::usage(anyhow!(
            "cluster {cluster} has no {name}: not in the journal {} and not at {} (it is written \
             once the cluster's create run got that far)",
            journal.location(),
            path.display()
        )));
    }
    println!("{}", path.display());
    Ok(std::process::ExitCode::SUCCESS)
}

/// With a PostgreSQL journal: the cluster's files in the journal (`HK8S_FILES_KEY`), restored
/// into this machine's state folder now, before anything reads them; `None` for SQLite.
pub fn cluster_files(
    journal: &Arc<Journal>,
    cluster: &str,
) -> Result<Option<Arc<ClusterFiles>>, Failure> {
    let Some(key) = key_for(journal).map_err(usage)? else {
        return Ok(None);
    };
    let dir = cluster_dir(cluster)?;
    let files = Arc::new(ClusterFiles::new(journal.clone(), key, cluster, &dir));
    let restored = files.restore().map_err(Failure::Other)?;
    if !restored.is_empty() {
        tracing::info!(cluster, files = ?restored, "restored cluster files from the journal");
    }
    Ok(Some(files))
}

/// `<state dir>/clusters/<name>`: where the cluster's secrets, talosconfig and kubeconfig live.
pub fn cluster_dir(cluster: &str) -> Result<std::path::PathBuf, Failure> {
    let state = crate::state::state_dir()
        .context("cannot locate the state directory")
        .map_err(usage)?;
    Ok(state.join("clusters").join(cluster))
}

/// Writes `bytes` to `path` with mode 0600 (parent folders 0700), atomically.
fn hk8s_talos_config_write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    hk8s_workflows::talos::write_private(path, bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> FilesKey {
        FilesKey::parse(&base64::engine::general_purpose::STANDARD.encode([byte; 32])).unwrap()
    }

    #[test]
    fn a_sealed_file_opens_only_with_its_key_cluster_and_name() {
        let k = key(7);
        let sealed = k
            .seal("demo", "kubeconfig", b"client-key-data: s3cret")
            .unwrap();
        assert!(!sealed.contains("s3cret"));
        assert_eq!(
            k.open("demo", "kubeconfig", &sealed).unwrap(),
            b"client-key-data: s3cret"
        );
        // Two seals of one plaintext differ (fresh nonces).
        assert_ne!(
            sealed,
            k.seal("demo", "kubeconfig", b"client-key-data: s3cret")
                .unwrap()
        );
        for (k, cluster, name) in [
            (key(8), "demo", "kubeconfig"),
            (key(7), "other", "kubeconfig"),
            (key(7), "demo", "talosconfig"),
        ] {
            let err = k.open(cluster, name, &sealed).unwrap_err().to_string();
            assert!(err.contains("is not the key it was sealed with"), "{err}");
        }
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(&sealed)
            .unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let changed = base64::engine::general_purpose::STANDARD.encode(bytes);
        assert!(k.open("demo", "kubeconfig", &changed).is_err());
    }

    #[test]
    fn a_malformed_key_is_refused_without_quoting_it() {
        for bad in ["not base64 at all!", "c2hvcnQ="] {
            let err = FilesKey::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("HK8S_FILES_KEY "), "{err}");
            assert!(!err.contains(bad), "{err}");
        }
    }
}
