//! The read-only catalog a preflight checks a spec against: locations, server types and load
//! balancer types, read with three paged `GET`s before anything is created.
//!
//! These requests are made with reqwest directly and decoded leniently (every field hk8s does
//! not need is ignored, every field it needs but the API may drop is optional), so a catalog
//! shape the `hcloud` crate's models cannot parse (a new enum value, a new or dropped field)
//! does not stop the preflight. Both catalog generations are understood: `locations[]` of a
//! server type with `available` (2026-04) or without it (present means orderable), and
//! `deprecation` on the type or on one of its locations.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::actions::RateLimitHeaders;
use crate::client::{Hetzner, PER_PAGE};
use crate::error::{ErrorClass, ErrorKind, HetznerError};

/// A location as the catalog lists it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct LocationInfo {
    /// Short name (`fsn1`).
    pub name: String,
    /// Network zone (`eu-central`).
    #[serde(default)]
    pub network_zone: String,
}

/// A deprecation notice (`deprecation` of a server type, load balancer type or type location).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Deprecation {
    /// When the deprecation was announced.
    #[serde(default)]
    pub announced: Option<DateTime<Utc>>,
    /// After this instant the type can no longer be ordered.
    #[serde(default)]
    pub unavailable_after: Option<DateTime<Utc>>,
}

/// One location entry of a server type.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TypeLocation {
    /// Location name.
    pub name: String,
    /// Whether it can be ordered there now (2026-04 field; absent in older catalogs, where a
    /// listed location is orderable).
    #[serde(default)]
    pub available: Option<bool>,
    /// Whether Hetzner recommends the type there (2026-04 field).
    #[serde(default)]
    pub recommended: Option<bool>,
    /// Deprecation of the type in this location only.
    #[serde(default)]
    pub deprecation: Option<Deprecation>,
}

/// A server type as the catalog lists it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ServerTypeInfo {
    /// Name (`cx23`).
    pub name: String,
    /// `x86` or `arm`.
    #[serde(default)]
    pub architecture: String,
    /// vCPUs.
    #[serde(default)]
    pub cores: f64,
    /// Memory in GB.
    #[serde(default)]
    pub memory: f64,
    /// `shared` or `dedicated`.
    #[serde(default)]
    pub cpu_type: String,
    /// Console category (`cost_optimized`, `regular_purpose`, …).
    #[serde(default)]
    pub category: Option<String>,
    /// Deprecation of the type everywhere.
    #[serde(default)]
    pub deprecation: Option<Deprecation>,
    /// Where it is offered.
    #[serde(default)]
    pub locations: Vec<TypeLocation>,
    /// Older catalogs list only `prices[].location` (no `locations`).
    #[serde(default)]
    pub prices: Vec<PriceLocation>,
}

/// The location of one price entry (all hk8s reads of `prices`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct PriceLocation {
    /// Location name.
    pub location: String,
}

/// A load balancer type as the catalog lists it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct LoadBalancerTypeInfo {
    /// Name (`lb11`).
    pub name: String,
    /// Deprecation, when announced.
    #[serde(default)]
    pub deprecation: Option<Deprecation>,
    /// Where it is priced (offered).
    #[serde(default)]
    pub prices: Vec<PriceLocation>,
}

/// Everything a preflight reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Catalog {
    /// Locations.
    pub locations: Vec<LocationInfo>,
    /// Server types.
    pub server_types: Vec<ServerTypeInfo>,
    /// Load balancer types.
    pub load_balancer_types: Vec<LoadBalancerTypeInfo>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    pagination: Option<Pagination>,
}

#[derive(Deserialize)]
struct Pagination {
    #[serde(default)]
    next_page: Option<i64>,
}

