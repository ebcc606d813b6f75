//! The Image Factory's `POST /schematics`: a schematic computed from the spec's customization
//! exists at the factory only once someone registered it, and an installer or image reference
//! naming an unknown ID is `not found`.

use hk8s_runtime::StepError;
use serde::Deserialize;

use crate::spec::{SchematicSection, TalosSection};

/// Registers the spec's schematic customization at `factory` and checks the factory computed
/// the same ID as hk8s. A ready ID or the vanilla schematic needs nothing and returns `None`.
///
/// # Errors
/// The factory does not answer (retryable), refuses the customization, or returns another ID
/// (permanent).
pub async fn register_schematic(
    factory: &str,
    talos: &TalosSection,
) -> Result<Option<String>, StepError> {
    let Some(SchematicSection::Customization(_)) = &talos.schematic else {
        return Ok(None);
    };
    let schematic = talos.factory_schematic();
    let yaml = schematic
        .canonical_yaml()
        .map_err(|e| StepError::permanent(format!("talos.schematic: {e}")))?;
    let wanted = talos.schematic_id();
    let url = format!("{}/schematics", factory.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/yaml")
        .body(yaml)
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
    Ok(Some(created.id))
}
