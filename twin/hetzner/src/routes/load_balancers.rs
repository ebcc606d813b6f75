//! Load balancers: CRUD plus `add_service`, `update_service`, `delete_service`, `add_target`,
//! `remove_target`, `attach_to_network`, `detach_from_network`, `change_algorithm`,
//! `enable_public_interface`, `disable_public_interface`; targets by
//! server, label selector or IP, with `use_private_ip` and per-service health status.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::{Value, json};

use super::{JsonBody, ListCtx, action_by_id, check_name, created, labels_json, ok, parse_id, ts};
use crate::catalog;
use crate::error::ApiError;
use crate::handle::TwinState;
use crate::model::{Id, Kind, LoadBalancer, Service, Target, TargetKind};
use crate::selector::Selector;
use crate::world::World;

/// Routes of this module.
pub fn routes() -> Router<TwinState> {
    Router::new()
        .route(
            "/v1/load_balancers",
            get(load_balancers_list).post(load_balancers_create),
        )
        .route(
            "/v1/load_balancers/{id}",
            get(load_balancers_get)
                .put(load_balancers_update)
                .delete(load_balancers_delete),
        )
        .route(
            "/v1/load_balancers/{id}/actions/add_service",
            post(load_balancers_add_service),
        )
        .route(
            "/v1/load_balancers/{id}/actions/update_service",
            post(load_balancers_update_service),
        )
        .route(
            "/v1/load_balancers/{id}/actions/delete_service",
            post(load_balancers_delete_service),
        )
        .route(
            "/v1/load_balancers/{id}/actions/add_target",
            post(load_balancers_add_target),
        )
        .route(
            "/v1/load_balancers/{id}/actions/remove_target",
            post(load_balancers_remove_target),
        )
        .route(
            "/v1/load_balancers/{id}/actions/attach_to_network",
            post(load_balancers_attach_to_network),
        )
        .route(
            "/v1/load_balancers/{id}/actions/detach_from_network",
            post(load_balancers_detach_from_network),
        )
        .route(
            "/v1/load_balancers/{id}/actions/change_algorithm",
            post(load_balancers_change_algorithm),
        )
        .route(
            "/v1/load_balancers/{id}/actions/enable_public_interface",
            post(load_balancers_enable_public_interface),
        )
        .route(
            "/v1/load_balancers/{id}/actions/disable_public_interface",
            post(load_balancers_disable_public_interface),
        )
}

fn health(w: &World, lb: &LoadBalancer, server: Id, private: bool) -> Vec<Value> {
    lb.services
        .iter()
        .map(|s| {
            let port = u16::try_from(s.health_check.port).unwrap_or(0);
            let healthy = w.target_healthy(lb, server, private, port);
            json!({"listen_port": s.listen_port, "status": if healthy { "healthy" } else { "unhealthy" }})
        })
        .collect()
}

/// The API representation of a load balancer.
pub fn render(w: &World, lb: &LoadBalancer) -> Value {
    let targets: Vec<Value> = lb
        .targets
        .iter()
        .map(|t| match &t.kind {
            TargetKind::Server(id) => json!({
                "type": "server", "server": {"id": id}, "use_private_ip": t.use_private_ip,
                "health_status": health(w, lb, *id, t.use_private_ip),
            }),
            TargetKind::LabelSelector(sel) => json!({
                "type": "label_selector", "label_selector": {"selector": sel},
                "use_private_ip": t.use_private_ip,
                "targets": w.servers_matching(sel).into_iter().map(|id| json!({
                    "type": "server", "server": {"id": id}, "use_private_ip": t.use_private_ip,
                    "health_status": health(w, lb, id, t.use_private_ip),
                })).collect::<Vec<_>>(),
            }),
            TargetKind::Ip(ip) => json!({
                "type": "ip", "ip": {"ip": ip},
                "health_status": lb.services.iter().map(|s| json!({"listen_port": s.listen_port, "status": "unknown"})).collect::<Vec<_>>(),
            }),
        })
        .collect();
    json!({
        "id": lb.id,
        "name": lb.name,
        "public_net": {
            "enabled": lb.public_interface,
            "ipv4": {"ip": lb.public_ipv4.map(|i| i.to_string()), "dns_ptr": lb.public_ipv4.map(|i| format!("static.{i}.clients.your-server.de"))},
            "ipv6": {"ip": lb.public_ipv6, "dns_ptr": lb.public_ipv6.as_ref().map(|_| "lb.your-server.de")},
        },
        "private_net": lb.private_net.iter().map(|(n, ip)| json!({"network": n, "ip": ip.to_string()})).collect::<Vec<_>>(),
        "location": lb.location.to_json(),
        "load_balancer_type": lb.lb_type.to_json(),
        "protection": {"delete": false},
        "labels": labels_json(&lb.labels),
        "targets": targets,
        "services": lb.services.iter().map(|s| serde_json::to_value(s).unwrap_or(Value::Null)).collect::<Vec<_>>(),
        "algorithm": {"type": lb.algorithm},
        "outgoing_traffic": 0,
        "ingoing_traffic": 0,
        "included_traffic": 20i64 << 40,
        "created": ts(lb.created),
    })
}

