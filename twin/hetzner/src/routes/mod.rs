//! The Hetzner Cloud API under `/v1`, written from `spec/hcloud-openapi.json`.
//!
//! [`router`] builds the axum router; every request passes [`gate`] (request log, rate limit,
//! bearer token, fault injection) before its handler. Handlers are named after the resource and
//! operation (`servers_create`, `firewalls_set_rules`, ...) and live in one module per resource.

pub mod actions;
pub mod catalog_routes;
pub mod firewalls;
pub mod images;
pub mod load_balancers;
pub mod networks;
pub mod placement_groups;
pub mod primary_ips;
pub mod servers;
pub mod ssh_keys;
pub mod volumes;

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, OriginalUri, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

use crate::error::{ApiError, CORRELATION_ID, correlation_id};
use crate::faults::FaultEffect;
use crate::handle::TwinState;
use crate::labels::{self, Labels};
use crate::model::{Action, Id, Kind};
use crate::world::World;

/// Maximum `per_page`.
pub const MAX_PER_PAGE: usize = 50;

/// Per-connection switch the socket server installs so a fault can drop the connection.
#[derive(Clone, Debug)]
pub struct ConnKill(pub Arc<Notify>);

/// The Hetzner API router (paths include the `/v1` prefix).
pub fn router(state: TwinState) -> Router {
    Router::new()
        .merge(catalog_routes::routes())
        .merge(servers::routes())
        .merge(images::routes())
        .merge(ssh_keys::routes())
        .merge(networks::routes())
        .merge(firewalls::routes())
        .merge(load_balancers::routes())
        .merge(placement_groups::routes())
        .merge(primary_ips::routes())
        .merge(volumes::routes())
        .merge(actions::routes())
        .fallback(not_found_fallback)
        .layer(axum::middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}

async fn not_found_fallback() -> ApiError {
    ApiError::not_found("endpoint")
}

fn dropped_response() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("connection dropped by twin fault"))
    });
    let mut r = Response::new(Body::from_stream(stream));
    *r.status_mut() = StatusCode::OK;
    r
}

fn fault_error(e: crate::faults::FaultError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let msg = e
        .message
        .unwrap_or_else(|| format!("injected fault: {}", e.code));
    ApiError::new(status, &e.code, msg).into_response()
}

async fn drop_connection(kill: Option<ConnKill>) -> Response {
    match kill {
        Some(k) => {
            k.0.notify_one();
            // The connection task drops this future together with the socket.
            std::future::pending::<()>().await;
            dropped_response()
        }
        None => dropped_response(),
    }
}

fn authorized(st: &TwinState, headers: &HeaderMap) -> bool {
    let Some(given) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
    else {
        return false;
    };
    if given.is_empty() {
        return false;
    }
    if st.is_read_only_token(given) {
        return true;
    }
    match st.token() {
        Some(t) => t == given,
        None => true,
    }
}

/// Whether the request's bearer token has only "Read" permission.
fn read_only(st: &TwinState, headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| st.is_read_only_token(t.trim()))
}

/// Request log, rate limit, bearer token and faults, in that order, around every API call.
pub async fn gate(State(st): State<TwinState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path_q = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let path = req.uri().path().to_string();
    let endpoint = format!(
        "{} {}",
        method,
        req.extensions()
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_string())
            .unwrap_or_else(|| path.clone())
    );
    let kill = req.extensions().get::<ConnKill>().cloned();
    let mut resp_ok: Option<Response> = None;
    let decision = st.bucket().take(Instant::now(), Utc::now().timestamp());
    let mut resp = if !decision.allowed {
        ApiError::rate_limited().into_response()
    } else if !authorized(&st, req.headers()) {
        ApiError::unauthorized().into_response()
    } else if method != axum::http::Method::GET && read_only(&st, req.headers()) {
        ApiError::token_readonly().into_response()
    } else {
        let verdict = st
            .faults()
            .check(method.as_str(), &path, rand::random::<f64>);
        if verdict.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(verdict.latency_ms)).await;
        }
        let effect = match verdict.before {
            Some(effect) => Some(effect),
            None => {
                let r = reshape(next.run(req).await, &verdict.reshape).await;
                match verdict.after {
                    Some(effect) => Some(effect),
                    None => {
                        resp_ok = Some(r);
                        None
                    }
                }
            }
        };
        match (effect, resp_ok.take()) {
            (_, Some(r)) => r,
            (Some(FaultEffect::Error(e)), None) => fault_error(e),
            (Some(FaultEffect::Drop), None) => {
                st.log().record(method.as_str(), &path_q, &endpoint, 0);
                return drop_connection(kill).await;
            }
            (None, None) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "twin: no response",
            )
            .into_response(),
        }
    };
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED
        && !resp.headers().contains_key(CORRELATION_ID)
    {
        resp = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed",
        )
        .into_response();
    }
    let h = resp.headers_mut();
    h.insert("ratelimit-limit", HeaderValue::from(decision.limit));
    h.insert("ratelimit-remaining", HeaderValue::from(decision.remaining));
    h.insert("ratelimit-reset", HeaderValue::from(decision.reset_unix));
    if !h.contains_key(CORRELATION_ID)
        && let Ok(v) = HeaderValue::from_str(&correlation_id())
    {
        h.insert(CORRELATION_ID, v);
    }
    st.log()
        .record(method.as_str(), &path_q, &endpoint, resp.status().as_u16());
    resp
}

