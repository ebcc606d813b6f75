//! Firewall rule sets for control planes and workers, in an order-stable form.
//!
//! Hetzner firewalls filter only traffic on the **public** interface; traffic inside the
//! private network is never filtered by them. The rules from the private network CIDR
//! below therefore document (and, should Hetzner ever filter private traffic, keep
//! allowing) what the nodes need from each other; the rules that matter in practice
//! are the public ones, whose sources are the configured admin CIDRs only. With no
//! admin CIDRs, nothing is reachable on the public interface at all (inbound default
//! is drop once a firewall with any rule is applied, and an empty rule set drops all).
//!
//! | role | proto/port | from | why |
//! |---|---|---|---|
//! | control plane | tcp 6443 | admin CIDRs | kube-apiserver, direct access (the LB reaches it privately) |
//! | control plane | tcp 50000 | admin CIDRs | Talos apid (talosctl, hk8s) |
//! | control plane | tcp 6443 | private CIDR | kube-apiserver from nodes and the LB |
//! | control plane | tcp 2379-2380 | private CIDR | etcd client and peer |
//! | control plane | tcp 50000-50001 | private CIDR | Talos apid and trustd |
//! | both | tcp 10250 | private CIDR | kubelet |
//! | both | udp 8472 | private CIDR | Cilium VXLAN |
//! | both | tcp 4240 | private CIDR | Cilium health |
//! | both | tcp 4244 | private CIDR | Hubble |
//! | both | icmp | private CIDR | Cilium health, diagnostics |
//! | worker | tcp 50000 | admin CIDRs | Talos apid |
//! | worker | tcp 50000-50001 | private CIDR | Talos apid and trustd |
//!
//! Outbound stays at Hetzner's default (allow all).

use std::collections::BTreeSet;

use hcloud::models;
use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

use crate::labels::Role;

/// The IP protocol of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleProtocol {
    /// TCP, with a port or range.
    Tcp,
    /// UDP, with a port or range.
    Udp,
    /// ICMP, without port.
    Icmp,
}

impl RuleProtocol {
    fn as_str(self) -> &'static str {
        match self {
            RuleProtocol::Tcp => "tcp",
            RuleProtocol::Udp => "udp",
            RuleProtocol::Icmp => "icmp",
        }
    }
}

/// One inbound rule. hk8s makes inbound rules only; outbound stays allow-all.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FirewallRule {
    /// Protocol.
    pub protocol: RuleProtocol,
    /// Port (`"6443"`) or range (`"2379-2380"`); `None` for ICMP.
    pub port: Option<String>,
    /// Source CIDRs, sorted and deduplicated.
    pub source_ips: Vec<IpNet>,
    /// A human-readable reason.
    pub description: String,
}

impl FirewallRule {
    fn new(protocol: RuleProtocol, port: Option<&str>, sources: &[IpNet], why: &str) -> Self {
        let set: BTreeSet<IpNet> = sources.iter().map(IpNet::trunc).collect();
        Self {
            protocol,
            port: port.map(str::to_string),
            source_ips: set.into_iter().collect(),
            description: why.to_string(),
        }
    }

    /// The rule as an `hcloud` request model.
    pub(crate) fn to_model(&self) -> models::Rule {
        models::Rule {
            description: Some(Some(self.description.clone())),
            destination_ips: None,
            direction: models::rule::Direction::In,
            port: self.port.clone().map(Some),
            protocol: match self.protocol {
                RuleProtocol::Tcp => models::rule::Protocol::Tcp,
                RuleProtocol::Udp => models::rule::Protocol::Udp,
                RuleProtocol::Icmp => models::rule::Protocol::Icmp,
            },
            source_ips: Some(self.source_ips.iter().map(ToString::to_string).collect()),
        }
    }

    fn key(&self) -> RuleKey {
        RuleKey {
            direction: "in".into(),
            protocol: self.protocol.as_str().into(),
            port: self.port.clone(),
            sources: self.source_ips.iter().map(ToString::to_string).collect(),
            destinations: BTreeSet::new(),
        }
    }
}

/// What drift detection compares: everything but the description.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct RuleKey {
    direction: String,
    protocol: String,
    port: Option<String>,
    sources: BTreeSet<String>,
    destinations: BTreeSet<String>,
}