fn valid_port(p: i64) -> bool {
    (1..=65535).contains(&p)
}

/// Checks a service and fills the defaults the API fills.
fn normalise_service(mut s: Service) -> Result<Service, ApiError> {
    if !["tcp", "http", "https"].contains(&s.protocol.as_str()) {
        return Err(ApiError::invalid_field(
            "protocol",
            "protocol must be tcp, http or https",
        ));
    }
    if !valid_port(s.listen_port)
        || !valid_port(s.destination_port)
        || !valid_port(s.health_check.port)
    {
        return Err(ApiError::invalid_field(
            "listen_port",
            "ports must be 1..65535",
        ));
    }
    if !["tcp", "http"].contains(&s.health_check.protocol.as_str()) {
        return Err(ApiError::invalid_field(
            "health_check",
            "health check protocol must be tcp or http",
        ));
    }
    if s.health_check.interval < 3 || s.health_check.timeout < 1 || s.health_check.retries < 0 {
        return Err(ApiError::invalid_field(
            "health_check",
            "interval >= 3, timeout >= 1, retries >= 0",
        ));
    }
    if s.health_check.protocol == "http" {
        let mut h = s.health_check.http.take().unwrap_or_else(|| json!({}));
        if h.get("domain").is_none() {
            h["domain"] = Value::Null;
        }
        if h.get("path").and_then(Value::as_str).is_none() {
            h["path"] = json!("/");
        }
        s.health_check.http = Some(h);
    } else {
        s.health_check.http = None;
    }
    if s.protocol != "tcp" {
        // Defaults for what the request left out; `timeout_idle` (seconds an HTTP connection
        // may idle) since changelog 2026-04-30 `load-balancers-http-idle-timeout`.
        let mut h = s.http.take().unwrap_or_else(|| json!({}));
        if !h.is_object() {
            return Err(ApiError::invalid_field("http", "http must be an object"));
        }
        let defaults = [
            ("cookie_name", json!("HCLBSTICKY")),
            ("cookie_lifetime", json!(300)),
            ("certificates", json!([])),
            ("redirect_http", json!(false)),
            ("sticky_sessions", json!(false)),
            ("timeout_idle", json!(60)),
        ];
        for (k, v) in defaults {
            if h.get(k).is_none_or(Value::is_null) {
                h[k] = v;
            }
        }
        if !h["timeout_idle"]
            .as_i64()
            .is_some_and(|t| (1..=3600).contains(&t))
        {
            return Err(ApiError::invalid_field(
                "http.timeout_idle",
                "timeout_idle must be an integer number of seconds, 1..3600",
            ));
        }
        s.http = Some(h);
    }
    if s.protocol == "tcp" {
        s.http = None;
    }
    Ok(s)
}

