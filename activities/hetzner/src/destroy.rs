//! `list_cluster_resources` and `destroy_cluster_resources`: everything labelled
//! `cluster=<name>,managed-by=hk8s`, deleted in dependency order.

use std::collections::HashMap;

use futures::future::join_all;
use hcloud::apis::{firewalls_api, load_balancers_api, networks_api, placement_groups_api};
use hcloud::models;
use serde::{Deserialize, Serialize};

use crate::actions::ActionId;
use crate::client::Hetzner;
use crate::error::{ErrorKind, HetznerError};
use crate::labels::{self, Labels};

/// One live resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceSummary {
    /// Hetzner id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: Labels,
}

impl ResourceSummary {
    pub(crate) fn new(id: i64, name: &str, labels: &HashMap<String, String>) -> Self {
        Self {
            id,
            name: name.to_string(),
            labels: labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }
}

/// The hk8s-managed resources of one cluster, by kind, each sorted by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterResources {
    /// Servers.
    pub servers: Vec<ResourceSummary>,
    /// Load balancers.
    pub load_balancers: Vec<ResourceSummary>,
    /// Firewalls.
    pub firewalls: Vec<ResourceSummary>,
    /// Placement groups.
    pub placement_groups: Vec<ResourceSummary>,
    /// Networks.
    pub networks: Vec<ResourceSummary>,
    /// SSH keys.
    #[serde(default)]
    pub ssh_keys: Vec<ResourceSummary>,
    /// Volumes (made by the CSI driver; filled by callers that know their ids).
    #[serde(default)]
    pub volumes: Vec<ResourceSummary>,
}

impl ClusterResources {
    /// True if nothing is left.
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// Number of resources of all kinds.
    pub fn count(&self) -> usize {
        self.servers.len()
            + self.load_balancers.len()
            + self.firewalls.len()
            + self.placement_groups.len()
            + self.networks.len()
            + self.ssh_keys.len()
            + self.volumes.len()
    }

    fn sort(&mut self) {
        for list in [
            &mut self.servers,
            &mut self.load_balancers,
            &mut self.firewalls,
            &mut self.placement_groups,
            &mut self.networks,
            &mut self.ssh_keys,
            &mut self.volumes,
        ] {
            list.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        }
    }
}

/// What [`Hetzner::destroy_cluster_resources`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestroyReport {
    /// What was found and deleted (or was already gone when deleted).
    pub deleted: ClusterResources,
    /// What a final listing still found; empty on success.
    pub remaining: ClusterResources,
}

impl Hetzner {
    /// Lists every resource labelled `cluster=<cluster>,managed-by=hk8s`: six label
    /// selector lists (servers, load balancers, firewalls, placement groups, networks,
    /// SSH keys). Used by `plan` and to prove that destroy left nothing behind.
    pub async fn list_cluster_resources(
        &self,
        cluster: &str,
    ) -> Result<ClusterResources, HetznerError> {
        labels::validate_cluster_name(cluster)?;
        self.list_by_labels(&labels::cluster_selector(cluster))
            .await
    }

    /// Lists every resource matching `selector` (which must contain `managed-by=hk8s`).
    pub async fn list_by_labels(&self, selector: &str) -> Result<ClusterResources, HetznerError> {
        require_managed_selector(selector)?;
        let selector = selector.to_string();
        let mut out = ClusterResources {
            servers: self
                .list_servers(&selector)
                .await?
                .iter()
                .map(|s| ResourceSummary::new(s.id, &s.name, &s.labels))
                .collect(),
            load_balancers: self
                .list_load_balancers(&selector)
                .await?
                .iter()
                .map(|l| ResourceSummary::new(l.id, &l.name, &l.labels))
                .collect(),
            firewalls: self
                .list_firewalls(&selector)
                .await?
                .iter()
                .map(|f| ResourceSummary::new(f.id, &f.name, &f.labels.clone().unwrap_or_default()))
                .collect(),
            placement_groups: self
                .list_placement_groups(&selector)
                .await?
                .iter()
                .map(|p| ResourceSummary::new(p.id, &p.name, &p.labels))
                .collect(),
            networks: self
                .list_networks(&selector)
                .await?
                .iter()
                .map(|n| ResourceSummary::new(n.id, &n.name, &n.labels))
                .collect(),
            ssh_keys: self
                .list_ssh_keys(&selector)
                .await?
                .iter()
                .map(|k| ResourceSummary::new(k.id, &k.name, &k.labels))
                .collect(),
            volumes: Vec::new(),
        };
        out.sort();
        Ok(out)
    }