fn normalize_cidr(s: &str) -> String {
    match s.parse::<IpNet>() {
        Ok(net) => net.trunc().to_string(),
        Err(_) => s.to_string(),
    }
}

fn response_key(rule: &models::RuleResponse) -> RuleKey {
    RuleKey {
        direction: match rule.direction {
            models::rule_response::Direction::In => "in".into(),
            models::rule_response::Direction::Out => "out".into(),
        },
        protocol: match rule.protocol {
            models::rule_response::Protocol::Tcp => "tcp".into(),
            models::rule_response::Protocol::Udp => "udp".into(),
            models::rule_response::Protocol::Icmp => "icmp".into(),
            models::rule_response::Protocol::Esp => "esp".into(),
            models::rule_response::Protocol::Gre => "gre".into(),
        },
        port: rule.port.clone(),
        sources: rule.source_ips.iter().map(|s| normalize_cidr(s)).collect(),
        destinations: rule
            .destination_ips
            .iter()
            .map(|s| normalize_cidr(s))
            .collect(),
    }
}

/// True if the live rules equal `want` as sets (order and descriptions ignored).
pub(crate) fn rules_match(live: &[models::RuleResponse], want: &[FirewallRule]) -> bool {
    let live: BTreeSet<RuleKey> = live.iter().map(response_key).collect();
    let want: BTreeSet<RuleKey> = want.iter().map(FirewallRule::key).collect();
    live == want
}

