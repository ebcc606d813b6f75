//! Servers: the routes, rendering, lookups and CRUD (list, get, update, delete); creation is in
//! [`create`], the server actions (power, rescue, images, networks, placement groups) in
//! [`actions`].

pub mod actions;
pub mod create;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::{
    JsonBody, ListCtx, action_by_id, images, labels_json, ok, parse_id, placement_groups, ts,
};
use crate::error::ApiError;
use crate::handle::TwinState;
use crate::hooks::HookEvent;
use crate::model::{ApplyTo, Id, Kind, Server, ServerStatus, TargetKind};
use crate::world::World;

/// Most servers a spread placement group holds.
pub const SPREAD_GROUP_LIMIT: usize = 10;

use actions::{
    servers_add_to_placement_group, servers_attach_to_network, servers_create_image,
    servers_detach_from_network, servers_disable_rescue, servers_enable_rescue, servers_poweroff,
    servers_poweron, servers_reboot, servers_remove_from_placement_group, servers_reset,
    servers_shutdown,
};
use create::servers_create;

/// Routes of this module.
pub fn routes() -> Router<TwinState> {
    Router::new()
        .route("/v1/servers", get(servers_list).post(servers_create))
        .route(
            "/v1/servers/{id}",
            get(servers_get).put(servers_update).delete(servers_delete),
        )
        .route("/v1/servers/{id}/actions/poweron", post(servers_poweron))
        .route("/v1/servers/{id}/actions/poweroff", post(servers_poweroff))
        .route("/v1/servers/{id}/actions/shutdown", post(servers_shutdown))
        .route("/v1/servers/{id}/actions/reset", post(servers_reset))
        .route("/v1/servers/{id}/actions/reboot", post(servers_reboot))
        .route(
            "/v1/servers/{id}/actions/enable_rescue",
            post(servers_enable_rescue),
        )
        .route(
            "/v1/servers/{id}/actions/disable_rescue",
            post(servers_disable_rescue),
        )
        .route(
            "/v1/servers/{id}/actions/create_image",
            post(servers_create_image),
        )
        .route(
            "/v1/servers/{id}/actions/attach_to_network",
            post(servers_attach_to_network),
        )
        .route(
            "/v1/servers/{id}/actions/detach_from_network",
            post(servers_detach_from_network),
        )
        .route(
            "/v1/servers/{id}/actions/add_to_placement_group",
            post(servers_add_to_placement_group),
        )
        .route(
            "/v1/servers/{id}/actions/remove_from_placement_group",
            post(servers_remove_from_placement_group),
        )
}

fn mac_for(server: Id, network: Id) -> String {
    let x = (server as u64)
        .wrapping_mul(31)
        .wrapping_add(network as u64);
    format!(
        "86:00:00:{:02x}:{:02x}:{:02x}",
        (x >> 16) & 0xff,
        (x >> 8) & 0xff,
        x & 0xff
    )
}

