//! Volumes: CRUD plus `attach`, `detach`, `resize` and `change_protection`; a volume created
//! with `server` is attached by a second action (`next_actions`). Deleting a server detaches its
//! volumes (see `servers_delete`).

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::{Value, json};

use super::{JsonBody, ListCtx, action_by_id, created, labels_json, no_content, ok, parse_id, ts};
use crate::catalog::{self, Location};
use crate::error::ApiError;
use crate::handle::TwinState;
use crate::labels::Labels;
use crate::model::{Id, Kind, Volume};
use crate::world::World;

/// Smallest volume in GB.
pub const MIN_SIZE_GB: i64 = 10;
/// Largest volume in GB.
pub const MAX_SIZE_GB: i64 = 10240;

/// Routes of this module.
pub fn routes() -> Router<TwinState> {
    Router::new()
        .route("/v1/volumes", get(volumes_list).post(volumes_create))
        .route(
            "/v1/volumes/{id}",
            get(volumes_get).put(volumes_update).delete(volumes_delete),
        )
        .route("/v1/volumes/{id}/actions/attach", post(volumes_attach))
        .route("/v1/volumes/{id}/actions/detach", post(volumes_detach))
        .route("/v1/volumes/{id}/actions/resize", post(volumes_resize))
        .route(
            "/v1/volumes/{id}/actions/change_protection",
            post(volumes_change_protection),
        )
}

/// The API representation of a volume.
pub fn render(v: &Volume) -> Value {
    json!({
        "id": v.id,
        "name": v.name,
        "size": v.size,
        "server": v.server,
        "location": v.location.to_json(),
        "linux_device": format!("/dev/disk/by-id/scsi-0HC_Volume_{}", v.id),
        "protection": {"delete": v.protect_delete},
        "labels": labels_json(&v.labels),
        "status": v.status,
        "format": v.format,
        "created": ts(v.created),
    })
}

/// Whether `name` is a valid volume name: alphanumerics, `-`, `_`, `.`, starting and ending
/// alphanumeric, at most 64 characters.
pub fn is_volume_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
}

fn check_size(size: i64) -> Result<(), ApiError> {
    if !(MIN_SIZE_GB..=MAX_SIZE_GB).contains(&size) {
        return Err(ApiError::invalid_field(
            "size",
            format!("size must be between {MIN_SIZE_GB} and {MAX_SIZE_GB} GB"),
        ));
    }
    Ok(())
}

fn volume(w: &World, id: Id) -> Result<&Volume, ApiError> {
    w.volumes
        .get(&id)
        .ok_or_else(|| ApiError::not_found("volume"))
}

fn volume_mut(w: &mut World, id: Id) -> Result<&mut Volume, ApiError> {
    w.volumes
        .get_mut(&id)
        .ok_or_else(|| ApiError::not_found("volume"))
}

/// What a new volume is made of.
#[derive(Debug, Clone)]
pub struct NewVolume {
    /// Unique name.
    pub name: String,
    /// Size in GB.
    pub size: i64,
    /// Location (may be `None` when `server` is given).
    pub location: Option<&'static Location>,
    /// Server to attach it to once created.
    pub server: Option<Id>,
    /// Labels.
    pub labels: Labels,
    /// Filesystem (`xfs`, `ext4`).
    pub format: Option<String>,
}

