//! The crate's error type.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while generating, reading or writing Talos secrets and configs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Talos version string could not be parsed.
    #[error("parse Talos version {version:?}: expected vMAJOR.MINOR[.PATCH]")]
    ParseTalosVersion {
        /// The rejected input.
        version: String,
    },
    /// The Talos version parses but has no supported machine-config contract.
    #[error("unsupported Talos version {version} (supported: v1.9–v1.11)")]
    UnsupportedTalosVersion {
        /// The rejected version.
        version: String,
    },
    /// Generating an Ed25519 or ECDSA key pair failed.
    #[error("generate {what} key")]
    GenerateKey {
        /// Which key was being generated.
        what: &'static str,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// Generating the RSA service-account key failed.
    #[error("generate service account RSA key")]
    GenerateRsaKey {
        /// The cause.
        #[source]
        source: rsa::Error,
    },
    /// Encoding the RSA service-account key as PKCS#1 PEM failed.
    #[error("encode service account RSA key")]
    EncodeRsaKey {
        /// The cause.
        #[source]
        source: rsa::pkcs1::Error,
    },
    /// A generated key could not be re-encoded into the format Talos writes.
    #[error("encode {what} key: {problem}")]
    EncodeKey {
        /// Which key.
        what: &'static str,
        /// What was wrong with the DER rcgen produced.
        problem: String,
    },
    /// Building or signing a certificate failed.
    #[error("sign {what} certificate")]
    SignCertificate {
        /// Which certificate.
        what: &'static str,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// A CA certificate or key from a bundle could not be loaded for signing.
    #[error("load {what} for signing")]
    LoadSigningCa {
        /// Which CA.
        what: &'static str,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// A YAML document could not be parsed.
    #[error("parse {what} {source_name}")]
    ParseYaml {
        /// What kind of document (e.g. "secrets bundle").
        what: &'static str,
        /// File name or other origin of the text.
        source_name: String,
        /// The cause.
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// A secrets bundle is structurally complete YAML but a field is missing or malformed.
    #[error("invalid secrets bundle {source_name}: field {field}: {problem}")]
    InvalidSecrets {
        /// File name or other origin of the bundle.
        source_name: String,
        /// Dotted field path, e.g. `certs.os.key`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A talosconfig file is missing a field or holds malformed data.
    #[error("invalid talosconfig {source_name}: field {field}: {problem}")]
    InvalidTalosconfig {
        /// File name or other origin of the talosconfig.
        source_name: String,
        /// Dotted field path, e.g. `contexts.demo.crt`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A machine-config input field is invalid.
    #[error("invalid machine config input: field {field}: {problem}")]
    InvalidInput {
        /// The input field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// Serializing a document to YAML failed.
    #[error("serialize {what} to YAML")]
    SerializeYaml {
        /// What kind of document.
        what: &'static str,
        /// The cause.
        #[source]
        source: serde_saphyr::SerializeError,
    },
    /// Reading a file failed.
    #[error("read {}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing a file (or its temporary sibling, or its parent folders) failed.
    #[error("write {}", path.display())]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The target of a private write is a symbolic link; it is not followed.
    #[error("write {}: refusing to replace a symbolic link", path.display())]
    WriteThroughSymlink {
        /// The file.
        path: PathBuf,
    },
    /// A file that must be created new already exists.
    #[error("create {}: file already exists, refusing to overwrite", path.display())]
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },
    /// An imported bundle differs from the one the cluster already has.
    #[error(
        "import secrets {}: the cluster already has a different secrets bundle at {}",
        source_path.display(),
        existing.display()
    )]
    ImportConflict {
        /// The file given to import.
        source_path: PathBuf,
        /// The bundle already in the cluster's state folder.
        existing: PathBuf,
    },
}