fn parse_target(
    w: &World,
    lb_net: &[(Id, std::net::Ipv4Addr)],
    v: &Value,
) -> Result<Target, ApiError> {
    let use_private_ip = v
        .get("use_private_ip")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let kind = match v.get("type").and_then(Value::as_str) {
        Some("server") => {
            let id = v
                .pointer("/server/id")
                .and_then(Value::as_i64)
                .ok_or_else(|| ApiError::invalid_field("server", "server.id is required"))?;
            let s = w
                .servers
                .get(&id)
                .ok_or_else(|| ApiError::not_found(Kind::Server))?;
            if use_private_ip {
                if lb_net.is_empty() {
                    return Err(ApiError::unprocessable(
                        "load_balancer_not_attached_to_network",
                        "the load balancer is not attached to a network",
                    ));
                }
                if !s
                    .private_net
                    .iter()
                    .any(|p| lb_net.iter().any(|(n, _)| *n == p.network))
                {
                    return Err(ApiError::unprocessable(
                        "server_not_attached_to_network",
                        "the server is not attached to the load balancer's network",
                    ));
                }
            } else if s.public_ipv4.is_none() {
                return Err(ApiError::unprocessable(
                    "missing_ipv4",
                    "the server has no public IPv4",
                ));
            }
            TargetKind::Server(id)
        }
        Some("label_selector") => {
            let sel = v
                .pointer("/label_selector/selector")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ApiError::invalid_field("label_selector", "label_selector.selector is required")
                })?;
            Selector::parse(sel)
                .map_err(|e| ApiError::invalid_field("label_selector", e.to_string()))?;
            if use_private_ip && lb_net.is_empty() {
                return Err(ApiError::unprocessable(
                    "load_balancer_not_attached_to_network",
                    "the load balancer is not attached to a network",
                ));
            }
            TargetKind::LabelSelector(sel.to_string())
        }
        Some("ip") => {
            let ip = v
                .pointer("/ip/ip")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::invalid_field("ip", "ip.ip is required"))?;
            let parsed = ip
                .parse::<std::net::IpAddr>()
                .map_err(|_| ApiError::invalid_field("ip", "not an IP address"))?;
            if let std::net::IpAddr::V4(v4) = parsed
                && w.pool.contains(v4)
            {
                return Err(ApiError::unprocessable(
                    "cloud_resource_ip_not_allowed",
                    "the IP belongs to a cloud resource",
                ));
            }
            TargetKind::Ip(ip.to_string())
        }
        _ => {
            return Err(ApiError::invalid_field(
                "type",
                "type must be server, label_selector or ip",
            ));
        }
    };
    Ok(Target {
        kind,
        use_private_ip,
    })
}

fn lb(w: &World, id: Id) -> Result<&LoadBalancer, ApiError> {
    w.load_balancers
        .get(&id)
        .ok_or_else(|| ApiError::not_found(Kind::LoadBalancer))
}

fn lb_mut(w: &mut World, id: Id) -> Result<&mut LoadBalancer, ApiError> {
    w.load_balancers
        .get_mut(&id)
        .ok_or_else(|| ApiError::not_found(Kind::LoadBalancer))
}

/// `GET /load_balancers` (filters `name`, `label_selector`).
pub async fn load_balancers_list(
    State(st): State<TwinState>,
    ctx: ListCtx,
) -> Result<Response, ApiError> {
    let w = st.world();
    let mut items: Vec<Value> = w.load_balancers.values().map(|l| render(&w, l)).collect();
    ctx.filter_name(&mut items);
    ctx.filter_labels(&w, &mut items)?;
    ctx.sort(&mut items, &["id", "name", "created"])?;
    ctx.paginate("load_balancers", items)
}

/// `GET /load_balancers/{id}`.
pub async fn load_balancers_get(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, Kind::LoadBalancer)?;
    let w = st.world();
    let l = lb(&w, id)?;
    Ok(ok(json!({"load_balancer": render(&w, l)})))
}

