//! Request handling: authentication and authorization, discovery, and the verbs on resources
//! (get, list, watch, create, update, patch, apply, delete, deletecollection, subresources).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use base64::Engine;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::apply;
use crate::discovery::{
    AGGREGATED_V2, ResourceType, aggregated, api_group_doc, api_group_list, api_versions,
    resource_list,
};
use crate::openapi::{self, FieldValidation};
use crate::patch::{json_patch, merge_patch, strategic_merge_patch};
use crate::request::{Req, Target, output, parse_query, selectors, truthy};
use crate::state::Inner;
use crate::status::{ApiError, success};
use crate::store::{Store, ns_name};
use crate::table::{table, wants_table};
use crate::tls::User;

/// Largest request body accepted.
const MAX_BODY: usize = 16 * 1024 * 1024;

pub(crate) fn json_response(code: u16, body: &Value) -> Response<Body> {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status())
}

/// Handles one HTTP request from an (optionally) authenticated user.
pub(crate) async fn handle(
    inner: Arc<Inner>,
    user: Option<User>,
    local: SocketAddr,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let Some(user) = user else {
        return error_response(&ApiError::unauthorized());
    };
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(Body::new(body), MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return error_response(&ApiError::bad_request(format!("read body: {e}"))),
    };
    let req = Req {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parse_query(parts.uri.query()),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        headers: parts.headers,
        body,
    };
    if !user.groups.iter().any(|g| g == "system:masters") {
        return error_response(&ApiError::forbidden(format!(
            "forbidden: User \"{}\" cannot {} path \"{}\"",
            user.name,
            req.method.as_str().to_lowercase(),
            req.path
        )));
    }
    match route(&inner, &req, local).await {
        Ok(resp) => resp,
        Err(e) => error_response(&e),
    }
}

async fn route(
    inner: &Arc<Inner>,
    req: &Req,
    local: SocketAddr,
) -> Result<Response<Body>, ApiError> {
    let segs: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => {
            // Each control plane runs its own kube-apiserver.
            let v = inner.apiserver_version(local.ip());
            let (major, minor) = {
                let t = v.trim_start_matches('v');
                let mut it = t.split('.');
                (
                    it.next().unwrap_or("1").to_string(),
                    it.next().unwrap_or("0").to_string(),
                )
            };
            return Ok(json_response(
                200,
                &json!({"major": major, "minor": minor, "gitVersion": v, "gitCommit": "twin",
                        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                        "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"}),
            ));
        }
        ["healthz"] | ["livez"] | ["readyz"] => {
            let mut resp = Response::new(Body::from("ok"));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain"),
            );
            return Ok(resp);
        }
        ["api"] | ["apis"] if wants_aggregated(&req.headers) => {
            let doc = aggregated(inner.store().types(), segs == ["api"]);
            let mut resp = json_response(200, &doc);
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static(AGGREGATED_V2),
            );
            return Ok(resp);
        }
        ["openapi", "v2"] => return openapi_v2(inner, req),
        ["openapi", "v3"] => {
            let store = inner.store();
            let doc = openapi::v3_root(store.types(), &crds(&store));
            return Ok(openapi_response(&doc, false));
        }
        ["openapi", "v3", rest @ ..] => {
            let store = inner.store();
            let doc = openapi::v3_group_version(store.types(), &crds(&store), &rest.join("/"))
                .ok_or_else(|| ApiError::no_route(&req.path))?;
            return Ok(openapi_response(&doc, req.query.contains_key("hash")));
        }
        ["api"] => return Ok(json_response(200, &api_versions(&local.to_string()))),
        ["apis"] => return Ok(json_response(200, &api_group_list(inner.store().types()))),
        ["api", "v1"] => {
            let doc = resource_list(inner.store().types(), "", "v1")
                .ok_or_else(|| ApiError::no_route(&req.path))?;
            return Ok(json_response(200, &doc));
        }
        ["apis", group] => {
            let doc = api_group_doc(inner.store().types(), group)
                .ok_or_else(|| ApiError::no_route(&req.path))?;
            return Ok(json_response(200, &doc));
        }
        ["apis", group, version] => {
            let doc = resource_list(inner.store().types(), group, version)
                .ok_or_else(|| ApiError::no_route(&req.path))?;
            return Ok(json_response(200, &doc));
        }
        _ => {}
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::no_route(&req.path)),
    };
    let target = {
        let store = inner.store();
        resolve(&store, group, version, rest).ok_or_else(|| ApiError::no_route(&req.path))?
    };
    let warnings = check_fields(inner, req, &target)?;
    let resp = resource(inner, req, target).await.map(|mut resp| {
        for w in warnings {
            if let Ok(v) = http::HeaderValue::from_str(&w) {
                resp.headers_mut().append(header::WARNING, v);
            }
        }
        resp
    });
    inner.notify.notify_one();
    resp
}