    /// Whether any server labelled `cluster=<cluster>,managed-by=hk8s` exists (one list call).
    pub async fn cluster_has_servers(&self, cluster: &str) -> Result<bool, HetznerError> {
        labels::validate_cluster_name(cluster)?;
        Ok(!self
            .list_servers(&labels::cluster_selector(cluster))
            .await?
            .is_empty())
    }

    /// Deletes every resource labelled `cluster=<cluster>,managed-by=hk8s`.
    ///
    /// # Flow
    ///
    /// 1. Servers: all `DELETE`s are sent, then one wait for all delete actions.
    /// 2. Load balancers.
    /// 3. Firewalls: removed from any resources they are still applied to, then deleted.
    /// 4. Placement groups.
    /// 5. Networks.
    /// 6. SSH keys.
    /// 7. A final [`Hetzner::list_cluster_resources`] fills `remaining`.
    ///
    /// # Guarantees
    ///
    /// `not_found` on any delete is success, so the call can be repeated after a crash.
    /// Resources without `managed-by=hk8s` are never selected.
    ///
    /// # Errors
    ///
    /// The first failed delete stops the run (later kinds depend on earlier ones).
    pub async fn destroy_cluster_resources(
        &self,
        cluster: &str,
    ) -> Result<DestroyReport, HetznerError> {
        labels::validate_cluster_name(cluster)?;
        self.delete_by_labels(&labels::cluster_selector(cluster))
            .await
    }

    /// Deletes every resource matching `selector` in the order of
    /// [`Hetzner::destroy_cluster_resources`], e.g. one image build's leftovers with
    /// [`crate::builder_selector`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] if `selector` does not contain `managed-by=hk8s`: nothing
    /// without that label is ever deleted.
    pub async fn delete_by_labels(&self, selector: &str) -> Result<DestroyReport, HetznerError> {
        require_managed_selector(selector)?;
        let selector = selector.to_string();
        let mut deleted = ClusterResources::default();

        let servers = self.list_servers(&selector).await?;
        let started = join_all(
            servers
                .iter()
                .map(|s| self.start_delete_server(s.id, &s.name)),
        )
        .await;
        let mut pending: Vec<ActionId> = Vec::new();
        for result in started {
            pending.extend(result?);
        }
        self.wait_actions(&pending).await?;
        deleted.servers = servers
            .iter()
            .map(|s| ResourceSummary::new(s.id, &s.name, &s.labels))
            .collect();

        for lb in self.list_load_balancers(&selector).await? {
            let result = self
                .run(
                    format!("delete load balancer {}", lb.name),
                    load_balancers_api::delete_load_balancer(
                        self.cfg(),
                        load_balancers_api::DeleteLoadBalancerParams { id: lb.id },
                    ),
                )
                .await;
            ok_if_gone(result)?;
            deleted
                .load_balancers
                .push(ResourceSummary::new(lb.id, &lb.name, &lb.labels));
        }

        for fw in self.list_firewalls(&selector).await? {
            self.detach_firewall(&fw).await?;
            let result = self
                .run(
                    format!("delete firewall {}", fw.name),
                    firewalls_api::delete_firewall(
                        self.cfg(),
                        firewalls_api::DeleteFirewallParams { id: fw.id },
                    ),
                )
                .await;
            ok_if_gone(result)?;
            deleted.firewalls.push(ResourceSummary::new(
                fw.id,
                &fw.name,
                &fw.labels.clone().unwrap_or_default(),
            ));
        }

        for pg in self.list_placement_groups(&selector).await? {
            let result = self
                .run(
                    format!("delete placement group {}", pg.name),
                    placement_groups_api::delete_placementgroup(
                        self.cfg(),
                        placement_groups_api::DeletePlacementgroupParams { id: pg.id },
                    ),
                )
                .await;
            ok_if_gone(result)?;
            deleted
                .placement_groups
                .push(ResourceSummary::new(pg.id, &pg.name, &pg.labels));
        }

        for net in self.list_networks(&selector).await? {
            let result = self
                .run(
                    format!("delete network {}", net.name),
                    networks_api::delete_network(
                        self.cfg(),
                        networks_api::DeleteNetworkParams { id: net.id },
                    ),
                )
                .await;
            ok_if_gone(result)?;
            deleted
                .networks
                .push(ResourceSummary::new(net.id, &net.name, &net.labels));
        }

        for key in self.list_ssh_keys(&selector).await? {
            self.delete_ssh_key(key.id).await?;
            deleted
                .ssh_keys
                .push(ResourceSummary::new(key.id, &key.name, &key.labels));
        }

        deleted.sort();
        let remaining = self.list_by_labels(&selector).await?;
        Ok(DestroyReport { deleted, remaining })
    }

