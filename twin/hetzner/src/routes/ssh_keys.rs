//! SSH keys: `GET|POST /ssh_keys`, `GET|PUT|DELETE /ssh_keys/{id}`.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use base64::Engine;
use chrono::Utc;
use serde_json::{Value, json};

use super::{JsonBody, ListCtx, check_name, created, labels_json, no_content, ok, parse_id, ts};
use crate::error::ApiError;
use crate::handle::TwinState;
use crate::model::SshKey;

/// Routes of this module.
pub fn routes() -> Router<TwinState> {
    Router::new()
        .route("/v1/ssh_keys", get(ssh_keys_list).post(ssh_keys_create))
        .route(
            "/v1/ssh_keys/{id}",
            get(ssh_keys_get)
                .put(ssh_keys_update)
                .delete(ssh_keys_delete),
        )
}

/// The API representation of an SSH key.
pub fn render(k: &SshKey) -> Value {
    json!({
        "id": k.id, "name": k.name, "fingerprint": k.fingerprint,
        "public_key": k.public_key, "labels": labels_json(&k.labels), "created": ts(k.created),
    })
}

/// MD5 fingerprint (colon-separated hex) of an OpenSSH public key line.
pub fn fingerprint(public_key: &str) -> Option<String> {
    let mut parts = public_key.split_whitespace();
    let kind = parts.next()?;
    if !(kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-")) {
        return None;
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(parts.next()?)
        .ok()?;
    let d = md5::compute(blob);
    Some(
        d.0.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// `GET /ssh_keys` (filters `name`, `fingerprint`, `label_selector`).
pub async fn ssh_keys_list(
    State(st): State<TwinState>,
    ctx: ListCtx,
) -> Result<Response, ApiError> {
    let w = st.world();
    let mut items: Vec<Value> = w.ssh_keys.values().map(render).collect();
    ctx.filter_name(&mut items);
    if let Some(f) = ctx.query.get("fingerprint") {
        items.retain(|i| i["fingerprint"] == f);
    }
    ctx.filter_labels(&w, &mut items)?;
    ctx.sort(&mut items, &["id", "name"])?;
    ctx.paginate("ssh_keys", items)
}

/// `POST /ssh_keys`.
pub async fn ssh_keys_create(
    State(st): State<TwinState>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let name = body.req_str("name")?;
    check_name(&name)?;
    let public_key = body.req_str("public_key")?.trim().to_string();
    let labels = body.opt_labels()?.unwrap_or_default();
    let fp = fingerprint(&public_key)
        .ok_or_else(|| ApiError::invalid_field("public_key", "invalid public key"))?;
    st.mutate(|w| {
        if w.ssh_keys.values().any(|k| k.name == name) {
            return Err(ApiError::uniqueness("name"));
        }
        if w.ssh_keys.values().any(|k| k.fingerprint == fp) {
            return Err(ApiError::uniqueness("public_key"));
        }
        let id = w.next_id();
        let k = SshKey {
            id,
            name,
            fingerprint: fp,
            public_key,
            labels,
            created: Utc::now(),
        };
        let v = render(&k);
        w.ssh_keys.insert(id, k);
        Ok(created(json!({"ssh_key": v})))
    })
}

/// `GET /ssh_keys/{id}`.
pub async fn ssh_keys_get(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "ssh_key")?;
    let w = st.world();
    let k = w
        .ssh_keys
        .get(&id)
        .ok_or_else(|| ApiError::not_found("ssh_key"))?;
    Ok(ok(json!({"ssh_key": render(k)})))
}

/// `PUT /ssh_keys/{id}` (name, labels).
pub async fn ssh_keys_update(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "ssh_key")?;
    let name = body.opt_str("name")?;
    let labels = body.opt_labels()?;
    st.mutate(|w| {
        if !w.ssh_keys.contains_key(&id) {
            return Err(ApiError::not_found("ssh_key"));
        }
        if let Some(n) = &name {
            check_name(n)?;
            if w.ssh_keys.values().any(|k| &k.name == n && k.id != id) {
                return Err(ApiError::uniqueness("name"));
            }
        }
        let k = w
            .ssh_keys
            .get_mut(&id)
            .ok_or_else(|| ApiError::not_found("ssh_key"))?;
        if let Some(n) = name {
            k.name = n;
        }
        if let Some(l) = labels {
            k.labels = l;
        }
        Ok(ok(json!({"ssh_key": render(k)})))
    })
}

/// `DELETE /ssh_keys/{id}`.
pub async fn ssh_keys_delete(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "ssh_key")?;
    st.mutate(|w| {
        w.ssh_keys
            .remove(&id)
            .ok_or_else(|| ApiError::not_found("ssh_key"))?;
        Ok(no_content())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_md5_of_the_blob() {
        // The blob "AAAAC3NzaC1lZDI1NTE5" is the 15 bytes "\0\0\0\x0bssh-ed25519".
        let fp = fingerprint("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 me@host").unwrap();
        let expect = md5::compute(b"\0\0\0\x0bssh-ed25519");
        let hex: Vec<String> = expect.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(fp, hex.join(":"));
        assert_eq!(fp.len(), 47);
        assert!(fingerprint("not a key").is_none());
        assert!(fingerprint("ssh-ed25519 !!!").is_none());
    }
}
