//! `POST /servers`: the body parsed and checked against the catalog (`CreateRequest`), then
//! against the world, then the addresses allocated, the server built and its `create_server`
//! action (and the follow-ups in `next_actions`) scheduled.

use std::net::Ipv4Addr;

use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use serde_json::{Value, json};

use super::{
    SPREAD_GROUP_LIMIT, boot_effect, find_image, find_ssh_key, is_hostname, mac_for, pg_count,
    random_password, render, server,
};
use crate::catalog::{self, Location, Orderable, ServerType};
use crate::error::ApiError;
use crate::handle::TwinState;
use crate::labels::Labels;
use crate::model::{ApplyTo, Id, Kind, PrivateNet, Server, ServerStatus};
use crate::routes::{JsonBody, action_by_id, created};
use crate::world::World;

/// `POST /servers`.
pub async fn servers_create(
    State(st): State<TwinState>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let req = parse_create(&body)?;
    st.mutate(|w| {
        let checked = check_create(w, &req)?;
        let id = w.next_id();
        let private_net = allocate_private_nets(w, id, &req)?;
        let public_ipv4 = allocate_public_ipv4(w, req.enable_ipv4)?;
        let root_password = checked.ssh_keys.is_empty().then(random_password);
        let mut s = new_server(id, &req, checked, private_net, public_ipv4);
        s.primary_ipv4 = s.public_ipv4.map(|_| w.next_id());
        s.primary_ipv6 = s.public_ipv6.as_ref().map(|_| w.next_id());
        w.servers.insert(id, s);
        attach_volumes_and_firewalls(w, id, &req);
        let (create, next) = schedule_create_actions(w, id, &req);
        let srv = server(w, id)?;
        Ok(created(json!({
            "server": render(w, srv),
            "action": action_by_id(w, create),
            "next_actions": next.iter().map(|a| action_by_id(w, *a)).collect::<Vec<_>>(),
            "root_password": root_password,
        })))
    })
}

/// A `POST /servers` body, parsed and checked against the catalog (not yet against the world).
struct CreateRequest {
    /// Server name (a valid hostname).
    name: String,
    /// Requested server type.
    stype: &'static ServerType,
    /// Image reference (id or name), resolved inside the world.
    image_ref: String,
    /// Location the server lands in.
    location: &'static Location,
    /// SSH key references (names or ids), resolved inside the world.
    ssh_refs: Vec<Value>,
    /// Networks to attach.
    networks: Vec<Id>,
    /// Firewalls to apply.
    firewall_ids: Vec<Id>,
    /// Placement group to join.
    placement_group: Option<Id>,
    /// Labels.
    labels: Labels,
    /// Cloud-init user data.
    user_data: Option<String>,
    /// Whether to boot after creation.
    start: bool,
    /// Whether to give the server a public IPv4.
    enable_ipv4: bool,
    /// Whether to give the server a public IPv6.
    enable_ipv6: bool,
    /// Volumes to attach.
    volume_ids: Vec<Id>,
}

/// What `check_create` resolved from the world for a `CreateRequest`.
struct CreateResolved {
    /// The image id.
    image: Id,
    /// Public keys of the requested SSH keys.
    ssh_keys: Vec<String>,
}

/// Parses and validates a `POST /servers` body, in the order the errors are reported.
fn parse_create(body: &JsonBody) -> Result<CreateRequest, ApiError> {
    let name = create_name(body)?;
    let stype = create_server_type(body)?;
    let image_ref = body.req_ref("image")?;
    let location = create_location(body, stype)?;
    let ssh_refs: Vec<Value> = body.opt_typed("ssh_keys")?.unwrap_or_default();
    let networks: Vec<Id> = body.opt_typed("networks")?.unwrap_or_default();
    let firewall_ids = create_firewall_ids(body)?;
    let placement_group = body.opt_i64("placement_group")?;
    let labels = body.opt_labels()?.unwrap_or_default();
    let user_data = create_user_data(body)?;
    let start = body.opt_bool("start_after_create")?.unwrap_or(true);
    let (enable_ipv4, enable_ipv6) = create_public_net(body, &networks)?;
    let volume_ids: Vec<Id> = body.opt_typed("volumes")?.unwrap_or_default();
    body.opt_bool("automount")?;
    Ok(CreateRequest {
        name,
        stype,
        image_ref,
        location,
        ssh_refs,
        networks,
        firewall_ids,
        placement_group,
        labels,
        user_data,
        start,
        enable_ipv4,
        enable_ipv6,
        volume_ids,
    })
}