/// Creates a volume (status `creating` until `create_volume` finishes) and, with a server, an
/// `attach_volume` action that starts after it. Returns (volume id, action, next actions).
pub fn create_volume(w: &mut World, v: NewVolume) -> Result<(Id, Id, Vec<Id>), ApiError> {
    if !is_volume_name(&v.name) {
        return Err(ApiError::invalid_field(
            "name",
            "name must be 1-64 alphanumerics, '-', '_' or '.', starting and ending alphanumeric",
        ));
    }
    check_size(v.size)?;
    if let Some(f) = &v.format
        && f != "xfs"
        && f != "ext4"
    {
        return Err(ApiError::invalid_field(
            "format",
            "format must be xfs or ext4",
        ));
    }
    if w.volumes.values().any(|x| x.name == v.name) {
        return Err(ApiError::uniqueness("name"));
    }
    let location = match (v.server, v.location) {
        (Some(sid), loc) => {
            let s = w
                .servers
                .get(&sid)
                .ok_or_else(|| ApiError::invalid_field("server", "server not found"))?;
            if loc.is_some_and(|l| l.name != s.location.name) {
                return Err(ApiError::invalid_field(
                    "location",
                    "the volume must be in the server's location",
                ));
            }
            s.location
        }
        (None, Some(l)) => l,
        (None, None) => {
            return Err(ApiError::invalid_field(
                "location",
                "location or server is required",
            ));
        }
    };
    let id = w.next_id();
    w.volumes.insert(
        id,
        Volume {
            id,
            name: v.name,
            size: v.size,
            location,
            format: v.format,
            server: None,
            status: "creating",
            labels: v.labels,
            protect_delete: false,
            created: Utc::now(),
        },
    );
    let create_secs = w.latency.volume_create;
    let attach_secs = w.latency.volume_attach;
    let mut next = Vec::new();
    let mut resources = vec![(id, "volume")];
    if let Some(sid) = v.server {
        resources.push((sid, "server"));
    }
    let action = match v.server {
        None => w.start_action(
            "create_volume",
            resources,
            Some((Kind::Volume, id)),
            create_secs,
            Box::new(move |w| {
                if let Some(v) = w.volumes.get_mut(&id) {
                    v.status = "available";
                }
                Vec::new()
            }),
        ),
        Some(sid) => {
            // The attach action is listed at once (next_actions) and runs after the create.
            let attach = w.start_action(
                "attach_volume",
                vec![(id, "volume"), (sid, "server")],
                None,
                create_secs + attach_secs,
                Box::new(move |w| {
                    if w.servers.contains_key(&sid)
                        && let Some(v) = w.volumes.get_mut(&id)
                    {
                        v.server = Some(sid);
                    }
                    Vec::new()
                }),
            );
            next.push(attach);
            w.start_action(
                "create_volume",
                resources,
                Some((Kind::Volume, id)),
                create_secs,
                Box::new(move |w| {
                    if let Some(v) = w.volumes.get_mut(&id) {
                        v.status = "available";
                    }
                    Vec::new()
                }),
            )
        }
    };
    Ok((id, action, next))
}

/// Deletes a volume: 422 `resource_in_use` while attached, `protected` with delete protection,
/// 423 while an action runs.
pub fn delete_volume(w: &mut World, id: Id) -> Result<(), ApiError> {
    let v = volume(w, id)?;
    w.ensure_unlocked(Kind::Volume, id)?;
    if v.protect_delete {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "protected",
            "the volume is delete protected",
        ));
    }
    if v.server.is_some() {
        return Err(ApiError::unprocessable(
            "resource_in_use",
            "the volume is attached to a server",
        ));
    }
    w.volumes.remove(&id);
    Ok(())
}

/// Detaches a volume at once (no action), e.g. before the CSI driver deletes it.
pub fn detach(w: &mut World, id: Id) {
    if let Some(v) = w.volumes.get_mut(&id) {
        v.server = None;
    }
}

/// Detaches every volume attached to `server` (on server delete).
pub fn detach_all(w: &mut World, server: Id) {
    for v in w.volumes.values_mut() {
        if v.server == Some(server) {
            v.server = None;
        }
    }
}

/// `GET /volumes` (filters `name`, `label_selector`, `status`).
pub async fn volumes_list(State(st): State<TwinState>, ctx: ListCtx) -> Result<Response, ApiError> {
    let w = st.world();
    let mut items: Vec<Value> = w.volumes.values().map(render).collect();
    ctx.filter_name(&mut items);
    let statuses = ctx.query.all("status");
    if !statuses.is_empty() {
        items.retain(|i| statuses.iter().any(|s| i["status"] == s.as_str()));
    }
    ctx.filter_labels(&w, &mut items)?;
    ctx.sort(&mut items, &["id", "name", "created"])?;
    ctx.paginate("volumes", items)
}

/// `GET /volumes/{id}`.
pub async fn volumes_get(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "volume")?;
    let w = st.world();
    Ok(ok(json!({"volume": render(volume(&w, id)?)})))
}

/// `POST /volumes` → `{volume, action, next_actions}`.
pub async fn volumes_create(
    State(st): State<TwinState>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let name = body.req_str("name")?;
    let size = body.req_i64("size")?;
    let server = body.opt_i64("server")?;
    let location = match body.opt_ref("location")? {
        Some(l) => Some(catalog::location(&l).ok_or_else(|| {
            ApiError::invalid_field("location", format!("location '{l}' not found"))
        })?),
        None => None,
    };
    let automount = body.opt_bool("automount")?.unwrap_or(false);
    if automount && server.is_none() {
        return Err(ApiError::invalid_field(
            "automount",
            "automount needs a server",
        ));
    }
    let labels = body.opt_labels()?.unwrap_or_default();
    let format = body.opt_str("format")?;
    st.mutate(|w| {
        let (id, action, next) = create_volume(
            w,
            NewVolume {
                name,
                size,
                location,
                server,
                labels,
                format,
            },
        )?;
        let v = render(volume(w, id)?);
        Ok(created(json!({
            "volume": v,
            "action": action_by_id(w, action),
            "next_actions": next.into_iter().map(|a| action_by_id(w, a)).collect::<Vec<_>>(),
        })))
    })
}

