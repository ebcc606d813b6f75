//! `ensure_firewall`: one firewall per role with the rule set of [`crate::rules`].

use hcloud::apis::firewalls_api;
use hcloud::models;
use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

use crate::actions::{ActionId, pending_ids};
use crate::client::{Hetzner, PER_PAGE};
use crate::error::{ErrorKind, HetznerError};
use crate::labels::{self, Component, Role};
use crate::outcome::EnsureOutcome;
use crate::rules::{self, FirewallRule};

/// What a role's firewall must look like.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallSpec {
    /// Cluster name.
    pub cluster: String,
    /// The role whose servers the firewall protects.
    pub role: Role,
    /// The private network's range (source of the intra-cluster rules).
    pub private_cidr: Ipv4Net,
    /// The only public sources allowed to reach 6443 (control planes) and 50000.
    /// Empty means no public access at all; hk8s never defaults to `0.0.0.0/0`.
    pub admin_cidrs: Vec<IpNet>,
}

impl FirewallSpec {
    /// The rules this spec asks for, sorted.
    pub fn rules(&self) -> Vec<FirewallRule> {
        rules::rules_for(self.role, self.private_cidr, &self.admin_cidrs)
    }
}

/// The ensured firewall.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallInfo {
    /// Hetzner id.
    pub id: i64,
    /// Name (`<cluster>-control-plane` or `<cluster>-worker`).
    pub name: String,
    /// The role it protects.
    pub role: Role,
    /// Whether this call created, updated or only found it.
    pub outcome: EnsureOutcome,
}

/// A firewall whose create was answered ([`Hetzner::request_firewall`]): its id can go into
/// server creates while `applying` (its rules being set) runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestedFirewall {
    /// The firewall.
    pub firewall: FirewallInfo,
    /// The actions still setting its rules ([`Hetzner::wait_firewall_applied`]); empty when
    /// nothing is left to wait for.
    pub applying: Vec<ActionId>,
}

impl Hetzner {
    /// Waits for the actions of a [`RequestedFirewall`]: its rules are in force.
    ///
    /// # Errors
    /// A failed or timed-out action.
    pub async fn wait_firewall_applied(
        &self,
        requested: &RequestedFirewall,
    ) -> Result<FirewallInfo, HetznerError> {
        self.wait_actions(&requested.applying)
            .await
            .map_err(|e| e.context(format!("create firewall {}", requested.firewall.name)))?;
        Ok(requested.firewall.clone())
    }

    /// Ensures a role's firewall exists with exactly the spec's rules.
    ///
    /// The firewall is applied to servers at server creation (`ServerSpec::firewall_ids`),
    /// not by label selector, so a server is protected from its first boot.
    ///
    /// # Flow
    ///
    /// `GET /firewalls?name=…`; if missing, `POST /firewalls` with rules and labels and a
    /// wait for its actions; if present, fixes labels and, when the rule *set* differs
    /// (order and descriptions are ignored), replaces the rules with `set_rules`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotManaged`] if a firewall with the name is not hk8s's for this cluster.
    pub async fn ensure_firewall(&self, spec: &FirewallSpec) -> Result<FirewallInfo, HetznerError> {
        let requested = self.request_firewall(spec).await?;
        self.wait_firewall_applied(&requested).await
    }

