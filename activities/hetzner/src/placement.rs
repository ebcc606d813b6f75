//! `ensure_placement_group`: spread groups, one per 10 servers of a role or pool.

use hcloud::apis::placement_groups_api;
use hcloud::models;
use serde::{Deserialize, Serialize};

use crate::client::{Hetzner, PER_PAGE};
use crate::error::{ErrorKind, HetznerError};
use crate::labels::{self, Component, Role};
use crate::outcome::EnsureOutcome;

/// One spread placement group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementGroupSpec {
    /// Cluster name.
    pub cluster: String,
    /// The role of the servers it holds.
    pub role: Role,
    /// The short group name in the resource name: `cp`, `worker` or a pool name.
    pub group: String,
    /// 1-based index: group `k` holds servers `10(k-1)+1 ..= 10k`
    /// (see [`labels::placement_group_index`]).
    pub index: u32,
}

impl PlacementGroupSpec {
    /// The specs of the groups `servers` servers of `role`/`group` need.
    pub fn for_servers(cluster: &str, role: Role, group: &str, servers: u32) -> Vec<Self> {
        (1..=labels::placement_group_count(servers))
            .map(|index| Self {
                cluster: cluster.to_string(),
                role,
                group: group.to_string(),
                index,
            })
            .collect()
    }

    /// `<cluster>-<group>-pg-<index>`.
    pub fn name(&self) -> String {
        labels::placement_group_name(&self.cluster, &self.group, self.index)
    }
}

/// The ensured placement group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementGroupInfo {
    /// Hetzner id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Whether this call created, updated or only found it.
    pub outcome: EnsureOutcome,
}

impl Hetzner {
    /// Ensures a spread placement group exists with hk8s's labels.
    ///
    /// # Flow
    ///
    /// `GET /placement_groups?name=…`; if missing, `POST /placement_groups` (type
    /// `spread`); if present, fixes labels.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotManaged`] if a group with the name is not hk8s's for this cluster.
    pub async fn ensure_placement_group(
        &self,
        spec: &PlacementGroupSpec,
    ) -> Result<PlacementGroupInfo, HetznerError> {
        labels::validate_cluster_name(&spec.cluster)?;
        labels::validate_label_value(&spec.group)?;
        let name = spec.name();
        let name = name.as_str();
        self.ensure(
            &format!("placement group {name}"),
            || self.find_placement_group(name),
            || {
                let want_labels =
                    labels::role_labels(&spec.cluster, Component::PlacementGroup, spec.role);
                self.run(
                    format!("create placement group {name}"),
                    placement_groups_api::create_placementgroup(
                        self.cfg(),
                        placement_groups_api::CreatePlacementgroupParams {
                            create_placementgroup_request: models::CreatePlacementgroupRequest {
                                labels: Some(labels::to_hash_map(&want_labels)),
                                name: name.to_string(),
                                r#type: models::create_placementgroup_request::Type::Spread,
                            },
                        },
                    ),
                )
            },
            |resp| async move {
                if let Some(Some(action)) = resp.action.as_ref() {
                    self.wait_models([action.as_ref()]).await?;
                }
                Ok(PlacementGroupInfo {
                    id: resp.placement_group.id,
                    name: resp.placement_group.name,
                    outcome: EnsureOutcome::Created,
                })
            },
            |found| self.adopt_placement_group(found, spec),
        )
        .await
    }

    /// `GET /placement_groups?name=…`.
    pub(crate) async fn find_placement_group(
        &self,
        name: &str,
    ) -> Result<Option<models::PlacementGroup>, HetznerError> {
        let resp = self
            .run(
                format!("look up placement group {name}"),
                placement_groups_api::list_placement_groups(
                    self.cfg(),
                    placement_groups_api::ListPlacementGroupsParams {
                        name: Some(name.to_string()),
                        ..Default::default()
                    },
                ),
            )
            .await?;
        Ok(resp.placement_groups.into_iter().find(|p| p.name == name))
    }

    /// Every placement group matching `selector`.
    pub(crate) async fn list_placement_groups(
        &self,
        selector: &str,
    ) -> Result<Vec<models::PlacementGroup>, HetznerError> {
        let cfg = self.cfg();
        self.list_all(
            "list placement groups",
            |page| {
                placement_groups_api::list_placement_groups(
                    cfg,
                    placement_groups_api::ListPlacementGroupsParams {
                        label_selector: Some(selector.to_string()),
                        page: Some(page),
                        per_page: Some(PER_PAGE),
                        ..Default::default()
                    },
                )
            },
            |r| (r.placement_groups, r.meta.pagination.next_page),
        )
        .await
    }

    async fn adopt_placement_group(
        &self,
        group: models::PlacementGroup,
        spec: &PlacementGroupSpec,
    ) -> Result<PlacementGroupInfo, HetznerError> {
        if !labels::is_managed(&group.labels, &spec.cluster) {
            return Err(HetznerError::new(
                ErrorKind::NotManaged,
                format!("ensure placement group {}", group.name),
                "a placement group with this name exists but is not managed by hk8s for this cluster",
            ));
        }
        let mut outcome = EnsureOutcome::Unchanged;
        let want_labels = labels::role_labels(&spec.cluster, Component::PlacementGroup, spec.role);
        if !labels::contains_all(&group.labels, &want_labels) {
            self.run(
                format!("update labels of placement group {}", group.name),
                placement_groups_api::replace_placementgroup(
                    self.cfg(),
                    placement_groups_api::ReplacePlacementgroupParams {
                        id: group.id,
                        replace_placementgroup_request: models::ReplacePlacementgroupRequest {
                            labels: Some(labels::merged(&group.labels, &want_labels)),
                            name: None,
                        },
                    },
                ),
            )
            .await?;
            outcome = EnsureOutcome::Updated;
        }
        Ok(PlacementGroupInfo {
            id: group.id,
            name: group.name,
            outcome,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_for_server_counts() {
        let specs = PlacementGroupSpec::for_servers("demo", Role::Worker, "worker", 21);
        let names: Vec<_> = specs.iter().map(PlacementGroupSpec::name).collect();
        assert_eq!(
            names,
            ["demo-worker-pg-1", "demo-worker-pg-2", "demo-worker-pg-3"]
        );
        assert_eq!(
            PlacementGroupSpec::for_servers("demo", Role::ControlPlane, "cp", 3).len(),
            1
        );
        assert!(PlacementGroupSpec::for_servers("demo", Role::Worker, "worker", 0).is_empty());
    }
}