fn crds(store: &Store) -> Vec<Value> {
    store.list("apiextensions.k8s.io", "customresourcedefinitions", None)
}

/// An OpenAPI document; one addressed by its content hash never changes.
fn openapi_response(doc: &Value, immutable: bool) -> Response<Body> {
    let mut resp = json_response(200, doc);
    let cache = if immutable {
        "public, immutable"
    } else {
        "no-cache, private"
    };
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, http::HeaderValue::from_static(cache));
    resp
}

/// `/openapi/v2` in JSON; a client asking for the protobuf form only gets 406 (this server
/// speaks no gnostic protobuf), so it can tell "not served this way" from a broken document.
fn openapi_v2(inner: &Arc<Inner>, req: &Req) -> Result<Response<Body>, ApiError> {
    let accepts: Vec<&str> = req
        .headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|m| m.split(';').next().unwrap_or_default().trim())
        .collect();
    if !accepts.is_empty()
        && !accepts
            .iter()
            .any(|m| matches!(*m, "application/json" | "*/*" | "application/*"))
    {
        return Err(ApiError::not_acceptable(&accepts.join(", ")));
    }
    let store = inner.store();
    Ok(openapi_response(
        &openapi::v2(store.types(), &crds(&store)),
        false,
    ))
}

/// Checks a write's body for fields its kind's schema does not declare, as
/// `fieldValidation` asks: an error for Strict, the `Warning` header values for Warn.
fn check_fields(inner: &Arc<Inner>, req: &Req, t: &Target) -> Result<Vec<String>, ApiError> {
    let writes_object = matches!(
        (&req.method, &t.name, t.sub.as_deref()),
        (&Method::POST, None, None)
            | (&Method::PUT, Some(_), None | Some("status"))
            | (&Method::PATCH, Some(_), None | Some("status"))
    );
    if !writes_object {
        return Ok(Vec::new());
    }
    let directive = FieldValidation::parse(req.query.get("fieldValidation").map(String::as_str))
        .map_err(ApiError::bad_request)?;
    if directive == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let ct = req.content_type();
    let apply = ct == "application/apply-patch+yaml";
    let body = match ct.as_str() {
        "application/json-patch+json" => return Ok(Vec::new()),
        _ if apply => req.yaml_or_json_body(),
        _ => req.json_body(),
    };
    // A body that does not parse is the verb's error to report.
    let Ok(body) = body else {
        return Ok(Vec::new());
    };
    let unknown = {
        let store = inner.store();
        openapi::unknown_fields(&t.rt, &crds(&store), &body)
    };
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    if directive == FieldValidation::Warn {
        return Ok(unknown
            .iter()
            .map(|f| format!("299 - \"unknown field \\\"{f}\\\"\""))
            .collect());
    }
    let message = if apply {
        let fields: Vec<String> = unknown
            .iter()
            .map(|f| format!(".{f}: field not declared in schema"))
            .collect();
        format!(
            "failed to create typed patch object ({}/{}; {}, Kind={}): {}",
            t.ns.as_deref().unwrap_or_default(),
            t.name.as_deref().unwrap_or_default(),
            t.rt.api_version(),
            t.rt.kind,
            fields.join(", ")
        )
    } else {
        let fields: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect();
        format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
            fields.join(", "),
            kind = t.rt.kind,
            version = t.rt.version,
        )
    };
    Err(ApiError::bad_request(message))
}

