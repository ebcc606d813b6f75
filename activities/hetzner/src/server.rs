//! `ensure_server` and `delete_server`: cluster nodes booted from the Talos snapshot.

use std::net::Ipv4Addr;

use hcloud::apis::{firewalls_api, servers_api};
use hcloud::models;
use serde::{Deserialize, Serialize};

use crate::actions::{ActionId, pending_ids};
use crate::client::{Hetzner, PER_PAGE};
use crate::error::{ErrorKind, HetznerError};
use crate::labels::{self, Component, LABEL_POOL, Labels, Role};
use crate::outcome::{DeleteOutcome, EnsureOutcome};

/// What a cluster node must look like.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSpec {
    /// Cluster name.
    pub cluster: String,
    /// Server name, e.g. `demo-cp-1` (see [`labels::server_name`]).
    pub name: String,
    /// Node role.
    pub role: Role,
    /// Worker pool name, added as label `pool=<name>`.
    pub pool: Option<String>,
    /// Server type, e.g. `cx23`.
    pub server_type: String,
    /// Location, e.g. `fsn1`.
    pub location: String,
    /// The Talos snapshot to boot (see [`Hetzner::find_talos_image`]).
    pub image_id: i64,
    /// The cluster network to attach to.
    pub network_id: i64,
    /// Firewalls applied at creation.
    pub firewall_ids: Vec<i64>,
    /// Spread placement group.
    pub placement_group_id: Option<i64>,
    /// SSH keys (Talos ignores them; they stop Hetzner from mailing a root password).
    pub ssh_key_ids: Vec<i64>,
    /// Extra labels; hk8s's own labels (`cluster`, `managed-by`, `component`, `role`,
    /// `pool`) win over these.
    pub labels: Labels,
    /// A fixed private IP in the subnet, or `None` for Hetzner's choice.
    pub private_ip: Option<Ipv4Addr>,
}

impl ServerSpec {
    /// The full label set the server carries.
    pub fn all_labels(&self) -> Labels {
        let mut out = self.labels.clone();
        out.extend(labels::role_labels(
            &self.cluster,
            Component::Server,
            self.role,
        ));
        if let Some(pool) = &self.pool {
            out.insert(LABEL_POOL.into(), pool.clone());
        }
        out
    }
}

/// The ensured server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// Hetzner id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Server status after the call (`running` normally).
    pub status: String,
    /// Public IPv4.
    pub public_ipv4: Option<Ipv4Addr>,
    /// Public IPv6 network (`2001:db8::/64`).
    pub public_ipv6: Option<String>,
    /// Private IP in the cluster network.
    pub private_ip: Option<Ipv4Addr>,
    /// Whether this call created, updated (adopted and fixed) or only found it.
    pub outcome: EnsureOutcome,
}

/// A server whose create request was answered ([`Hetzner::request_listed_server`]): its
/// addresses are known, and `starting` are the actions (create, start) still bringing it up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestedServer {
    /// The server as the create's reply (or the lookup that adopted it) described it.
    pub server: ServerInfo,
    /// The actions to wait for before it runs ([`Hetzner::wait_server_started`]); empty when
    /// nothing was left to wait for.
    pub starting: Vec<ActionId>,
}

/// The servers of one cluster by name, as one labelled listing found them
/// ([`Hetzner::list_cluster_servers`]).
#[derive(Clone, Debug, Default)]
pub struct ServerListing {
    by_name: std::collections::HashMap<String, models::Server>,
}

impl ServerListing {
    /// How many servers the listing holds.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

fn status_str(s: models::server::Status) -> &'static str {
    use models::server::Status::*;
    match s {
        Deleting => "deleting",
        Initializing => "initializing",
        Migrating => "migrating",
        Off => "off",
        Rebuilding => "rebuilding",
        Running => "running",
        Starting => "starting",
        Stopping => "stopping",
        Unknown => "unknown",
    }
}

fn info(server: &models::Server, spec: &ServerSpec, outcome: EnsureOutcome) -> ServerInfo {
    ServerInfo {
        id: server.id,
        name: server.name.clone(),
        role: spec.role,
        status: status_str(server.status).to_string(),
        public_ipv4: server
            .public_net
            .ipv4
            .as_ref()
            .and_then(|v4| v4.ip.parse().ok()),
        public_ipv6: server.public_net.ipv6.as_ref().map(|v6| v6.ip.clone()),
        private_ip: server
            .private_net
            .iter()
            .find(|p| p.network == Some(spec.network_id))
            .and_then(|p| p.ip.as_deref())
            .and_then(|ip| ip.parse().ok()),
        outcome,
    }
}

