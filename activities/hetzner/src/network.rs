//! `ensure_network`: the cluster's private network with one cloud subnet.

use hcloud::apis::networks_api;
use hcloud::models;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::client::{Hetzner, PER_PAGE};
use crate::error::{ErrorKind, HetznerError};
use crate::labels::{self, Component};
use crate::outcome::EnsureOutcome;

/// What the cluster's network must look like.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// Cluster name; the network is named after it.
    pub cluster: String,
    /// The network's RFC 1918 range, e.g. `10.0.0.0/16`.
    pub ip_range: Ipv4Net,
    /// The cloud subnet the servers and the load balancer use, e.g. `10.0.1.0/24`.
    pub subnet_range: Ipv4Net,
    /// Network zone of the subnet, e.g. `eu-central`.
    pub network_zone: String,
    /// The `secrets-fingerprint` label: which secrets bundle the cluster was created with. A
    /// network that carries another value is never adopted ([`ErrorKind::Incompatible`]); one
    /// without the label gets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_fingerprint: Option<String>,
}

/// Label on the cluster's network: a short fingerprint of the cluster's secrets bundle.
pub const LABEL_SECRETS_FINGERPRINT: &str = "secrets-fingerprint";

/// The ensured network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// Hetzner id.
    pub id: i64,
    /// Name (`<cluster>`).
    pub name: String,
    /// The network's range.
    pub ip_range: Ipv4Net,
    /// The subnet's range.
    pub subnet_range: Ipv4Net,
    /// Whether this call created, updated or only found it.
    pub outcome: EnsureOutcome,
}

impl Hetzner {
    /// Ensures the cluster network and its subnet exist with hk8s's labels.
    ///
    /// # Flow
    ///
    /// `GET /networks?name=<cluster>`; if missing, `POST /networks` with the subnet and
    /// labels (a `uniqueness_error` means "look again"); if present, fixes labels with
    /// `PUT` and adds the subnet if it is missing.
    ///
    /// # Guarantees
    ///
    /// A second call with the same spec sends one request (the lookup) and returns the
    /// same id.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotManaged`] if a network with the name exists without
    /// `managed-by=hk8s,cluster=<cluster>`; [`ErrorKind::Incompatible`] if its
    /// `ip_range` differs (changing it in place could strand servers).
    pub async fn ensure_network(&self, spec: &NetworkSpec) -> Result<NetworkInfo, HetznerError> {
        labels::validate_cluster_name(&spec.cluster)?;
        let name = labels::network_name(&spec.cluster);
        let name = name.as_str();
        self.ensure(
            &format!("network {name}"),
            || self.find_network(name),
            || {
                let want_labels = network_labels(spec);
                let request = models::CreateNetworkRequest {
                    expose_routes_to_vswitch: None,
                    ip_range: spec.ip_range.to_string(),
                    labels: Some(labels::to_hash_map(&want_labels)),
                    name: name.to_string(),
                    routes: None,
                    subnets: Some(vec![subnet(spec)]),
                };
                self.run(
                    format!("create network {name}"),
                    networks_api::create_network(
                        self.cfg(),
                        networks_api::CreateNetworkParams {
                            create_network_request: request,
                        },
                    ),
                )
            },
            |resp| async move {
                let network = resp.network.ok_or_else(|| {
                    HetznerError::new(
                        ErrorKind::Decode,
                        format!("create network {name}"),
                        "the reply holds no network",
                    )
                })?;
                let mut info = self.adopt_network(*network, spec).await?;
                info.outcome = EnsureOutcome::Created;
                Ok(info)
            },
            |found| self.adopt_network(found, spec),
        )
        .await
    }

    /// `GET /networks?name=…`.
    pub(crate) async fn find_network(
        &self,
        name: &str,
    ) -> Result<Option<models::Network>, HetznerError> {
        let resp = self
            .run(
                format!("look up network {name}"),
                networks_api::list_networks(
                    self.cfg(),
                    networks_api::ListNetworksParams {
                        name: Some(name.to_string()),
                        ..Default::default()
                    },
                ),
            )
            .await?;
        Ok(resp.networks.into_iter().find(|n| n.name == name))
    }

    /// Every network matching `selector`.
    pub(crate) async fn list_networks(
        &self,
        selector: &str,
    ) -> Result<Vec<models::Network>, HetznerError> {
        let cfg = self.cfg();
        self.list_all(
            "list networks",
            |page| {
                networks_api::list_networks(
                    cfg,
                    networks_api::ListNetworksParams {
                        label_selector: Some(selector.to_string()),
                        page: Some(page),
                        per_page: Some(PER_PAGE),
                        ..Default::default()
                    },
                )
            },
            |r| (r.networks, r.meta.pagination.next_page),
        )
        .await
    }