/// Whether the Accept header asks for aggregated discovery v2 (kubectl ≥ 1.30, kube-rs
/// `Discovery::run_aggregated`); v2beta1 alone is answered with the legacy documents.
fn wants_aggregated(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            let params: Vec<&str> = m.split(';').map(str::trim).collect();
            params.contains(&"g=apidiscovery.k8s.io")
                && params.contains(&"v=v2")
                && params.contains(&"as=APIGroupDiscoveryList")
        })
}

fn resolve(store: &Store, group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    if let ["namespaces", ns, plural, more @ ..] = rest
        && let Some(rt) = store
            .find_type(group, version, plural)
            .filter(|t| t.namespaced)
    {
        return match more {
            [] => Some(Target {
                rt,
                ns: Some(ns.to_string()),
                name: None,
                sub: None,
            }),
            [name] => Some(Target {
                rt,
                ns: Some(ns.to_string()),
                name: Some(name.to_string()),
                sub: None,
            }),
            [name, sub] if rt_has_sub(&rt, sub) => Some(Target {
                ns: Some(ns.to_string()),
                name: Some(name.to_string()),
                sub: Some(sub.to_string()),
                rt,
            }),
            _ => None,
        };
    }
    let (plural, more) = rest.split_first()?;
    let rt = store.find_type(group, version, plural)?;
    match more {
        [] => Some(Target {
            rt,
            ns: None,
            name: None,
            sub: None,
        }),
        [name] if !rt.namespaced => Some(Target {
            rt,
            ns: None,
            name: Some(name.to_string()),
            sub: None,
        }),
        [name, sub] if !rt.namespaced && rt_has_sub(&rt, sub) => Some(Target {
            name: Some(name.to_string()),
            sub: Some(sub.to_string()),
            ns: None,
            rt,
        }),
        _ => None,
    }
}

fn rt_has_sub(rt: &ResourceType, sub: &str) -> bool {
    rt.subresources.iter().any(|s| s == sub)
}

async fn resource(inner: &Arc<Inner>, req: &Req, t: Target) -> Result<Response<Body>, ApiError> {
    let ns = t.ns.clone().unwrap_or_default();
    match (&req.method, &t.name, t.sub.as_deref()) {
        (&Method::GET, None, None) => {
            if truthy(&req.query, "watch") {
                crate::watch::watch(inner, req, &t)
            } else if wants_table(&req.headers) {
                let list = list(&inner.store(), req, &t)?;
                let items: Vec<Value> = list["items"].as_array().cloned().unwrap_or_default();
                let rv = list["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let include = req
                    .query
                    .get("includeObject")
                    .map(String::as_str)
                    .unwrap_or("Metadata");
                let mut doc = table(&t.rt.kind, &items, &rv, include);
                if let Some(c) = list["metadata"].get("continue") {
                    doc["metadata"]["continue"] = c.clone();
                }
                Ok(json_response(200, &doc))
            } else {
                Ok(json_response(200, &list(&inner.store(), req, &t)?))
            }
        }
        (&Method::GET, Some(name), sub) => {
            let store = inner.store();
            let obj = store
                .get(&t.rt.group, &t.rt.plural, &ns, name)
                .ok_or_else(|| ApiError::not_found(&t.rt.group, &t.rt.plural, name))?;
            if sub == Some("scale") {
                return Ok(json_response(200, &scale_of(obj)));
            }
            if wants_table(&req.headers) {
                let rv = obj["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let include = req
                    .query
                    .get("includeObject")
                    .map(String::as_str)
                    .unwrap_or("Metadata");
                return Ok(json_response(
                    200,
                    &table(&t.rt.kind, &[output(obj, &t.rt)], &rv, include),
                ));
            }
            Ok(json_response(200, &output(obj, &t.rt)))
        }
        (&Method::POST, None, None) => {
            let body = req.json_body()?;
            let obj = create(inner, req, &t, body)?;
            Ok(json_response(201, &obj))
        }
        (&Method::POST, Some(name), Some("eviction")) => {
            crate::delete::evict(&mut inner.store(), &ns, name)?;
            Ok(json_response(201, &success(201)))
        }
        (&Method::PUT, Some(name), sub) => {
            let body = req.json_body()?;
            let obj = update(inner, req, &t, name, sub, body)?;
            Ok(json_response(200, &obj))
        }
        (&Method::PATCH, Some(name), sub) => {
            let (code, obj) = patch(inner, req, &t, name, sub)?;
            Ok(json_response(code, &obj))
        }
        (&Method::DELETE, Some(name), None) => {
            let obj = crate::delete::delete(inner, req, &t, name)?;
            Ok(json_response(200, &obj))
        }
        (&Method::DELETE, None, None) => {
            let items = {
                let store = inner.store();
                let selected = list(&store, req, &t)?;
                selected["items"].as_array().cloned().unwrap_or_default()
            };
            let mut deleted = Vec::new();
            for item in items {
                let (_, name) = ns_name(&item);
                let item_target = Target {
                    rt: t.rt.clone(),
                    ns: t
                        .ns
                        .clone()
                        .or_else(|| item["metadata"]["namespace"].as_str().map(str::to_string)),
                    name: None,
                    sub: None,
                };
                deleted.push(crate::delete::delete(inner, req, &item_target, &name)?);
            }
            Ok(json_response(
                200,
                &json!({"kind": format!("{}List", t.rt.kind), "apiVersion": t.rt.api_version(),
                        "metadata": {"resourceVersion": inner.store().rv().to_string()}, "items": deleted}),
            ))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({} {})",
            req.method, req.path
        ))),
    }
}