/// The required `name`, which must be a valid hostname.
fn create_name(body: &JsonBody) -> Result<String, ApiError> {
    let name = body.req_str("name")?;
    if !is_hostname(&name) {
        return Err(ApiError::invalid_field(
            "name",
            "name must be a valid hostname (RFC 1123)",
        ));
    }
    Ok(name)
}

/// The required `server_type`, looked up in the catalog.
fn create_server_type(body: &JsonBody) -> Result<&'static ServerType, ApiError> {
    let st_ref = body.req_ref("server_type")?;
    catalog::server_type(&st_ref).ok_or_else(|| {
        ApiError::invalid_field("server_type", format!("server type '{st_ref}' not found"))
    })
}

/// The `location` (or `datacenter`'s location, or the type's first orderable one), where
/// `stype` must be orderable now: as the real API, 422 `invalid_input` "unsupported location
/// for server type" where the type is not sold (not listed, or deprecated and past
/// `unavailable_after`), 412 `resource_unavailable` where it is listed with `available: false`.
fn create_location(
    body: &JsonBody,
    stype: &'static ServerType,
) -> Result<&'static Location, ApiError> {
    let now = Utc::now();
    let location = match (body.opt_ref("location")?, body.opt_ref("datacenter")?) {
        (Some(l), _) => catalog::location(&l).ok_or_else(|| {
            ApiError::invalid_field("location", format!("location '{l}' not found"))
        })?,
        (None, Some(d)) => catalog::location_of_datacenter(&d).ok_or_else(|| {
            ApiError::invalid_field("datacenter", format!("datacenter '{d}' not found"))
        })?,
        (None, None) => stype
            .default_location(now)
            .ok_or_else(unsupported_location)?,
    };
    match stype.orderable_in(location.name, now) {
        Orderable::Yes => Ok(location),
        Orderable::UnsupportedLocation => Err(unsupported_location()),
        Orderable::NoCapacity => Err(ApiError::new(
            axum::http::StatusCode::PRECONDITION_FAILED,
            "resource_unavailable",
            "server location disabled",
        )),
    }
}

/// What Hetzner answers for a server type it does not sell in the location.
fn unsupported_location() -> ApiError {
    ApiError::invalid_input("unsupported location for server type").with_details(json!({}))
}

/// The ids of the optional `firewalls` list (`[{"firewall": id}]`).
fn create_firewall_ids(body: &JsonBody) -> Result<Vec<Id>, ApiError> {
    let firewalls: Vec<Value> = body.opt_typed("firewalls")?.unwrap_or_default();
    firewalls
        .iter()
        .map(|f| {
            f.get("firewall")
                .and_then(Value::as_i64)
                .ok_or_else(|| ApiError::invalid_field("firewalls", "firewall id is required"))
        })
        .collect()
}

/// The optional `user_data`, at most 32 KiB.
fn create_user_data(body: &JsonBody) -> Result<Option<String>, ApiError> {
    let user_data = body.opt_str("user_data")?;
    if user_data.as_ref().is_some_and(|u| u.len() > 32 * 1024) {
        return Err(ApiError::invalid_field(
            "user_data",
            "user_data must be at most 32 KiB",
        ));
    }
    Ok(user_data)
}