/// `POST /load_balancers` → `{load_balancer, action}`.
pub async fn load_balancers_create(
    State(st): State<TwinState>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let name = body.req_str("name")?;
    check_name(&name)?;
    let t = body.req_ref("load_balancer_type")?;
    let lb_type = catalog::load_balancer_type(&t).ok_or_else(|| {
        ApiError::invalid_field(
            "load_balancer_type",
            format!("load balancer type '{t}' not found"),
        )
    })?;
    let location = match (body.opt_ref("location")?, body.opt_str("network_zone")?) {
        (Some(l), _) => catalog::location(&l).ok_or_else(|| {
            ApiError::invalid_field("location", format!("location '{l}' not found"))
        })?,
        (None, Some(z)) => catalog::first_location_in_zone(&z).ok_or_else(|| {
            ApiError::invalid_field("network_zone", format!("network zone '{z}' not found"))
        })?,
        (None, None) => {
            return Err(ApiError::invalid_field(
                "location",
                "location or network_zone is required",
            ));
        }
    };
    let algorithm = match body.opt_typed::<Value>("algorithm")? {
        Some(a) => a
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        None => "round_robin".into(),
    };
    if algorithm != "round_robin" && algorithm != "least_connections" {
        return Err(ApiError::invalid_field(
            "algorithm",
            "type must be round_robin or least_connections",
        ));
    }
    let network = body.opt_i64("network")?;
    let public_interface = body.opt_bool("public_interface")?.unwrap_or(true);
    let labels = body.opt_labels()?.unwrap_or_default();
    let services = body
        .opt_typed::<Vec<Service>>("services")?
        .unwrap_or_default()
        .into_iter()
        .map(normalise_service)
        .collect::<Result<Vec<_>, _>>()?;
    for (i, s) in services.iter().enumerate() {
        if services[..i].iter().any(|x| x.listen_port == s.listen_port) {
            return Err(ApiError::unprocessable(
                "source_port_already_used",
                "listen port already used",
            ));
        }
    }
    if services.len() as i64 > lb_type.max_services {
        return Err(ApiError::invalid_field(
            "services",
            "too many services for the load balancer type",
        ));
    }
    let target_specs: Vec<Value> = body.opt_typed("targets")?.unwrap_or_default();
    st.mutate(|w| {
        if w.load_balancers.values().any(|l| l.name == name) {
            return Err(ApiError::uniqueness("name"));
        }
        let mut private_net = Vec::new();
        if let Some(n) = network {
            if !w.networks.contains_key(&n) {
                return Err(ApiError::invalid_field("network", "network not found"));
            }
            private_net.push((n, w.allocate_private_ip(n, location.network_zone)?));
        }
        let mut targets: Vec<Target> = Vec::new();
        for t in &target_specs {
            let t = parse_target(w, &private_net, t)?;
            if targets.iter().any(|x| x.kind == t.kind) {
                return Err(ApiError::unprocessable(
                    "target_already_defined",
                    "target already defined",
                ));
            }
            targets.push(t);
        }
        let id = w.next_id();
        let public_ipv4 = if public_interface {
            w.pool.allocate()
        } else {
            None
        };
        w.load_balancers.insert(
            id,
            LoadBalancer {
                id,
                name,
                lb_type,
                location,
                algorithm,
                services,
                targets,
                labels,
                created: Utc::now(),
                public_ipv4,
                public_ipv6: public_interface.then(|| format!("2001:db8:1b:{:x}::1", id & 0xffff)),
                public_interface,
                private_net,
            },
        );
        let secs = w.latency.lb_create;
        let a = w.start_action(
            "create_load_balancer",
            vec![(id, Kind::LoadBalancer)],
            Some((Kind::LoadBalancer, id)),
            secs,
            Box::new(|_| Vec::new()),
        );
        let l = lb(w, id)?;
        Ok(created(
            json!({"load_balancer": render(w, l), "action": action_by_id(w, a)}),
        ))
    })
}

/// `PUT /load_balancers/{id}` (name, labels).
pub async fn load_balancers_update(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, Kind::LoadBalancer)?;
    let name = body.opt_str("name")?;
    let labels = body.opt_labels()?;
    st.mutate(|w| {
        lb(w, id)?;
        if let Some(n) = &name {
            check_name(n)?;
            if w.load_balancers
                .values()
                .any(|l| &l.name == n && l.id != id)
            {
                return Err(ApiError::uniqueness("name"));
            }
        }
        let l = lb_mut(w, id)?;
        if let Some(n) = name {
            l.name = n;
        }
        if let Some(x) = labels {
            l.labels = x;
        }
        let l = lb(w, id)?;
        Ok(ok(json!({"load_balancer": render(w, l)})))
    })
}

