//! Load balancers made by the Hetzner cloud controller manager and volumes made by the CSI
//! driver: they carry their creators' labels, not hk8s's, so destroy finds them by the
//! Kubernetes objects they back (service UIDs, volume handles).

use hcloud::apis::{load_balancers_api, volumes_api};

use crate::client::{Hetzner, PER_PAGE};
use crate::destroy::ResourceSummary;
use crate::error::HetznerError;

/// The label the Hetzner CCM puts on a load balancer it creates for a Service.
pub const CCM_SERVICE_UID_LABEL: &str = "hcloud-ccm/service-uid";

impl Hetzner {
    /// Load balancers the CCM made for the Services with these UIDs (one list call).
    pub async fn list_ccm_load_balancers(
        &self,
        service_uids: &[String],
    ) -> Result<Vec<ResourceSummary>, HetznerError> {
        if service_uids.is_empty() {
            return Ok(Vec::new());
        }
        let cfg = self.cfg();
        let lbs = self
            .list_all(
                "list CCM load balancers",
                |page| {
                    load_balancers_api::list_load_balancers(
                        cfg,
                        load_balancers_api::ListLoadBalancersParams {
                            label_selector: Some(CCM_SERVICE_UID_LABEL.to_string()),
                            page: Some(page),
                            per_page: Some(PER_PAGE),
                            ..Default::default()
                        },
                    )
                },
                |r| (r.load_balancers, r.meta.pagination.next_page),
            )
            .await?;
        Ok(lbs
            .iter()
            .filter(|lb| {
                lb.labels
                    .get(CCM_SERVICE_UID_LABEL)
                    .is_some_and(|uid| service_uids.contains(uid))
            })
            .map(|lb| ResourceSummary::new(lb.id, &lb.name, &lb.labels))
            .collect())
    }

    /// Volumes with these ids (CSI volume handles) that still exist (one list call per page).
    pub async fn list_volumes_by_id(
        &self,
        ids: &[i64],
    ) -> Result<Vec<ResourceSummary>, HetznerError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let cfg = self.cfg();
        let volumes = self
            .list_all(
                "list volumes",
                |page| {
                    volumes_api::list_volumes(
                        cfg,
                        volumes_api::ListVolumesParams {
                            page: Some(page),
                            per_page: Some(PER_PAGE),
                            ..Default::default()
                        },
                    )
                },
                |r| (r.volumes, r.meta.pagination.next_page),
            )
            .await?;
        Ok(volumes
            .iter()
            .filter(|v| ids.contains(&v.id))
            .map(|v| ResourceSummary::new(v.id, &v.name, &v.labels))
            .collect())
    }

    /// Deletes a load balancer by id; already gone is success.
    pub async fn delete_load_balancer(&self, id: i64) -> Result<(), HetznerError> {
        let result = self
            .run(
                format!("delete load balancer {id}"),
                load_balancers_api::delete_load_balancer(
                    self.cfg(),
                    load_balancers_api::DeleteLoadBalancerParams { id },
                ),
            )
            .await;
        match result {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// Deletes a volume by id; already gone is success.
    pub async fn delete_volume(&self, id: i64) -> Result<(), HetznerError> {
        let result = self
            .run(
                format!("delete volume {id}"),
                volumes_api::delete_volume(self.cfg(), volumes_api::DeleteVolumeParams { id }),
            )
            .await;
        match result {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }
}