/// `(enable_ipv4, enable_ipv6)` from `public_net`; no primary IPs, and some interface at all.
fn create_public_net(body: &JsonBody, networks: &[Id]) -> Result<(bool, bool), ApiError> {
    let public_net: Value = body.opt_typed("public_net")?.unwrap_or(json!({}));
    if public_net.get("ipv4").is_some_and(|v| !v.is_null())
        || public_net.get("ipv6").is_some_and(|v| !v.is_null())
    {
        return Err(ApiError::invalid_field(
            "public_net",
            "primary IPs are not supported by the twin",
        ));
    }
    let enable_ipv4 = public_net
        .get("enable_ipv4")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let enable_ipv6 = public_net
        .get("enable_ipv6")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if !enable_ipv4 && !enable_ipv6 && networks.is_empty() {
        return Err(ApiError::invalid_field(
            "networks",
            "a server without public interfaces needs a network",
        ));
    }
    Ok((enable_ipv4, enable_ipv6))
}

/// Checks a `CreateRequest` against the world without changing it; resolves image and keys.
fn check_create(w: &World, req: &CreateRequest) -> Result<CreateResolved, ApiError> {
    if w.servers.values().any(|s| s.name == req.name) {
        return Err(ApiError::uniqueness("name"));
    }
    let image = find_image(w, &req.image_ref, req.stype.architecture)?;
    let ssh_keys = resolve_ssh_keys(w, &req.ssh_refs)?;
    check_firewalls_exist(w, &req.firewall_ids)?;
    check_placement_group(w, req.placement_group)?;
    check_volumes_free(w, &req.volume_ids, req.location)?;
    Ok(CreateResolved { image, ssh_keys })
}

/// Public keys of the SSH keys named (by name or id) in `ssh_keys`.
fn resolve_ssh_keys(w: &World, refs: &[Value]) -> Result<Vec<String>, ApiError> {
    refs.iter()
        .map(|r| {
            let r = match r {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            find_ssh_key(w, &r, "ssh_keys")
        })
        .collect()
}

/// Every firewall in `ids` exists.
fn check_firewalls_exist(w: &World, ids: &[Id]) -> Result<(), ApiError> {
    for f in ids {
        if !w.firewalls.contains_key(f) {
            return Err(ApiError::invalid_field(
                "firewalls",
                format!("firewall {f} not found"),
            ));
        }
    }
    Ok(())
}

/// The placement group (if any) exists and has room for one more server.
fn check_placement_group(w: &World, pg: Option<Id>) -> Result<(), ApiError> {
    let Some(pg) = pg else {
        return Ok(());
    };
    if !w.placement_groups.contains_key(&pg) {
        return Err(ApiError::invalid_field(
            "placement_group",
            "placement group not found",
        ));
    }
    if pg_count(w, pg) >= SPREAD_GROUP_LIMIT {
        return Err(ApiError::unprocessable(
            "placement_error",
            format!("spread placement group already holds {SPREAD_GROUP_LIMIT} servers"),
        ));
    }
    Ok(())
}

/// Every volume in `ids` exists, is detached and lives in `location`.
fn check_volumes_free(w: &World, ids: &[Id], location: &Location) -> Result<(), ApiError> {
    for v in ids {
        let vol = w
            .volumes
            .get(v)
            .ok_or_else(|| ApiError::invalid_field("volumes", format!("volume {v} not found")))?;
        if vol.server.is_some() {
            return Err(ApiError::unprocessable(
                "resource_in_use",
                format!("volume {v} is attached to another server"),
            ));
        }
        if vol.location.name != location.name {
            return Err(ApiError::invalid_field(
                "volumes",
                format!("volume {v} is in another location"),
            ));
        }
    }
    Ok(())
}

/// A private IP and MAC in each requested network for server `id`.
fn allocate_private_nets(
    w: &World,
    id: Id,
    req: &CreateRequest,
) -> Result<Vec<PrivateNet>, ApiError> {
    let mut private_net = Vec::new();
    for n in &req.networks {
        if !w.networks.contains_key(n) {
            return Err(ApiError::invalid_field(
                "networks",
                format!("network {n} not found"),
            ));
        }
        let ip = w.allocate_private_ip(*n, req.location.network_zone)?;
        private_net.push(PrivateNet {
            network: *n,
            ip,
            alias_ips: vec![],
            mac_address: mac_for(id, *n),
        });
    }
    Ok(private_net)
}

/// A public IPv4 from the twin's pool if `enable`; an error when the pool is empty.
fn allocate_public_ipv4(w: &mut World, enable: bool) -> Result<Option<Ipv4Addr>, ApiError> {
    if !enable {
        return Ok(None);
    }
    let ip = w.pool.allocate().ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::PRECONDITION_FAILED,
            "resource_unavailable",
            "no public IPv4 left in the twin's address block",
        )
    })?;
    Ok(Some(ip))
}