/// `DELETE /load_balancers/{id}`.
pub async fn load_balancers_delete(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, Kind::LoadBalancer)?;
    st.mutate(|w| {
        lb(w, id)?;
        w.ensure_unlocked(Kind::LoadBalancer, id)?;
        if let Some(l) = w.load_balancers.remove(&id)
            && let Some(ip) = l.public_ipv4
        {
            w.pool.release(ip);
        }
        // Since 2026-10-05 (changelog `load-balancers-can-use-existing-primary-ips`) the delete
        // is tracked with an action: 200 `{action}` like a server's, where the spec still says 204.
        let secs = w.latency.lb_action;
        let a = w.start_action(
            "delete_load_balancer",
            vec![(id, Kind::LoadBalancer)],
            None,
            secs,
            Box::new(|_| Vec::new()),
        );
        Ok(ok(json!({"action": action_by_id(w, a)})))
    })
}

/// Runs a load balancer action: checks existence and lock, applies `change`, starts the action.
fn lb_action(
    st: &TwinState,
    id: &str,
    command: &'static str,
    extra_resources: impl FnOnce(&World) -> Vec<(Id, Kind)>,
    change: impl FnOnce(&mut World, Id) -> Result<(), ApiError>,
) -> Result<Response, ApiError> {
    let id = parse_id(id, Kind::LoadBalancer)?;
    st.mutate(|w| {
        lb(w, id)?;
        w.ensure_unlocked(Kind::LoadBalancer, id)?;
        change(w, id)?;
        let mut res = vec![(id, Kind::LoadBalancer)];
        res.extend(extra_resources(w));
        let secs = w.latency.lb_action;
        let a = w.start_action(
            command,
            res,
            Some((Kind::LoadBalancer, id)),
            secs,
            Box::new(|_| Vec::new()),
        );
        Ok(created(json!({"action": action_by_id(w, a)})))
    })
}

/// `POST /load_balancers/{id}/actions/add_service`.
pub async fn load_balancers_add_service(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let s = normalise_service(body.typed::<Service>()?)?;
    lb_action(
        &st,
        &id,
        "add_service",
        |_| vec![],
        |w, id| {
            let l = lb_mut(w, id)?;
            if l.services.iter().any(|x| x.listen_port == s.listen_port) {
                return Err(ApiError::unprocessable(
                    "source_port_already_used",
                    "listen port already used",
                ));
            }
            if l.services.len() as i64 >= l.lb_type.max_services {
                return Err(ApiError::new(
                    axum::http::StatusCode::FORBIDDEN,
                    "resource_limit_exceeded",
                    "too many services for the load balancer type",
                ));
            }
            l.services.push(s);
            Ok(())
        },
    )
}

