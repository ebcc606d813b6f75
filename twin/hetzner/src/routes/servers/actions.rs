//! Server actions: power (`poweron`, `poweroff`, `shutdown`, `reset`, `reboot`), rescue,
//! `create_image`, networks (`attach_to_network`, `detach_from_network`) and placement groups.

use std::net::Ipv4Addr;

use axum::extract::{Path, State};
use axum::response::Response;
use chrono::Utc;
use serde_json::{Value, json};

use super::{
    SPREAD_GROUP_LIMIT, boot_effect, find_ssh_key, mac_for, pg_count, random_password, server,
    server_mut, stop_effect,
};
use crate::error::ApiError;
use crate::handle::TwinState;
use crate::hooks::HookEvent;
use crate::model::{Image, Kind, PrivateNet, ServerStatus};
use crate::routes::{JsonBody, action_by_id, created, images, parse_id};
use crate::world::World;

enum Power {
    On,
    Off,
    Shutdown,
    Reset,
    Reboot,
}

fn power(st: &TwinState, id: &str, what: Power) -> Result<Response, ApiError> {
    let id = parse_id(id, Kind::Server)?;
    st.mutate(|w| {
        let status = server(w, id)?.status;
        w.ensure_unlocked(Kind::Server, id)?;
        let res = vec![(id, Kind::Server)];
        let lock = Some((Kind::Server, id));
        let l = w.latency;
        let a = match what {
            Power::On if status == ServerStatus::Off => {
                server_mut(w, id)?.status = ServerStatus::Starting;
                w.start_action("start_server", res, lock, l.server_start, boot_effect(id))
            }
            Power::On => w.finished_action("start_server", res),
            Power::Off | Power::Shutdown if status == ServerStatus::Off => {
                let cmd = if matches!(what, Power::Off) {
                    "stop_server"
                } else {
                    "shutdown_server"
                };
                w.finished_action(cmd, res)
            }
            Power::Off => {
                server_mut(w, id)?.status = ServerStatus::Stopping;
                w.start_action("stop_server", res, lock, l.server_poweroff, stop_effect(id))
            }
            Power::Shutdown => {
                server_mut(w, id)?.status = ServerStatus::Stopping;
                w.start_action(
                    "shutdown_server",
                    res,
                    lock,
                    l.server_shutdown,
                    stop_effect(id),
                )
            }
            Power::Reset | Power::Reboot => {
                let cmd = if matches!(what, Power::Reset) {
                    "reset_server"
                } else {
                    "reboot_server"
                };
                if status != ServerStatus::Off {
                    w.emit(HookEvent::Stopped(id));
                }
                server_mut(w, id)?.status = ServerStatus::Starting;
                w.start_action(cmd, res, lock, l.server_reset, boot_effect(id))
            }
        };
        Ok(created(json!({"action": action_by_id(w, a)})))
    })
}

/// `POST /servers/{id}/actions/poweron`.
pub async fn servers_poweron(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    power(&st, &id, Power::On)
}

/// `POST /servers/{id}/actions/poweroff`.
pub async fn servers_poweroff(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    power(&st, &id, Power::Off)
}

/// `POST /servers/{id}/actions/shutdown`.
pub async fn servers_shutdown(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    power(&st, &id, Power::Shutdown)
}

/// `POST /servers/{id}/actions/reset`.
pub async fn servers_reset(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    power(&st, &id, Power::Reset)
}

/// `POST /servers/{id}/actions/reboot`.
pub async fn servers_reboot(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    power(&st, &id, Power::Reboot)
}

/// `POST /servers/{id}/actions/enable_rescue` → `{action, root_password}`.
pub async fn servers_enable_rescue(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, Kind::Server)?;
    if let Some(t) = body.opt_str("type")?
        && t != "linux64"
    {
        return Err(ApiError::invalid_field(
            "type",
            "rescue type must be linux64",
        ));
    }
    let key_ids: Vec<Value> = body.opt_typed("ssh_keys")?.unwrap_or_default();
    st.mutate(|w| {
        server(w, id)?;
        w.ensure_unlocked(Kind::Server, id)?;
        let keys = key_ids
            .iter()
            .map(|k| {
                let r = match k {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                find_ssh_key(w, &r, "ssh_keys")
            })
            .collect::<Result<Vec<_>, _>>()?;
        let password = random_password();
        let secs = w.latency.rescue;
        let a = w.start_action(
            "enable_rescue",
            vec![(id, Kind::Server)],
            Some((Kind::Server, id)),
            secs,
            Box::new(move |w: &mut World| {
                if let Some(s) = w.servers.get_mut(&id) {
                    s.rescue_enabled = true;
                    s.rescue_ssh_keys = keys;
                }
                Vec::new()
            }),
        );
        Ok(created(
            json!({"action": action_by_id(w, a), "root_password": password}),
        ))
    })
}

