//! Fault injection for the Hetzner API: an error at the Nth matching call or at a rate, added
//! latency, or a dropped connection, before or after the request takes effect.
//!
//! A rule is posted as JSON to `POST /twin/faults`:
//!
//! ```json
//! {"match": {"method": "POST", "path_prefix": "/servers"},
//!  "error": {"status": 503, "code": "unavailable"},
//!  "at_call": 2, "count": 1, "when": "before"}
//! ```
//!
//! Exactly one of `error`, `drop_connection: true`, `latency_ms` or `reshape` is the effect.
//! Without `at_call` and `rate` a rule fires on every matching call; `count` caps how often it
//! fires.
//!
//! `reshape` changes the JSON of a successful response after the handler ran, to serve the
//! shapes a moving API produces (a new enum value, an extra field, a dropped field):
//!
//! ```json
//! {"match": {"method": "GET", "path_prefix": "/servers"},
//!  "reshape": {"set": {"servers.*.status": "migrating_v2", "servers.*.new_field": 1},
//!              "remove": ["servers.*.server_type.deprecated"]}}
//! ```
//!
//! A path is dot-separated keys; `*` stands for every element of an array (or value of an
//! object). `set` creates the last key where it is missing; `remove` ignores missing keys.

use serde::{Deserialize, Serialize};

/// Which requests a rule applies to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultMatch {
    /// HTTP method, case-insensitive; any when absent.
    #[serde(default)]
    pub method: Option<String>,
    /// Path prefix, with or without the `/v1` base (`/servers` and `/v1/servers` are the same).
    #[serde(default)]
    pub path_prefix: Option<String>,
}

/// The error a rule returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultError {
    /// HTTP status.
    pub status: u16,
    /// Hetzner error code.
    pub code: String,
    /// Message; a default one is used when absent.
    #[serde(default)]
    pub message: Option<String>,
}

/// Edits of a successful JSON response (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reshape {
    /// Path → value to set (created where missing).
    #[serde(default)]
    pub set: std::collections::BTreeMap<String, serde_json::Value>,
    /// Paths to remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

impl Reshape {
    /// Applies the edits to `body`: removals first, then the values set.
    pub fn apply(&self, body: &mut serde_json::Value) {
        for path in &self.remove {
            let segs: Vec<&str> = path.split('.').collect();
            edit(body, &segs, &mut |parent, key| {
                if let serde_json::Value::Object(m) = parent {
                    m.remove(key);
                }
            });
        }
        for (path, value) in &self.set {
            let segs: Vec<&str> = path.split('.').collect();
            edit(body, &segs, &mut |parent, key| {
                if let serde_json::Value::Object(m) = parent {
                    m.insert(key.to_string(), value.clone());
                }
            });
        }
    }
}

/// Walks `segs` (all but the last) from `v`, `*` fanning out, and calls `leaf` with each parent
/// and the last key.
fn edit(
    v: &mut serde_json::Value,
    segs: &[&str],
    leaf: &mut dyn FnMut(&mut serde_json::Value, &str),
) {
    match segs {
        [] => {}
        [last] => leaf(v, last),
        [first, rest @ ..] => match (v, *first) {
            (serde_json::Value::Array(a), "*") => {
                for x in a {
                    edit(x, rest, leaf);
                }
            }
            (serde_json::Value::Object(m), "*") => {
                for x in m.values_mut() {
                    edit(x, rest, leaf);
                }
            }
            (serde_json::Value::Object(m), k) => {
                if let Some(x) = m.get_mut(k) {
                    edit(x, rest, leaf);
                }
            }
            (serde_json::Value::Array(a), k) => {
                if let Some(x) = k.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                    edit(x, rest, leaf);
                }
            }
            _ => {}
        },
    }
}

/// When the fault strikes relative to the handler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// The request never reaches the handler.
    #[default]
    Before,
    /// The handler runs (state changes), then the response is replaced.
    After,
}