/// The rules of a role's firewall, sorted (see the module doc for the table).
///
/// `admin_cidrs` are the only public sources; hk8s never defaults them to the world.
pub fn rules_for(role: Role, private_cidr: Ipv4Net, admin_cidrs: &[IpNet]) -> Vec<FirewallRule> {
    use RuleProtocol::{Icmp, Tcp, Udp};
    let private = [IpNet::V4(private_cidr)];
    let mut rules = Vec::new();
    if !admin_cidrs.is_empty() {
        if role == Role::ControlPlane {
            rules.push(FirewallRule::new(
                Tcp,
                Some("6443"),
                admin_cidrs,
                "kubernetes api from admin networks",
            ));
        }
        rules.push(FirewallRule::new(
            Tcp,
            Some("50000"),
            admin_cidrs,
            "talos api from admin networks",
        ));
    }
    if role == Role::ControlPlane {
        rules.push(FirewallRule::new(
            Tcp,
            Some("6443"),
            &private,
            "kubernetes api from the private network",
        ));
        rules.push(FirewallRule::new(
            Tcp,
            Some("2379-2380"),
            &private,
            "etcd client and peer",
        ));
    }
    rules.push(FirewallRule::new(
        Tcp,
        Some("50000-50001"),
        &private,
        "talos apid and trustd",
    ));
    rules.push(FirewallRule::new(Tcp, Some("10250"), &private, "kubelet"));
    rules.push(FirewallRule::new(
        Udp,
        Some("8472"),
        &private,
        "cilium vxlan",
    ));
    rules.push(FirewallRule::new(
        Tcp,
        Some("4240"),
        &private,
        "cilium health",
    ));
    rules.push(FirewallRule::new(Tcp, Some("4244"), &private, "hubble"));
    rules.push(FirewallRule::new(
        Icmp,
        None,
        &private,
        "icmp within the cluster",
    ));
    rules.sort();
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn private() -> Ipv4Net {
        "10.0.0.0/16".parse().unwrap()
    }

    fn summary(rules: &[FirewallRule]) -> Vec<String> {
        rules
            .iter()
            .map(|r| {
                let srcs: Vec<_> = r.source_ips.iter().map(ToString::to_string).collect();
                format!(
                    "{} {} {}",
                    r.protocol.as_str(),
                    r.port.as_deref().unwrap_or("-"),
                    srcs.join(",")
                )
            })
            .collect()
    }

    #[test]
    fn control_plane_rules() {
        let rules = rules_for(Role::ControlPlane, private(), &[net("203.0.113.0/24")]);
        assert_eq!(
            summary(&rules),
            [
                "tcp 10250 10.0.0.0/16",
                "tcp 2379-2380 10.0.0.0/16",
                "tcp 4240 10.0.0.0/16",
                "tcp 4244 10.0.0.0/16",
                "tcp 50000 203.0.113.0/24",
                "tcp 50000-50001 10.0.0.0/16",
                "tcp 6443 10.0.0.0/16",
                "tcp 6443 203.0.113.0/24",
                "udp 8472 10.0.0.0/16",
                "icmp - 10.0.0.0/16",
            ]
        );
    }

    #[test]
    fn worker_rules() {
        let rules = rules_for(Role::Worker, private(), &[net("198.51.100.7/32")]);
        assert_eq!(
            summary(&rules),
            [
                "tcp 10250 10.0.0.0/16",
                "tcp 4240 10.0.0.0/16",
                "tcp 4244 10.0.0.0/16",
                "tcp 50000 198.51.100.7/32",
                "tcp 50000-50001 10.0.0.0/16",
                "udp 8472 10.0.0.0/16",
                "icmp - 10.0.0.0/16",
            ]
        );
    }

    #[test]
    fn no_admin_cidrs_means_no_public_rules() {
        for role in [Role::ControlPlane, Role::Worker] {
            let rules = rules_for(role, private(), &[]);
            assert!(
                rules
                    .iter()
                    .all(|r| r.source_ips == vec![IpNet::V4(private())]),
                "{role}"
            );
            assert!(
                !rules
                    .iter()
                    .any(|r| r.source_ips.iter().any(|s| s.prefix_len() == 0))
            );
        }
    }

    #[test]
    fn sources_are_normalized_and_order_stable() {
        let a = rules_for(
            Role::ControlPlane,
            private(),
            &[
                net("203.0.113.9/24"),
                net("192.0.2.1/32"),
                net("203.0.113.0/24"),
            ],
        );
        let b = rules_for(
            Role::ControlPlane,
            private(),
            &[net("192.0.2.1/32"), net("203.0.113.0/24")],
        );
        assert_eq!(a, b);
        assert_eq!(
            a.iter()
                .find(|r| r.port.as_deref() == Some("6443") && r.source_ips.len() == 2)
                .unwrap()
                .source_ips,
            vec![net("192.0.2.1/32"), net("203.0.113.0/24")]
        );
    }

    fn live(rules: &[FirewallRule]) -> Vec<models::RuleResponse> {
        rules
            .iter()
            .map(|r| models::RuleResponse {
                description: None,
                destination_ips: vec![],
                direction: models::rule_response::Direction::In,
                port: r.port.clone(),
                protocol: match r.protocol {
                    RuleProtocol::Tcp => models::rule_response::Protocol::Tcp,
                    RuleProtocol::Udp => models::rule_response::Protocol::Udp,
                    RuleProtocol::Icmp => models::rule_response::Protocol::Icmp,
                },
                source_ips: r.source_ips.iter().rev().map(ToString::to_string).collect(),
            })
            .rev()
            .collect()
    }

    #[test]
    fn drift_compares_sets() {
        let want = rules_for(Role::Worker, private(), &[net("192.0.2.0/24")]);
        let mut have = live(&want);
        assert!(rules_match(&have, &want), "reordered rules are equal");
        have.pop();
        assert!(!rules_match(&have, &want), "a missing rule is drift");
        let mut have = live(&want);
        have[0].source_ips = vec!["0.0.0.0/0".into()];
        assert!(!rules_match(&have, &want), "a changed source is drift");
        let mut have = live(&want);
        have.push(models::RuleResponse {
            description: None,
            destination_ips: vec!["0.0.0.0/0".into()],
            direction: models::rule_response::Direction::Out,
            port: Some("53".into()),
            protocol: models::rule_response::Protocol::Udp,
            source_ips: vec![],
        });
        assert!(!rules_match(&have, &want), "an extra rule is drift");
    }

    #[test]
    fn model_conversion() {
        let rule = FirewallRule::new(RuleProtocol::Udp, Some("8472"), &[net("10.0.0.0/16")], "x");
        let m = rule.to_model();
        assert_eq!(m.port, Some(Some("8472".into())));
        assert_eq!(m.source_ips, Some(vec!["10.0.0.0/16".into()]));
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["direction"], "in");
        assert_eq!(json["protocol"], "udp");
    }
}
