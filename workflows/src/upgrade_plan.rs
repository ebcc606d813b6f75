//! The upgrade planner: from the versions a cluster runs to the spec's targets, a sequence of
//! steps each inside Talos's and Kubernetes's support windows.
//!
//! The rule (`../shared/reference/upgrades.md` §3.4), walked greedily:
//! - a Talos step goes to the next minor's latest patch (or the target itself on the target's
//!   minor), and only when the running Kubernetes is inside that release's window;
//! - a Kubernetes step goes up one minor (or to the target patch), and only when every node's
//!   Talos runs it;
//! - a Talos step that moves etcd from 3.5 to 3.6 first brings the current line to a patch whose
//!   etcd is new enough (etcd's 3.6 upgrade guide);
//! - never both kinds in one step, never a downgrade.
//!
//! Pure: the caller reads the versions from the nodes and passes them in.

use std::fmt;

use hk8s_talos_config::versions::{TalosMinor, etcd_3_6_minimum_3_5, etcd_version, talos_minor};
use semver::Version;

/// What one node runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeVersion {
    /// The node (server) name.
    pub node: String,
    /// Its Talos version (`Version.tag` without the `v`).
    pub talos: Version,
    /// The image-factory schematic it was installed from.
    pub schematic: String,
}

/// What the cluster runs now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// Every node, control planes first.
    pub nodes: Vec<NodeVersion>,
    /// The oldest Kubernetes component version (apiserver, kubelets).
    pub kubernetes: Version,
}

/// The spec's targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `talos.version`.
    pub talos: Version,
    /// The schematic the spec asks for.
    pub schematic: String,
    /// `kubernetes.version`.
    pub kubernetes: Version,
}

/// One step of a plan: a rolling Talos upgrade or a Kubernetes upgrade, never both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedStep {
    /// Upgrade every node not yet at `version` and `schematic`, one at a time.
    Talos {
        /// Target Talos version.
        version: Version,
        /// Target schematic.
        schematic: String,
    },
    /// Upgrade the control-plane components, then kubelets, to `version`.
    Kubernetes {
        /// Target Kubernetes version.
        version: Version,
    },
}

impl fmt::Display for PlannedStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlannedStep::Talos { version, schematic } => {
                let short = crate::upgrade_gates::short(schematic);
                write!(f, "Talos v{version} (schematic {short}…), node by node")
            }
            PlannedStep::Kubernetes { version } => write!(f, "Kubernetes {version}"),
        }
    }
}

/// A target no supported path reaches, with the rule that forbids it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The cluster reported no nodes.
    #[error("the cluster reported no nodes to plan for")]
    NoNodes,
    /// A version outside the Talos lines hk8s knows.
    #[error("{field}: hk8s knows no Talos v{version} release line (known: v1.9 to v1.12)")]
    UnknownTalos {
        /// The spec field or node the version came from.
        field: String,
        /// The version.
        version: Version,
    },
    /// A Talos downgrade.
    #[error(
        "talos.version: v{target} is older than v{running}, which {node} runs; hk8s does not \
         downgrade Talos"
    )]
    TalosDowngrade {
        /// The newest node.
        node: String,
        /// What it runs.
        running: Version,
        /// The target.
        target: Version,
    },
    /// A Kubernetes downgrade.
    #[error(
        "kubernetes.version: {target} is older than the running {running}; Kubernetes does not \
         support downgrades"
    )]
    KubernetesDowngrade {
        /// What the cluster runs.
        running: Version,
        /// The target.
        target: Version,
    },
    /// The target pair itself is outside Talos's window.
    #[error(
        "kubernetes.version: {kubernetes} is outside Talos v1.{talos_minor}'s window \
         (1.{min}.0 to 1.{max}.x)"
    )]
    TargetOutsideWindow {
        /// The target Talos minor.
        talos_minor: u64,
        /// The target Kubernetes version.
        kubernetes: Version,
        /// Window start (minor).
        min: u64,
        /// Window end (minor).
        max: u64,
    },
    /// No step is allowed from where the walk stands.
    #[error("no supported path from Talos v{talos} with Kubernetes {kubernetes}: {rule}")]
    NoPath {
        /// The Talos version the walk reached.
        talos: Version,
        /// The Kubernetes version the walk reached.
        kubernetes: Version,
        /// The rule that blocks both kinds of step.
        rule: String,
    },
}