    /// Removes a firewall from whatever it is still applied to.
    async fn detach_firewall(&self, fw: &models::Firewall) -> Result<(), HetznerError> {
        let remove_from: Vec<models::FirewallResource> = fw
            .applied_to
            .iter()
            .map(|a| models::FirewallResource {
                label_selector: a.label_selector.clone(),
                server: a.server.clone(),
                r#type: match a.r#type {
                    models::firewall_resource_id::Type::LabelSelector => {
                        models::firewall_resource::Type::LabelSelector
                    }
                    models::firewall_resource_id::Type::Server => {
                        models::firewall_resource::Type::Server
                    }
                },
            })
            .collect();
        if remove_from.is_empty() {
            return Ok(());
        }
        let result = self
            .run(
                format!("remove firewall {} from its resources", fw.name),
                firewalls_api::remove_from_resources(
                    self.cfg(),
                    firewalls_api::RemoveFromResourcesParams {
                        id: fw.id,
                        remove_from_resources_request: models::RemoveFromResourcesRequest {
                            remove_from,
                        },
                    },
                ),
            )
            .await;
        match result {
            Ok(resp) => self.wait_models(&resp.actions).await,
            // The server went away between listing and removing.
            Err(e)
                if e.is_not_found() || e.code.as_deref() == Some("firewall_resource_not_found") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Refuses selectors that could match resources hk8s does not own.
fn require_managed_selector(selector: &str) -> Result<(), HetznerError> {
    let managed = selector
        .split(',')
        .map(|term| term.replace(' ', ""))
        .any(|term| term == "managed-by=hk8s" || term == "managed-by==hk8s");
    if managed {
        Ok(())
    } else {
        Err(HetznerError::new(
            ErrorKind::Config,
            format!("select resources by {selector:?}"),
            "the selector must contain managed-by=hk8s",
        ))
    }
}

/// `not_found` on delete is success.
fn ok_if_gone(result: Result<(), HetznerError>) -> Result<(), HetznerError> {
    match result {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_must_name_hk8s() {
        assert!(require_managed_selector("cluster=demo,managed-by=hk8s").is_ok());
        assert!(require_managed_selector("managed-by == hk8s,hk8s-run=1").is_ok());
        assert!(require_managed_selector("cluster=demo").is_err());
        assert!(require_managed_selector("managed-by!=hk8s").is_err());
        assert!(require_managed_selector("managed-by=hk8s-other").is_err());
    }

    #[test]
    fn not_found_on_delete_is_success() {
        let gone = HetznerError::from_response(
            "delete",
            404,
            r#"{"error":{"code":"not_found","message":"gone"}}"#,
            None,
            None,
        );
        assert!(ok_if_gone(Err(gone)).is_ok());
        let locked = HetznerError::from_response(
            "delete",
            423,
            r#"{"error":{"code":"locked","message":"busy"}}"#,
            None,
            None,
        );
        assert!(ok_if_gone(Err(locked)).is_err());
        assert!(ok_if_gone(Err(HetznerError::new(ErrorKind::Transport, "x", "y"))).is_err());
    }

    #[test]
    fn resources_count_and_sort() {
        let mut r = ClusterResources::default();
        assert!(r.is_empty());
        r.servers
            .push(ResourceSummary::new(2, "b", &HashMap::new()));
        r.servers
            .push(ResourceSummary::new(1, "a", &HashMap::new()));
        r.networks
            .push(ResourceSummary::new(3, "n", &HashMap::new()));
        r.sort();
        assert_eq!(r.count(), 3);
        assert_eq!(r.servers[0].name, "a");
    }
}