fn scale_of(obj: &Value) -> Value {
    let selector = obj["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"],
            "uid": obj["metadata"]["uid"], "resourceVersion": obj["metadata"]["resourceVersion"],
            "creationTimestamp": obj["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

fn list(store: &Store, req: &Req, t: &Target) -> Result<Value, ApiError> {
    let (ls, fs) = selectors(req)?;
    let mut items: Vec<Value> = store
        .list(&t.rt.group, &t.rt.plural, t.ns.as_deref())
        .into_iter()
        .filter(|o| ls.matches(o) && fs.matches(o))
        .collect();
    if let Some(token) = req.query.get("continue").filter(|c| !c.is_empty()) {
        let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
        items.retain(|o| {
            let (ns, name) = ns_name(o);
            format!("{ns}/{name}") > key
        });
    }
    let mut metadata = json!({"resourceVersion": store.rv().to_string()});
    if let Some(limit) = req
        .query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        && items.len() > limit
    {
        let remaining = items.len() - limit;
        items.truncate(limit);
        if let Some(last) = items.last() {
            let (ns, name) = ns_name(last);
            metadata["continue"] = json!(
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{ns}/{name}"))
            );
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    let items: Vec<Value> = items
        .into_iter()
        .map(|o| {
            let mut o = output(&o, &t.rt);
            // Typed lists omit the items' kind and apiVersion; custom resources keep them.
            if !t.rt.custom
                && let Some(m) = o.as_object_mut()
            {
                m.remove("kind");
                m.remove("apiVersion");
            }
            o
        })
        .collect();
    Ok(json!({
        "kind": format!("{}List", t.rt.kind),
        "apiVersion": t.rt.api_version(),
        "metadata": metadata,
        "items": items,
    }))
}

fn check_kind(rt: &ResourceType, body: &Value) -> Result<(), ApiError> {
    if let Some(kind) = body["kind"].as_str()
        && kind != rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind of the provided object ({kind}) does not match the resource ({})",
            rt.kind
        )));
    }
    Ok(())
}

fn place(rt: &ResourceType, body: &mut Value, ns: Option<&str>) -> Result<(), ApiError> {
    if !body["metadata"].is_object() {
        body["metadata"] = json!({});
    }
    if rt.namespaced {
        let path_ns = ns.unwrap_or("default");
        match body["metadata"]["namespace"].as_str() {
            Some(b) if !b.is_empty() && b != path_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => body["metadata"]["namespace"] = json!(path_ns),
        }
    }
    Ok(())
}

fn strip_server_fields(body: &mut Value) {
    if let Some(m) = body["metadata"].as_object_mut() {
        for k in [
            "uid",
            "creationTimestamp",
            "generation",
            "resourceVersion",
            "managedFields",
            "deletionTimestamp",
        ] {
            m.remove(k);
        }
    }
}

