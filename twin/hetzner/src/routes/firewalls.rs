//! Firewalls: CRUD, `set_rules`, `apply_to_resources`, `remove_from_resources`; applied to
//! servers directly or through label selectors (resolved live).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::{Value, json};

use super::{
    JsonBody, ListCtx, action_by_id, check_name, created, labels_json, no_content, ok, parse_id, ts,
};
use crate::error::ApiError;
use crate::handle::TwinState;
use crate::model::{ApplyTo, Firewall, Id, Kind, Rule};
use crate::selector::Selector;
use crate::world::World;

/// Most CIDRs per rule side.
pub const MAX_IPS: usize = 100;

/// Routes of this module.
pub fn routes() -> Router<TwinState> {
    Router::new()
        .route("/v1/firewalls", get(firewalls_list).post(firewalls_create))
        .route(
            "/v1/firewalls/{id}",
            get(firewalls_get)
                .put(firewalls_update)
                .delete(firewalls_delete),
        )
        .route(
            "/v1/firewalls/{id}/actions/set_rules",
            post(firewalls_set_rules),
        )
        .route(
            "/v1/firewalls/{id}/actions/apply_to_resources",
            post(firewalls_apply_to_resources),
        )
        .route(
            "/v1/firewalls/{id}/actions/remove_from_resources",
            post(firewalls_remove_from_resources),
        )
}

/// The API representation of a firewall.
pub fn render(w: &World, f: &Firewall) -> Value {
    let applied: Vec<Value> = f
        .applied_to
        .iter()
        .map(|a| match a {
            ApplyTo::Server(id) => json!({"type": "server", "server": {"id": id}}),
            ApplyTo::LabelSelector(sel) => json!({
                "type": "label_selector",
                "label_selector": {"selector": sel},
                "applied_to_resources": w.servers_matching(sel).iter()
                    .map(|id| json!({"type": "server", "server": {"id": id}})).collect::<Vec<_>>(),
            }),
        })
        .collect();
    let rules: Vec<Value> = f
        .rules
        .iter()
        .map(|r| {
            json!({
                "direction": r.direction, "protocol": r.protocol, "port": r.port,
                "source_ips": r.source_ips, "destination_ips": r.destination_ips,
                "description": r.description,
            })
        })
        .collect();
    json!({
        "id": f.id, "name": f.name, "labels": labels_json(&f.labels), "created": ts(f.created),
        "rules": rules, "applied_to": applied,
    })
}

fn valid_port(p: &str) -> bool {
    let ok = |s: &str| s.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n));
    match p.split_once('-') {
        Some((a, b)) => ok(a) && ok(b) && a.parse::<u32>().ok() <= b.parse::<u32>().ok(),
        None => ok(p) || p == "any",
    }
}

/// Checks rules and normalises the side that does not apply to an empty list.
pub fn validate_rules(rules: Vec<Rule>) -> Result<Vec<Rule>, ApiError> {
    rules
        .into_iter()
        .map(|mut r| {
            if r.direction != "in" && r.direction != "out" {
                return Err(ApiError::invalid_field(
                    "rules",
                    "direction must be in or out",
                ));
            }
            if !["tcp", "udp", "icmp", "esp", "gre"].contains(&r.protocol.as_str()) {
                return Err(ApiError::invalid_field(
                    "rules",
                    "protocol must be tcp, udp, icmp, esp or gre",
                ));
            }
            match (&r.port, r.protocol.as_str()) {
                (None, "tcp" | "udp") => {
                    return Err(ApiError::invalid_field(
                        "rules",
                        "port is required for tcp and udp",
                    ));
                }
                (Some(p), "tcp" | "udp") if !valid_port(p) => {
                    return Err(ApiError::invalid_field(
                        "rules",
                        format!("invalid port '{p}'"),
                    ));
                }
                (Some(_), "icmp" | "esp" | "gre") => {
                    return Err(ApiError::invalid_field(
                        "rules",
                        "port is only allowed for tcp and udp",
                    ));
                }
                _ => {}
            }
            let ips = if r.direction == "in" {
                r.destination_ips.clear();
                &r.source_ips
            } else {
                r.source_ips.clear();
                &r.destination_ips
            };
            if ips.is_empty() || ips.len() > MAX_IPS {
                return Err(ApiError::invalid_field(
                    "rules",
                    "1 to 100 IPs are required per rule",
                ));
            }
            for ip in ips {
                if ip.parse::<ipnet::IpNet>().is_err() {
                    return Err(ApiError::invalid_field(
                        "rules",
                        format!("'{ip}' is not a CIDR"),
                    ));
                }
            }
            Ok(r)
        })
        .collect()
}

