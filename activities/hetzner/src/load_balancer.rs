//! `ensure_load_balancer`: the Kubernetes API load balancer (tcp 6443 → 6443).

use std::net::Ipv4Addr;

use hcloud::apis::load_balancers_api;
use hcloud::models;
use serde::{Deserialize, Serialize};

use crate::client::{Hetzner, PER_PAGE};
use crate::error::{ErrorKind, HetznerError};
use crate::labels::{self, Component, Role};
use crate::outcome::EnsureOutcome;

/// The Kubernetes API port, listened on and forwarded to.
pub const API_PORT: i32 = 6443;

/// What the API load balancer must look like.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerSpec {
    /// Cluster name.
    pub cluster: String,
    /// Load balancer type, e.g. `lb11`.
    pub lb_type: String,
    /// Location (`fsn1`); either this or `network_zone`.
    pub location: Option<String>,
    /// Network zone (`eu-central`); used when `location` is `None`.
    pub network_zone: Option<String>,
    /// The cluster network to attach to; targets are reached over private IPs.
    pub network_id: i64,
    /// A fixed private IP in the subnet, or `None` for Hetzner's choice.
    pub private_ip: Option<Ipv4Addr>,
    /// Whether the public interface is enabled. Hetzner load balancers cannot be
    /// firewalled: with a public interface, 6443 on the LB is reachable from anywhere
    /// (the API still needs client certificates).
    pub public_interface: bool,
}

/// The ensured load balancer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerInfo {
    /// Hetzner id.
    pub id: i64,
    /// Name (`<cluster>-api`).
    pub name: String,
    /// Public IPv4, when the public interface is enabled.
    pub public_ipv4: Option<Ipv4Addr>,
    /// Public IPv6, when the public interface is enabled.
    pub public_ipv6: Option<String>,
    /// Private IP in the cluster network.
    pub private_ip: Option<Ipv4Addr>,
    /// Whether this call created, updated or only found it.
    pub outcome: EnsureOutcome,
}

/// The tcp 6443 → 6443 service with a tcp health check on 6443.
pub(crate) fn api_service() -> models::LoadBalancerService {
    models::LoadBalancerService {
        destination_port: API_PORT,
        health_check: Box::new(models::LoadBalancerServiceHealthCheck {
            http: None,
            interval: 15,
            port: API_PORT,
            protocol: models::load_balancer_service_health_check::Protocol::Tcp,
            retries: 3,
            timeout: 10,
        }),
        http: None,
        listen_port: API_PORT,
        protocol: models::load_balancer_service::Protocol::Tcp,
        proxyprotocol: false,
    }
}

fn service_matches(have: &models::LoadBalancerService, want: &models::LoadBalancerService) -> bool {
    have.protocol == want.protocol
        && have.listen_port == want.listen_port
        && have.destination_port == want.destination_port
        && have.proxyprotocol == want.proxyprotocol
        && have.health_check.protocol == want.health_check.protocol
        && have.health_check.port == want.health_check.port
        && have.health_check.interval == want.health_check.interval
        && have.health_check.timeout == want.health_check.timeout
        && have.health_check.retries == want.health_check.retries
}

/// The control-plane label-selector target over private IPs.
pub(crate) fn api_target(cluster: &str) -> models::LoadBalancerAddTarget {
    models::LoadBalancerAddTarget {
        ip: None,
        label_selector: Some(Box::new(models::LabelSelector {
            selector: labels::role_server_selector(cluster, Role::ControlPlane),
        })),
        server: None,
        r#type: models::load_balancer_add_target::Type::LabelSelector,
        use_private_ip: Some(true),
    }
}

fn is_api_target(t: &models::LoadBalancerTarget, cluster: &str) -> bool {
    t.r#type == models::load_balancer_target::Type::LabelSelector
        && t.label_selector.as_ref().map(|s| s.selector.as_str())
            == Some(labels::role_server_selector(cluster, Role::ControlPlane).as_str())
}