impl Hetzner {
    /// Ensures a cluster node exists, is running, and carries its labels, network and
    /// firewalls.
    ///
    /// # Flow
    ///
    /// 1. `GET /servers?name=…`.
    /// 2. Missing: `POST /servers` (image, type, location, network, firewalls, placement
    ///    group, labels, `start_after_create`), then **one** wait for the create action
    ///    and all `next_actions` together; with a fixed private IP the network is
    ///    attached afterwards with that IP. A `uniqueness_error` means "look again".
    /// 3. Found (a crash after create, or a second call): adopted if it carries
    ///    `managed-by=hk8s,cluster=<cluster>`. Running actions of the server are waited
    ///    for, a stopped server is powered on, labels are fixed, a missing network
    ///    attachment or firewall is added.
    /// 4. `GET /servers/{id}` for the final IPs, only if anything was done.
    ///
    /// # Guarantees
    ///
    /// Never creates a second server with the name; a second call with the same spec
    /// sends one request.
    ///
    /// # Caveats
    ///
    /// Server type, image, location and placement group of an existing server are not
    /// changed (that needs a stop or a rebuild); a difference is logged.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotManaged`] if a server with the name exists without
    /// `managed-by=hk8s,cluster=<cluster>` — another tool's server is never adopted.
    /// `resource_unavailable`/`placement_error` classify as
    /// [`crate::ErrorClass::CapacityUnavailable`].
    pub async fn ensure_server(&self, spec: &ServerSpec) -> Result<ServerInfo, HetznerError> {
        let requested = self.ensure_server_in(spec, None).await?;
        self.wait_server_started(&requested, spec).await
    }

    /// The cluster's servers (`cluster=<cluster>,managed-by=hk8s`) in one paginated listing
    /// (50 per page): what [`Hetzner::ensure_listed_server`] looks in first, so creating 100
    /// servers costs two lookups instead of a hundred.
    ///
    /// # Errors
    /// An invalid cluster name, or the listing failed.
    pub async fn list_cluster_servers(&self, cluster: &str) -> Result<ServerListing, HetznerError> {
        labels::validate_cluster_name(cluster)?;
        let servers = self
            .list_servers(&labels::cluster_selector(cluster))
            .await?;
        Ok(ServerListing {
            by_name: servers.into_iter().map(|s| (s.name.clone(), s)).collect(),
        })
    }

    /// [`Hetzner::ensure_server`], looking in `listing` (taken by
    /// [`Hetzner::list_cluster_servers`] before) instead of asking for the name.
    ///
    /// A server missing from the listing is created; if the name is taken after all (made
    /// after the listing, or another tool's server, which the cluster's labels do not select)
    /// the create's `uniqueness_error` leads to a lookup by name as usual, so another tool's
    /// server is still never adopted.
    ///
    /// # Errors
    /// As [`Hetzner::ensure_server`].
    pub async fn ensure_listed_server(
        &self,
        spec: &ServerSpec,
        listing: &ServerListing,
    ) -> Result<ServerInfo, HetznerError> {
        let requested = self.ensure_server_in(spec, Some(listing)).await?;
        self.wait_server_started(&requested, spec).await
    }

    /// [`Hetzner::ensure_listed_server`] without waiting for the server to start: it returns
    /// as soon as the create is answered (addresses known) with the actions still starting the
    /// server, for [`Hetzner::wait_server_started`]. Whoever needs the server's OS (Talos's
    /// maintenance API) can talk to it meanwhile; the wait only confirms the start or reports
    /// an action that failed. A server found instead of created is adopted as usual (its
    /// running actions waited for) and has nothing left to wait for. A spec with a fixed
    /// private IP waits (the attach needs the created server).
    ///
    /// # Errors
    /// As [`Hetzner::ensure_server`].
    pub async fn request_listed_server(
        &self,
        spec: &ServerSpec,
        listing: &ServerListing,
    ) -> Result<RequestedServer, HetznerError> {
        self.ensure_server_in(spec, Some(listing)).await
    }