/// The steps from `running` to `target`; empty when everything is at target.
pub fn plan(running: &Running, target: &Target) -> Result<Vec<PlannedStep>, PlanError> {
    let oldest = running
        .nodes
        .iter()
        .min_by(|a, b| a.talos.cmp(&b.talos))
        .ok_or(PlanError::NoNodes)?;
    let newest = running
        .nodes
        .iter()
        .max_by(|a, b| a.talos.cmp(&b.talos))
        .ok_or(PlanError::NoNodes)?;
    if target.talos < newest.talos {
        return Err(PlanError::TalosDowngrade {
            node: newest.node.clone(),
            running: newest.talos.clone(),
            target: target.talos.clone(),
        });
    }
    if target.kubernetes < running.kubernetes {
        return Err(PlanError::KubernetesDowngrade {
            running: running.kubernetes.clone(),
            target: target.kubernetes.clone(),
        });
    }
    let target_line = line(&target.talos, "talos.version")?;
    line(&oldest.talos, &format!("node {}", oldest.node))?;
    if !target_line.runs_kubernetes(&target.kubernetes) {
        return Err(PlanError::TargetOutsideWindow {
            talos_minor: target_line.minor,
            kubernetes: target.kubernetes.clone(),
            min: target_line.kubernetes_min_minor,
            max: target_line.kubernetes_max_minor,
        });
    }

    let mut steps = Vec::new();
    let mut talos = oldest.talos.clone();
    let mut kubernetes = running.kubernetes.clone();
    while talos < target.talos || kubernetes < target.kubernetes {
        let mut moved = false;
        if let Some(hop) = next_talos(&talos, &target.talos)?
            && line(&hop, "talos.version")?.runs_kubernetes(&kubernetes)
        {
            steps.push(PlannedStep::Talos {
                version: hop.clone(),
                schematic: target.schematic.clone(),
            });
            talos = hop;
            moved = true;
        }
        if let Some(hop) = next_kubernetes(&kubernetes, &target.kubernetes)
            && line(&talos, "talos.version")?.runs_kubernetes(&hop)
        {
            steps.push(PlannedStep::Kubernetes {
                version: hop.clone(),
            });
            kubernetes = hop;
            moved = true;
        }
        if !moved {
            return Err(no_path(&talos, &kubernetes, target)?);
        }
    }
    // Same version everywhere, but some node runs another schematic: one re-install step.
    let on_target = |n: &NodeVersion| n.talos == target.talos && n.schematic == target.schematic;
    let talos_planned = steps.iter().any(|s| matches!(s, PlannedStep::Talos { .. }));
    if !talos_planned && !running.nodes.iter().all(on_target) {
        steps.insert(
            0,
            PlannedStep::Talos {
                version: target.talos.clone(),
                schematic: target.schematic.clone(),
            },
        );
    }
    Ok(steps)
}

fn line(version: &Version, field: &str) -> Result<TalosMinor, PlanError> {
    talos_minor(version).ok_or_else(|| PlanError::UnknownTalos {
        field: field.to_owned(),
        version: version.clone(),
    })
}

/// The next Talos version on the way from `from` to `to`, if any.
fn next_talos(from: &Version, to: &Version) -> Result<Option<Version>, PlanError> {
    if from >= to {
        return Ok(None);
    }
    let current = line(from, "talos.version")?;
    if from.minor == to.minor {
        return Ok(Some(to.clone()));
    }
    // Leaving etcd 3.5 for 3.6: every member first on an etcd the 3.6 guide accepts.
    let next_minor = Version::new(1, from.minor + 1, 0);
    let crosses_etcd = etcd_version(from).map(|e| e.minor) == Some(5)
        && etcd_version(&next_minor).map(|e| e.minor) == Some(6);
    if crosses_etcd
        && etcd_version(from).is_some_and(|e| e < etcd_3_6_minimum_3_5())
        && *from < current.latest
    {
        return Ok(Some(current.latest));
    }
    let next = line(&next_minor, "talos.version")?;
    if next.minor == to.minor {
        Ok(Some(to.clone()))
    } else {
        Ok(Some(next.latest))
    }
}

