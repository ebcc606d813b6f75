//! Labels, label selectors and deterministic names of everything hk8s creates.
//!
//! Every resource carries `cluster=<name>`, `managed-by=hk8s` and `component=…`;
//! servers and their firewalls and placement groups also carry `role=…`. Destroy and
//! `plan` select by `cluster=<name>,managed-by=hk8s`, so resources of other tools that
//! happen to carry `cluster=<name>` are never touched.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, HetznerError};

/// Label key naming the cluster.
pub const LABEL_CLUSTER: &str = "cluster";
/// Label key marking resources hk8s owns.
pub const LABEL_MANAGED_BY: &str = "managed-by";
/// The value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY_VALUE: &str = "hk8s";
/// Label key naming the kind of resource.
pub const LABEL_COMPONENT: &str = "component";
/// Label key naming the node role.
pub const LABEL_ROLE: &str = "role";
/// Label key naming the node pool of a worker.
pub const LABEL_POOL: &str = "pool";

/// A label set, ordered so that comparisons and serialized forms are stable.
pub type Labels = BTreeMap<String, String>;

/// The node role of a server (and of its firewall and placement groups).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A Talos control-plane node (etcd, kube-apiserver).
    ControlPlane,
    /// A Talos worker node.
    Worker,
}

impl Role {
    /// The label value: `control-plane` or `worker`.
    pub fn label_value(self) -> &'static str {
        match self {
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
        }
    }

    /// The short form used in server and placement-group names: `cp` or `worker`.
    pub fn short_name(self) -> &'static str {
        match self {
            Role::ControlPlane => "cp",
            Role::Worker => "worker",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label_value())
    }
}

/// The kind of resource, the value of the `component` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    /// The cluster's private network.
    Network,
    /// A role's firewall.
    Firewall,
    /// The Kubernetes API load balancer.
    LoadBalancer,
    /// A spread placement group.
    PlacementGroup,
    /// A cluster node.
    Server,
}

impl Component {
    /// The label value.
    pub fn label_value(self) -> &'static str {
        match self {
            Component::Network => "network",
            Component::Firewall => "firewall",
            Component::LoadBalancer => "load-balancer",
            Component::PlacementGroup => "placement-group",
            Component::Server => "server",
        }
    }
}

/// The labels every resource of `cluster` with `component` carries.
pub fn base_labels(cluster: &str, component: Component) -> Labels {
    let mut labels = Labels::new();
    labels.insert(LABEL_CLUSTER.into(), cluster.into());
    labels.insert(LABEL_MANAGED_BY.into(), MANAGED_BY_VALUE.into());
    labels.insert(LABEL_COMPONENT.into(), component.label_value().into());
    labels
}

/// [`base_labels`] plus `role=<role>`.
pub fn role_labels(cluster: &str, component: Component, role: Role) -> Labels {
    let mut labels = base_labels(cluster, component);
    labels.insert(LABEL_ROLE.into(), role.label_value().into());
    labels
}

/// The selector of everything hk8s made for `cluster`: `cluster=<c>,managed-by=hk8s`.
pub fn cluster_selector(cluster: &str) -> String {
    format!("{LABEL_CLUSTER}={cluster},{LABEL_MANAGED_BY}={MANAGED_BY_VALUE}")
}

/// The selector of one component of `cluster`.
pub fn component_selector(cluster: &str, component: Component) -> String {
    format!(
        "{},{LABEL_COMPONENT}={}",
        cluster_selector(cluster),
        component.label_value()
    )
}

/// The selector of the servers of one role: the load balancer targets control planes
/// with it.
pub fn role_server_selector(cluster: &str, role: Role) -> String {
    format!(
        "{},{LABEL_ROLE}={}",
        component_selector(cluster, Component::Server),
        role.label_value()
    )
}

/// True if `labels` mark a resource of `cluster` owned by hk8s.
pub fn is_managed(labels: &HashMap<String, String>, cluster: &str) -> bool {
    labels.get(LABEL_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_VALUE)
        && labels.get(LABEL_CLUSTER).map(String::as_str) == Some(cluster)
}

/// True if every label of `want` is present with the same value in `have`.
pub(crate) fn contains_all(have: &HashMap<String, String>, want: &Labels) -> bool {
    want.iter()
        .all(|(k, v)| have.get(k).map(String::as_str) == Some(v.as_str()))
}

/// `have` with `want` laid over it: labels set by others are kept, ours win.
pub(crate) fn merged(have: &HashMap<String, String>, want: &Labels) -> HashMap<String, String> {
    let mut out = have.clone();
    for (k, v) in want {
        out.insert(k.clone(), v.clone());
    }
    out
}

/// Converts to the map type of the `hcloud` models.
pub(crate) fn to_hash_map(labels: &Labels) -> HashMap<String, String> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The network's name: `<cluster>`.
pub fn network_name(cluster: &str) -> String {
    cluster.to_string()
}

/// A role's firewall name: `<cluster>-control-plane` or `<cluster>-worker`.
pub fn firewall_name(cluster: &str, role: Role) -> String {
    format!("{cluster}-{}", role.label_value())
}

/// The load balancer's name: `<cluster>-api`.
pub fn load_balancer_name(cluster: &str) -> String {
    format!("{cluster}-api")
}

/// A placement group name: `<cluster>-<group>-pg-<index>` with `group` `cp`, `worker`
/// or a pool name and `index` starting at 1.
pub fn placement_group_name(cluster: &str, group: &str, index: u32) -> String {
    format!("{cluster}-{group}-pg-{index}")
}

/// The most servers Hetzner allows in one spread placement group.
pub const SERVERS_PER_SPREAD_GROUP: u32 = 10;