impl Hetzner {
    /// Ensures the API load balancer: tcp 6443 → 6443 with a tcp health check, targets
    /// by label selector (`…,component=server,role=control-plane`) over private IPs,
    /// attached to the cluster network.
    ///
    /// # Flow
    ///
    /// `GET /load_balancers?name=<cluster>-api`; if missing, `POST /load_balancers` with
    /// service, target and network in one request (without a fixed private IP) and a
    /// wait for its action. Then, for a found or fresh LB: labels, network attachment,
    /// public interface, service and target are compared and fixed one action at a time.
    ///
    /// # Guarantees
    ///
    /// Other services and targets someone added are left alone; a target with the
    /// control-plane selector but `use_private_ip=false` is replaced.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotManaged`] if a load balancer with the name is not hk8s's.
    pub async fn ensure_load_balancer(
        &self,
        spec: &LoadBalancerSpec,
    ) -> Result<LoadBalancerInfo, HetznerError> {
        labels::validate_cluster_name(&spec.cluster)?;
        let name = labels::load_balancer_name(&spec.cluster);
        let name = name.as_str();
        self.ensure(
            &format!("load balancer {name}"),
            || self.find_load_balancer(name),
            || {
                let want_labels = labels::base_labels(&spec.cluster, Component::LoadBalancer);
                // With a fixed private IP the network is attached afterwards
                // (`attach_to_network` takes an ip, create does not), and the private-IP target
                // can only be added once the network is attached.
                let attach_now = spec.private_ip.is_none();
                let request = models::CreateLoadBalancerRequest {
                    algorithm: Some(Box::new(models::LoadBalancerAlgorithm {
                        r#type: models::load_balancer_algorithm::Type::RoundRobin,
                    })),
                    labels: Some(labels::to_hash_map(&want_labels)),
                    load_balancer_type: spec.lb_type.clone(),
                    location: spec.location.clone(),
                    name: name.to_string(),
                    network: attach_now.then_some(spec.network_id),
                    network_zone: if spec.location.is_some() {
                        None
                    } else {
                        spec.network_zone.clone()
                    },
                    public_interface: Some(spec.public_interface),
                    services: Some(vec![api_service()]),
                    targets: attach_now.then(|| vec![api_target(&spec.cluster)]),
                };
                self.run(
                    format!("create load balancer {name}"),
                    load_balancers_api::create_load_balancer(
                        self.cfg(),
                        load_balancers_api::CreateLoadBalancerParams {
                            create_load_balancer_request: request,
                        },
                    ),
                )
            },
            |resp| async move {
                self.wait_models([resp.action.as_ref()]).await?;
                let mut info = self.adopt_load_balancer(*resp.load_balancer, spec).await?;
                info.outcome = EnsureOutcome::Created;
                Ok(info)
            },
            |found| self.adopt_load_balancer(found, spec),
        )
        .await
    }

    /// `GET /load_balancers?name=…`.
    pub(crate) async fn find_load_balancer(
        &self,
        name: &str,
    ) -> Result<Option<models::LoadBalancer>, HetznerError> {
        let resp = self
            .run(
                format!("look up load balancer {name}"),
                load_balancers_api::list_load_balancers(
                    self.cfg(),
                    load_balancers_api::ListLoadBalancersParams {
                        name: Some(name.to_string()),
                        ..Default::default()
                    },
                ),
            )
            .await?;
        Ok(resp.load_balancers.into_iter().find(|l| l.name == name))
    }

    /// Every load balancer matching `selector`.
    pub(crate) async fn list_load_balancers(
        &self,
        selector: &str,
    ) -> Result<Vec<models::LoadBalancer>, HetznerError> {
        let cfg = self.cfg();
        self.list_all(
            "list load balancers",
            |page| {
                load_balancers_api::list_load_balancers(
                    cfg,
                    load_balancers_api::ListLoadBalancersParams {
                        label_selector: Some(selector.to_string()),
                        page: Some(page),
                        per_page: Some(PER_PAGE),
                        ..Default::default()
                    },
                )
            },
            |r| (r.load_balancers, r.meta.pagination.next_page),
        )
        .await
    }

    /// Brings a found (or freshly created) load balancer in line with `spec`: labels,
    /// network attachment, public interface, API service and API target, in that order,
    /// one action at a time; re-reads it if anything changed.
    async fn adopt_load_balancer(
        &self,
        lb: models::LoadBalancer,
        spec: &LoadBalancerSpec,
    ) -> Result<LoadBalancerInfo, HetznerError> {
        let name = lb.name.clone();
        let id = lb.id;
        ensure_managed(&lb, spec)?;
        let labels_changed = self.reconcile_load_balancer_labels(&lb, spec).await?;
        let network_changed = self.reconcile_network_attachment(&lb, spec).await?;
        let public_changed = self.reconcile_public_interface(&lb, spec).await?;
        let service_changed = self.reconcile_api_service(&lb).await?;
        let target_changed = self.reconcile_api_target(&lb, spec).await?;
        let changed = labels_changed
            || network_changed
            || public_changed
            || service_changed
            || target_changed;
        let lb = if changed {
            self.get_load_balancer(id, &name).await?
        } else {
            Box::new(lb)
        };
        Ok(load_balancer_info(id, name, &lb, spec, changed))
    }