/// Applies `reshape` fault edits to a successful JSON response (content length recomputed).
async fn reshape(resp: Response, edits: &[crate::faults::Reshape]) -> Response {
    if edits.is_empty() || !resp.status().is_success() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "twin: response body could not be read for a reshape fault",
        )
        .into_response();
    };
    let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    for e in edits {
        e.apply(&mut v);
    }
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(v.to_string()))
}

/// A JSON request body: 400 `json_error` when it does not parse; an empty body is `{}`.
#[derive(Debug, Clone)]
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::json_error(e.to_string()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(Value::Object(Map::new())));
        }
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::json_error(format!("invalid JSON: {e}")))?;
        if !v.is_object() {
            return Err(ApiError::json_error("request body must be a JSON object"));
        }
        Ok(Self(v))
    }
}

impl JsonBody {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    /// Whether a field is present (and not null).
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// A required string.
    pub fn req_str(&self, name: &str) -> Result<String, ApiError> {
        self.opt_str(name)?
            .ok_or_else(|| ApiError::invalid_field(name, "Missing data for required field."))
    }

    /// An optional string.
    pub fn opt_str(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::invalid_field(name, "Not a valid string.")),
        }
    }

    /// A required id-or-name reference (string or integer).
    pub fn req_ref(&self, name: &str) -> Result<String, ApiError> {
        match self.get(name) {
            None => Err(ApiError::invalid_field(
                name,
                "Missing data for required field.",
            )),
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            Some(_) => Err(ApiError::invalid_field(name, "Not a valid id or name.")),
        }
    }

    /// An optional id-or-name reference.
    pub fn opt_ref(&self, name: &str) -> Result<Option<String>, ApiError> {
        if self.has(name) {
            self.req_ref(name).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A required integer.
    pub fn req_i64(&self, name: &str) -> Result<i64, ApiError> {
        self.opt_i64(name)?
            .ok_or_else(|| ApiError::invalid_field(name, "Missing data for required field."))
    }

    /// An optional integer.
    pub fn opt_i64(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| ApiError::invalid_field(name, "Not a valid integer.")),
        }
    }

    /// An optional boolean.
    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ApiError::invalid_field(name, "Not a valid boolean.")),
        }
    }

    /// Optional labels, validated.
    pub fn opt_labels(&self) -> Result<Option<Labels>, ApiError> {
        match self.get("labels") {
            None => Ok(None),
            Some(v) => {
                let l: Labels = serde_json::from_value(v.clone()).map_err(|_| {
                    ApiError::invalid_field("labels", "labels must be an object of strings")
                })?;
                labels::validate(&l).map_err(|m| ApiError::invalid_field("labels", m))?;
                Ok(Some(l))
            }
        }
    }

    /// An optional field decoded into a typed value.
    pub fn opt_typed<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| ApiError::invalid_field(name, e.to_string())),
        }
    }

    /// A required field decoded into a typed value.
    pub fn req_typed<T: DeserializeOwned>(&self, name: &str) -> Result<T, ApiError> {
        self.opt_typed(name)?
            .ok_or_else(|| ApiError::invalid_field(name, "Missing data for required field."))
    }

    /// The whole body decoded into a typed value.
    pub fn typed<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_value(self.0.clone()).map_err(|e| {
            let msg = e.to_string();
            let field = msg
                .split('`')
                .nth(1)
                .filter(|_| msg.contains("field"))
                .unwrap_or("body")
                .to_string();
            ApiError::invalid_field(&field, msg)
        })
    }
}

/// Parsed query string with repeated keys kept in order.
#[derive(Debug, Clone, Default)]
pub struct QueryPairs(pub Vec<(String, String)>);

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl QueryPairs {
    /// Parses `a=1&b=2&a=3`.
    pub fn parse(q: &str) -> Self {
        Self(
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    /// The first value of a key.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str())
    }

    /// All values of a key (comma-separated values are split too).
    pub fn all(&self, k: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(x, _)| x == k || x == &format!("{k}[]"))
            .flat_map(|(_, v)| v.split(',').map(str::to_string).collect::<Vec<_>>())
            .filter(|v| !v.is_empty())
            .collect()
    }
}

