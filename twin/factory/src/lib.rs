//! The twin's Talos image factory (`factory.talos.dev`, the parts hk8s uses): schematics and
//! Hetzner disk images, generated on demand and small.
//!
//! Routes ([`router`]):
//! - `POST /schematics` (YAML or JSON body) → 201 `{"id": "<sha256>", "schematic": "<yaml>"}`,
//!   400 for an invalid or unmodelled schematic ([`schematic`]);
//! - `GET|HEAD /image/<schematic>/<version>/hcloud-<amd64|arm64>.raw.xz` → 200
//!   `application/x-xz`, an xz stream of the raw image of [`image::generate`]; 404 for an
//!   unknown schematic, version or file name;
//! - `GET /versions` → the known Talos versions (JSON array).
//!
//! The vanilla and the Hetzner `qemu-guest-agent` schematics are known from the start, as in the
//! real factory where every schematic ID is content-addressed and these exist already.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod image;
pub mod schematic;

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{StatusCode, header};

pub use crate::image::{Arch, ImageInfo, Inspection};
pub use crate::schematic::{Schematic, SchematicError};

/// The Talos versions the factory serves by default: v1.9.0–v1.9.6, v1.10.0–v1.10.9,
/// v1.11.0–v1.11.6 and v1.12.0–v1.12.11.
pub fn default_versions() -> Vec<String> {
    let mut v = Vec::new();
    for (minor, last) in [(9, 6), (10, 9), (11, 6), (12, 11)] {
        for patch in 0..=last {
            v.push(format!("v1.{minor}.{patch}"));
        }
    }
    v
}

/// A compressing or serving step failed.
#[derive(Debug, thiserror::Error)]
pub enum FactoryError {
    /// xz compression failed.
    #[error("xz compression failed: {0}")]
    Compress(#[from] std::io::Error),
}

#[derive(Debug, Default)]
struct Inner {
    versions: BTreeSet<String>,
    schematics: HashMap<String, String>,
    images: HashMap<ImageInfo, Bytes>,
    downloads: u64,
}

/// The factory's state: known versions and schematics, and the compressed images made so far.
#[derive(Debug, Clone, Default)]
pub struct Factory(Arc<Mutex<Inner>>);

impl Factory {
    /// A factory serving `versions`, knowing the vanilla and Hetzner schematics.
    pub fn new(versions: impl IntoIterator<Item = String>) -> Factory {
        let f = Factory::default();
        {
            let mut inner = f.lock();
            inner.versions.extend(versions);
            for yaml in [
                "",
                "customization:\n  systemExtensions:\n    officialExtensions: [siderolabs/qemu-guest-agent]\n",
            ] {
                if let Ok(s) = Schematic::parse(yaml) {
                    inner.schematics.insert(s.id(), s.canonical_yaml());
                }
            }
        }
        f
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a Talos version to those served.
    pub fn add_version(&self, version: &str) {
        self.lock().versions.insert(version.to_string());
    }

    /// Registers a schematic and returns its ID (what `POST /schematics` does).
    pub fn add_schematic(&self, s: &Schematic) -> String {
        let id = s.id();
        self.lock()
            .schematics
            .insert(id.clone(), s.canonical_yaml());
        id
    }

    /// Whether a Talos version is served.
    pub fn knows_version(&self, version: &str) -> bool {
        self.lock().versions.contains(version)
    }

    /// Whether a schematic ID is known.
    pub fn knows_schematic(&self, id: &str) -> bool {
        self.lock().schematics.contains_key(id)
    }

    /// How many image downloads (`GET`, not `HEAD`) were served.
    pub fn downloads(&self) -> u64 {
        self.lock().downloads
    }

    /// The `.raw.xz` bytes of an image (made once, then cached); `None` when the version or
    /// schematic is unknown.
    pub async fn image_xz(&self, info: &ImageInfo) -> Option<Result<Bytes, FactoryError>> {
        {
            let inner = self.lock();
            if !inner.versions.contains(&info.talos_version)
                || !inner.schematics.contains_key(&info.schematic)
            {
                return None;
            }
            if let Some(b) = inner.images.get(info) {
                return Some(Ok(b.clone()));
            }
        }
        let i = info.clone();
        let made = tokio::task::spawn_blocking(move || compress(&image::generate(&i)))
            .await
            .map_err(|e| FactoryError::Compress(std::io::Error::other(e)))
            .and_then(|r| r);
        Some(made.map(|bytes| {
            let bytes = Bytes::from(bytes);
            self.lock().images.insert(info.clone(), bytes.clone());
            bytes
        }))
    }
}

/// xz-compresses `raw` (preset 6, CRC64, one stream), as `xz -6` would.
pub fn compress(raw: &[u8]) -> Result<Vec<u8>, FactoryError> {
    let mut w = lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(6))?;
    w.write_all(raw)?;
    Ok(w.finish()?)
}

/// The factory's routes (see the crate docs).
pub fn router(factory: Factory) -> Router {
    Router::new()
        .route("/schematics", post(create_schematic))
        .route("/image/{schematic}/{version}/{file}", get(get_image))
        .route("/versions", get(versions))
        .with_state(factory)
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg.into() + "\n",
    )
        .into_response()
}

async fn create_schematic(State(f): State<Factory>, body: String) -> Response {
    match Schematic::parse(&body) {
        Ok(s) => {
            let id = f.add_schematic(&s);
            (
                StatusCode::CREATED,
                axum::Json(serde_json::json!({"id": id, "schematic": s.canonical_yaml()})),
            )
                .into_response()
        }
        Err(e) => text(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn versions(State(f): State<Factory>) -> Response {
    let v: Vec<String> = f.lock().versions.iter().cloned().collect();
    axum::Json(v).into_response()
}

async fn get_image(
    State(f): State<Factory>,
    method: http::Method,
    Path((schematic, version, file)): Path<(String, String, String)>,
) -> Response {
    let arch = file
        .strip_prefix("hcloud-")
        .and_then(|a| a.strip_suffix(".raw.xz"))
        .and_then(|a| match a {
            "amd64" => Some(Arch::Amd64),
            "arm64" => Some(Arch::Arm64),
            _ => None,
        });
    let Some(arch) = arch else {
        return text(
            StatusCode::NOT_FOUND,
            format!("the twin's factory serves hcloud-<amd64|arm64>.raw.xz only, not {file}"),
        );
    };
    if !f.knows_schematic(&schematic) {
        return text(
            StatusCode::NOT_FOUND,
            format!("schematic {schematic} not found"),
        );
    }
    let info = ImageInfo {
        talos_version: version.clone(),
        arch,
        schematic,
    };
    match f.image_xz(&info).await {
        None => text(
            StatusCode::NOT_FOUND,
            format!("version {version} not found"),
        ),
        Some(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Some(Ok(bytes)) => {
            if method == http::Method::GET {
                f.lock().downloads += 1;
            }
            let len = bytes.len();
            (
                [
                    (header::CONTENT_TYPE, "application/x-xz".to_string()),
                    (header::CONTENT_LENGTH, len.to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{file}\""),
                    ),
                ],
                Body::from(bytes),
            )
                .into_response()
        }
    }
}