fn create(inner: &Arc<Inner>, req: &Req, t: &Target, mut body: Value) -> Result<Value, ApiError> {
    check_kind(&t.rt, &body)?;
    place(&t.rt, &mut body, t.ns.as_deref())?;
    strip_server_fields(&mut body);
    apply::record_update(
        None,
        &mut body,
        &req.manager(),
        &t.rt.api_version(),
        "",
        t.rt.has_status(),
    );
    let mut store = inner.store();
    let obj = store.create(&t.rt, body)?;
    Ok(output(&obj, &t.rt))
}

fn check_rv(t: &Target, name: &str, body: &Value, current: &Value) -> Result<(), ApiError> {
    if let Some(rv) = body["metadata"]["resourceVersion"]
        .as_str()
        .filter(|s| !s.is_empty())
        && Some(rv) != current["metadata"]["resourceVersion"].as_str()
    {
        return Err(ApiError::stale(&t.rt.group, &t.rt.plural, name));
    }
    Ok(())
}

/// Builds the object stored after a write through `sub` (None: main resource).
fn compose(rt: &ResourceType, old: &Value, new: Value, sub: Option<&str>) -> Value {
    match sub {
        Some("status") => {
            let mut out = old.clone();
            out["status"] = new["status"].clone();
            out
        }
        Some("approval") => {
            let mut out = old.clone();
            out["status"]["conditions"] = new["status"]["conditions"].clone();
            out
        }
        Some("finalize") => {
            let mut out = old.clone();
            out["spec"]["finalizers"] = new["spec"]["finalizers"].clone();
            out
        }
        Some("scale") => {
            let mut out = old.clone();
            out["spec"]["replicas"] = new["spec"]["replicas"].clone();
            out
        }
        _ => {
            let mut out = new;
            if rt.has_status() {
                out["status"] = old["status"].clone();
                if out["status"].is_null()
                    && let Some(m) = out.as_object_mut()
                {
                    m.remove("status");
                }
            }
            out
        }
    }
}

fn update(
    inner: &Arc<Inner>,
    req: &Req,
    t: &Target,
    name: &str,
    sub: Option<&str>,
    mut body: Value,
) -> Result<Value, ApiError> {
    if sub != Some("scale") {
        check_kind(&t.rt, &body)?;
    }
    let ns = t.ns.clone().unwrap_or_default();
    let mut store = inner.store();
    let old = store
        .get(&t.rt.group, &t.rt.plural, &ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&t.rt.group, &t.rt.plural, name))?;
    check_rv(t, name, &body, &old)?;
    if sub.is_none() {
        if body["metadata"]["name"].as_str().is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        place(&t.rt, &mut body, t.ns.as_deref())?;
        body["metadata"]["name"] = json!(name);
        strip_server_fields(&mut body);
    }
    let mut new = compose(&t.rt, &old, body, sub);
    let subresource = if sub == Some("status") { "status" } else { "" };
    apply::record_update(
        Some(&old),
        &mut new,
        &req.manager(),
        &t.rt.api_version(),
        subresource,
        t.rt.has_status(),
    );
    let obj = store.replace(&t.rt, new)?;
    Ok(output(&obj, &t.rt))
}