/// `POST /load_balancers/{id}/actions/update_service` (merges the given fields).
pub async fn load_balancers_update_service(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let port = body.req_i64("listen_port")?;
    lb_action(
        &st,
        &id,
        "update_service",
        |_| vec![],
        |w, id| {
            let l = lb_mut(w, id)?;
            let cur = l
                .services
                .iter_mut()
                .find(|s| s.listen_port == port)
                .ok_or_else(|| ApiError::invalid_field("listen_port", "service not found"))?;
            let mut merged = serde_json::to_value(&*cur).unwrap_or_else(|_| json!({}));
            if let (Value::Object(m), Value::Object(patch)) = (&mut merged, &body.0) {
                for (k, v) in patch {
                    match (m.get_mut(k.as_str()), v) {
                        (Some(Value::Object(nested)), Value::Object(p))
                            if k == "health_check" || k == "http" =>
                        {
                            for (hk, hv) in p {
                                nested.insert(hk.clone(), hv.clone());
                            }
                        }
                        _ => {
                            m.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            let s: Service = serde_json::from_value(merged)
                .map_err(|e| ApiError::invalid_input(e.to_string()))?;
            *cur = normalise_service(s)?;
            Ok(())
        },
    )
}

/// `POST /load_balancers/{id}/actions/delete_service`.
pub async fn load_balancers_delete_service(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let port = body.req_i64("listen_port")?;
    lb_action(
        &st,
        &id,
        "delete_service",
        |_| vec![],
        |w, id| {
            let l = lb_mut(w, id)?;
            let before = l.services.len();
            l.services.retain(|s| s.listen_port != port);
            if l.services.len() == before {
                return Err(ApiError::invalid_field("listen_port", "service not found"));
            }
            Ok(())
        },
    )
}

/// `POST /load_balancers/{id}/actions/add_target`.
pub async fn load_balancers_add_target(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let spec = body.0.clone();
    let server = spec.pointer("/server/id").and_then(Value::as_i64);
    lb_action(
        &st,
        &id,
        "add_target",
        |_| server.map(|s| vec![(s, Kind::Server)]).unwrap_or_default(),
        |w, id| {
            let net = lb(w, id)?.private_net.clone();
            let t = parse_target(w, &net, &spec)?;
            let l = lb_mut(w, id)?;
            if l.targets.iter().any(|x| x.kind == t.kind) {
                return Err(ApiError::unprocessable(
                    "target_already_defined",
                    "target already defined",
                ));
            }
            if l.targets.len() as i64 >= l.lb_type.max_targets {
                return Err(ApiError::new(
                    axum::http::StatusCode::FORBIDDEN,
                    "resource_limit_exceeded",
                    "too many targets for the load balancer type",
                ));
            }
            l.targets.push(t);
            Ok(())
        },
    )
}

/// `POST /load_balancers/{id}/actions/remove_target`.
pub async fn load_balancers_remove_target(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let spec = body.0.clone();
    let kind = match spec.get("type").and_then(Value::as_str) {
        Some("server") => TargetKind::Server(
            spec.pointer("/server/id")
                .and_then(Value::as_i64)
                .ok_or_else(|| ApiError::invalid_field("server", "server.id is required"))?,
        ),
        Some("label_selector") => TargetKind::LabelSelector(
            spec.pointer("/label_selector/selector")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::invalid_field("label_selector", "selector is required"))?
                .to_string(),
        ),
        Some("ip") => TargetKind::Ip(
            spec.pointer("/ip/ip")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::invalid_field("ip", "ip.ip is required"))?
                .to_string(),
        ),
        _ => {
            return Err(ApiError::invalid_field(
                "type",
                "type must be server, label_selector or ip",
            ));
        }
    };
    lb_action(
        &st,
        &id,
        "remove_target",
        |_| vec![],
        |w, id| {
            let l = lb_mut(w, id)?;
            let before = l.targets.len();
            l.targets.retain(|t| t.kind != kind);
            if l.targets.len() == before {
                return Err(ApiError::invalid_field("type", "target not found"));
            }
            Ok(())
        },
    )
}

/// `POST /load_balancers/{id}/actions/attach_to_network` (`network`, optional `ip`).
pub async fn load_balancers_attach_to_network(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let network = body.req_i64("network")?;
    let ip: Option<std::net::Ipv4Addr> = match body.opt_str("ip")? {
        Some(s) => Some(
            s.parse()
                .map_err(|_| ApiError::invalid_field("ip", "not an IPv4 address"))?,
        ),
        None => None,
    };
    lb_action(
        &st,
        &id,
        "attach_to_network",
        |_| vec![(network, Kind::Network)],
        |w, id| {
            let l = lb(w, id)?;
            if !l.private_net.is_empty() {
                return Err(ApiError::unprocessable(
                    "load_balancer_already_attached",
                    "the load balancer is already attached to a network",
                ));
            }
            let zone = l.location.network_zone;
            let n = w
                .networks
                .get(&network)
                .ok_or_else(|| ApiError::not_found(Kind::Network))?;
            let ip = match ip {
                Some(ip) => {
                    let fits = n
                        .subnets
                        .iter()
                        .any(|s| s.network_zone == zone && s.ip_range.contains(&ip));
                    if !fits || w.used_private_ips(network).contains(&ip) {
                        return Err(ApiError::unprocessable(
                            "ip_not_available",
                            "the provided network IP is not available",
                        ));
                    }
                    ip
                }
                None => w.allocate_private_ip(network, zone)?,
            };
            lb_mut(w, id)?.private_net.push((network, ip));
            Ok(())
        },
    )
}

/// `POST /load_balancers/{id}/actions/detach_from_network`.
pub async fn load_balancers_detach_from_network(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let network = body.req_i64("network")?;
    lb_action(
        &st,
        &id,
        "detach_from_network",
        |_| vec![(network, Kind::Network)],
        |w, id| {
            let l = lb_mut(w, id)?;
            let before = l.private_net.len();
            l.private_net.retain(|(n, _)| *n != network);
            if l.private_net.len() == before {
                return Err(ApiError::invalid_field(
                    "network",
                    "load balancer is not attached to the network",
                ));
            }
            Ok(())
        },
    )
}

/// `POST /load_balancers/{id}/actions/change_algorithm`.
pub async fn load_balancers_change_algorithm(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let t = body.req_str("type")?;
    if t != "round_robin" && t != "least_connections" {
        return Err(ApiError::invalid_field(
            "type",
            "type must be round_robin or least_connections",
        ));
    }
    lb_action(
        &st,
        &id,
        "change_algorithm",
        |_| vec![],
        |w, id| {
            lb_mut(w, id)?.algorithm = t;
            Ok(())
        },
    )
}

/// `POST /load_balancers/{id}/actions/enable_public_interface`: the load balancer answers on
/// its public IPs again (one is allocated if it was created without).
pub async fn load_balancers_enable_public_interface(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    lb_action(
        &st,
        &id,
        "enable_public_interface",
        |_| vec![],
        |w, id| {
            let missing_ip = lb_mut(w, id)?.public_ipv4.is_none();
            let ip = if missing_ip { w.pool.allocate() } else { None };
            let l = lb_mut(w, id)?;
            if missing_ip {
                l.public_ipv4 = ip;
                l.public_ipv6 = Some(format!("2001:db8:1b:{:x}::1", id & 0xffff));
            }
            l.public_interface = true;
            Ok(())
        },
    )
}

/// `POST /load_balancers/{id}/actions/disable_public_interface`: only for a load balancer in a
/// network whose targets all use private IPs (the spec's two operation errors); the public IPs
/// stay assigned.
pub async fn load_balancers_disable_public_interface(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    lb_action(
        &st,
        &id,
        "disable_public_interface",
        |_| vec![],
        |w, id| {
            let l = lb_mut(w, id)?;
            if l.private_net.is_empty() {
                return Err(ApiError::unprocessable(
                    "load_balancer_not_attached_to_network",
                    "The Load Balancer is not attached to a network",
                ));
            }
            let public_targets = l
                .targets
                .iter()
                .any(|t| !matches!(t.kind, TargetKind::Ip(_)) && !t.use_private_ip);
            if public_targets {
                return Err(ApiError::unprocessable(
                    "targets_without_use_private_ip",
                    "The Load Balancer has targets that use the public IP instead of the private IP",
                ));
            }
            l.public_interface = false;
            Ok(())
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_get_defaults_and_checks() {
        let s: Service = serde_json::from_value(json!({
            "protocol":"tcp","listen_port":6443,"destination_port":6443,"proxyprotocol":false,
            "health_check":{"protocol":"tcp","port":6443,"interval":15,"timeout":10,"retries":3}
        }))
        .unwrap();
        let n = normalise_service(s.clone()).unwrap();
        assert!(n.http.is_none());
        let mut h = s.clone();
        h.protocol = "http".into();
        h.health_check.protocol = "http".into();
        let n = normalise_service(h).unwrap();
        let http = n.http.unwrap();
        assert_eq!(http["cookie_name"], "HCLBSTICKY");
        assert_eq!(http["timeout_idle"], 60);
        assert_eq!(n.health_check.http.unwrap()["path"], "/");
        let mut bad = s;
        bad.listen_port = 0;
        assert!(normalise_service(bad).is_err());
    }
}