/// The next Kubernetes version on the way from `from` to `to`: one minor at a time, through the
/// version the Talos release of that minor installs by default.
fn next_kubernetes(from: &Version, to: &Version) -> Option<Version> {
    if from >= to {
        return None;
    }
    if from.minor == to.minor || from.minor + 1 == to.minor {
        return Some(to.clone());
    }
    let minor = from.minor + 1;
    let tested = hk8s_talos_config::versions::talos_minors()
        .into_iter()
        .map(|m| m.default_kubernetes)
        .find(|k| k.minor == minor);
    Some(tested.unwrap_or_else(|| Version::new(1, minor, 0)))
}

fn no_path(talos: &Version, kubernetes: &Version, target: &Target) -> Result<PlanError, PlanError> {
    let here = line(talos, "talos.version")?;
    let mut rules = Vec::new();
    if let Some(hop) = next_talos(talos, &target.talos)? {
        let next = line(&hop, "talos.version")?;
        rules.push(format!(
            "Talos v{hop} runs Kubernetes 1.{}–1.{} only",
            next.kubernetes_min_minor, next.kubernetes_max_minor
        ));
    }
    if let Some(hop) = next_kubernetes(kubernetes, &target.kubernetes) {
        rules.push(format!(
            "Kubernetes {hop} is not supported by Talos v1.{} (1.{}–1.{})",
            here.minor, here.kubernetes_min_minor, here.kubernetes_max_minor
        ));
    }
    Ok(PlanError::NoPath {
        talos: talos.clone(),
        kubernetes: kubernetes.clone(),
        rule: rules.join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMATIC: &str = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba";
    const OTHER: &str = "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515";

    fn ver(s: &str) -> Version {
        Version::parse(s).expect("test version")
    }

    fn running(talos: &[&str], kubernetes: &str) -> Running {
        Running {
            nodes: talos
                .iter()
                .enumerate()
                .map(|(i, t)| NodeVersion {
                    node: format!("demo-{i}"),
                    talos: ver(t),
                    schematic: SCHEMATIC.to_owned(),
                })
                .collect(),
            kubernetes: ver(kubernetes),
        }
    }

    fn target(talos: &str, kubernetes: &str) -> Target {
        Target {
            talos: ver(talos),
            schematic: SCHEMATIC.to_owned(),
            kubernetes: ver(kubernetes),
        }
    }

    fn describe(steps: &[PlannedStep]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                PlannedStep::Talos { version, .. } => format!("talos {version}"),
                PlannedStep::Kubernetes { version } => format!("k8s {version}"),
            })
            .collect()
    }

    #[test]
    fn the_reference_example_alternates() {
        // upgrades.md §3.4: (1.10, 1.33) → (1.12, 1.35).
        let steps = plan(
            &running(&["1.10.9", "1.10.9"], "1.33.6"),
            &target("1.12.11", "1.35.4"),
        )
        .expect("a path");
        assert_eq!(
            describe(&steps),
            ["talos 1.11.6", "k8s 1.34.1", "talos 1.12.11", "k8s 1.35.4"]
        );
    }

    #[test]
    fn the_issue_path_goes_through_the_latest_v1_10_patch_for_etcd() {
        // v1.10.3 ships etcd 3.5.21; etcd 3.6 wants 3.5.26 on every member first.
        let steps = plan(
            &running(&["1.10.3", "1.10.3", "1.10.3"], "1.33.2"),
            &target("1.11.6", "1.34.1"),
        )
        .expect("a path");
        assert_eq!(
            describe(&steps),
            ["talos 1.10.9", "talos 1.11.6", "k8s 1.34.1"]
        );
    }

    #[test]
    fn every_intermediate_minor_is_visited_at_its_latest_patch() {
        let steps =
            plan(&running(&["1.9.2"], "1.30.3"), &target("1.11.6", "1.32.4")).expect("a path");
        assert_eq!(
            describe(&steps),
            ["talos 1.10.9", "k8s 1.31.0", "talos 1.11.6", "k8s 1.32.4"]
        );
    }

    #[test]
    fn kubernetes_too_old_for_the_next_talos_goes_first() {
        // Talos v1.10 needs Kubernetes ≥ 1.28; the cluster runs 1.27.
        let steps =
            plan(&running(&["1.9.6"], "1.27.4"), &target("1.10.9", "1.28.2")).expect("a path");
        assert_eq!(describe(&steps), ["k8s 1.28.2", "talos 1.10.9"]);
        for pair in steps.windows(2) {
            assert_ne!(
                std::mem::discriminant(&pair[0]),
                std::mem::discriminant(&pair[1]),
                "never two steps of one kind merged: {pair:?}"
            );
        }
    }

    #[test]
    fn the_slowest_node_decides_where_talos_starts() {
        // An interrupted run left one node behind.
        let steps = plan(
            &running(&["1.11.6", "1.10.9", "1.11.6"], "1.33.6"),
            &target("1.11.6", "1.34.1"),
        )
        .expect("a path");
        assert_eq!(describe(&steps), ["talos 1.11.6", "k8s 1.34.1"]);
    }

    #[test]
    fn at_target_there_is_nothing_to_do() {
        let steps = plan(
            &running(&["1.11.6"; 3], "1.34.1"),
            &target("1.11.6", "1.34.1"),
        )
        .expect("a plan");
        assert!(steps.is_empty());
    }

    #[test]
    fn a_new_schematic_is_one_talos_step_at_the_same_version() {
        let mut t = target("1.11.6", "1.34.1");
        t.schematic = OTHER.to_owned();
        let steps = plan(&running(&["1.11.6"; 2], "1.34.1"), &t).expect("a plan");
        assert_eq!(
            steps,
            [PlannedStep::Talos {
                version: ver("1.11.6"),
                schematic: OTHER.to_owned()
            }]
        );
    }

    #[test]
    fn refusals_name_the_rule() {
        let err = plan(&running(&["1.11.6"], "1.34.1"), &target("1.10.9", "1.34.1"))
            .expect_err("downgrade");
        assert!(matches!(err, PlanError::TalosDowngrade { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("talos.version: v1.10.9 is older"),
            "{err}"
        );

        let err = plan(&running(&["1.11.6"], "1.34.1"), &target("1.11.6", "1.33.6"))
            .expect_err("downgrade");
        assert!(
            err.to_string().starts_with("kubernetes.version: 1.33.6"),
            "{err}"
        );

        let err = plan(&running(&["1.11.6"], "1.34.1"), &target("1.11.6", "1.35.0"))
            .expect_err("outside the window");
        assert_eq!(
            err.to_string(),
            "kubernetes.version: 1.35.0 is outside Talos v1.11's window (1.29.0 to 1.34.x)"
        );

        let err = plan(&running(&["1.11.6"], "1.34.1"), &target("1.13.0", "1.34.1"))
            .expect_err("unknown line");
        assert!(err.to_string().contains("v1.13.0"), "{err}");

        let err = plan(&running(&[], "1.34.1"), &target("1.11.6", "1.34.1")).expect_err("none");
        assert_eq!(err, PlanError::NoNodes);
    }

    #[test]
    fn every_planned_pair_is_inside_both_windows() {
        // Walk every start the planner accepts and check each intermediate state.
        let starts = ["1.9.0", "1.9.6", "1.10.0", "1.10.9", "1.11.0"];
        let mut walked = 0;
        for start in starts {
            let start_line = talos_minor(&ver(start)).expect("known");
            for k in start_line.kubernetes_min_minor..=start_line.kubernetes_max_minor {
                let k8s = ver(&format!("1.{k}.1"));
                let Ok(steps) = plan(
                    &running(&[start], &k8s.to_string()),
                    &target("1.12.11", "1.35.4"),
                ) else {
                    continue;
                };
                let (mut talos, mut kube) = (ver(start), k8s.clone());
                for step in &steps {
                    match step {
                        PlannedStep::Talos { version, .. } => {
                            let next = talos_minor(version).expect("known");
                            assert!(next.upgrades_host(&talos), "{start}/{k8s}: {steps:?}");
                            talos = version.clone();
                        }
                        PlannedStep::Kubernetes { version } => {
                            assert!(version.minor <= kube.minor + 1, "{start}/{k8s}: {steps:?}");
                            kube = version.clone();
                        }
                    }
                    let here = talos_minor(&talos).expect("known");
                    assert!(here.runs_kubernetes(&kube), "{start}/{k8s}: {steps:?}");
                }
                assert_eq!((talos, kube), (ver("1.12.11"), ver("1.35.4")));
                walked += 1;
            }
        }
        // Every start inside its own window has a path; 5 starts, 6 minors each.
        assert_eq!(walked, 30);
    }
}