/// `POST /servers/{id}/actions/disable_rescue`.
pub async fn servers_disable_rescue(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, Kind::Server)?;
    st.mutate(|w| {
        server(w, id)?;
        w.ensure_unlocked(Kind::Server, id)?;
        let secs = w.latency.rescue;
        let a = w.start_action(
            "disable_rescue",
            vec![(id, Kind::Server)],
            Some((Kind::Server, id)),
            secs,
            Box::new(move |w: &mut World| {
                if let Some(s) = w.servers.get_mut(&id) {
                    s.rescue_enabled = false;
                    s.rescue_ssh_keys.clear();
                }
                Vec::new()
            }),
        );
        Ok(created(json!({"action": action_by_id(w, a)})))
    })
}

/// `POST /servers/{id}/actions/create_image` → `{action, image}` (snapshot `creating` → `available`).
pub async fn servers_create_image(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, Kind::Server)?;
    let kind = body.opt_str("type")?.unwrap_or_else(|| "snapshot".into());
    match kind.as_str() {
        "snapshot" => {}
        "backup" => {
            return Err(ApiError::invalid_field(
                "type",
                "backups are not enabled for this server",
            ));
        }
        _ => {
            return Err(ApiError::invalid_field(
                "type",
                "type must be snapshot or backup",
            ));
        }
    }
    let description = body.opt_str("description")?;
    let labels = body.opt_labels()?.unwrap_or_default();
    st.mutate(|w| {
        let s = server(w, id)?;
        w.ensure_unlocked(Kind::Server, id)?;
        let (arch, disk, sname, flavor, version) = {
            let base = s.image.and_then(|i| w.images.get(&i));
            (
                s.server_type.architecture,
                s.server_type.disk as f64,
                s.name.clone(),
                base.map(|b| b.os_flavor.clone())
                    .unwrap_or_else(|| "unknown".into()),
                base.and_then(|b| b.os_version.clone()),
            )
        };
        let image_id = w.next_id();
        let now = Utc::now();
        let description =
            description.unwrap_or_else(|| format!("{sname}-{}", now.format("%Y%m%d%H%M%S")));
        w.images.insert(
            image_id,
            Image {
                id: image_id,
                kind: "snapshot",
                status: "creating",
                name: None,
                description,
                image_size: None,
                disk_size: disk,
                created: now,
                created_from: Some((id, sname)),
                bound_to: None,
                os_flavor: flavor,
                os_version: version,
                architecture: arch,
                labels,
            },
        );
        // The snapshot captures the disk as it is when the request is accepted.
        w.events.push(HookEvent::ImageCreating(id, image_id));
        let secs = w.latency.create_image;
        let a = w.start_action(
            "create_image",
            vec![(id, Kind::Server), (image_id, Kind::Image)],
            Some((Kind::Server, id)),
            secs,
            Box::new(move |w: &mut World| {
                if let Some(i) = w.images.get_mut(&image_id) {
                    i.status = "available";
                    i.image_size = Some(0.42);
                    vec![HookEvent::ImageCreated(id, image_id)]
                } else {
                    Vec::new()
                }
            }),
        );
        let img = w
            .images
            .get(&image_id)
            .map(images::render)
            .unwrap_or(Value::Null);
        Ok(created(json!({"action": action_by_id(w, a), "image": img})))
    })
}