    /// [`Hetzner::ensure_firewall`] without waiting for the created firewall's rules to be set:
    /// it returns once the create is answered, with the actions still setting them. A found
    /// firewall is adopted and fixed as usual (waiting) and has nothing left to wait for.
    ///
    /// # Errors
    /// As [`Hetzner::ensure_firewall`].
    pub async fn request_firewall(
        &self,
        spec: &FirewallSpec,
    ) -> Result<RequestedFirewall, HetznerError> {
        labels::validate_cluster_name(&spec.cluster)?;
        let name = labels::firewall_name(&spec.cluster, spec.role);
        let want_rules = spec.rules();
        let name = name.as_str();
        let want_rules = want_rules.as_slice();
        self.ensure(
            &format!("firewall {name}"),
            || self.find_firewall(name),
            || {
                let want_labels =
                    labels::role_labels(&spec.cluster, Component::Firewall, spec.role);
                let request = models::CreateFirewallRequest {
                    apply_to: None,
                    labels: Some(labels::to_hash_map(&want_labels)),
                    name: name.to_string(),
                    rules: Some(want_rules.iter().map(FirewallRule::to_model).collect()),
                };
                self.run(
                    format!("create firewall {name}"),
                    firewalls_api::create_firewall(
                        self.cfg(),
                        firewalls_api::CreateFirewallParams {
                            create_firewall_request: request,
                        },
                    ),
                )
            },
            |resp| async move {
                let applying = pending_ids(resp.actions.iter().flatten())?;
                let firewall = resp.firewall.ok_or_else(|| {
                    HetznerError::new(
                        ErrorKind::Decode,
                        format!("create firewall {name}"),
                        "the reply holds no firewall",
                    )
                })?;
                Ok(RequestedFirewall {
                    firewall: FirewallInfo {
                        id: firewall.id,
                        name: firewall.name,
                        role: spec.role,
                        outcome: EnsureOutcome::Created,
                    },
                    applying,
                })
            },
            |found| async move {
                Ok(RequestedFirewall {
                    firewall: self.adopt_firewall(found, spec, want_rules).await?,
                    applying: Vec::new(),
                })
            },
        )
        .await
    }

    /// `GET /firewalls?name=…`.
    pub(crate) async fn find_firewall(
        &self,
        name: &str,
    ) -> Result<Option<models::Firewall>, HetznerError> {
        let resp = self
            .run(
                format!("look up firewall {name}"),
                firewalls_api::list_firewalls(
                    self.cfg(),
                    firewalls_api::ListFirewallsParams {
                        name: Some(name.to_string()),
                        ..Default::default()
                    },
                ),
            )
            .await?;
        Ok(resp.firewalls.into_iter().find(|f| f.name == name))
    }

    /// Every firewall matching `selector`.
    pub(crate) async fn list_firewalls(
        &self,
        selector: &str,
    ) -> Result<Vec<models::Firewall>, HetznerError> {
        let cfg = self.cfg();
        self.list_all(
            "list firewalls",
            |page| {
                firewalls_api::list_firewalls(
                    cfg,
                    firewalls_api::ListFirewallsParams {
                        label_selector: Some(selector.to_string()),
                        page: Some(page),
                        per_page: Some(PER_PAGE),
                        ..Default::default()
                    },
                )
            },
            |r| (r.firewalls, r.meta.pagination.next_page),
        )
        .await
    }

    async fn adopt_firewall(
        &self,
        firewall: models::Firewall,
        spec: &FirewallSpec,
        want_rules: &[FirewallRule],
    ) -> Result<FirewallInfo, HetznerError> {
        let live_labels = firewall.labels.clone().unwrap_or_default();
        if !labels::is_managed(&live_labels, &spec.cluster) {
            return Err(HetznerError::new(
                ErrorKind::NotManaged,
                format!("ensure firewall {}", firewall.name),
                "a firewall with this name exists but is not managed by hk8s for this cluster",
            ));
        }
        let mut outcome = EnsureOutcome::Unchanged;
        let want_labels = labels::role_labels(&spec.cluster, Component::Firewall, spec.role);
        if !labels::contains_all(&live_labels, &want_labels) {
            self.run(
                format!("update labels of firewall {}", firewall.name),
                firewalls_api::replace_firewall(
                    self.cfg(),
                    firewalls_api::ReplaceFirewallParams {
                        id: firewall.id,
                        replace_firewall_request: models::ReplaceFirewallRequest {
                            labels: Some(labels::merged(&live_labels, &want_labels)),
                            name: None,
                        },
                    },
                ),
            )
            .await?;
            outcome = EnsureOutcome::Updated;
        }
        if !rules::rules_match(&firewall.rules, want_rules) {
            let resp = self
                .run(
                    format!("set rules of firewall {}", firewall.name),
                    firewalls_api::set_rules(
                        self.cfg(),
                        firewalls_api::SetRulesParams {
                            id: firewall.id,
                            set_rules_request: models::SetRulesRequest {
                                rules: want_rules.iter().map(FirewallRule::to_model).collect(),
                            },
                        },
                    ),
                )
                .await?;
            self.wait_models(&resp.actions).await?;
            outcome = EnsureOutcome::Updated;
        }
        Ok(FirewallInfo {
            id: firewall.id,
            name: firewall.name,
            role: spec.role,
            outcome,
        })
    }
}