/// The new server `id`, still initializing.
fn new_server(
    id: Id,
    req: &CreateRequest,
    resolved: CreateResolved,
    private_net: Vec<PrivateNet>,
    public_ipv4: Option<Ipv4Addr>,
) -> Server {
    Server {
        id,
        name: req.name.clone(),
        status: ServerStatus::Initializing,
        created: Utc::now(),
        server_type: req.stype,
        location: req.location,
        image: Some(resolved.image),
        labels: req.labels.clone(),
        public_ipv4,
        public_ipv6: req
            .enable_ipv6
            .then(|| format!("2001:db8:{:x}:{:x}::/64", (id >> 16) & 0xffff, id & 0xffff)),
        primary_ipv4: None,
        primary_ipv6: None,
        private_net,
        placement_group: req.placement_group,
        rescue_enabled: false,
        rescue_ssh_keys: vec![],
        ssh_keys: resolved.ssh_keys,
        user_data: req.user_data.clone(),
        protect_delete: false,
    }
}

/// Attaches the requested volumes to server `id` and applies the requested firewalls to it.
fn attach_volumes_and_firewalls(w: &mut World, id: Id, req: &CreateRequest) {
    for v in &req.volume_ids {
        if let Some(vol) = w.volumes.get_mut(v) {
            vol.server = Some(id);
        }
    }
    for f in &req.firewall_ids {
        if let Some(fw) = w.firewalls.get_mut(f)
            && !fw.applied_to.contains(&ApplyTo::Server(id))
        {
            fw.applied_to.push(ApplyTo::Server(id));
        }
    }
}

/// Starts the `create_server` action and its follow-ups; returns `(create, next_actions)`.
fn schedule_create_actions(w: &mut World, id: Id, req: &CreateRequest) -> (Id, Vec<Id>) {
    let start = req.start;
    // Each server gets its own (seeded) create and boot durations, as on Hetzner; the
    // timeline keeps what was applied for the critical path.
    let create_secs = w.jittered(w.latency.server_create);
    let name = w
        .servers
        .get(&id)
        .map(|s| s.name.clone())
        .unwrap_or_default();
    let wall = w.scaled(create_secs).as_secs_f64();
    w.timeline.record(id, &name, "create_server", wall);
    let create = w.start_action(
        "create_server",
        vec![(id, Kind::Server)],
        Some((Kind::Server, id)),
        create_secs,
        Box::new(move |w: &mut World| {
            // Timers of the create and the start action can fire in the same tick in any
            // order: never move a server that already booted back to `starting`.
            if let Some(s) = w.servers.get_mut(&id)
                && s.status == ServerStatus::Initializing
            {
                s.status = if start {
                    ServerStatus::Starting
                } else {
                    ServerStatus::Off
                };
            }
            Vec::new()
        }),
    );
    let mut next = Vec::new();
    if start {
        let start_secs = w.jittered(w.latency.server_start);
        let wall = w.scaled(start_secs).as_secs_f64();
        w.timeline.record(id, &name, "start_server", wall);
        let total = create_secs + start_secs;
        next.push(w.start_action(
            "start_server",
            vec![(id, Kind::Server)],
            Some((Kind::Server, id)),
            total,
            boot_effect(id),
        ));
    }
    for n in &req.networks {
        next.push(w.start_action(
            "attach_to_network",
            vec![(id, Kind::Server), (*n, Kind::Network)],
            None,
            create_secs,
            Box::new(|_| Vec::new()),
        ));
    }
    let fw_secs = create_secs + w.latency.firewall_apply;
    for f in &req.firewall_ids {
        next.push(w.start_action(
            "apply_firewall",
            vec![(*f, Kind::Firewall), (id, Kind::Server)],
            None,
            fw_secs,
            Box::new(|_| Vec::new()),
        ));
    }
    (create, next)
}
