//! [`HetznerCloud`]: the [`CloudBridge`] of the Kubernetes twin over [`TwinState`], so load
//! balancers of the simulated CCM and volumes of the simulated CSI driver are real resources of
//! the Hetzner twin (listed by `GET /load_balancers` and `GET /volumes`, deletable through the
//! API).

use std::net::Ipv4Addr;

use chrono::Utc;
use hk8s_twin_kube::{CloudBridge, CloudError, LoadBalancerSpec, ServerInfo, VolumeSpec};

use hk8s_twin_hetzner::catalog::{self, Location};
use hk8s_twin_hetzner::error::ApiError;
use hk8s_twin_hetzner::handle::TwinState;
use hk8s_twin_hetzner::labels::Labels;
use hk8s_twin_hetzner::model::{HealthCheck, Id, Kind, LoadBalancer, Service, Target, TargetKind};
use hk8s_twin_hetzner::routes::volumes::{self, MIN_SIZE_GB, NewVolume};
use hk8s_twin_hetzner::world::World;

/// The Hetzner twin as seen by one cluster's CCM and CSI driver.
#[derive(Debug, Clone)]
pub struct HetznerCloud {
    state: TwinState,
    default_location: &'static Location,
}

fn cloud_error(e: ApiError) -> CloudError {
    CloudError(format!("{}: {}", e.code, e.message))
}

impl HetznerCloud {
    /// A bridge whose resources land in `default_location` when the spec names no location or
    /// network zone (the location of the cluster's control plane); an unknown name falls back
    /// to the first location of `eu-central`.
    pub fn new(state: TwinState, default_location: &str) -> HetznerCloud {
        let default_location = catalog::location(default_location)
            .or_else(|| catalog::first_location_in_zone("eu-central"))
            .unwrap_or(&catalog::LOCATIONS[0]);
        HetznerCloud {
            state,
            default_location,
        }
    }

    fn location_of(
        &self,
        location: Option<&str>,
        zone: Option<&str>,
    ) -> Result<&'static Location, CloudError> {
        match (location, zone) {
            (Some(l), _) => {
                catalog::location(l).ok_or_else(|| CloudError(format!("location {l} not found")))
            }
            (None, Some(z)) => catalog::first_location_in_zone(z)
                .ok_or_else(|| CloudError(format!("network zone {z} not found"))),
            (None, None) => Ok(self.default_location),
        }
    }
}

fn tcp_service(listen: u16, destination: u16) -> Service {
    Service {
        protocol: "tcp".into(),
        listen_port: i64::from(listen),
        destination_port: i64::from(destination),
        proxyprotocol: false,
        health_check: HealthCheck {
            protocol: "tcp".into(),
            port: i64::from(destination),
            interval: 15,
            timeout: 10,
            retries: 3,
            http: None,
        },
        http: None,
    }
}

/// Creates a load balancer as `POST /load_balancers` would (public interface, no network).
fn create_lb(
    w: &mut World,
    spec: &LoadBalancerSpec,
    location: &'static Location,
) -> Result<(Id, Ipv4Addr), ApiError> {
    let lb_type = catalog::load_balancer_type(&spec.lb_type).ok_or_else(|| {
        ApiError::invalid_field(
            "load_balancer_type",
            format!("load balancer type '{}' not found", spec.lb_type),
        )
    })?;
    if w.load_balancers.values().any(|l| l.name == spec.name) {
        return Err(ApiError::uniqueness("name"));
    }
    let labels: Labels = spec.labels.clone().into_iter().collect();
    hk8s_twin_hetzner::labels::validate(&labels)
        .map_err(|m| ApiError::invalid_field("labels", m))?;
    let targets = spec
        .target_server_ids
        .iter()
        .filter(|id| w.servers.contains_key(id))
        .map(|id| Target {
            kind: TargetKind::Server(*id),
            use_private_ip: false,
        })
        .collect();
    let services = spec
        .ports
        .iter()
        .map(|(listen, node_port)| tcp_service(*listen, *node_port))
        .collect();
    let ip = w.pool.allocate().ok_or_else(|| {
        ApiError::unprocessable(
            "ip_not_available",
            "no public IPv4 left in the twin's block",
        )
    })?;
    let id = w.next_id();
    w.load_balancers.insert(
        id,
        LoadBalancer {
            id,
            name: spec.name.clone(),
            lb_type,
            location,
            algorithm: "round_robin".into(),
            services,
            targets,
            labels,
            created: Utc::now(),
            public_ipv4: Some(ip),
            public_ipv6: Some(format!("2001:db8:1b:{:x}::1", id & 0xffff)),
            public_interface: true,
            private_net: Vec::new(),
        },
    );
    let secs = w.latency.lb_create;
    w.start_action(
        "create_load_balancer",
        vec![(id, "load_balancer")],
        Some((Kind::LoadBalancer, id)),
        secs,
        Box::new(|_| Vec::new()),
    );
    Ok((id, ip))
}