/// `PUT /volumes/{id}` (name, labels).
pub async fn volumes_update(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "volume")?;
    let name = body.opt_str("name")?;
    let labels = body.opt_labels()?;
    st.mutate(|w| {
        volume(w, id)?;
        if let Some(n) = &name {
            if !is_volume_name(n) {
                return Err(ApiError::invalid_field("name", "invalid volume name"));
            }
            if w.volumes.values().any(|v| &v.name == n && v.id != id) {
                return Err(ApiError::uniqueness("name"));
            }
        }
        let v = volume_mut(w, id)?;
        if let Some(n) = name {
            v.name = n;
        }
        if let Some(l) = labels {
            v.labels = l;
        }
        Ok(ok(json!({"volume": render(v)})))
    })
}

/// `DELETE /volumes/{id}` → 204.
pub async fn volumes_delete(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "volume")?;
    st.mutate(|w| {
        delete_volume(w, id)?;
        Ok(no_content())
    })
}

/// Runs a volume action: checks existence and lock, applies `change` (which returns the extra
/// resources and the effect at the end), starts the action.
fn volume_action(
    st: &TwinState,
    id: &str,
    command: &'static str,
    secs: impl FnOnce(&World) -> f64,
    change: impl FnOnce(&mut World, Id) -> Result<Vec<(Id, &'static str)>, ApiError>,
) -> Result<Response, ApiError> {
    let id = parse_id(id, "volume")?;
    st.mutate(|w| {
        volume(w, id)?;
        w.ensure_unlocked(Kind::Volume, id)?;
        let mut res = vec![(id, "volume")];
        res.extend(change(w, id)?);
        let secs = secs(w);
        let a = w.start_action(
            command,
            res,
            Some((Kind::Volume, id)),
            secs,
            Box::new(|_| Vec::new()),
        );
        Ok(created(json!({"action": action_by_id(w, a)})))
    })
}

/// `POST /volumes/{id}/actions/attach` (`server`, `automount`).
pub async fn volumes_attach(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let server = body.req_i64("server")?;
    body.opt_bool("automount")?;
    volume_action(
        &st,
        &id,
        "attach_volume",
        |w| w.latency.volume_attach,
        |w, id| {
            let s = w
                .servers
                .get(&server)
                .ok_or_else(|| ApiError::not_found("server"))?;
            let loc = s.location.name;
            let v = volume(w, id)?;
            if v.location.name != loc {
                return Err(ApiError::invalid_input(
                    "the volume and the server are in different locations",
                ));
            }
            match v.server {
                Some(x) if x == server => {}
                Some(_) => {
                    return Err(ApiError::unprocessable(
                        "resource_in_use",
                        "the volume is attached to another server",
                    ));
                }
                None => volume_mut(w, id)?.server = Some(server),
            }
            Ok(vec![(server, "server")])
        },
    )
}

/// `POST /volumes/{id}/actions/detach`.
pub async fn volumes_detach(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    volume_action(
        &st,
        &id,
        "detach_volume",
        |w| w.latency.volume_attach,
        |w, id| {
            let v = volume_mut(w, id)?;
            Ok(v.server.take().map(|s| (s, "server")).into_iter().collect())
        },
    )
}

/// `POST /volumes/{id}/actions/resize` (`size`, only larger).
pub async fn volumes_resize(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let size = body.req_i64("size")?;
    check_size(size)?;
    volume_action(
        &st,
        &id,
        "resize_volume",
        |w| w.latency.volume_attach,
        |w, id| {
            let v = volume_mut(w, id)?;
            if size < v.size {
                return Err(ApiError::invalid_field("size", "volumes cannot shrink"));
            }
            v.size = size;
            Ok(Vec::new())
        },
    )
}

/// `POST /volumes/{id}/actions/change_protection` (`delete`).
pub async fn volumes_change_protection(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let delete = body.opt_bool("delete")?;
    volume_action(
        &st,
        &id,
        "change_protection",
        |_| 0.0,
        |w, id| {
            if let Some(d) = delete {
                volume_mut(w, id)?.protect_delete = d;
            }
            Ok(Vec::new())
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names() {
        assert!(is_volume_name("pvc-1a2b.data_x"));
        assert!(!is_volume_name("-x"));
        assert!(!is_volume_name("x-"));
        assert!(!is_volume_name(""));
        assert!(!is_volume_name(&"a".repeat(65)));
        assert!(!is_volume_name("a b"));
    }
}
