//! The cloud resources of a cluster, as `create-cluster` ensured them.

use std::net::Ipv4Addr;

use hk8s_hetzner::{FirewallInfo, LoadBalancerInfo, NetworkInfo, PlacementGroupInfo, ServerInfo};
use serde::{Deserialize, Serialize};

/// The cloud resources of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfra {
    /// Cluster name.
    pub cluster: String,
    /// The private network.
    pub network: NetworkInfo,
    /// Firewalls by role.
    pub firewalls: Vec<FirewallInfo>,
    /// The Kubernetes API load balancer.
    pub load_balancer: LoadBalancerInfo,
    /// Spread placement groups.
    pub placement_groups: Vec<PlacementGroupInfo>,
    /// Servers in plan order (control planes first).
    pub servers: Vec<ServerInfo>,
}

impl ClusterInfra {
    /// The public IPv4 of the API load balancer, the cluster endpoint's host.
    pub fn endpoint_ip(&self) -> Option<Ipv4Addr> {
        self.load_balancer.public_ipv4
    }
}