/// Parses `apply_to`/`remove_from` entries; servers must exist (else `firewall_resource_not_found`
/// with `missing_status`).
fn parse_targets(
    w: &World,
    v: &[Value],
    field: &str,
    missing_status: StatusCode,
) -> Result<Vec<ApplyTo>, ApiError> {
    v.iter()
        .map(|e| match e.get("type").and_then(Value::as_str) {
            Some("server") => {
                let id = e
                    .pointer("/server/id")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| ApiError::invalid_field(field, "server.id is required"))?;
                if !w.servers.contains_key(&id) {
                    return Err(ApiError::new(
                        missing_status,
                        "firewall_resource_not_found",
                        format!("server {id} not found"),
                    ));
                }
                Ok(ApplyTo::Server(id))
            }
            Some("label_selector") => {
                let sel = e
                    .pointer("/label_selector/selector")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        ApiError::invalid_field(field, "label_selector.selector is required")
                    })?;
                Selector::parse(sel).map_err(|e| ApiError::invalid_field(field, e.to_string()))?;
                Ok(ApplyTo::LabelSelector(sel.to_string()))
            }
            _ => Err(ApiError::invalid_field(
                field,
                "type must be server or label_selector",
            )),
        })
        .collect()
}

fn apply_action(w: &mut World, fw: Id, target: &ApplyTo, command: &str) -> Id {
    let mut res = vec![(fw, "firewall")];
    match target {
        ApplyTo::Server(id) => res.push((*id, "server")),
        ApplyTo::LabelSelector(sel) => {
            res.extend(w.servers_matching(sel).into_iter().map(|id| (id, "server")))
        }
    }
    let secs = w.latency.firewall_apply;
    w.start_action(
        command,
        res,
        Some((Kind::Firewall, fw)),
        secs,
        Box::new(|_| Vec::new()),
    )
}

/// `GET /firewalls` (filters `name`, `label_selector`).
pub async fn firewalls_list(
    State(st): State<TwinState>,
    ctx: ListCtx,
) -> Result<Response, ApiError> {
    let w = st.world();
    let mut items: Vec<Value> = w.firewalls.values().map(|f| render(&w, f)).collect();
    ctx.filter_name(&mut items);
    ctx.filter_labels(&w, &mut items)?;
    ctx.sort(&mut items, &["id", "name", "created"])?;
    ctx.paginate("firewalls", items)
}

/// `GET /firewalls/{id}`.
pub async fn firewalls_get(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "firewall")?;
    let w = st.world();
    let f = w
        .firewalls
        .get(&id)
        .ok_or_else(|| ApiError::not_found("firewall"))?;
    Ok(ok(json!({"firewall": render(&w, f)})))
}

