//! The request log of the Hetzner API: every request with its route template and status, calls
//! per endpoint and the number of mutating calls (`GET /twin/requests`).

use std::collections::BTreeMap;

use chrono::Utc;
use serde::Serialize;

/// One logged API request.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedRequest {
    /// Sequence number.
    pub seq: u64,
    /// HTTP method.
    pub method: String,
    /// Path with query.
    pub path: String,
    /// Route template, e.g. `POST /v1/servers/{id}/actions/poweron`.
    pub endpoint: String,
    /// Response status.
    pub status: u16,
    /// When the request arrived (RFC 3339).
    pub time: String,
}

/// The request log of the Hetzner API.
#[derive(Debug, Default)]
pub struct RequestLog {
    next: u64,
    entries: Vec<LoggedRequest>,
    counts: BTreeMap<String, u64>,
    mutating: u64,
}

impl RequestLog {
    /// Records one request.
    pub fn record(&mut self, method: &str, path: &str, endpoint: &str, status: u16) {
        self.next += 1;
        *self.counts.entry(endpoint.to_string()).or_default() += 1;
        if method != "GET" && method != "HEAD" {
            self.mutating += 1;
        }
        self.entries.push(LoggedRequest {
            seq: self.next,
            method: method.to_string(),
            path: path.to_string(),
            endpoint: endpoint.to_string(),
            status,
            time: Utc::now().to_rfc3339(),
        });
    }

    /// Forgets everything.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// The log as JSON: `{requests, counts, total, mutating}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.entries,
            "counts": self.counts,
            "total": self.entries.len(),
            "mutating": self.mutating,
        })
    }

    /// Calls per endpoint template.
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }

    /// Number of non-GET calls.
    pub fn mutating(&self) -> u64 {
        self.mutating
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_log_counts_endpoints_and_mutations() {
        let mut l = RequestLog::default();
        l.record("GET", "/v1/servers", "GET /v1/servers", 200);
        l.record("POST", "/v1/servers", "POST /v1/servers", 201);
        l.record("GET", "/v1/servers?page=2", "GET /v1/servers", 200);
        assert_eq!(l.counts()["GET /v1/servers"], 2);
        assert_eq!(l.mutating(), 1);
        assert_eq!(l.to_json()["total"], 3);
    }
}