/// `POST /servers/{id}/actions/attach_to_network` (`network`, optional `ip`, `alias_ips`).
pub async fn servers_attach_to_network(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, Kind::Server)?;
    let network = body.req_i64("network")?;
    let ip: Option<Ipv4Addr> = match body.opt_str("ip")? {
        Some(s) => Some(
            s.parse()
                .map_err(|_| ApiError::invalid_field("ip", "not a valid IPv4 address"))?,
        ),
        None => None,
    };
    let alias_ips: Vec<Ipv4Addr> = body
        .opt_typed::<Vec<String>>("alias_ips")?
        .unwrap_or_default()
        .iter()
        .map(|a| {
            a.parse()
                .map_err(|_| ApiError::invalid_field("alias_ips", "not a valid IPv4 address"))
        })
        .collect::<Result<_, _>>()?;
    st.mutate(|w| {
        let s = server(w, id)?;
        let zone = s.location.network_zone;
        if s.private_net.iter().any(|p| p.network == network) {
            return Err(ApiError::unprocessable(
                "server_already_attached",
                "the server is already attached to the network",
            ));
        }
        let net = w
            .networks
            .get(&network)
            .ok_or_else(|| ApiError::not_found(Kind::Network))?;
        w.ensure_unlocked(Kind::Server, id)?;
        let used = w.used_private_ips(network);
        let ip = match ip {
            Some(ip) => {
                let in_zone = net
                    .subnets
                    .iter()
                    .any(|sub| sub.network_zone == zone && sub.ip_range.contains(&ip));
                if !in_zone || used.contains(&ip) {
                    return Err(ApiError::unprocessable(
                        "ip_not_available",
                        "the provided network IP is not available",
                    ));
                }
                ip
            }
            None => w.allocate_private_ip(network, zone)?,
        };
        for a in &alias_ips {
            if used.contains(a) || *a == ip {
                return Err(ApiError::unprocessable(
                    "ip_not_available",
                    format!("alias IP {a} is not available"),
                ));
            }
        }
        server_mut(w, id)?.private_net.push(PrivateNet {
            network,
            ip,
            alias_ips,
            mac_address: mac_for(id, network),
        });
        let secs = w.latency.attach_network;
        let a = w.start_action(
            "attach_to_network",
            vec![(id, Kind::Server), (network, Kind::Network)],
            Some((Kind::Server, id)),
            secs,
            Box::new(|_| Vec::new()),
        );
        Ok(created(json!({"action": action_by_id(w, a)})))
    })
}

/// `POST /servers/{id}/actions/detach_from_network`.
pub async fn servers_detach_from_network(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, Kind::Server)?;
    let network = body.req_i64("network")?;
    st.mutate(|w| {
        let s = server(w, id)?;
        if !s.private_net.iter().any(|p| p.network == network) {
            return Err(ApiError::unprocessable(
                "server_not_attached_to_network",
                "the server is not attached to the network",
            ));
        }
        w.ensure_unlocked(Kind::Server, id)?;
        server_mut(w, id)?
            .private_net
            .retain(|p| p.network != network);
        let secs = w.latency.attach_network;
        let a = w.start_action(
            "detach_from_network",
            vec![(id, Kind::Server), (network, Kind::Network)],
            Some((Kind::Server, id)),
            secs,
            Box::new(|_| Vec::new()),
        );
        Ok(created(json!({"action": action_by_id(w, a)})))
    })
}

/// `POST /servers/{id}/actions/add_to_placement_group` (server must be off).
pub async fn servers_add_to_placement_group(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, Kind::Server)?;
    let pg = body.req_i64("placement_group")?;
    st.mutate(|w| {
        let s = server(w, id)?;
        if !w.placement_groups.contains_key(&pg) {
            return Err(ApiError::not_found(Kind::PlacementGroup));
        }
        if s.status != ServerStatus::Off {
            return Err(ApiError::unprocessable(
                "server_not_stopped",
                "the action requires a stopped server",
            ));
        }
        if s.placement_group.is_some() {
            return Err(ApiError::invalid_field(
                "placement_group",
                "server is already in a placement group",
            ));
        }
        if pg_count(w, pg) >= SPREAD_GROUP_LIMIT {
            return Err(ApiError::unprocessable(
                "placement_error",
                format!("spread placement group already holds {SPREAD_GROUP_LIMIT} servers"),
            ));
        }
        w.ensure_unlocked(Kind::Server, id)?;
        server_mut(w, id)?.placement_group = Some(pg);
        let a = w.finished_action("add_to_placement_group", vec![(id, Kind::Server)]);
        Ok(created(json!({"action": action_by_id(w, a)})))
    })
}

/// `POST /servers/{id}/actions/remove_from_placement_group`.
pub async fn servers_remove_from_placement_group(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, Kind::Server)?;
    st.mutate(|w| {
        server(w, id)?;
        w.ensure_unlocked(Kind::Server, id)?;
        server_mut(w, id)?.placement_group = None;
        let a = w.finished_action("remove_from_placement_group", vec![(id, Kind::Server)]);
        Ok(created(json!({"action": action_by_id(w, a)})))
    })
}