fn patch(
    inner: &Arc<Inner>,
    req: &Req,
    t: &Target,
    name: &str,
    sub: Option<&str>,
) -> Result<(u16, Value), ApiError> {
    let ns = t.ns.clone().unwrap_or_default();
    let ct = req.content_type();
    let manager = req.manager();
    let api_version = t.rt.api_version();
    if ct == "application/apply-patch+yaml" {
        if req.query.get("fieldManager").is_none_or(|m| m.is_empty()) {
            return Err(ApiError::invalid(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        let mut applied = req.yaml_or_json_body()?;
        if sub.is_none() {
            check_kind(&t.rt, &applied)?;
            if applied["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n != name)
            {
                return Err(ApiError::bad_request(
                    "the name of the object does not match the name on the URL",
                ));
            }
            place(&t.rt, &mut applied, t.ns.as_deref())?;
        }
        let force = truthy(&req.query, "force");
        let mut store = inner.store();
        let current = store.get(&t.rt.group, &t.rt.plural, &ns, name).cloned();
        if let Some(cur) = &current {
            check_rv(t, name, &applied, cur)?;
        }
        let skip_status = sub.is_none() && t.rt.has_status();
        let mut to_apply = applied.clone();
        if sub.is_some() {
            // Through a subresource only `status` is applied.
            to_apply = json!({"metadata": {}, "status": applied["status"].clone()});
        }
        let merged = apply::apply(
            current.as_ref(),
            &to_apply,
            &manager,
            force,
            &api_version,
            skip_status,
        )?;
        return match current {
            None => {
                if sub.is_some() {
                    return Err(ApiError::not_found(&t.rt.group, &t.rt.plural, name));
                }
                let mut obj = merged;
                obj["metadata"]["name"] = json!(name);
                if t.rt.namespaced {
                    obj["metadata"]["namespace"] = json!(ns);
                }
                let created = store.create(&t.rt, obj)?;
                Ok((201, output(&created, &t.rt)))
            }
            Some(old) => {
                let mut new = compose(&t.rt, &old, merged.clone(), sub);
                new["metadata"]["managedFields"] = merged["metadata"]["managedFields"].clone();
                if apply::same_but_times(&old, &new) {
                    // A no-op apply writes nothing (no new resourceVersion, no event).
                    return Ok((200, output(&old, &t.rt)));
                }
                let obj = store.replace(&t.rt, new)?;
                Ok((200, output(&obj, &t.rt)))
            }
        };
    }
    let patch_body = req.json_body()?;
    let mut store = inner.store();
    let old = store
        .get(&t.rt.group, &t.rt.plural, &ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&t.rt.group, &t.rt.plural, name))?;
    let mut patched = old.clone();
    match ct.as_str() {
        "application/merge-patch+json" => merge_patch(&mut patched, &patch_body),
        "application/strategic-merge-patch+json" => {
            strategic_merge_patch(&mut patched, &patch_body)
        }
        "application/json-patch+json" => json_patch(&mut patched, &patch_body)?,
        other => return Err(ApiError::unsupported_media_type(other)),
    }
    check_rv(t, name, &patched, &old)?;
    patched["metadata"]["name"] = json!(name);
    let mut new = compose(&t.rt, &old, patched, sub);
    let subresource = if sub == Some("status") { "status" } else { "" };
    apply::record_update(
        Some(&old),
        &mut new,
        &manager,
        &api_version,
        subresource,
        t.rt.has_status(),
    );
    let obj = store.replace(&t.rt, new)?;
    Ok((200, output(&obj, &t.rt)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = parse_query(Some("labelSelector=app%3Dweb%2Ctier+in+%28a%29&watch=1"));
        assert_eq!(q["labelSelector"], "app=web,tier in (a)");
        assert!(truthy(&q, "watch"));
    }

    #[test]
    fn resolves_namespaced_and_cluster_paths() {
        let store = Store::new();
        let t = resolve(
            &store,
            "",
            "v1",
            &["namespaces", "kube-system", "pods", "p", "eviction"],
        )
        .unwrap();
        assert_eq!(
            (t.ns.as_deref(), t.name.as_deref(), t.sub.as_deref()),
            (Some("kube-system"), Some("p"), Some("eviction"))
        );
        let t = resolve(&store, "", "v1", &["namespaces", "kube-system"]).unwrap();
        assert_eq!(
            (t.rt.plural.as_str(), t.name.as_deref()),
            ("namespaces", Some("kube-system"))
        );
        let t = resolve(&store, "", "v1", &["namespaces", "x", "status"]).unwrap();
        assert_eq!(t.sub.as_deref(), Some("status"));
        let t = resolve(&store, "", "v1", &["pods"]).unwrap();
        assert!(t.ns.is_none() && t.name.is_none());
        assert!(resolve(&store, "", "v1", &["nodes", "n", "bogus"]).is_none());
        let t = resolve(
            &store,
            "certificates.k8s.io",
            "v1",
            &["certificatesigningrequests", "c", "approval"],
        )
        .unwrap();
        assert_eq!(t.sub.as_deref(), Some("approval"));
    }
}