/// What list handlers need: the query, and the URL to build `Link` headers from.
#[derive(Debug, Clone)]
pub struct ListCtx {
    /// Query pairs.
    pub query: QueryPairs,
    path: String,
    host: String,
}

impl<S: Send + Sync> FromRequestParts<S> for ListCtx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let uri = parts
            .extensions
            .get::<OriginalUri>()
            .map(|u| u.0.clone())
            .unwrap_or_else(|| parts.uri.clone());
        let host = parts
            .headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost")
            .to_string();
        Ok(Self {
            query: QueryPairs::parse(uri.query().unwrap_or("")),
            path: uri.path().to_string(),
            host,
        })
    }
}

fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .partial_cmp(&y.as_f64().unwrap_or(0.0))
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

impl ListCtx {
    /// A context for tests and internal use.
    pub fn from_query(q: &str) -> Self {
        Self {
            query: QueryPairs::parse(q),
            path: "/".into(),
            host: "localhost".into(),
        }
    }

    /// Optional label selector from the query.
    pub fn label_selector(&self) -> Option<&str> {
        self.query.get("label_selector")
    }

    /// Keeps items whose `name` equals the `name` query parameter.
    pub fn filter_name(&self, items: &mut Vec<Value>) {
        if let Some(n) = self.query.get("name") {
            items.retain(|i| i["name"] == n);
        }
    }

    /// Keeps items whose labels match `label_selector` (422 on a bad selector).
    pub fn filter_labels(&self, w: &World, items: &mut Vec<Value>) -> Result<(), ApiError> {
        if let Some(s) = self.label_selector() {
            let sel = w.selector(s)?;
            items.retain(|i| {
                let l: Labels = serde_json::from_value(i["labels"].clone()).unwrap_or_default();
                w.selects(&sel, &l)
            });
        }
        Ok(())
    }

    /// Sorts by repeated `sort=field[:asc|:desc]` (default: id ascending).
    pub fn sort(&self, items: &mut [Value], allowed: &[&str]) -> Result<(), ApiError> {
        items.sort_by(|a, b| cmp_values(&a["id"], &b["id"]));
        let sorts = self.query.all("sort");
        for s in sorts.iter().rev() {
            let (field, dir) = s.split_once(':').unwrap_or((s.as_str(), "asc"));
            if !allowed.contains(&field) || !(dir == "asc" || dir == "desc") {
                return Err(ApiError::invalid_field(
                    "sort",
                    format!("invalid sort '{s}'"),
                ));
            }
            items.sort_by(|a, b| {
                let o = cmp_values(&a[field], &b[field]);
                if dir == "desc" { o.reverse() } else { o }
            });
        }
        Ok(())
    }

    fn page_params(&self) -> Result<(usize, usize), ApiError> {
        let parse = |k: &str, default: usize| -> Result<usize, ApiError> {
            match self.query.get(k) {
                None => Ok(default),
                Some(v) => v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| ApiError::invalid_field(k, "must be a positive integer")),
            }
        };
        Ok((parse("page", 1)?, parse("per_page", 25)?.min(MAX_PER_PAGE)))
    }

    fn link(&self, page: usize, per_page: usize) -> String {
        let mut pairs: Vec<String> = self
            .query
            .0
            .iter()
            .filter(|(k, _)| k != "page" && k != "per_page")
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect();
        pairs.push(format!("page={page}"));
        pairs.push(format!("per_page={per_page}"));
        format!("http://{}{}?{}", self.host, self.path, pairs.join("&"))
    }

    /// One page of `items` under `key`, with `meta.pagination` and a `Link` header.
    pub fn paginate(&self, key: &str, items: Vec<Value>) -> Result<Response, ApiError> {
        self.paginate_with(key, items, Map::new())
    }

    /// Like [`ListCtx::paginate`], adding more top-level fields to the body.
    pub fn paginate_with(
        &self,
        key: &str,
        items: Vec<Value>,
        extra: Map<String, Value>,
    ) -> Result<Response, ApiError> {
        let (page, per_page) = self.page_params()?;
        let total = items.len();
        let last = total.div_ceil(per_page).max(1);
        let chunk: Vec<Value> = items
            .into_iter()
            .skip((page - 1).saturating_mul(per_page))
            .take(per_page)
            .collect();
        let prev = (page > 1).then(|| (page - 1).min(last));
        let next = (page < last).then_some(page + 1);
        let mut body = json!({
            key: chunk,
            "meta": {"pagination": {
                "page": page, "per_page": per_page, "previous_page": prev,
                "next_page": next, "last_page": last, "total_entries": total,
            }},
        });
        if let Value::Object(m) = &mut body {
            m.extend(extra);
        }
        let mut links = Vec::new();
        if let Some(p) = prev {
            links.push(format!("<{}>; rel=\"prev\"", self.link(p, per_page)));
        }
        if let Some(n) = next {
            links.push(format!("<{}>; rel=\"next\"", self.link(n, per_page)));
        }
        links.push(format!("<{}>; rel=\"last\"", self.link(last, per_page)));
        let mut resp = axum::Json(body).into_response();
        if let Ok(v) = HeaderValue::from_str(&links.join(", ")) {
            resp.headers_mut().insert(axum::http::header::LINK, v);
        }
        Ok(resp)
    }
}