/// The API representation of a server.
pub fn render(w: &World, s: &Server) -> Value {
    let image = s.image.and_then(|i| w.images.get(&i)).map(images::render);
    let pg = s
        .placement_group
        .and_then(|p| w.placement_groups.get(&p))
        .map(|p| placement_groups::render(w, p));
    let ipv4 = s.public_ipv4.map(|ip| {
        json!({"id": s.primary_ipv4, "ip": ip.to_string(), "blocked": false, "dns_ptr": format!("static.{ip}.clients.your-server.de")})
    });
    let ipv6 = s
        .public_ipv6
        .as_ref()
        .map(|ip| json!({"id": s.primary_ipv6, "ip": ip, "blocked": false, "dns_ptr": []}));
    let firewalls: Vec<Value> = w
        .firewalls_of(s.id)
        .into_iter()
        .map(|f| json!({"id": f, "status": "applied"}))
        .collect();
    let private_net: Vec<Value> = s
        .private_net
        .iter()
        .map(|p| {
            json!({
                "network": p.network, "ip": p.ip.to_string(),
                "alias_ips": p.alias_ips.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "mac_address": p.mac_address,
            })
        })
        .collect();
    let load_balancers: Vec<Id> = w
        .load_balancers
        .values()
        .filter(|lb| w.resolve_targets(lb).iter().any(|(id, _)| *id == s.id))
        .map(|lb| lb.id)
        .collect();
    let traffic = if s.location.network_zone == "eu-central" {
        20i64 << 40
    } else {
        1i64 << 40
    };
    json!({
        "id": s.id,
        "name": s.name,
        "status": s.status.as_str(),
        "created": ts(s.created),
        "public_net": {"ipv4": ipv4, "ipv6": ipv6, "floating_ips": [], "firewalls": firewalls},
        "private_net": private_net,
        "server_type": s.server_type.to_json(),
        "location": s.location.to_json(),
        "image": image,
        "iso": null,
        "rescue_enabled": s.rescue_enabled,
        "locked": w.is_locked(Kind::Server, s.id),
        "backup_window": null,
        "outgoing_traffic": 0,
        "ingoing_traffic": 0,
        "included_traffic": traffic,
        "protection": {"delete": s.protect_delete, "rebuild": s.protect_delete},
        "labels": labels_json(&s.labels),
        "volumes": w.volumes.values().filter(|v| v.server == Some(s.id)).map(|v| v.id).collect::<Vec<_>>(),
        "load_balancers": load_balancers,
        "primary_disk_size": s.server_type.disk,
        "placement_group": pg,
    })
}

/// Whether `name` is a valid RFC 1123 hostname.
pub fn is_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

fn random_password() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect()
}

fn find_image(w: &World, r: &str, arch: &str) -> Result<Id, ApiError> {
    let found = match r.parse::<Id>() {
        Ok(id) => w.images.get(&id),
        Err(_) => w
            .images
            .values()
            .find(|i| i.name.as_deref() == Some(r) && i.architecture == arch),
    };
    let img =
        found.ok_or_else(|| ApiError::invalid_field("image", format!("image '{r}' not found")))?;
    if img.status != "available" {
        return Err(ApiError::invalid_field("image", "image is not available"));
    }
    if img.architecture != arch {
        return Err(ApiError::invalid_field(
            "image",
            format!(
                "image architecture {} does not match server type architecture {arch}",
                img.architecture
            ),
        ));
    }
    Ok(img.id)
}

fn find_ssh_key(w: &World, r: &str, field: &str) -> Result<String, ApiError> {
    w.ssh_keys
        .values()
        .find(|k| k.name == r || k.id.to_string() == r)
        .map(|k| k.public_key.clone())
        .ok_or_else(|| ApiError::invalid_field(field, format!("ssh key '{r}' not found")))
}

fn server(w: &World, id: Id) -> Result<&Server, ApiError> {
    w.servers
        .get(&id)
        .ok_or_else(|| ApiError::not_found(Kind::Server))
}

fn server_mut(w: &mut World, id: Id) -> Result<&mut Server, ApiError> {
    w.servers
        .get_mut(&id)
        .ok_or_else(|| ApiError::not_found(Kind::Server))
}

fn pg_count(w: &World, pg: Id) -> usize {
    w.servers
        .values()
        .filter(|s| s.placement_group == Some(pg))
        .count()
}

/// Effect: the server is running now (emits the boot event).
fn boot_effect(id: Id) -> crate::world::Effect {
    Box::new(move |w: &mut World| {
        let Some(s) = w.servers.get_mut(&id) else {
            return Vec::new();
        };
        s.status = ServerStatus::Running;
        w.boot(id)
            .map(|b| HookEvent::Running(Box::new(b)))
            .into_iter()
            .collect()
    })
}