/// `POST /firewalls` → `{firewall, actions}`.
pub async fn firewalls_create(
    State(st): State<TwinState>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let name = body.req_str("name")?;
    check_name(&name)?;
    let labels = body.opt_labels()?.unwrap_or_default();
    let rules = validate_rules(body.opt_typed::<Vec<Rule>>("rules")?.unwrap_or_default())?;
    let apply: Vec<Value> = body.opt_typed("apply_to")?.unwrap_or_default();
    st.mutate(|w| {
        if w.firewalls.values().any(|f| f.name == name) {
            return Err(ApiError::uniqueness("name"));
        }
        let targets = parse_targets(w, &apply, "apply_to", StatusCode::UNPROCESSABLE_ENTITY)?;
        for (i, t) in targets.iter().enumerate() {
            if targets[..i].contains(t) {
                return Err(ApiError::unprocessable(
                    "server_already_added",
                    "the resource was applied more than once",
                ));
            }
        }
        let id = w.next_id();
        let has_rules = !rules.is_empty();
        w.firewalls.insert(
            id,
            Firewall {
                id,
                name,
                labels,
                rules,
                applied_to: targets.clone(),
                created: Utc::now(),
            },
        );
        let mut actions = Vec::new();
        if has_rules {
            let secs = w.latency.firewall_apply;
            actions.push(w.start_action(
                "set_firewall_rules",
                vec![(id, "firewall")],
                None,
                secs,
                Box::new(|_| Vec::new()),
            ));
        }
        for t in &targets {
            actions.push(apply_action(w, id, t, "apply_firewall"));
        }
        let f = w
            .firewalls
            .get(&id)
            .ok_or_else(|| ApiError::not_found("firewall"))?;
        Ok(created(json!({
            "firewall": render(w, f),
            "actions": actions.iter().map(|a| action_by_id(w, *a)).collect::<Vec<_>>(),
        })))
    })
}

/// `PUT /firewalls/{id}` (name, labels).
pub async fn firewalls_update(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "firewall")?;
    let name = body.opt_str("name")?;
    let labels = body.opt_labels()?;
    st.mutate(|w| {
        if !w.firewalls.contains_key(&id) {
            return Err(ApiError::not_found("firewall"));
        }
        if let Some(n) = &name {
            check_name(n)?;
            if w.firewalls.values().any(|f| &f.name == n && f.id != id) {
                return Err(ApiError::uniqueness("name"));
            }
        }
        let f = w
            .firewalls
            .get_mut(&id)
            .ok_or_else(|| ApiError::not_found("firewall"))?;
        if let Some(n) = name {
            f.name = n;
        }
        if let Some(l) = labels {
            f.labels = l;
        }
        let f = w
            .firewalls
            .get(&id)
            .ok_or_else(|| ApiError::not_found("firewall"))?;
        Ok(ok(json!({"firewall": render(w, f)})))
    })
}

/// `DELETE /firewalls/{id}`: 422 `resource_in_use` while applied.
pub async fn firewalls_delete(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "firewall")?;
    st.mutate(|w| {
        let f = w
            .firewalls
            .get(&id)
            .ok_or_else(|| ApiError::not_found("firewall"))?;
        if !f.applied_to.is_empty() {
            return Err(ApiError::unprocessable(
                "resource_in_use",
                "firewall still applied to a resource",
            ));
        }
        w.ensure_unlocked(Kind::Firewall, id)?;
        w.firewalls.remove(&id);
        Ok(no_content())
    })
}

/// `POST /firewalls/{id}/actions/set_rules` → `{actions}`.
pub async fn firewalls_set_rules(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "firewall")?;
    let rules = validate_rules(body.req_typed::<Vec<Rule>>("rules")?)?;
    st.mutate(|w| {
        if !w.firewalls.contains_key(&id) {
            return Err(ApiError::not_found("firewall"));
        }
        w.ensure_unlocked(Kind::Firewall, id)?;
        let targets = {
            let f = w
                .firewalls
                .get_mut(&id)
                .ok_or_else(|| ApiError::not_found("firewall"))?;
            f.rules = rules;
            f.applied_to.clone()
        };
        let secs = w.latency.firewall_apply;
        let mut actions = vec![w.start_action(
            "set_firewall_rules",
            vec![(id, "firewall")],
            Some((Kind::Firewall, id)),
            secs,
            Box::new(|_| Vec::new()),
        )];
        for t in &targets {
            let mut res = vec![(id, "firewall")];
            match t {
                ApplyTo::Server(s) => res.push((*s, "server")),
                ApplyTo::LabelSelector(sel) => {
                    res.extend(w.servers_matching(sel).into_iter().map(|s| (s, "server")))
                }
            }
            actions.push(w.start_action(
                "apply_firewall",
                res,
                None,
                secs,
                Box::new(|_| Vec::new()),
            ));
        }
        Ok(created(
            json!({"actions": actions.iter().map(|a| action_by_id(w, *a)).collect::<Vec<_>>()}),
        ))
    })
}