    /// Replaces the labels when hk8s's base labels are missing; `true` if it did.
    async fn reconcile_load_balancer_labels(
        &self,
        lb: &models::LoadBalancer,
        spec: &LoadBalancerSpec,
    ) -> Result<bool, HetznerError> {
        let want_labels = labels::base_labels(&spec.cluster, Component::LoadBalancer);
        if labels::contains_all(&lb.labels, &want_labels) {
            return Ok(false);
        }
        self.run(
            format!("update labels of load balancer {}", lb.name),
            load_balancers_api::replace_load_balancer(
                self.cfg(),
                load_balancers_api::ReplaceLoadBalancerParams {
                    id: lb.id,
                    replace_load_balancer_request: models::ReplaceLoadBalancerRequest {
                        labels: Some(labels::merged(&lb.labels, &want_labels)),
                        name: None,
                    },
                },
            ),
        )
        .await?;
        Ok(true)
    }

    /// Attaches the load balancer to the cluster network when it is not; `true` if it did.
    async fn reconcile_network_attachment(
        &self,
        lb: &models::LoadBalancer,
        spec: &LoadBalancerSpec,
    ) -> Result<bool, HetznerError> {
        let attached = lb
            .private_net
            .iter()
            .any(|p| p.network == Some(spec.network_id));
        if attached {
            return Ok(false);
        }
        let resp = self
            .run(
                format!(
                    "attach load balancer {} to network {}",
                    lb.name, spec.network_id
                ),
                load_balancers_api::attach_load_balancer_to_network(
                    self.cfg(),
                    load_balancers_api::AttachLoadBalancerToNetworkParams {
                        id: lb.id,
                        attach_load_balancer_to_network_request:
                            models::AttachLoadBalancerToNetworkRequest {
                                ip: spec.private_ip.map(|ip| ip.to_string()),
                                ip_range: None,
                                network: spec.network_id,
                            },
                    },
                ),
            )
            .await?;
        self.wait_models([resp.action.as_ref()]).await?;
        Ok(true)
    }

    /// Enables or disables the public interface to match `spec`; `true` if it did.
    async fn reconcile_public_interface(
        &self,
        lb: &models::LoadBalancer,
        spec: &LoadBalancerSpec,
    ) -> Result<bool, HetznerError> {
        if lb.public_net.enabled == spec.public_interface {
            return Ok(false);
        }
        let name = &lb.name;
        let id = lb.id;
        let action = if spec.public_interface {
            self.run(
                format!("enable public interface of load balancer {name}"),
                load_balancers_api::enable_public_interface_of_load_balancer(
                    self.cfg(),
                    load_balancers_api::EnablePublicInterfaceOfLoadBalancerParams { id },
                ),
            )
            .await?
            .action
        } else {
            self.run(
                format!("disable public interface of load balancer {name}"),
                load_balancers_api::disable_public_interface_of_load_balancer(
                    self.cfg(),
                    load_balancers_api::DisablePublicInterfaceOfLoadBalancerParams { id },
                ),
            )
            .await?
            .action
        };
        self.wait_models([action.as_ref()]).await?;
        Ok(true)
    }

    /// Adds the API service, or updates it when it differs; `true` if it did either.
    async fn reconcile_api_service(&self, lb: &models::LoadBalancer) -> Result<bool, HetznerError> {
        let name = &lb.name;
        let id = lb.id;
        let want_service = api_service();
        let action = match lb.services.iter().find(|s| s.listen_port == API_PORT) {
            Some(have) if service_matches(have, &want_service) => return Ok(false),
            Some(_) => {
                self.run(
                    format!("update service {API_PORT} of load balancer {name}"),
                    load_balancers_api::update_service(
                        self.cfg(),
                        load_balancers_api::UpdateServiceParams {
                            id,
                            update_load_balancer_service: update_request(&want_service),
                        },
                    ),
                )
                .await?
                .action
            }
            None => {
                self.run(
                    format!("add service {API_PORT} to load balancer {name}"),
                    load_balancers_api::add_service(
                        self.cfg(),
                        load_balancers_api::AddServiceParams {
                            id,
                            load_balancer_service: want_service,
                        },
                    ),
                )
                .await?
                .action
            }
        };
        self.wait_models([action.as_ref()]).await?;
        Ok(true)
    }

    /// Adds the control-plane target over private IPs, first removing a stale one with
    /// the same selector but public IPs; `true` if it did.
    async fn reconcile_api_target(
        &self,
        lb: &models::LoadBalancer,
        spec: &LoadBalancerSpec,
    ) -> Result<bool, HetznerError> {
        let target = lb.targets.iter().find(|t| is_api_target(t, &spec.cluster));
        if target.is_some_and(|t| t.use_private_ip == Some(true)) {
            return Ok(false);
        }
        if let Some(stale) = target {
            self.remove_stale_target(lb, stale).await?;
        }
        let resp = self
            .run(
                format!("add control-plane target to load balancer {}", lb.name),
                load_balancers_api::add_target(
                    self.cfg(),
                    load_balancers_api::AddTargetParams {
                        id: lb.id,
                        load_balancer_add_target: api_target(&spec.cluster),
                    },
                ),
            )
            .await?;
        self.wait_models([resp.action.as_ref()]).await?;
        Ok(true)
    }