/// A fault rule as posted to the control API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// Which requests it applies to.
    #[serde(default, rename = "match")]
    pub matcher: FaultMatch,
    /// Return this error.
    #[serde(default)]
    pub error: Option<FaultError>,
    /// Close the connection without a response.
    #[serde(default)]
    pub drop_connection: bool,
    /// Delay the response by this many milliseconds.
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// Edit the JSON of a successful response (always after the handler).
    #[serde(default)]
    pub reshape: Option<Reshape>,
    /// Fire at the Nth matching call (1-based).
    #[serde(default)]
    pub at_call: Option<u64>,
    /// Fire with this probability per matching call.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Fire at most this many times.
    #[serde(default)]
    pub count: Option<u64>,
    /// Before (default) or after the handler.
    #[serde(default)]
    pub when: When,
}

/// The effect of a fired rule.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultEffect {
    /// Respond with this error.
    Error(FaultError),
    /// Drop the connection.
    Drop,
}

/// What the faults decided for one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    /// Total added latency in milliseconds.
    pub latency_ms: u64,
    /// The effect to apply before the handler.
    pub before: Option<FaultEffect>,
    /// The effect to apply after the handler.
    pub after: Option<FaultEffect>,
    /// Edits of the response body, in rule order.
    pub reshape: Vec<Reshape>,
}

/// A rule that is not one of the accepted shapes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fault rule: {0}")]
pub struct InvalidRule(pub String);

#[derive(Debug, Clone)]
struct Installed {
    id: u64,
    rule: FaultRule,
    seen: u64,
    fired: u64,
}

/// The installed rules and their counters.
#[derive(Debug, Default)]
pub struct Faults {
    next_id: u64,
    rules: Vec<Installed>,
}

impl FaultRule {
    fn validate(&self) -> Result<(), InvalidRule> {
        let effects = usize::from(self.error.is_some())
            + usize::from(self.drop_connection)
            + usize::from(self.latency_ms.is_some())
            + usize::from(self.reshape.is_some());
        if effects != 1 {
            return Err(InvalidRule(
                "exactly one of error, drop_connection, latency_ms, reshape is required".into(),
            ));
        }
        if let Some(r) = &self.reshape
            && (r.set.keys().chain(&r.remove))
                .any(|p| p.is_empty() || p.split('.').any(str::is_empty))
        {
            return Err(InvalidRule(
                "reshape paths must be non-empty dotted keys".into(),
            ));
        }
        if let Some(e) = &self.error
            && !(400..=599).contains(&e.status)
        {
            return Err(InvalidRule("error.status must be 400..599".into()));
        }
        if let Some(r) = self.rate
            && !(0.0..=1.0).contains(&r)
        {
            return Err(InvalidRule("rate must be within 0..1".into()));
        }
        if self.at_call == Some(0) {
            return Err(InvalidRule("at_call is 1-based".into()));
        }
        Ok(())
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        let m = &self.matcher;
        let method_ok = m
            .method
            .as_ref()
            .is_none_or(|x| x.eq_ignore_ascii_case(method));
        let path_ok = m.path_prefix.as_ref().is_none_or(|p| {
            path.starts_with(p.as_str())
                || path
                    .strip_prefix("/v1")
                    .is_some_and(|rest| rest.starts_with(p.as_str()))
        });
        method_ok && path_ok
    }
}

impl Faults {
    /// Installs a rule and returns its id.
    pub fn add(&mut self, rule: FaultRule) -> Result<u64, InvalidRule> {
        rule.validate()?;
        self.next_id += 1;
        self.rules.push(Installed {
            id: self.next_id,
            rule,
            seen: 0,
            fired: 0,
        });
        Ok(self.next_id)
    }