    /// Waits for the actions of a [`RequestedServer`]; then the server as it runs: the
    /// create's addresses when they are complete (no request), else a `GET /servers/{id}`.
    ///
    /// # Errors
    /// A failed or timed-out action (with its code), or the lookup failed.
    pub async fn wait_server_started(
        &self,
        requested: &RequestedServer,
        spec: &ServerSpec,
    ) -> Result<ServerInfo, HetznerError> {
        let server = &requested.server;
        if server.outcome != EnsureOutcome::Created {
            // Adopted: its actions were waited for and its addresses read then.
            return Ok(server.clone());
        }
        self.wait_actions(&requested.starting)
            .await
            .map_err(|e| e.context(format!("create server {}", server.name)))?;
        // The create's reply already holds the addresses (the create starts the server), so
        // once its actions succeeded it is running. Ask again only when an address is
        // missing (an API that fills them in afterwards).
        if server.public_ipv4.is_some() && server.private_ip.is_some() {
            let mut running = server.clone();
            running.status = status_str(models::server::Status::Running).to_string();
            return Ok(running);
        }
        let found = self.get_server(server.id, &server.name).await?;
        Ok(info(&found, spec, server.outcome))
    }

    /// Finds or creates the server; a created one is returned as its create was answered,
    /// with the actions still starting it (see [`Hetzner::wait_server_started`]).
    async fn ensure_server_in(
        &self,
        spec: &ServerSpec,
        listing: Option<&ServerListing>,
    ) -> Result<RequestedServer, HetznerError> {
        labels::validate_cluster_name(&spec.cluster)?;
        if let Some(pool) = &spec.pool {
            labels::validate_label_value(pool)?;
        }
        let name = spec.name.as_str();
        // The first look goes to the listing when there is one; a second (after a conflict)
        // always asks the API.
        let looked = std::sync::atomic::AtomicBool::new(false);
        let find = || {
            let first = !looked.swap(true, std::sync::atomic::Ordering::Relaxed);
            async move {
                match listing {
                    Some(listing) if first => Ok(listing.by_name.get(name).cloned()),
                    _ => self.find_server(name).await,
                }
            }
        };
        self.ensure(
            &format!("server {name}"),
            find,
            || {
                let want_labels = spec.all_labels();
                let request = models::CreateServerRequest {
                    automount: None,
                    firewalls: (!spec.firewall_ids.is_empty()).then(|| {
                        spec.firewall_ids
                            .iter()
                            .map(|&firewall| models::CreateServerRequestFirewalls { firewall })
                            .collect()
                    }),
                    image: spec.image_id.to_string(),
                    labels: Some(labels::to_hash_map(&want_labels)),
                    location: Some(spec.location.clone()),
                    name: name.to_string(),
                    networks: spec.private_ip.is_none().then(|| vec![spec.network_id]),
                    placement_group: spec.placement_group_id,
                    public_net: Some(Box::new(models::CreateServerRequestPublicNet {
                        enable_ipv4: Some(true),
                        enable_ipv6: Some(true),
                        ipv4: None,
                        ipv6: None,
                    })),
                    server_type: spec.server_type.clone(),
                    ssh_keys: (!spec.ssh_key_ids.is_empty())
                        .then(|| spec.ssh_key_ids.iter().map(ToString::to_string).collect()),
                    start_after_create: Some(true),
                    user_data: None,
                    volumes: None,
                };
                self.run(
                    format!("create server {name}"),
                    servers_api::create_server(
                        self.cfg(),
                        servers_api::CreateServerParams {
                            create_server_request: request,
                        },
                    ),
                )
            },
            |resp| async move {
                let id = resp.server.id;
                tracing::info!(server = %name, id, "created server");
                let actions =
                    || std::iter::once(resp.action.as_ref()).chain(resp.next_actions.iter());
                let Some(ip) = spec.private_ip else {
                    return Ok(RequestedServer {
                        server: info(&resp.server, spec, EnsureOutcome::Created),
                        starting: pending_ids(actions())?,
                    });
                };
                // A fixed private IP is attached once the server exists; then its addresses
                // are read again.
                self.wait_models(actions())
                    .await
                    .map_err(|e| e.context(format!("create server {name}")))?;
                self.attach_server(id, name, spec.network_id, Some(ip))
                    .await?;
                let server = self.get_server(id, name).await?;
                Ok(RequestedServer {
                    server: info(&server, spec, EnsureOutcome::Created),
                    starting: Vec::new(),
                })
            },
            |found| async move {
                Ok(RequestedServer {
                    server: self.adopt_server(found, spec).await?,
                    starting: Vec::new(),
                })
            },
        )
        .await
    }

    /// `GET /servers?name=…`.
    pub(crate) async fn find_server(
        &self,
        name: &str,
    ) -> Result<Option<models::Server>, HetznerError> {
        let resp = self
            .run(
                format!("look up server {name}"),
                servers_api::list_servers(
                    self.cfg(),
                    servers_api::ListServersParams {
                        name: Some(name.to_string()),
                        ..Default::default()
                    },
                ),
            )
            .await?;
        Ok(resp.servers.into_iter().find(|s| s.name == name))
    }