/// Effect: the server is off now.
fn stop_effect(id: Id) -> crate::world::Effect {
    Box::new(move |w: &mut World| match w.servers.get_mut(&id) {
        Some(s) => {
            s.status = ServerStatus::Off;
            vec![HookEvent::Stopped(id)]
        }
        None => Vec::new(),
    })
}

/// `GET /servers` (filters `name`, `label_selector`, `status`; sort id, name, created).
pub async fn servers_list(State(st): State<TwinState>, ctx: ListCtx) -> Result<Response, ApiError> {
    let w = st.world();
    let mut items: Vec<Value> = w.servers.values().map(|s| render(&w, s)).collect();
    ctx.filter_name(&mut items);
    let statuses = ctx.query.all("status");
    if !statuses.is_empty() {
        items.retain(|i| statuses.iter().any(|s| i["status"] == s.as_str()));
    }
    ctx.filter_labels(&w, &mut items)?;
    ctx.sort(&mut items, &["id", "name", "created"])?;
    ctx.paginate("servers", items)
}

/// `GET /servers/{id}`.
pub async fn servers_get(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, Kind::Server)?;
    let w = st.world();
    let s = server(&w, id)?;
    Ok(ok(json!({"server": render(&w, s)})))
}

/// `PUT /servers/{id}` (name, labels; the label set is replaced).
pub async fn servers_update(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, Kind::Server)?;
    let name = body.opt_str("name")?;
    let labels = body.opt_labels()?;
    if let Some(n) = &name
        && !is_hostname(n)
    {
        return Err(ApiError::invalid_field(
            "name",
            "name must be a valid hostname (RFC 1123)",
        ));
    }
    st.mutate(|w| {
        server(w, id)?;
        if let Some(n) = &name
            && w.servers.values().any(|s| &s.name == n && s.id != id)
        {
            return Err(ApiError::uniqueness("name"));
        }
        let s = server_mut(w, id)?;
        if let Some(n) = name {
            s.name = n;
        }
        if let Some(l) = labels {
            s.labels = l;
        }
        let s = server(w, id)?;
        Ok(ok(json!({"server": render(w, s)})))
    })
}

/// `DELETE /servers/{id}`: 423 while an action runs; detaches from firewalls and LB targets.
pub async fn servers_delete(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, Kind::Server)?;
    st.mutate(|w| {
        server(w, id)?;
        w.ensure_unlocked(Kind::Server, id)?;
        let s = w
            .servers
            .remove(&id)
            .ok_or_else(|| ApiError::not_found(Kind::Server))?;
        if let Some(ip) = s.public_ipv4 {
            w.pool.release(ip);
        }
        for fw in w.firewalls.values_mut() {
            fw.applied_to.retain(|a| a != &ApplyTo::Server(id));
        }
        for lb in w.load_balancers.values_mut() {
            lb.targets.retain(|t| t.kind != TargetKind::Server(id));
        }
        w.images.retain(|_, i| i.bound_to != Some(id));
        super::volumes::detach_all(w, id);
        let secs = w.latency.server_delete;
        let a = w.start_action(
            "delete_server",
            vec![(id, Kind::Server)],
            None,
            secs,
            Box::new(|_| Vec::new()),
        );
        w.emit(HookEvent::Deleted(id));
        Ok(ok(json!({"action": action_by_id(w, a)})))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        assert!(is_hostname("demo-cp-1"));
        assert!(is_hostname("a.b-c.d"));
        assert!(!is_hostname("-a"));
        assert!(!is_hostname("a_b"));
        assert!(!is_hostname(""));
        assert!(!is_hostname(&"a".repeat(64)));
    }

    #[test]
    fn macs_differ_per_interface() {
        assert_ne!(mac_for(1001, 1), mac_for(1001, 2));
        assert!(mac_for(1001, 1).starts_with("86:00:00:"));
    }

    #[test]
    fn passwords_are_random() {
        let a = random_password();
        assert_eq!(a.len(), 20);
        assert_ne!(a, random_password());
    }
}
