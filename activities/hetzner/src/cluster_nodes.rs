//! [`Hetzner::cluster_nodes`]: a cluster's servers and API address as its labels say, for the
//! workflows that act on an existing cluster (upgrade).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::client::Hetzner;
use crate::error::HetznerError;
use crate::labels::{self, Component, LABEL_ROLE, Role};

/// One server of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNode {
    /// Server id.
    pub id: i64,
    /// Server name (the Talos hostname).
    pub name: String,
    /// Role, from the `role` label.
    pub role: Role,
    /// Public IPv4 (where the Talos API listens).
    pub public_ipv4: Option<Ipv4Addr>,
    /// First private IP.
    pub private_ip: Option<Ipv4Addr>,
}

/// A cluster's servers (control planes first, then by name) and its API load balancer IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNodes {
    /// Servers labelled `component=server` of the cluster.
    pub nodes: Vec<ClusterNode>,
    /// Public IPv4 of `<cluster>-api`, when it exists.
    pub api_ipv4: Option<Ipv4Addr>,
}

impl Hetzner {
    /// Lists `cluster`'s servers and its API load balancer by label and name.
    ///
    /// # Errors
    /// The API's errors.
    pub async fn cluster_nodes(&self, cluster: &str) -> Result<ClusterNodes, HetznerError> {
        let servers = self
            .list_servers(&labels::component_selector(cluster, Component::Server))
            .await?;
        let mut nodes: Vec<ClusterNode> = servers
            .iter()
            .map(|s| ClusterNode {
                id: s.id,
                name: s.name.clone(),
                role: match s.labels.get(LABEL_ROLE).map(String::as_str) {
                    Some(v) if v == Role::ControlPlane.label_value() => Role::ControlPlane,
                    _ => Role::Worker,
                },
                public_ipv4: s.public_net.ipv4.as_ref().and_then(|v4| v4.ip.parse().ok()),
                private_ip: s
                    .private_net
                    .iter()
                    .find_map(|p| p.ip.as_deref())
                    .and_then(|ip| ip.parse().ok()),
            })
            .collect();
        nodes.sort_by(|a, b| {
            (a.role != Role::ControlPlane, &a.name).cmp(&(b.role != Role::ControlPlane, &b.name))
        });
        let api_ipv4 = self
            .find_load_balancer(&labels::load_balancer_name(cluster))
            .await?
            .and_then(|lb| lb.public_net.ipv4.ip.clone().flatten())
            .and_then(|ip| ip.parse().ok());
        Ok(ClusterNodes { nodes, api_ipv4 })
    }
}
