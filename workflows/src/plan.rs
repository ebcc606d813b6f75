//! Node planning: the servers a validated spec asks for (what is derived from the spec, kept
//! apart from what the user wrote in [`crate::spec`]).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::spec::{Arch, ClusterSpec, Role};

/// The role whose short name (`cp`) names control-plane servers.
const CONTROL_PLANE: hk8s_hetzner::Role = hk8s_hetzner::Role::ControlPlane;

/// One server the spec asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePlan {
    /// Server name, e.g. `demo-cp-1`.
    pub name: String,
    /// `control-plane` or `worker`.
    pub role: Role,
    /// Pool name (`control-plane`, `worker`, or an extra pool's name).
    pub pool: String,
    /// Hetzner server type.
    pub server_type: String,
    /// CPU architecture.
    pub arch: Arch,
    /// Hetzner location.
    pub location: String,
    /// 1-based index within the pool.
    pub index: u32,
}

impl ClusterSpec {
    /// Every server the spec asks for, control planes first, in a stable order.
    pub fn node_plan(&self) -> Vec<NodePlan> {
        let mut nodes = Vec::new();
        let region = &self.hetzner.region;
        let control_plane = &self.nodes.control_plane;
        for i in 1..=control_plane.count {
            nodes.push(NodePlan {
                name: format!("{}-{}-{i}", self.cluster_name, CONTROL_PLANE.short_name()),
                role: Role::ControlPlane,
                pool: "control-plane".into(),
                server_type: control_plane.server_type.clone(),
                arch: control_plane.arch,
                location: region.clone(),
                index: i,
            });
        }
        let workers = &self.nodes.workers;
        for i in 1..=workers.count {
            nodes.push(NodePlan {
                name: format!("{}-worker-{i}", self.cluster_name),
                role: Role::Worker,
                pool: "worker".into(),
                server_type: workers.server_type.clone(),
                arch: workers.arch,
                location: region.clone(),
                index: i,
            });
        }
        for pool in &self.worker_pools {
            for i in 1..=pool.count {
                nodes.push(NodePlan {
                    name: format!("{}-{}-{i}", self.cluster_name, pool.name),
                    role: Role::Worker,
                    pool: pool.name.clone(),
                    server_type: pool.server_type.clone(),
                    arch: pool.arch,
                    location: pool.location.clone().unwrap_or_else(|| region.clone()),
                    index: i,
                });
            }
        }
        nodes
    }

    /// The architectures the cluster's servers use (one Talos image each).
    pub fn arches(&self) -> BTreeSet<Arch> {
        self.node_plan().into_iter().map(|n| n.arch).collect()
    }
}