    async fn adopt_network(
        &self,
        network: models::Network,
        spec: &NetworkSpec,
    ) -> Result<NetworkInfo, HetznerError> {
        let op = format!("ensure network {}", network.name);
        if !labels::is_managed(&network.labels, &spec.cluster) {
            return Err(HetznerError::new(
                ErrorKind::NotManaged,
                op,
                "a network with this name exists but is not managed by hk8s for this cluster",
            ));
        }
        let live_range = network.ip_range.parse::<Ipv4Net>().ok();
        if live_range != Some(spec.ip_range) {
            return Err(HetznerError::new(
                ErrorKind::Incompatible,
                op,
                format!(
                    "the network has ip range {}, the spec wants {}",
                    network.ip_range, spec.ip_range
                ),
            ));
        }
        if let (Some(want), Some(have)) = (
            &spec.secrets_fingerprint,
            network.labels.get(LABEL_SECRETS_FINGERPRINT),
        ) && want != have
        {
            return Err(HetznerError::new(
                ErrorKind::Incompatible,
                op,
                format!(
                    "cluster {} was created with another secrets bundle (fingerprint {have}); import it with --secrets",
                    spec.cluster
                ),
            ));
        }
        let mut outcome = EnsureOutcome::Unchanged;
        let want_labels = network_labels(spec);
        if !labels::contains_all(&network.labels, &want_labels) {
            self.run(
                format!("update labels of network {}", network.name),
                networks_api::replace_network(
                    self.cfg(),
                    networks_api::ReplaceNetworkParams {
                        id: network.id,
                        replace_network_request: models::ReplaceNetworkRequest {
                            expose_routes_to_vswitch: None,
                            labels: Some(labels::merged(&network.labels, &want_labels)),
                            name: None,
                        },
                    },
                ),
            )
            .await?;
            outcome = EnsureOutcome::Updated;
        }
        let has_subnet = network.subnets.iter().any(|s| {
            s.ip_range
                .as_deref()
                .and_then(|r| r.parse::<Ipv4Net>().ok())
                == Some(spec.subnet_range)
        });
        if !has_subnet {
            let resp = self
                .run(
                    format!(
                        "add subnet {} to network {}",
                        spec.subnet_range, network.name
                    ),
                    networks_api::add_subnet_to_network(
                        self.cfg(),
                        networks_api::AddSubnetToNetworkParams {
                            id: network.id,
                            subnet: subnet(spec),
                        },
                    ),
                )
                .await?;
            self.wait_models([resp.action.as_ref()])
                .await
                .map_err(|e| e.context(format!("add subnet to network {}", network.name)))?;
            outcome = EnsureOutcome::Updated;
        }
        Ok(NetworkInfo {
            id: network.id,
            name: network.name,
            ip_range: spec.ip_range,
            subnet_range: spec.subnet_range,
            outcome,
        })
    }
}

impl Hetzner {
    /// The `secrets-fingerprint` label of `cluster`'s network: `Ok(None)` when there is no
    /// network or it has no such label (made before the label existed).
    ///
    /// # Errors
    /// API errors.
    pub async fn cluster_secrets_fingerprint(
        &self,
        cluster: &str,
    ) -> Result<Option<String>, HetznerError> {
        let network = self.find_network(&labels::network_name(cluster)).await?;
        Ok(network
            .filter(|n| labels::is_managed(&n.labels, cluster))
            .and_then(|n| n.labels.get(LABEL_SECRETS_FINGERPRINT).cloned()))
    }
}

fn network_labels(spec: &NetworkSpec) -> labels::Labels {
    let mut labels = labels::base_labels(&spec.cluster, Component::Network);
    if let Some(fp) = &spec.secrets_fingerprint {
        labels.insert(LABEL_SECRETS_FINGERPRINT.into(), fp.clone());
    }
    labels
}

fn subnet(spec: &NetworkSpec) -> models::Subnet {
    models::Subnet {
        ip_range: Some(spec.subnet_range.to_string()),
        network_zone: spec.network_zone.clone(),
        r#type: models::subnet::Type::Cloud,
        vswitch_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trips_through_json() {
        let spec = NetworkSpec {
            cluster: "demo".into(),
            ip_range: "10.0.0.0/16".parse().unwrap(),
            subnet_range: "10.0.1.0/24".parse().unwrap(),
            network_zone: "eu-central".into(),
            secrets_fingerprint: None,
        };
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(
            json,
            r#"{"cluster":"demo","ip_range":"10.0.0.0/16","subnet_range":"10.0.1.0/24","network_zone":"eu-central"}"#
        );
        assert_eq!(serde_json::from_str::<NetworkSpec>(&json).unwrap(), spec);
        let body = serde_json::to_value(subnet(&spec)).unwrap();
        assert_eq!(body["type"], "cloud");
        assert_eq!(body["ip_range"], "10.0.1.0/24");
    }
}
