//! One Kubernetes API request, parsed: the query, the body, the resolved resource path, and the
//! helpers the verbs share (selectors from the query, objects as served for a version).

use std::collections::BTreeMap;

use axum::body::Bytes;
use http::{HeaderMap, Method, header};
use serde_json::{Value, json};

use crate::discovery::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 3 <= bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn parse_query(q: Option<&str>) -> BTreeMap<String, String> {
    q.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub(crate) fn truthy(q: &BTreeMap<String, String>, key: &str) -> bool {
    matches!(q.get(key).map(String::as_str), Some("true" | "1"))
}

/// One request, parsed.
pub(crate) struct Req {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub user_agent: String,
}

impl Req {
    pub(crate) fn manager(&self) -> String {
        if let Some(m) = self.query.get("fieldManager").filter(|m| !m.is_empty()) {
            return m.clone();
        }
        let ua = self.user_agent.split('/').next().unwrap_or_default();
        if ua.is_empty() {
            "unknown".to_string()
        } else {
            ua.to_string()
        }
    }

    pub(crate) fn content_type(&self) -> String {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    pub(crate) fn json_body(&self) -> Result<Value, ApiError> {
        let ct = self.content_type();
        if ct == "application/vnd.kubernetes.protobuf" {
            return crate::proto::decode(&self.body)
                .ok_or_else(|| ApiError::unsupported_media_type(&ct));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::bad_request(format!("failed to decode request body: {e}")))
    }

    pub(crate) fn yaml_or_json_body(&self) -> Result<Value, ApiError> {
        if let Ok(v) = serde_json::from_slice::<Value>(&self.body) {
            return Ok(v);
        }
        let text = std::str::from_utf8(&self.body)
            .map_err(|e| ApiError::bad_request(format!("request body is not utf-8: {e}")))?;
        serde_saphyr::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
    }
}

/// A resource path, resolved.
pub(crate) struct Target {
    pub rt: ResourceType,
    pub ns: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
}

/// An object as served for `rt`'s version.
pub(crate) fn output(obj: &Value, rt: &ResourceType) -> Value {
    let mut v = obj.clone();
    v["apiVersion"] = json!(rt.api_version());
    v
}

pub(crate) fn selectors(req: &Req) -> Result<(LabelSelector, FieldSelector), ApiError> {
    Ok((
        LabelSelector::parse(
            req.query
                .get("labelSelector")
                .map(String::as_str)
                .unwrap_or(""),
        )?,
        FieldSelector::parse(
            req.query
                .get("fieldSelector")
                .map(String::as_str)
                .unwrap_or(""),
        )?,
    ))
}