/// The 1-based placement group index of the 1-based server `number`: servers 1–10 go
/// to group 1, 11–20 to group 2, and so on.
pub fn placement_group_index(number: u32) -> u32 {
    number.max(1).saturating_sub(1) / SERVERS_PER_SPREAD_GROUP + 1
}

/// How many spread groups `servers` servers need.
pub fn placement_group_count(servers: u32) -> u32 {
    servers.div_ceil(SERVERS_PER_SPREAD_GROUP)
}

/// A server name: `<cluster>-<group>-<number>`, e.g. `demo-cp-1`, `demo-worker-3`.
pub fn server_name(cluster: &str, group: &str, number: u32) -> String {
    format!("{cluster}-{group}-{number}")
}

/// Checks a label value against Hetzner's rules: empty, or at most 63 characters of
/// alphanumerics, `-`, `_`, `.` that start and end alphanumeric.
pub fn validate_label_value(value: &str) -> Result<(), HetznerError> {
    let ok = value.is_empty()
        || (value.len() <= 63
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(HetznerError::new(
            ErrorKind::Config,
            "validate label value",
            format!("{value:?} is not a valid hetzner label value"),
        ))
    }
}

/// Checks that a cluster name can be a label value and the start of RFC 1123 resource
/// names: 1–40 characters of lowercase letters, digits and `-`, alphanumeric at both
/// ends (40 leaves room for suffixes like `-worker-pg-12`).
pub fn validate_cluster_name(cluster: &str) -> Result<(), HetznerError> {
    let ok = !cluster.is_empty()
        && cluster.len() <= 40
        && cluster
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !cluster.starts_with('-')
        && !cluster.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(HetznerError::new(
            ErrorKind::Config,
            "validate cluster name",
            format!(
                "{cluster:?} must be 1-40 lowercase letters, digits or '-', not starting or ending with '-'"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_and_role_labels() {
        let labels = role_labels("demo", Component::Server, Role::ControlPlane);
        let pairs: Vec<_> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            pairs,
            [
                "cluster=demo",
                "component=server",
                "managed-by=hk8s",
                "role=control-plane"
            ]
        );
        assert_eq!(
            base_labels("demo", Component::LoadBalancer)["component"],
            "load-balancer"
        );
        assert_eq!(
            base_labels("demo", Component::PlacementGroup)["component"],
            "placement-group"
        );
    }

    #[test]
    fn selectors() {
        assert_eq!(cluster_selector("demo"), "cluster=demo,managed-by=hk8s");
        assert_eq!(
            component_selector("demo", Component::Firewall),
            "cluster=demo,managed-by=hk8s,component=firewall"
        );
        assert_eq!(
            role_server_selector("demo", Role::ControlPlane),
            "cluster=demo,managed-by=hk8s,component=server,role=control-plane"
        );
    }

    #[test]
    fn names() {
        assert_eq!(network_name("demo"), "demo");
        assert_eq!(
            firewall_name("demo", Role::ControlPlane),
            "demo-control-plane"
        );
        assert_eq!(firewall_name("demo", Role::Worker), "demo-worker");
        assert_eq!(load_balancer_name("demo"), "demo-api");
        assert_eq!(placement_group_name("demo", "cp", 1), "demo-cp-pg-1");
        assert_eq!(
            server_name("demo", Role::ControlPlane.short_name(), 1),
            "demo-cp-1"
        );
        assert_eq!(server_name("demo", "gpu", 2), "demo-gpu-2");
    }

    #[test]
    fn placement_groups_hold_ten_servers() {
        assert_eq!(placement_group_index(1), 1);
        assert_eq!(placement_group_index(10), 1);
        assert_eq!(placement_group_index(11), 2);
        assert_eq!(placement_group_index(20), 2);
        assert_eq!(placement_group_index(21), 3);
        assert_eq!(placement_group_count(0), 0);
        assert_eq!(placement_group_count(3), 1);
        assert_eq!(placement_group_count(10), 1);
        assert_eq!(placement_group_count(11), 2);
    }

    #[test]
    fn managed_detection() {
        let mut have: HashMap<String, String> =
            to_hash_map(&base_labels("demo", Component::Server));
        assert!(is_managed(&have, "demo"));
        assert!(!is_managed(&have, "other"));
        have.remove(LABEL_MANAGED_BY);
        assert!(!is_managed(&have, "demo"));
    }

    #[test]
    fn merge_keeps_foreign_labels_and_overrides_ours() {
        let mut have = HashMap::new();
        have.insert("team".to_string(), "a".to_string());
        have.insert("component".to_string(), "wrong".to_string());
        let want = base_labels("demo", Component::Network);
        assert!(!contains_all(&have, &want));
        let out = merged(&have, &want);
        assert_eq!(out["team"], "a");
        assert_eq!(out["component"], "network");
        assert!(contains_all(&out, &want));
    }

    #[test]
    fn label_value_rules() {
        assert!(validate_label_value("").is_ok());
        assert!(validate_label_value("v1.11.3").is_ok());
        assert!(validate_label_value("control-plane").is_ok());
        assert!(validate_label_value("-x").is_err());
        assert!(validate_label_value("x-").is_err());
        assert!(validate_label_value("a b").is_err());
        assert!(validate_label_value(&"a".repeat(64)).is_err());
    }

    #[test]
    fn cluster_name_rules() {
        assert!(validate_cluster_name("demo-1").is_ok());
        assert!(validate_cluster_name("").is_err());
        assert!(validate_cluster_name("Demo").is_err());
        assert!(validate_cluster_name("-demo").is_err());
        assert!(validate_cluster_name(&"a".repeat(41)).is_err());
    }
}