    /// Removes a label-selector target and waits for the action.
    async fn remove_stale_target(
        &self,
        lb: &models::LoadBalancer,
        stale: &models::LoadBalancerTarget,
    ) -> Result<(), HetznerError> {
        let resp = self
            .run(
                format!("remove stale target from load balancer {}", lb.name),
                load_balancers_api::remove_target(
                    self.cfg(),
                    load_balancers_api::RemoveTargetParams {
                        id: lb.id,
                        remove_target_request: models::RemoveTargetRequest {
                            ip: None,
                            label_selector: stale.label_selector.clone(),
                            server: None,
                            r#type: models::remove_target_request::Type::LabelSelector,
                        },
                    },
                ),
            )
            .await?;
        self.wait_models([resp.action.as_ref()]).await
    }

    /// `GET /load_balancers/{id}`: the current state after changes.
    async fn get_load_balancer(
        &self,
        id: i64,
        name: &str,
    ) -> Result<Box<models::LoadBalancer>, HetznerError> {
        Ok(self
            .run(
                format!("get load balancer {name}"),
                load_balancers_api::get_load_balancer(
                    self.cfg(),
                    load_balancers_api::GetLoadBalancerParams { id },
                ),
            )
            .await?
            .load_balancer)
    }
}

/// Refuses a load balancer with hk8s's name that is not managed for this cluster.
fn ensure_managed(lb: &models::LoadBalancer, spec: &LoadBalancerSpec) -> Result<(), HetznerError> {
    if labels::is_managed(&lb.labels, &spec.cluster) {
        return Ok(());
    }
    Err(HetznerError::new(
        ErrorKind::NotManaged,
        format!("ensure load balancer {}", lb.name),
        "a load balancer with this name exists but is not managed by hk8s for this cluster",
    ))
}

/// The [`LoadBalancerInfo`] for `id`/`name`, read off the load balancer's current state.
fn load_balancer_info(
    id: i64,
    name: String,
    lb: &models::LoadBalancer,
    spec: &LoadBalancerSpec,
    changed: bool,
) -> LoadBalancerInfo {
    LoadBalancerInfo {
        id,
        name,
        public_ipv4: lb
            .public_net
            .ipv4
            .ip
            .clone()
            .flatten()
            .and_then(|ip| ip.parse().ok()),
        public_ipv6: lb.public_net.ipv6.ip.clone().flatten(),
        private_ip: lb
            .private_net
            .iter()
            .find(|p| p.network == Some(spec.network_id))
            .and_then(|p| p.ip.as_deref())
            .and_then(|ip| ip.parse().ok()),
        outcome: if changed {
            EnsureOutcome::Updated
        } else {
            EnsureOutcome::Unchanged
        },
    }
}

fn update_request(want: &models::LoadBalancerService) -> models::UpdateLoadBalancerService {
    use models::update_load_balancer_service::Protocol as P;
    use models::update_load_balancer_service_health_check::Protocol as HP;
    models::UpdateLoadBalancerService {
        destination_port: Some(want.destination_port),
        health_check: Some(Box::new(models::UpdateLoadBalancerServiceHealthCheck {
            http: None,
            interval: Some(want.health_check.interval),
            port: Some(want.health_check.port),
            protocol: Some(HP::Tcp),
            retries: Some(want.health_check.retries),
            timeout: Some(want.health_check.timeout),
        })),
        http: None,
        listen_port: want.listen_port,
        protocol: Some(P::Tcp),
        proxyprotocol: Some(want.proxyprotocol),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_and_target_bodies() {
        let svc = serde_json::to_value(api_service()).unwrap();
        assert_eq!(svc["protocol"], "tcp");
        assert_eq!(svc["listen_port"], 6443);
        assert_eq!(svc["destination_port"], 6443);
        assert_eq!(svc["health_check"]["protocol"], "tcp");
        assert_eq!(svc["health_check"]["port"], 6443);
        let target = serde_json::to_value(api_target("demo")).unwrap();
        assert_eq!(target["type"], "label_selector");
        assert_eq!(
            target["label_selector"]["selector"],
            "cluster=demo,managed-by=hk8s,component=server,role=control-plane"
        );
        assert_eq!(target["use_private_ip"], true);
    }

    #[test]
    fn service_drift() {
        let want = api_service();
        let mut have = api_service();
        assert!(service_matches(&have, &want));
        have.health_check.interval = 30;
        assert!(!service_matches(&have, &want));
        let mut have = api_service();
        have.proxyprotocol = true;
        assert!(!service_matches(&have, &want));
    }
}