    /// Every server matching `selector`.
    pub(crate) async fn list_servers(
        &self,
        selector: &str,
    ) -> Result<Vec<models::Server>, HetznerError> {
        let cfg = self.cfg();
        self.list_all(
            "list servers",
            |page| {
                servers_api::list_servers(
                    cfg,
                    servers_api::ListServersParams {
                        label_selector: Some(selector.to_string()),
                        page: Some(page),
                        per_page: Some(PER_PAGE),
                        ..Default::default()
                    },
                )
            },
            |r| (r.servers, r.meta.pagination.next_page),
        )
        .await
    }

    /// `GET /servers/{id}`; `name` is only used in the error's operation.
    pub(crate) async fn get_server(
        &self,
        id: i64,
        name: &str,
    ) -> Result<models::Server, HetznerError> {
        let resp = self
            .run(
                format!("get server {name}"),
                servers_api::get_server(self.cfg(), servers_api::GetServerParams { id }),
            )
            .await?;
        resp.server.map(|s| *s).ok_or_else(|| {
            HetznerError::new(
                ErrorKind::Decode,
                format!("get server {name}"),
                "the reply holds no server",
            )
        })
    }

    /// Waits for whatever actions of server `id` are running.
    pub(crate) async fn wait_running_server_actions(
        &self,
        id: i64,
        name: &str,
    ) -> Result<(), HetznerError> {
        let resp = self
            .run(
                format!("list running actions of server {name}"),
                servers_api::list_actions_for_server(
                    self.cfg(),
                    servers_api::ListActionsForServerParams {
                        id,
                        status: Some(vec!["running".into()]),
                        per_page: Some(PER_PAGE),
                        ..Default::default()
                    },
                ),
            )
            .await?;
        let ids: Vec<ActionId> = resp.actions.iter().map(|a| ActionId(a.id)).collect();
        self.wait_actions(&ids).await
    }

    async fn attach_server(
        &self,
        id: i64,
        name: &str,
        network: i64,
        ip: Option<Ipv4Addr>,
    ) -> Result<(), HetznerError> {
        let resp = self
            .run(
                format!("attach server {name} to network {network}"),
                servers_api::attach_server_to_network(
                    self.cfg(),
                    servers_api::AttachServerToNetworkParams {
                        id,
                        attach_server_to_network_request: models::AttachServerToNetworkRequest {
                            alias_ips: None,
                            ip: ip.map(|ip| ip.to_string()),
                            ip_range: None,
                            network,
                        },
                    },
                ),
            )
            .await?;
        self.wait_models([resp.action.as_ref()]).await
    }

    async fn adopt_server(
        &self,
        server: models::Server,
        spec: &ServerSpec,
    ) -> Result<ServerInfo, HetznerError> {
        let name = server.name.clone();
        let id = server.id;
        if !labels::is_managed(&server.labels, &spec.cluster) {
            return Err(HetznerError::new(
                ErrorKind::NotManaged,
                format!("ensure server {name}"),
                "a server with this name exists but is not managed by hk8s for this cluster; it is never adopted",
            ));
        }
        let mut changed = false;
        let mut status = server.status;
        use models::server::Status;
        if matches!(
            status,
            Status::Initializing
                | Status::Starting
                | Status::Stopping
                | Status::Rebuilding
                | Status::Migrating
        ) || server.locked
        {
            self.wait_running_server_actions(id, &name).await?;
            status = self.get_server(id, &name).await?.status;
            changed = true;
        }
        if status == Status::Deleting {
            return Err(HetznerError::new(
                ErrorKind::Incompatible,
                format!("ensure server {name}"),
                "the server is being deleted",
            ));
        }
        if status == Status::Off {
            let resp = self
                .run(
                    format!("power on server {name}"),
                    servers_api::power_on_server(
                        self.cfg(),
                        servers_api::PowerOnServerParams { id },
                    ),
                )
                .await?;
            self.wait_models([resp.action.as_ref()]).await?;
            changed = true;
        }
        let want_labels = spec.all_labels();
        if !labels::contains_all(&server.labels, &want_labels) {
            self.run(
                format!("update labels of server {name}"),
                servers_api::replace_server(
                    self.cfg(),
                    servers_api::ReplaceServerParams {
                        id,
                        replace_server_request: models::ReplaceServerRequest {
                            labels: Some(labels::merged(&server.labels, &want_labels)),
                            name: None,
                        },
                    },
                ),
            )
            .await?;
            changed = true;
        }
        if !server
            .private_net
            .iter()
            .any(|p| p.network == Some(spec.network_id))
        {
            self.attach_server(id, &name, spec.network_id, spec.private_ip)
                .await?;
            changed = true;
        }
        let applied: Vec<i64> = server
            .public_net
            .firewalls
            .iter()
            .flatten()
            .filter_map(|f| f.id)
            .collect();
        for &firewall in spec.firewall_ids.iter().filter(|f| !applied.contains(f)) {
            let resp = self
                .run(
                    format!("apply firewall {firewall} to server {name}"),
                    firewalls_api::apply_to_resources(
                        self.cfg(),
                        firewalls_api::ApplyToResourcesParams {
                            id: firewall,
                            apply_to_resources_request: models::ApplyToResourcesRequest {
                                apply_to: vec![models::FirewallResource {
                                    label_selector: None,
                                    server: Some(Box::new(models::ResourceId { id })),
                                    r#type: models::firewall_resource::Type::Server,
                                }],
                            },
                        },
                    ),
                )
                .await;
            match resp {
                Ok(resp) => self.wait_models(&resp.actions).await?,
                // Applied in the meantime (e.g. the create's apply_firewall finished).
                Err(e) if e.code.as_deref() == Some("firewall_already_applied") => {}
                Err(e) => return Err(e),
            }
            changed = true;
        }
        let live_pg = server
            .placement_group
            .as_ref()
            .and_then(|p| p.as_ref())
            .map(|p| p.id);
        if live_pg != spec.placement_group_id {
            tracing::warn!(server = %name, ?live_pg, want = ?spec.placement_group_id,
                "placement group differs; not changed on a running server");
        }
        if server.server_type.name != spec.server_type {
            tracing::warn!(server = %name, have = %server.server_type.name, want = %spec.server_type,
                "server type differs; not changed by ensure_server");
        }
        if changed {
            let server = self.get_server(id, &name).await?;
            Ok(info(&server, spec, EnsureOutcome::Updated))
        } else {
            Ok(info(&server, spec, EnsureOutcome::Unchanged))
        }
    }