impl Hetzner {
    /// Reads the catalog: `GET /locations`, `/server_types`, `/load_balancer_types` (paged).
    ///
    /// The first request doubles as the token check and the reachability check: connection
    /// errors, timeouts and retryable API answers (429 until its reset, 5xx, `locked`) are
    /// retried (0.5 s growing to 4 s) until `bound` has passed since
    /// the call began, then reported as [`ErrorKind::Transport`] with the operation
    /// `cannot reach the Hetzner API at <url>` and the cause (`connection refused`, …).
    ///
    /// # Errors
    /// API errors as they are (a rejected token is status 401, `unauthorized`); transport
    /// errors as above; [`ErrorKind::Decode`] when a reply is not the catalog's shape.
    pub async fn read_catalog(&self, bound: Duration) -> Result<Catalog, HetznerError> {
        let deadline = Instant::now() + bound;
        let locations = self.get_all("locations", deadline).await?;
        let server_types = self.get_all("server_types", deadline).await?;
        let load_balancer_types = self.get_all("load_balancer_types", deadline).await?;
        Ok(Catalog {
            locations,
            server_types,
            load_balancer_types,
        })
    }

    /// Every page of `GET /<key>`, items decoded from the reply's `<key>` array.
    async fn get_all<T: DeserializeOwned>(
        &self,
        key: &str,
        deadline: Instant,
    ) -> Result<Vec<T>, HetznerError> {
        let mut out = Vec::new();
        let mut page = 1;
        loop {
            let body = self
                .get_bounded(&format!("{key}?page={page}&per_page={PER_PAGE}"), deadline)
                .await?;
            let decode = |e: serde_json::Error| HetznerError {
                source: Some(Box::new(e)),
                ..HetznerError::new(
                    ErrorKind::Decode,
                    format!("list {key}"),
                    format!("the reply of GET /{key} did not parse"),
                )
            };
            let value: serde_json::Value = serde_json::from_str(&body).map_err(decode)?;
            let items: Vec<T> = serde_json::from_value(value.get(key).cloned().unwrap_or_default())
                .map_err(decode)?;
            out.extend(items);
            let next = value
                .get("meta")
                .cloned()
                .and_then(|m| serde_json::from_value::<Meta>(m).ok())
                .and_then(|m| m.pagination)
                .and_then(|p| p.next_page);
            match next {
                Some(n) if n > page => page = n,
                _ => return Ok(out),
            }
        }
    }

    /// One `GET <base>/<path>`; transport failures are retried until `deadline`.
    async fn get_bounded(&self, path: &str, deadline: Instant) -> Result<String, HetznerError> {
        let base = &self.inner.base_url;
        let op = format!("GET /{}", path.split('?').next().unwrap_or(path));
        let mut pause = Duration::from_millis(500);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            self.before_request().await;
            let mut request = self
                .cfg()
                .client
                .get(format!("{base}/{path}"))
                .timeout(remaining.max(Duration::from_millis(100)));
            if let Some(token) = &self.cfg().bearer_access_token {
                request = request.bearer_auth(token);
            }
            let e = match request.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = RateLimitHeaders::from(resp.headers());
                    // The first answer tells the pacer the project's real budget.
                    self.inner
                        .gate
                        .pacer
                        .observe(headers.limit, headers.remaining, Instant::now());
                    match resp.text().await {
                        Ok(body) if (200..300).contains(&status) => return Ok(body),
                        Ok(body) => {
                            let error = HetznerError::from_response(
                                &op,
                                status,
                                &body,
                                headers.correlation_id,
                                headers.reset,
                            );
                            // A busy API (429, 5xx, `locked`) is waited out like an
                            // unreachable one, within the same bound; anything else is final.
                            let wait = match error.class() {
                                ErrorClass::Retryable => pause,
                                ErrorClass::RateLimited { until } => {
                                    (until - Utc::now()).to_std().unwrap_or(pause)
                                }
                                _ => return Err(error),
                            };
                            let left = deadline.saturating_duration_since(Instant::now());
                            if left <= wait {
                                return Err(error);
                            }
                            tracing::debug!(%error, "Hetzner API busy; retrying");
                            tokio::time::sleep(wait).await;
                            pause = (pause * 2).min(Duration::from_secs(4));
                            continue;
                        }
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || e.is_builder() {
                let cause = transport_cause(&e, remaining);
                return Err(HetznerError {
                    source: Some(Box::new(e.without_url())),
                    ..HetznerError::new(
                        ErrorKind::Transport,
                        format!("cannot reach the Hetzner API at {base}"),
                        cause,
                    )
                });
            }
            tracing::debug!(error = %e, "Hetzner API not reachable yet; retrying");
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(Duration::from_secs(4));
        }
    }
}

