//! The Image Factory's `POST /schematics`: a schematic computed from the spec's customization
//! exists at the factory only once someone registered it, and an installer or image reference
//! naming an unknown ID is `not found`. `upgrade-cluster` registers it before the first
//! installer names it, `build-image` before the rescue system downloads the image.

use hk8s_runtime::StepError;
use serde::Deserialize;

use crate::spec::{SchematicSection, TalosSection};

/// Registers the spec's schematic customization at `factory` and checks the factory computed
/// the same ID as hk8s. A ready ID or the vanilla schematic needs nothing and returns `None`.
///
/// # Errors
/// As [`register`].
pub async fn register_schematic(
    factory: &str,
    talos: &TalosSection,
) -> Result<Option<String>, StepError> {
    match customization_yaml(talos)? {
        None => Ok(None),
        Some(yaml) => register(factory, &yaml, &talos.schematic_id())
            .await
            .map(Some),
    }
}

/// The canonical YAML the factory is sent for the spec's customization; `None` for a ready ID
/// or the vanilla schematic (nothing to register).
///
/// # Errors
/// The customization cannot be written as a schematic (permanent; validation catches it first).
pub fn customization_yaml(talos: &TalosSection) -> Result<Option<String>, StepError> {
    let Some(SchematicSection::Customization(_)) = &talos.schematic else {
        return Ok(None);
    };
    talos
        .factory_schematic()
        .canonical_yaml()
        .map(Some)
        .map_err(|e| StepError::permanent(format!("talos.schematic: {e}")))
}

/// Sends the schematic `yaml` to `factory`'s `POST /schematics` and checks the ID it answers
/// is `wanted`.
///
/// # Errors
/// The factory does not answer or is overloaded (retryable), refuses the customization, or
/// returns another ID (permanent).
pub async fn register(factory: &str, yaml: &str, wanted: &str) -> Result<String, StepError> {
    let url = format!("{}/schematics", factory.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/yaml")
        .body(yaml.to_string())
        .send()
        .await
        .map_err(|e| StepError::retryable(format!("image factory {url}: {e}")))?;
    let status = response.status();
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(StepError::retryable(format!(
            "image factory {url} answered {status}"
        )));
    }
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(StepError::permanent(format!(
            "image factory {url} refused talos.schematic ({status}): {}",
            body.trim()
        )));
    }
    #[derive(Deserialize)]
    struct Created {
        id: String,
    }
    let created: Created = response.json().await.map_err(|e| {
        StepError::permanent(format!("image factory {url}: unexpected answer: {e}"))
    })?;
    if created.id != wanted {
        return Err(StepError::permanent(format!(
            "image factory {url} registered talos.schematic as {}, hk8s computed {wanted}",
            created.id
        )));
    }
    Ok(created.id)
}