/// `POST /firewalls/{id}/actions/apply_to_resources` → `{actions}`.
pub async fn firewalls_apply_to_resources(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "firewall")?;
    let entries: Vec<Value> = body.req_typed("apply_to")?;
    st.mutate(|w| {
        if !w.firewalls.contains_key(&id) {
            return Err(ApiError::not_found("firewall"));
        }
        let targets = parse_targets(w, &entries, "apply_to", StatusCode::NOT_FOUND)?;
        let f = w
            .firewalls
            .get(&id)
            .ok_or_else(|| ApiError::not_found("firewall"))?;
        for (i, t) in targets.iter().enumerate() {
            if f.applied_to.contains(t) || targets[..i].contains(t) {
                return Err(ApiError::unprocessable(
                    "firewall_already_applied",
                    "firewall is already applied to the resource",
                ));
            }
        }
        w.ensure_unlocked(Kind::Firewall, id)?;
        if let Some(f) = w.firewalls.get_mut(&id) {
            f.applied_to.extend(targets.iter().cloned());
        }
        let actions: Vec<Id> = targets
            .iter()
            .map(|t| apply_action(w, id, t, "apply_firewall"))
            .collect();
        Ok(created(
            json!({"actions": actions.iter().map(|a| action_by_id(w, *a)).collect::<Vec<_>>()}),
        ))
    })
}

/// `POST /firewalls/{id}/actions/remove_from_resources` → `{actions}`.
pub async fn firewalls_remove_from_resources(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "firewall")?;
    let entries: Vec<Value> = body.req_typed("remove_from")?;
    st.mutate(|w| {
        if !w.firewalls.contains_key(&id) {
            return Err(ApiError::not_found("firewall"));
        }
        let targets = parse_targets(w, &entries, "remove_from", StatusCode::NOT_FOUND)?;
        let f = w
            .firewalls
            .get(&id)
            .ok_or_else(|| ApiError::not_found("firewall"))?;
        if let Some(t) = targets.iter().find(|t| !f.applied_to.contains(t)) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "firewall_resource_not_found",
                format!("firewall is not applied to {t:?}"),
            ));
        }
        w.ensure_unlocked(Kind::Firewall, id)?;
        let actions: Vec<Id> = targets
            .iter()
            .map(|t| apply_action(w, id, t, "remove_firewall"))
            .collect();
        if let Some(f) = w.firewalls.get_mut(&id) {
            f.applied_to.retain(|a| !targets.contains(a));
        }
        Ok(created(
            json!({"actions": actions.iter().map(|a| action_by_id(w, *a)).collect::<Vec<_>>()}),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(v: Value) -> Rule {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn rules_are_checked_and_normalised() {
        let r = validate_rules(vec![rule(json!({"direction":"in","protocol":"tcp","port":"6443","source_ips":["0.0.0.0/0","::/0"],"destination_ips":["1.2.3.4/32"]}))]).unwrap();
        assert!(r[0].destination_ips.is_empty());
        assert!(
            validate_rules(vec![rule(
                json!({"direction":"in","protocol":"tcp","source_ips":["0.0.0.0/0"]})
            )])
            .is_err()
        );
        assert!(
            validate_rules(vec![rule(
                json!({"direction":"in","protocol":"icmp","port":"1","source_ips":["0.0.0.0/0"]})
            )])
            .is_err()
        );
        assert!(
            validate_rules(vec![rule(
                json!({"direction":"in","protocol":"tcp","port":"80","source_ips":["nope"]})
            )])
            .is_err()
        );
        assert!(validate_rules(vec![rule(json!({"direction":"out","protocol":"udp","port":"1000-2000","destination_ips":["10.0.0.0/8"]}))]).is_ok());
        assert!(validate_rules(vec![rule(json!({"direction":"up","protocol":"udp","port":"1","destination_ips":["10.0.0.0/8"]}))]).is_err());
    }

    #[test]
    fn ports() {
        assert!(valid_port("80"));
        assert!(valid_port("1024-5000"));
        assert!(!valid_port("5000-1024"));
        assert!(!valid_port("0"));
        assert!(!valid_port("70000"));
    }
}
