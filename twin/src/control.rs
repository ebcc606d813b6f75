//! The control API under `/twin/` (no token, no rate limit): state dump, request log, faults,
//! Talos snapshot seeding, speed and rate-limit settings.
//!
//! | Method | Path | Body | Result |
//! |---|---|---|---|
//! | GET | `/twin/state` | | all resources in API form, plus address block and speed |
//! | GET | `/twin/requests` | | `{requests:[{seq,method,path,endpoint,status,time}], counts, total, mutating}` |
//! | POST | `/twin/reset-requests` | | 204, log emptied |
//! | POST | `/twin/faults` | a [`FaultRule`] | 201 `{id}` |
//! | GET | `/twin/faults` | | installed rules with counters |
//! | DELETE | `/twin/faults` | | 204, all rules removed |
//! | POST | `/twin/images/talos` | `{arch, version, labels?}` | 201 `{image}` |
//! | PUT | `/twin/speed` | `{speed}` | `{speed}` |
//! | PUT | `/twin/rate-limit` | `{capacity, refill_per_sec}` | the new limit, bucket refilled |
//! | POST | `/twin/tokens/read-only` | `{token}` | that token may `GET` only (403 `token_readonly` otherwise) |

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use hk8s_twin_hetzner::error::ApiError;
use hk8s_twin_hetzner::faults::FaultRule;
use hk8s_twin_hetzner::handle::TwinState;
use hk8s_twin_hetzner::labels::Labels;
use hk8s_twin_hetzner::ratelimit::RateLimit;
use hk8s_twin_hetzner::routes::{self as hetzner, JsonBody, action_json, created, no_content, ok};

/// The control router (paths include `/twin`).
pub fn router(state: TwinState) -> Router {
    Router::new()
        .route("/twin/state", get(control_state))
        .route("/twin/requests", get(control_requests))
        .route("/twin/reset-requests", post(control_reset_requests))
        .route(
            "/twin/faults",
            get(control_faults_list)
                .post(control_faults_add)
                .delete(control_faults_clear),
        )
        .route("/twin/images/talos", post(control_seed_talos))
        .route("/twin/speed", put(control_speed))
        .route("/twin/rate-limit", put(control_rate_limit))
        .route("/twin/tokens/read-only", post(control_read_only_token))
        .with_state(state)
}

/// The whole state as JSON, each resource rendered as the API renders it.
pub fn dump(st: &TwinState) -> Value {
    let w = st.world();
    json!({
        "speed": w.speed,
        "address_block": w.pool.net().to_string(),
        "servers": w.servers.values().map(|s| hetzner::servers::render(&w, s)).collect::<Vec<_>>(),
        "images": w.images.values().map(hetzner::images::render).collect::<Vec<_>>(),
        "ssh_keys": w.ssh_keys.values().map(hetzner::ssh_keys::render).collect::<Vec<_>>(),
        "networks": w.networks.values().map(|n| hetzner::networks::render(&w, n)).collect::<Vec<_>>(),
        "firewalls": w.firewalls.values().map(|f| hetzner::firewalls::render(&w, f)).collect::<Vec<_>>(),
        "load_balancers": w.load_balancers.values().map(|l| hetzner::load_balancers::render(&w, l)).collect::<Vec<_>>(),
        "placement_groups": w.placement_groups.values().map(|p| hetzner::placement_groups::render(&w, p)).collect::<Vec<_>>(),
        "volumes": w.volumes.values().map(hetzner::volumes::render).collect::<Vec<_>>(),
        "actions": w.actions.values().map(action_json).collect::<Vec<_>>(),
    })
}

/// `GET /twin/state`.
pub async fn control_state(State(st): State<TwinState>) -> Response {
    ok(dump(&st))
}

/// `GET /twin/requests`.
pub async fn control_requests(State(st): State<TwinState>) -> Response {
    ok(st.log().to_json())
}

/// `POST /twin/reset-requests`.
pub async fn control_reset_requests(State(st): State<TwinState>) -> Response {
    st.log().reset();
    no_content()
}

/// `POST /twin/faults`.
pub async fn control_faults_add(
    State(st): State<TwinState>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let rule: FaultRule =
        serde_json::from_value(body.0).map_err(|e| ApiError::invalid_input(e.to_string()))?;
    let id = st
        .faults()
        .add(rule)
        .map_err(|e| ApiError::invalid_input(e.to_string()))?;
    Ok(created(json!({"id": id})))
}

/// `GET /twin/faults`.
pub async fn control_faults_list(State(st): State<TwinState>) -> Response {
    ok(json!({"faults": st.faults().list()}))
}

/// `DELETE /twin/faults`.
pub async fn control_faults_clear(State(st): State<TwinState>) -> Response {
    st.faults().clear();
    no_content()
}

/// `POST /twin/images/talos` with `{arch, version, labels?}`.
pub async fn control_seed_talos(
    State(st): State<TwinState>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let arch = body.req_str("arch")?;
    let version = body.req_str("version")?;
    let extra: Labels = body.opt_typed("labels")?.unwrap_or_default();
    let id = st.seed_talos_snapshot(&arch, &version, extra)?;
    let w = st.world();
    let img = w
        .images
        .get(&id)
        .map(hetzner::images::render)
        .unwrap_or(Value::Null);
    Ok(created(json!({"image": img})))
}

/// `PUT /twin/speed` with `{speed}`.
pub async fn control_speed(
    State(st): State<TwinState>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let speed = body
        .0
        .get("speed")
        .and_then(Value::as_f64)
        .filter(|s| s.is_finite() && *s > 0.0)
        .ok_or_else(|| ApiError::invalid_field("speed", "speed must be a positive number"))?;
    st.set_speed(speed);
    Ok(ok(json!({"speed": st.speed()})))
}

/// `POST /twin/tokens/read-only` with `{token}`: that token may read but not write.
pub async fn control_read_only_token(
    State(st): State<TwinState>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let token = body
        .0
        .get("token")
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| ApiError::invalid_field("token", "token must be a non-empty string"))?;
    st.add_read_only_token(token.trim());
    Ok(ok(json!({"read_only": true})))
}

/// `PUT /twin/rate-limit` with `{capacity, refill_per_sec}`.
pub async fn control_rate_limit(
    State(st): State<TwinState>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let limit: RateLimit = body.typed()?;
    if limit.capacity == 0 || !(limit.refill_per_sec.is_finite() && limit.refill_per_sec >= 0.0) {
        return Err(ApiError::invalid_input(
            "capacity must be >= 1 and refill_per_sec >= 0",
        ));
    }
    st.bucket().reconfigure(limit);
    Ok(ok(serde_json::to_value(limit).unwrap_or(Value::Null)))
}