/// Parses a numeric path id; anything else is 404 `not_found`.
pub fn parse_id(s: &str, kind: Kind) -> Result<Id, ApiError> {
    s.parse::<Id>().map_err(|_| ApiError::not_found(kind))
}

/// RFC 3339 with `+00:00`, as the API prints times.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

/// The API representation of an action.
pub fn action_json(a: &Action) -> Value {
    json!({
        "id": a.id,
        "command": a.command,
        "status": a.status.as_str(),
        "progress": a.progress(),
        "started": ts(a.started),
        "finished": a.finished.map(ts),
        "resources": a.resources.iter().map(|(id, kind)| json!({"id": id, "type": kind.api_name()})).collect::<Vec<_>>(),
        "error": a.error.as_ref().map(|(c, m)| json!({"code": c, "message": m})),
    })
}

/// The JSON of an action by id (`null` if unknown).
pub fn action_by_id(w: &World, id: Id) -> Value {
    w.actions.get(&id).map(action_json).unwrap_or(Value::Null)
}

/// A `201 Created` JSON response.
pub fn created(body: Value) -> Response {
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

/// A `200 OK` JSON response.
pub fn ok(body: Value) -> Response {
    axum::Json(body).into_response()
}

/// A `204 No Content` response.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Whether the method mutates (for counting).
pub fn is_mutating(m: &Method) -> bool {
    m != Method::GET && m != Method::HEAD
}

/// Labels as JSON.
pub fn labels_json(l: &Labels) -> Value {
    serde_json::to_value(l).unwrap_or_else(|_| json!({}))
}

/// A name must be non-empty; duplicates are checked by the caller.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.len() > 63 {
        return Err(ApiError::invalid_field(
            "name",
            "name must be 1-63 characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_keep_repeats_and_decode() {
        let q =
            QueryPairs::parse("id=1&id=2&label_selector=env%3Dprod%2C%21x&name=a+b&sort=name:desc");
        assert_eq!(q.all("id"), vec!["1", "2"]);
        assert_eq!(q.get("label_selector"), Some("env=prod,!x"));
        assert_eq!(q.get("name"), Some("a b"));
        assert_eq!(q.get("missing"), None);
    }

    #[test]
    fn percent_decode_tolerates_truncation() {
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%41"), "A");
    }

    #[test]
    fn pagination_meta_and_links() {
        let ctx = ListCtx::from_query("per_page=2&page=2&name=x");
        let items: Vec<Value> = (1..=5).map(|i| json!({"id": i})).collect();
        let resp = ctx.paginate("things", items).unwrap();
        let link = resp.headers()[axum::http::header::LINK]
            .to_str()
            .unwrap()
            .to_string();
        assert!(link.contains("page=1&per_page=2>; rel=\"prev\""), "{link}");
        assert!(link.contains("page=3&per_page=2>; rel=\"next\""), "{link}");
        assert!(link.contains("page=3&per_page=2>; rel=\"last\""), "{link}");
        assert!(link.contains("name=x"));
        let ctx = ListCtx::from_query("label_selector=a%3Db%2Cc&per_page=1");
        let resp = ctx
            .paginate("t", vec![json!({"id": 1}), json!({"id": 2})])
            .unwrap();
        let link = resp.headers()[axum::http::header::LINK]
            .to_str()
            .unwrap()
            .to_string();
        assert!(link.contains("label_selector=a%3Db%2Cc&page=2"), "{link}");
    }

    #[test]
    fn sort_by_fields() {
        let ctx = ListCtx::from_query("sort=name:desc");
        let mut items = vec![
            json!({"id":1,"name":"a"}),
            json!({"id":2,"name":"c"}),
            json!({"id":3,"name":"b"}),
        ];
        ctx.sort(&mut items, &["id", "name"]).unwrap();
        let names: Vec<&str> = items.iter().map(|i| i["name"].as_str().unwrap()).collect();
        assert_eq!(names, vec!["c", "b", "a"]);
        assert!(
            ListCtx::from_query("sort=bogus")
                .sort(&mut items, &["id"])
                .is_err()
        );
    }
}