    /// Deletes a server of `cluster` by name and waits for the delete action.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotManaged`] if the server is not hk8s's for this cluster.
    /// A server that is already gone is [`DeleteOutcome::AlreadyGone`], not an error.
    pub async fn delete_server(
        &self,
        cluster: &str,
        name: &str,
    ) -> Result<DeleteOutcome, HetznerError> {
        let Some(server) = self.find_server(name).await? else {
            return Ok(DeleteOutcome::AlreadyGone);
        };
        if !labels::is_managed(&server.labels, cluster) {
            return Err(HetznerError::new(
                ErrorKind::NotManaged,
                format!("delete server {name}"),
                "the server is not managed by hk8s for this cluster",
            ));
        }
        let action = self.start_delete_server(server.id, name).await?;
        match action {
            Some(id) => {
                self.wait_actions(&[id]).await?;
                Ok(DeleteOutcome::Deleted)
            }
            None => Ok(DeleteOutcome::AlreadyGone),
        }
    }

    /// `DELETE /servers/{id}`; `Ok(None)` if it was already gone, else the running
    /// delete action (none if it finished at once).
    pub(crate) async fn start_delete_server(
        &self,
        id: i64,
        name: &str,
    ) -> Result<Option<ActionId>, HetznerError> {
        let resp = self
            .run(
                format!("delete server {name}"),
                servers_api::delete_server(self.cfg(), servers_api::DeleteServerParams { id }),
            )
            .await;
        match resp {
            Ok(resp) => match resp.action {
                Some(a) if a.status == models::action::Status::Running => Ok(Some(ActionId(a.id))),
                Some(a) => {
                    crate::actions::pending_ids([a.as_ref()])?;
                    Ok(None)
                }
                None => Ok(None),
            },
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_labels_win_over_extra_labels() {
        let mut extra = Labels::new();
        extra.insert("team".into(), "infra".into());
        extra.insert("managed-by".into(), "someone-else".into());
        let spec = ServerSpec {
            cluster: "demo".into(),
            name: "demo-gpu-1".into(),
            role: Role::Worker,
            pool: Some("gpu".into()),
            server_type: "cx23".into(),
            location: "fsn1".into(),
            image_id: 1,
            network_id: 2,
            firewall_ids: vec![3],
            placement_group_id: Some(4),
            ssh_key_ids: vec![],
            labels: extra,
            private_ip: None,
        };
        let labels = spec.all_labels();
        let pairs: Vec<_> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            pairs,
            [
                "cluster=demo",
                "component=server",
                "managed-by=hk8s",
                "pool=gpu",
                "role=worker",
                "team=infra"
            ]
        );
    }
}