    /// Removes every rule.
    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The installed rules with their ids and counters, for the control API.
    pub fn list(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.rules
                .iter()
                .map(|i| {
                    serde_json::json!({"id": i.id, "rule": i.rule, "matched": i.seen, "fired": i.fired})
                })
                .collect(),
        )
    }

    /// Counts this request against every matching rule and decides what happens to it.
    /// `roll` supplies uniform numbers in `[0, 1)` for rate-based rules.
    pub fn check(&mut self, method: &str, path: &str, mut roll: impl FnMut() -> f64) -> Verdict {
        let mut v = Verdict::default();
        for i in &mut self.rules {
            if !i.rule.matches(method, path) {
                continue;
            }
            i.seen += 1;
            if i.rule.count.is_some_and(|c| i.fired >= c) {
                continue;
            }
            let fire = match (i.rule.at_call, i.rule.rate) {
                (Some(n), _) => {
                    let span = i.rule.count.unwrap_or(1);
                    i.seen >= n && i.seen < n + span
                }
                (None, Some(r)) => roll() < r,
                (None, None) => true,
            };
            if !fire {
                continue;
            }
            i.fired += 1;
            if let Some(ms) = i.rule.latency_ms {
                v.latency_ms += ms;
                continue;
            }
            if let Some(r) = &i.rule.reshape {
                v.reshape.push(r.clone());
                continue;
            }
            let effect = match &i.rule.error {
                Some(e) => FaultEffect::Error(e.clone()),
                None => FaultEffect::Drop,
            };
            let slot = match i.rule.when {
                When::Before => &mut v.before,
                When::After => &mut v.after,
            };
            if slot.is_none() {
                *slot = Some(effect);
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: &str) -> FaultRule {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn fires_at_nth_matching_call_only() {
        let mut f = Faults::default();
        f.add(rule(r#"{"match":{"method":"post","path_prefix":"/servers"},"error":{"status":503,"code":"unavailable"},"at_call":2}"#)).unwrap();
        assert_eq!(f.check("GET", "/v1/servers", || 0.0).before, None);
        assert_eq!(f.check("POST", "/v1/servers", || 0.0).before, None);
        let v = f.check("POST", "/v1/servers", || 0.0);
        assert!(matches!(v.before, Some(FaultEffect::Error(ref e)) if e.code == "unavailable"));
        assert_eq!(f.check("POST", "/v1/servers", || 0.0).before, None);
    }

    #[test]
    fn count_caps_firings_and_rate_uses_roll() {
        let mut f = Faults::default();
        f.add(rule(
            r#"{"drop_connection":true,"rate":0.5,"count":1,"when":"after"}"#,
        ))
        .unwrap();
        assert_eq!(f.check("GET", "/v1/x", || 0.9).after, None);
        assert_eq!(
            f.check("GET", "/v1/x", || 0.1).after,
            Some(FaultEffect::Drop)
        );
        assert_eq!(f.check("GET", "/v1/x", || 0.1).after, None);
    }

    #[test]
    fn latency_adds_up_and_invalid_rules_are_refused() {
        let mut f = Faults::default();
        f.add(rule(r#"{"latency_ms":5}"#)).unwrap();
        f.add(rule(
            r#"{"latency_ms":7,"match":{"path_prefix":"/v1/servers"}}"#,
        ))
        .unwrap();
        assert_eq!(f.check("GET", "/v1/servers/1", || 0.0).latency_ms, 12);
        assert_eq!(f.check("GET", "/v1/images", || 0.0).latency_ms, 5);
        assert!(
            f.add(rule(r#"{"latency_ms":1,"drop_connection":true}"#))
                .is_err()
        );
        assert!(f.add(rule(r#"{}"#)).is_err());
        assert!(
            f.add(rule(r#"{"error":{"status":200,"code":"x"}}"#))
                .is_err()
        );
        f.clear();
        assert_eq!(f.check("GET", "/v1/servers", || 0.0), Verdict::default());
    }

    #[test]
    fn reshape_sets_and_removes_through_arrays() {
        let mut f = Faults::default();
        f.add(rule(
            r#"{"match":{"path_prefix":"/servers"},"reshape":{"set":{"servers.*.status":"hibernating","servers.*.extra":{"a":1}},"remove":["servers.*.server_type.deprecated","servers.0.missing.deeper"]}}"#,
        ))
        .unwrap();
        let v = f.check("GET", "/v1/servers", || 0.0);
        assert_eq!(v.reshape.len(), 1);
        let mut body = serde_json::json!({"servers": [
            {"status": "running", "server_type": {"name": "cx23", "deprecated": false}},
            {"status": "off", "server_type": {"name": "cx33", "deprecated": false}},
        ]});
        v.reshape[0].apply(&mut body);
        for s in body["servers"].as_array().unwrap() {
            assert_eq!(s["status"], "hibernating");
            assert_eq!(s["extra"]["a"], 1);
            assert!(s["server_type"].get("deprecated").is_none());
            assert!(s["server_type"]["name"].is_string());
        }
        assert!(f.check("GET", "/v1/images", || 0.0).reshape.is_empty());
        assert!(
            f.add(rule(r#"{"reshape":{"set":{"a..b":1}}}"#)).is_err(),
            "empty segment"
        );
    }
}