impl CloudBridge for HetznerCloud {
    fn create_load_balancer(&self, spec: &LoadBalancerSpec) -> Result<(i64, Ipv4Addr), CloudError> {
        let location = self.location_of(spec.location.as_deref(), spec.network_zone.as_deref())?;
        self.state
            .mutate(|w| create_lb(w, spec, location))
            .map_err(cloud_error)
    }

    fn delete_load_balancer(&self, id: i64) -> Result<(), CloudError> {
        self.state
            .mutate(|w| {
                if !w.load_balancers.contains_key(&id) {
                    return Ok(());
                }
                w.ensure_unlocked(Kind::LoadBalancer, id)?;
                if let Some(l) = w.load_balancers.remove(&id)
                    && let Some(ip) = l.public_ipv4
                {
                    w.pool.release(ip);
                }
                Ok(())
            })
            .map_err(cloud_error)
    }

    fn create_volume(&self, spec: &VolumeSpec) -> Result<i64, CloudError> {
        let location = self.location_of(spec.location.as_deref(), None)?;
        let size = i64::try_from(spec.size_gb)
            .unwrap_or(i64::MAX)
            .max(MIN_SIZE_GB);
        let labels: Labels = spec.labels.clone().into_iter().collect();
        self.state
            .mutate(|w| {
                hk8s_twin_hetzner::labels::validate(&labels)
                    .map_err(|m| ApiError::invalid_field("labels", m))?;
                volumes::create_volume(
                    w,
                    NewVolume {
                        name: spec.name.clone(),
                        size,
                        location: Some(location),
                        server: None,
                        labels,
                        format: None,
                    },
                )
                .map(|(id, _, _)| id)
            })
            .map_err(cloud_error)
    }

    fn delete_volume(&self, id: i64) -> Result<(), CloudError> {
        self.state
            .mutate(|w| {
                if !w.volumes.contains_key(&id) {
                    return Ok(());
                }
                // The CSI driver detaches before it deletes.
                volumes::detach(w, id);
                volumes::delete_volume(w, id)
            })
            .map_err(cloud_error)
    }

    fn server_id_by_name(&self, node_name: &str) -> Option<i64> {
        let w = self.state.world();
        w.servers
            .values()
            .find(|s| s.name == node_name)
            .map(|s| s.id)
    }

    fn server_info(&self, node_name: &str) -> Option<ServerInfo> {
        let w = self.state.world();
        let s = w.servers.values().find(|s| s.name == node_name)?;
        Some(ServerInfo {
            id: s.id,
            public_ipv4: s.public_ipv4,
            server_type: Some(s.server_type.name.to_string()),
            location: Some(s.location.name.to_string()),
            datacenter: Some(s.location.datacenter.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn state() -> TwinState {
        TwinState::new(
            "127.201.16.0/20".parse().unwrap(),
            1000.0,
            None,
            crate::RateLimit::default(),
        )
    }

    #[tokio::test]
    async fn load_balancers_and_volumes_are_twin_resources() {
        let st = state();
        let cloud = HetznerCloud::new(st.clone(), "nbg1");
        let labels: BTreeMap<String, String> =
            [("hcloud-ccm/service-uid".to_string(), "u-1".to_string())].into();
        let (id, ip) = cloud
            .create_load_balancer(&LoadBalancerSpec {
                name: "a1234".into(),
                labels: labels.clone(),
                lb_type: "lb11".into(),
                location: None,
                network_zone: Some("eu-central".into()),
                target_server_ids: vec![999],
                ports: vec![(80, 30080)],
            })
            .unwrap();
        assert!(st.world().pool.contains(ip));
        {
            let w = st.world();
            let lb = &w.load_balancers[&id];
            assert_eq!(lb.labels.get("hcloud-ccm/service-uid").unwrap(), "u-1");
            assert_eq!(lb.location.network_zone, "eu-central");
            assert_eq!(lb.services[0].destination_port, 30080);
            assert!(lb.targets.is_empty(), "unknown servers are not targets");
        }
        let vid = cloud
            .create_volume(&VolumeSpec {
                name: "pvc-1".into(),
                size_gb: 1,
                labels: [("managed-by".to_string(), "csi-driver".to_string())].into(),
                location: None,
            })
            .unwrap();
        {
            let w = st.world();
            assert_eq!(w.volumes[&vid].size, 10);
            assert_eq!(w.volumes[&vid].location.name, "nbg1");
        }
        // Both are locked by their create actions until those finish.
        while st.world().is_locked(Kind::Volume, vid)
            || st.world().is_locked(Kind::LoadBalancer, id)
        {
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        cloud.delete_volume(vid).unwrap();
        cloud.delete_load_balancer(id).unwrap();
        cloud.delete_volume(vid).unwrap();
        assert!(st.world().volumes.is_empty());
        assert!(st.world().load_balancers.is_empty());
        assert_eq!(cloud.server_id_by_name("nope"), None);
    }
}
