//! Servers: CRUD and the server actions (power, rescue, images, networks, placement groups).

use std::net::Ipv4Addr;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::{Value, json};

use super::{
    JsonBody, ListCtx, action_by_id, created, images, labels_json, ok, parse_id, placement_groups,
    ts,
};
use crate::catalog::{self, Location, ServerType};
use crate::error::ApiError;
use crate::handle::TwinState;
use crate::hooks::HookEvent;
use crate::labels::Labels;
use crate::model::{ApplyTo, Id, Image, Kind, PrivateNet, Server, ServerStatus, TargetKind};
use crate::world::World;

/// Most servers a spread placement group holds.
pub const SPREAD_GROUP_LIMIT: usize = 10;

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
        json!({"ip": ip.to_string(), "blocked": false, "dns_ptr": format!("static.{ip}.clients.your-server.de")})
    });
    let ipv6 = s
        .public_ipv6
        .as_ref()
        .map(|ip| json!({"ip": ip, "blocked": false, "dns_ptr": []}));
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
        "datacenter": s.location.datacenter_json(),
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
        .ok_or_else(|| ApiError::not_found("server"))
}

fn server_mut(w: &mut World, id: Id) -> Result<&mut Server, ApiError> {
    w.servers
        .get_mut(&id)
        .ok_or_else(|| ApiError::not_found("server"))
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
    let id = parse_id(&id, "server")?;
    let w = st.world();
    let s = server(&w, id)?;
    Ok(ok(json!({"server": render(&w, s)})))
}

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
        let s = new_server(id, &req, checked, private_net, public_ipv4);
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

/// The `location` (or `datacenter`'s location, or the type's first), where `stype` must exist.
fn create_location(
    body: &JsonBody,
    stype: &'static ServerType,
) -> Result<&'static Location, ApiError> {
    let location = match (body.opt_ref("location")?, body.opt_ref("datacenter")?) {
        (Some(l), _) => catalog::location(&l).ok_or_else(|| {
            ApiError::invalid_field("location", format!("location '{l}' not found"))
        })?,
        (None, Some(d)) => catalog::location_of_datacenter(&d).ok_or_else(|| {
            ApiError::invalid_field("datacenter", format!("datacenter '{d}' not found"))
        })?,
        (None, None) => stype
            .locations
            .first()
            .and_then(|l| catalog::location(l))
            .ok_or_else(|| ApiError::invalid_field("location", "no location available"))?,
    };
    if !stype.available_in(location.name) {
        return Err(ApiError::invalid_field(
            "server_type",
            format!(
                "server type {} is not available in location {}",
                stype.name, location.name
            ),
        ));
    }
    Ok(location)
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
    let create_secs = w.latency.server_create;
    let create = w.start_action(
        "create_server",
        vec![(id, "server")],
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
        let total = create_secs + w.latency.server_start;
        next.push(w.start_action(
            "start_server",
            vec![(id, "server")],
            Some((Kind::Server, id)),
            total,
            boot_effect(id),
        ));
    }
    for n in &req.networks {
        next.push(w.start_action(
            "attach_to_network",
            vec![(id, "server"), (*n, "network")],
            None,
            create_secs,
            Box::new(|_| Vec::new()),
        ));
    }
    let fw_secs = create_secs + w.latency.firewall_apply;
    for f in &req.firewall_ids {
        next.push(w.start_action(
            "apply_firewall",
            vec![(*f, "firewall"), (id, "server")],
            None,
            fw_secs,
            Box::new(|_| Vec::new()),
        ));
    }
    (create, next)
}

/// `PUT /servers/{id}` (name, labels; the label set is replaced).
pub async fn servers_update(
    State(st): State<TwinState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "server")?;
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
    let id = parse_id(&id, "server")?;
    st.mutate(|w| {
        server(w, id)?;
        w.ensure_unlocked(Kind::Server, id)?;
        let s = w
            .servers
            .remove(&id)
            .ok_or_else(|| ApiError::not_found("server"))?;
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
            vec![(id, "server")],
            None,
            secs,
            Box::new(|_| Vec::new()),
        );
        w.emit(HookEvent::Deleted(id));
        Ok(ok(json!({"action": action_by_id(w, a)})))
    })
}

enum Power {
    On,
    Off,
    Shutdown,
    Reset,
    Reboot,
}

fn power(st: &TwinState, id: &str, what: Power) -> Result<Response, ApiError> {
    let id = parse_id(id, "server")?;
    st.mutate(|w| {
        let status = server(w, id)?.status;
        w.ensure_unlocked(Kind::Server, id)?;
        let res = vec![(id, "server")];
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
    let id = parse_id(&id, "server")?;
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
            vec![(id, "server")],
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
    let id = parse_id(&id, "server")?;
    st.mutate(|w| {
        server(w, id)?;
        w.ensure_unlocked(Kind::Server, id)?;
        let secs = w.latency.rescue;
        let a = w.start_action(
            "disable_rescue",
            vec![(id, "server")],
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
    let id = parse_id(&id, "server")?;
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
            vec![(id, "server"), (image_id, "image")],
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
    let id = parse_id(&id, "server")?;
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
            .ok_or_else(|| ApiError::not_found("network"))?;
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
            vec![(id, "server"), (network, "network")],
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
    let id = parse_id(&id, "server")?;
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
            vec![(id, "server"), (network, "network")],
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
    let id = parse_id(&id, "server")?;
    let pg = body.req_i64("placement_group")?;
    st.mutate(|w| {
        let s = server(w, id)?;
        if !w.placement_groups.contains_key(&pg) {
            return Err(ApiError::not_found("placement_group"));
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
        let a = w.finished_action("add_to_placement_group", vec![(id, "server")]);
        Ok(created(json!({"action": action_by_id(w, a)})))
    })
}

/// `POST /servers/{id}/actions/remove_from_placement_group`.
pub async fn servers_remove_from_placement_group(
    State(st): State<TwinState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "server")?;
    st.mutate(|w| {
        server(w, id)?;
        w.ensure_unlocked(Kind::Server, id)?;
        server_mut(w, id)?.placement_group = None;
        let a = w.finished_action("remove_from_placement_group", vec![(id, "server")]);
        Ok(created(json!({"action": action_by_id(w, a)})))
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
