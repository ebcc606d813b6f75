//! World queries: label selection (with the configured semantics for missing keys), the
//! firewalls of a server, a server's boot description, private IP allocation and load balancer
//! target resolution and health.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::error::ApiError;
use crate::hooks::ServerBoot;
use crate::labels::Labels;
use crate::model::{ApplyTo, Id, LoadBalancer, ServerStatus, TargetKind};
use crate::selector::Selector;
use crate::world::World;

impl World {
    /// Parses a selector (422 `invalid_input` when it does not parse).
    pub fn selector(&self, s: &str) -> Result<Selector, ApiError> {
        Selector::parse(s).map_err(|e| ApiError::invalid_input(e.to_string()))
    }

    /// Whether `labels` match `sel` under the configured semantics.
    pub fn selects(&self, sel: &Selector, labels: &Labels) -> bool {
        sel.matches_with(labels, self.negative_selector_matches_missing)
    }

    /// Servers matching a selector string (an unparsable selector matches nothing).
    pub fn servers_matching(&self, selector: &str) -> Vec<Id> {
        match Selector::parse(selector) {
            Ok(sel) => self
                .servers
                .values()
                .filter(|s| self.selects(&sel, &s.labels))
                .map(|s| s.id)
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Firewalls applied to a server, directly or by label selector.
    pub fn firewalls_of(&self, server: Id) -> Vec<Id> {
        let Some(s) = self.servers.get(&server) else {
            return Vec::new();
        };
        self.firewalls
            .values()
            .filter(|f| {
                f.applied_to.iter().any(|a| match a {
                    ApplyTo::Server(id) => *id == server,
                    ApplyTo::LabelSelector(sel) => {
                        Selector::parse(sel).is_ok_and(|sel| self.selects(&sel, &s.labels))
                    }
                })
            })
            .map(|f| f.id)
            .collect()
    }

    /// The boot description of a server; clears the rescue flag when booting into rescue.
    pub fn boot(&mut self, id: Id) -> Option<ServerBoot> {
        let s = self.servers.get_mut(&id)?;
        let rescue = s.rescue_enabled;
        s.rescue_enabled = false;
        let s = self.servers.get(&id)?;
        let image_labels = s
            .image
            .and_then(|i| self.images.get(&i))
            .map(|i| i.labels.clone())
            .unwrap_or_default();
        Some(ServerBoot {
            id,
            name: s.name.clone(),
            public_ipv4: s.public_ipv4,
            private_ips: s.private_net.iter().map(|p| p.ip).collect(),
            image_id: s.image,
            image_labels,
            rescue,
            ssh_public_keys: if rescue {
                s.rescue_ssh_keys.clone()
            } else {
                s.ssh_keys.clone()
            },
            labels: s.labels.clone(),
            architecture: s.server_type.architecture.to_string(),
            server_type: s.server_type.name.to_string(),
            user_data: s.user_data.clone(),
        })
    }

    /// Private IPs in use in a network (servers, load balancers, gateway).
    pub fn used_private_ips(&self, network: Id) -> BTreeSet<Ipv4Addr> {
        let mut used = BTreeSet::new();
        for s in self.servers.values() {
            for p in s.private_net.iter().filter(|p| p.network == network) {
                used.insert(p.ip);
                used.extend(p.alias_ips.iter().copied());
            }
        }
        for lb in self.load_balancers.values() {
            for (n, ip) in &lb.private_net {
                if *n == network {
                    used.insert(*ip);
                }
            }
        }
        if let Some(n) = self.networks.get(&network) {
            used.extend(n.subnets.iter().map(|s| s.gateway));
        }
        used
    }

    /// Picks a free IP in a subnet of `network` in `zone` (types `cloud` or `server`).
    pub fn allocate_private_ip(&self, network: Id, zone: &str) -> Result<Ipv4Addr, ApiError> {
        let n = self
            .networks
            .get(&network)
            .ok_or_else(|| ApiError::invalid_field("network", "network not found"))?;
        let used = self.used_private_ips(network);
        for sub in n
            .subnets
            .iter()
            .filter(|s| s.network_zone == zone && (s.kind == "cloud" || s.kind == "server"))
        {
            if let Some(ip) = sub.ip_range.hosts().find(|ip| !used.contains(ip)) {
                return Ok(ip);
            }
        }
        Err(ApiError::unprocessable(
            "no_subnet_available",
            "no subnet or IP is available in the network",
        ))
    }

    /// The private IPs of a server's target health, resolved load balancer targets.
    pub fn resolve_targets(&self, lb: &LoadBalancer) -> Vec<(Id, bool)> {
        let mut out: Vec<(Id, bool)> = Vec::new();
        for t in &lb.targets {
            let ids = match &t.kind {
                TargetKind::Server(id) => vec![*id],
                TargetKind::LabelSelector(sel) => self.servers_matching(sel),
                TargetKind::Ip(_) => Vec::new(),
            };
            for id in ids {
                if !out.iter().any(|(x, _)| *x == id) {
                    out.push((id, t.use_private_ip));
                }
            }
        }
        out
    }

    /// Health of a server behind a load balancer on `port`.
    pub fn target_healthy(
        &self,
        lb: &LoadBalancer,
        server: Id,
        use_private: bool,
        port: u16,
    ) -> bool {
        let Some(s) = self.servers.get(&server) else {
            return false;
        };
        let ip = if use_private {
            lb.private_net
                .iter()
                .find_map(|(n, _)| s.private_net.iter().find(|p| p.network == *n).map(|p| p.ip))
        } else {
            s.public_ipv4
        };
        let default = s.status == ServerStatus::Running;
        match ip {
            Some(ip) => self
                .hooks
                .target_health(server, ip, port)
                .unwrap_or(default),
            None => false,
        }
    }
}
