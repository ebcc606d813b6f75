//! Private files (mode 0600, written atomically) and the per-cluster secrets store.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rand::RngCore as _;

use crate::contract::Contract;
use crate::error::{Error, Result};
use crate::secrets::SecretsBundle;

/// File name of the secrets bundle in a cluster's state folder.
pub const SECRETS_FILE: &str = "secrets.yaml";
/// File name of the talosconfig in a cluster's state folder.
pub const TALOSCONFIG_FILE: &str = "talosconfig";

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::WriteFile {
        path: path.to_owned(),
        source,
    }
}

/// Creates missing parent folders (mode 0700) of `path`.
fn create_parent(path: &Path) -> Result<PathBuf> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(&parent).map_err(write_err(&parent))?;
    Ok(parent)
}

/// Fails if `path` exists as a symbolic link (we never write through one).
fn refuse_symlink(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(Error::WriteThroughSymlink {
            path: path.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// Writes `bytes` to a new, exclusive (`O_EXCL`, so never a symlink) temporary file next to
/// `path`, mode 0600, synced. Returns the temporary path.
fn write_temp(path: &Path, parent: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    let tmp = parent.join(format!(".{name}.tmp-{:016x}", rand::rng().next_u64()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(source) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::WriteFile {
            path: path.to_owned(),
            source,
        });
    }
    Ok(tmp)
}

fn sync_dir(dir: &Path) {
    // Best effort: makes the rename durable on Linux; not all platforms can open folders.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `bytes` to `path` atomically with mode 0600 (temporary file + rename), creating
/// parent folders (0700). Replaces an existing regular file; refuses to replace a symlink.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = create_parent(path)?;
    refuse_symlink(path)?;
    let tmp = write_temp(path, &parent, bytes)?;
    if let Err(source) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::WriteFile {
            path: path.to_owned(),
            source,
        });
    }
    sync_dir(&parent);
    Ok(())
}

/// Like [`write_private`], but fails with [`Error::AlreadyExists`] if `path` exists (even as a
/// dangling symlink). Atomic: the complete file appears under `path` or nothing does.
pub fn write_private_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = create_parent(path)?;
    if fs::symlink_metadata(path).is_ok() {
        return Err(Error::AlreadyExists {
            path: path.to_owned(),
        });
    }
    let tmp = write_temp(path, &parent, bytes)?;
    // link(2) never replaces an existing name, unlike rename(2).
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(&parent);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::AlreadyExists {
            path: path.to_owned(),
        }),
        Err(source) => Err(Error::WriteFile {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The secrets bundle in a cluster's state folder (`<dir>/secrets.yaml`).
///
/// The bundle is made once per cluster. These functions keep "there is none yet" and "there is
/// one" apart so the workflow can refuse to silently regenerate secrets for a cluster whose
/// servers already exist.
#[derive(Debug, Clone, Copy)]
pub struct SecretsStore;

impl SecretsStore {
    /// `<dir>/secrets.yaml`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(SECRETS_FILE)
    }

    /// The cluster's bundle, `None` if the folder has no `secrets.yaml`; an unreadable or invalid
    /// file is an error naming the file and field.
    pub fn load(dir: &Path) -> Result<Option<SecretsBundle>> {
        let path = Self::path(dir);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::ReadFile { path, source }),
        };
        SecretsBundle::from_yaml(&text, &path.display().to_string()).map(Some)
    }

    /// Generates a bundle for `contract` and stores it; fails with [`Error::AlreadyExists`]
    /// (before generating anything) if the folder already has one.
    pub fn create_new(dir: &Path, contract: Contract, now: SystemTime) -> Result<SecretsBundle> {
        let path = Self::path(dir);
        if fs::symlink_metadata(&path).is_ok() {
            return Err(Error::AlreadyExists { path });
        }
        let bundle = SecretsBundle::generate(contract, now)?;
        Self::save_new(dir, &bundle)?;
        Ok(bundle)
    }

    /// Stores `bundle` as the cluster's bundle (mode 0600); never overwrites.
    pub fn save_new(dir: &Path, bundle: &SecretsBundle) -> Result<()> {
        write_private_new(&Self::path(dir), bundle.to_yaml()?.as_bytes())
    }

    /// Imports an existing bundle (`--secrets FILE`): reads and validates `file`, then stores it.
    /// If the cluster already has a bundle, an identical one is accepted (re-runs) and a
    /// different one is [`Error::ImportConflict`].
    pub fn import(dir: &Path, file: &Path) -> Result<SecretsBundle> {
        let text = fs::read_to_string(file).map_err(|source| Error::ReadFile {
            path: file.to_owned(),
            source,
        })?;
        let imported = SecretsBundle::from_yaml(&text, &file.display().to_string())?;
        if let Some(existing) = Self::load(dir)? {
            return if existing == imported {
                Ok(existing)
            } else {
                Err(Error::ImportConflict {
                    source_path: file.to_owned(),
                    existing: Self::path(dir),
                })
            };
        }
        Self::save_new(dir, &imported)?;
        Ok(imported)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn write_private_creates_parents_and_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a/b/talosconfig");
        write_private(&path, b"one").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&tmp.path().join("a/b")), 0o700);
        // Replaces, keeps 0600, leaves no temporary files behind.
        write_private(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o600);
        let names: Vec<_> = fs::read_dir(tmp.path().join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("talosconfig")]);
    }

    #[test]
    fn write_private_fixes_mode_of_a_world_readable_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("kubeconfig");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"new").unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn write_private_refuses_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        fs::write(&target, b"keep").unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = write_private(&link, b"x").unwrap_err();
        assert!(matches!(err, Error::WriteThroughSymlink { .. }), "{err}");
        assert_eq!(fs::read(&target).unwrap(), b"keep");
    }

    #[test]
    fn write_private_new_never_overwrites() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("secrets.yaml");
        write_private_new(&path, b"first").unwrap();
        assert_eq!(mode(&path), 0o600);
        let err = write_private_new(&path, b"second").unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
        assert!(err.to_string().contains("secrets.yaml"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"first");
        // A dangling symlink counts as existing.
        let dangling = tmp.path().join("dangling");
        std::os::unix::fs::symlink(tmp.path().join("nowhere"), &dangling).unwrap();
        assert!(matches!(
            write_private_new(&dangling, b"x"),
            Err(Error::AlreadyExists { .. })
        ));
        assert!(!tmp.path().join("nowhere").exists());
    }

    #[test]
    fn load_of_an_empty_folder_is_none() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(SecretsStore::load(tmp.path()).unwrap().is_none());
        assert!(
            SecretsStore::load(&tmp.path().join("missing/folder"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn load_of_a_broken_file_names_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(SecretsStore::path(tmp.path()), "cluster: [unclosed").unwrap();
        let err = SecretsStore::load(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("secrets.yaml"), "{err}");
    }

    #[test]
    fn create_new_refuses_an_existing_bundle_without_generating() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(SecretsStore::path(tmp.path()), "anything").unwrap();
        let err =
            SecretsStore::create_new(tmp.path(), Contract::V1_11, crate::testutil::test_now())
                .unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
        assert_eq!(
            fs::read_to_string(SecretsStore::path(tmp.path())).unwrap(),
            "anything"
        );
    }

    #[test]
    fn save_new_then_load_returns_the_bundle() {
        let bundle = crate::testutil::bundle();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("clusters/demo");
        SecretsStore::save_new(&dir, bundle).unwrap();
        assert_eq!(mode(&SecretsStore::path(&dir)), 0o600);
        assert_eq!(SecretsStore::load(&dir).unwrap().as_ref(), Some(bundle));
        assert!(matches!(
            SecretsStore::save_new(&dir, bundle),
            Err(Error::AlreadyExists { .. })
        ));
    }

    #[test]
    fn import_stores_once_and_detects_conflicts() {
        let (bundle, text, _) = crate::testutil::shared();
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("from-talosctl.yaml");
        fs::write(&file, text).unwrap();
        let dir = tmp.path().join("clusters/demo");
        assert_eq!(&SecretsStore::import(&dir, &file).unwrap(), bundle);
        assert_eq!(mode(&SecretsStore::path(&dir)), 0o600);
        // Re-running with the same file is fine.
        assert_eq!(&SecretsStore::import(&dir, &file).unwrap(), bundle);
        // A different bundle is refused.
        let spec = crate::testutil::spec_dir();
        if let Some(spec) = spec {
            let other = spec.join("talos-fixtures/v1.11/secrets.yaml");
            let err = SecretsStore::import(&dir, &other).unwrap_err();
            assert!(matches!(err, Error::ImportConflict { .. }), "{err}");
        }
    }

    #[test]
    fn import_errors_name_the_file_and_field() {
        let (_, text, _) = crate::testutil::shared();
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("broken.yaml");
        let mut json: serde_json::Value = serde_saphyr::from_str(text).unwrap();
        json["certs"]["os"].as_object_mut().unwrap().remove("key");
        fs::write(&file, serde_saphyr::to_string(&json).unwrap()).unwrap();
        let err = SecretsStore::import(&tmp.path().join("c"), &file)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&file.display().to_string()), "{err}");
        assert!(err.contains("field certs.os.key: missing"), "{err}");
        assert!(SecretsStore::load(&tmp.path().join("c")).unwrap().is_none());
        let missing = SecretsStore::import(tmp.path(), &tmp.path().join("nope.yaml")).unwrap_err();
        assert!(matches!(missing, Error::ReadFile { .. }), "{missing}");
    }
}