/// The cause of a transport failure in a few words: the innermost I/O error's kind
/// (`connection refused`), else the innermost message.
fn transport_cause(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {} s", timeout.as_secs_f64().ceil());
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut innermost = e.to_string();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            let kind = match io.kind() {
                K::ConnectionRefused => Some("connection refused"),
                K::ConnectionReset => Some("connection reset"),
                K::TimedOut => Some("connection timed out"),
                K::AddrNotAvailable => Some("address not available"),
                _ => None,
            };
            if let Some(kind) = kind {
                return kind.to_string();
            }
        }
        innermost = s.to_string();
        source = s.source();
    }
    innermost
}

impl ServerTypeInfo {
    /// This type's entry for `location`, when it is offered there (the `prices` list stands in
    /// for `locations` in catalogs that have none).
    pub fn location(&self, location: &str) -> Option<TypeLocation> {
        if let Some(l) = self.locations.iter().find(|l| l.name == location) {
            return Some(l.clone());
        }
        (self.locations.is_empty() && self.prices.iter().any(|p| p.location == location)).then(
            || TypeLocation {
                name: location.to_string(),
                available: None,
                recommended: None,
                deprecation: None,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_catalog_generations_decode() {
        let old: ServerTypeInfo = serde_json::from_str(
            r#"{"id":1,"name":"cx22","architecture":"x86","cores":2,"memory":4.0,
                "cpu_type":"shared","deprecated":false,"deprecation":null,
                "locations":[{"id":1,"name":"fsn1","deprecation":null}],"prices":[]}"#,
        )
        .unwrap();
        assert_eq!(old.location("fsn1").unwrap().available, None);
        assert!(old.location("ash").is_none());
        let new: ServerTypeInfo = serde_json::from_str(
            r#"{"name":"cx22","architecture":"x86","cores":2,"memory":4,"cpu_type":"shared",
                "category":"cost_optimized","future_field":{"x":1},
                "deprecation":{"announced":"2025-10-16T06:00:00Z","unavailable_after":"2025-12-31T23:59:59Z"},
                "locations":[{"id":1,"name":"fsn1","available":false,"recommended":false,
                  "deprecation":{"announced":"2025-10-16T06:00:00Z","unavailable_after":"2025-12-31T23:59:59Z"}}]}"#,
        )
        .unwrap();
        assert_eq!(new.location("fsn1").unwrap().available, Some(false));
        assert!(new.deprecation.unwrap().unavailable_after.is_some());
        let prices_only: ServerTypeInfo =
            serde_json::from_str(r#"{"name":"cx23","prices":[{"location":"nbg1"}]}"#).unwrap();
        assert!(prices_only.location("nbg1").is_some());
    }

    #[tokio::test]
    async fn unreachable_endpoint_gives_up_within_the_bound() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = format!("http://127.0.0.1:{port}/v1");
        let client = Hetzner::new(
            crate::HetznerConfig::new(crate::ApiToken::new("t")).with_endpoint(endpoint.clone()),
        )
        .unwrap();
        let started = std::time::Instant::now();
        let err = client
            .read_catalog(Duration::from_millis(1200))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(4), "{err}");
        assert_eq!(err.kind, ErrorKind::Transport);
        assert_eq!(
            err.to_string(),
            format!("cannot reach the Hetzner API at {endpoint}: connection refused")
        );
        assert!(client.requests_sent() >= 2, "retried within the bound");
    }
}
