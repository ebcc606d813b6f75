//! Which crate may depend on which: the layering `ARCHITECTURE.md` draws, checked from the
//! manifests.
//!
//! Product: `journal` ← `runtime` ← `workflows` → `activities/*`, and `cli` on top. The twin
//! (`twin/**`) depends on twin crates only; its tests may use product crates. Of the twin, only
//! the wiring crate (`twin/`) depends on the others: `twin/hetzner`, `twin/talos` and `twin/kube`
//! depend on no workspace crate. Test support
//! (`testkit`) depends on no workspace crate and is never a normal dependency. Each outside
//! system has one owning crate: the Hetzner client lives in `activities/hetzner` only, gRPC in
//! `activities/talos` and the twin, the Kubernetes client in `activities/kube`, SQLite in the
//! journal.

use crate::Violation;
use crate::workspace::{Crate, Workspace};

/// The role a crate plays, decided by its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// `journal/`: the durable record.
    Journal,
    /// `runtime/`: durable execution over the journal.
    Runtime,
    /// `activities/<system>/`: one crate per outside system.
    Activity,
    /// `workflows/`: the only crate that combines runtime and activities.
    Workflows,
    /// `cli/`: the binary.
    Cli,
    /// `twin/**`: the local Hetzner, Talos and Kubernetes.
    Twin,
    /// `testkit/`: test support for every crate.
    TestSupport,
    /// `tests/`: end-to-end tests of the binary.
    EndToEnd,
    /// `tidy/`: these checks.
    Tidy,
}

impl Layer {
    /// The layer of the crate in `dir`, `None` for a folder no rule knows (a new crate must be
    /// placed here and in `ARCHITECTURE.md`).
    pub fn of(dir: &str) -> Option<Self> {
        let first = dir.split('/').next().unwrap_or(dir);
        Some(match first {
            "journal" => Self::Journal,
            "runtime" => Self::Runtime,
            "activities" => Self::Activity,
            "workflows" => Self::Workflows,
            "cli" => Self::Cli,
            "twin" => Self::Twin,
            "testkit" => Self::TestSupport,
            "tests" => Self::EndToEnd,
            "tidy" => Self::Tidy,
            _ => return None,
        })
    }

    /// Whether a crate of this layer may have a normal dependency on one of `to`.
    fn may_depend_on(self, to: Self) -> bool {
        use Layer::*;
        match self {
            Journal | Activity | TestSupport | Tidy => false,
            Runtime => to == Journal,
            Workflows => matches!(to, Journal | Runtime | Activity),
            Cli => matches!(to, Journal | Runtime | Workflows | Activity | Twin),
            Twin => to == Twin,
            EndToEnd => !matches!(to, Cli | Tidy | EndToEnd),
        }
    }

    /// Whether a crate of this layer may have a dev-dependency on one of `to`.
    fn may_dev_depend_on(self, to: Self) -> bool {
        !matches!(to, Self::Cli | Self::EndToEnd | Self::Tidy) && (self != Self::TestSupport)
    }
}

/// Twin crates that are leaves: no normal dependency on any workspace crate (the wiring crate
/// `twin/` connects them).
const TWIN_LEAVES: &[&str] = &["twin/hetzner", "twin/talos", "twin/kube"];

/// Outside crates that only their owning folders may depend on (normal dependencies).
const OWNED: &[(&str, &[&str])] = &[
    ("hcloud", &["activities/hetzner"]),
    ("tonic", &["activities/talos", "twin/"]),
    ("kube", &["activities/kube", "twin/", "tests"]),
    ("rusqlite", &["journal"]),
    ("russh", &["activities/ssh", "activities/hetzner", "twin/"]),
];

/// Every layering rule over the workspace's manifests.
pub fn check(workspace: &Workspace) -> Vec<Violation> {
    let mut out = Vec::new();
    for krate in &workspace.crates {
        let Some(layer) = Layer::of(&krate.dir) else {
            out.push(Violation::new(
                &krate.dir,
                "a crate in a folder no layering rule knows (add it to tidy/src/layers.rs and ARCHITECTURE.md)",
            ));
            continue;
        };
        check_workspace_edges(workspace, krate, layer, &mut out);
        check_owned(krate, &mut out);
        if !krate.workspace_lints {
            out.push(Violation::new(
                format!("{}/Cargo.toml", krate.dir),
                "every crate uses the workspace lints ([lints] workspace = true)",
            ));
        }
    }
    check_lints(workspace, &mut out);
    check_unused(workspace, &mut out);
    out
}

fn check_workspace_edges(
    workspace: &Workspace,
    krate: &Crate,
    layer: Layer,
    out: &mut Vec<Violation>,
) {
    let edges = [
        (false, &krate.dependencies),
        (true, &krate.dev_dependencies),
    ];
    for (dev, names) in edges {
        for name in names {
            let Some(target) = workspace.crate_named(name) else {
                continue;
            };
            let Some(to) = Layer::of(&target.dir) else {
                continue;
            };
            let leaf = TWIN_LEAVES.contains(&krate.dir.as_str());
            let allowed = if dev {
                layer.may_dev_depend_on(to)
            } else {
                layer.may_depend_on(to) && !leaf
            };
            if !allowed {
                let kind = if dev { "dev-dependency" } else { "dependency" };
                let why = if !dev && layer.may_depend_on(to) {
                    format!(
                        "{} is a twin leaf and depends on no workspace crate",
                        krate.dir
                    )
                } else {
                    format!("{layer:?} may not depend on {to:?}")
                };
                out.push(Violation::new(
                    format!("{}/Cargo.toml", krate.dir),
                    format!(
                        "{kind} on {name} ({}/) breaks the layering: {why}",
                        target.dir
                    ),
                ));
            }
        }
    }
}

fn check_owned(krate: &Crate, out: &mut Vec<Violation>) {
    for (dependency, owners) in OWNED {
        let owned_here = owners.iter().any(|owner| {
            krate.dir == *owner || (owner.ends_with('/') && krate.dir.starts_with(owner))
        });
        if krate.dependencies.iter().any(|d| d == dependency) && !owned_here {
            out.push(Violation::new(
                format!("{}/Cargo.toml", krate.dir),
                format!("only {} may depend on {dependency}", owners.join(", ")),
            ));
        }
    }
}

fn check_lints(workspace: &Workspace, out: &mut Vec<Violation>) {
    for (lint, level) in [("missing_docs", "deny"), ("unsafe_code", "forbid")] {
        let found = workspace
            .rust_lints
            .iter()
            .any(|(name, value)| name == lint && value == level);
        if !found {
            out.push(Violation::new(
                "Cargo.toml",
                format!("[workspace.lints.rust] must set {lint} = \"{level}\""),
            ));
        }
    }
}

fn check_unused(workspace: &Workspace, out: &mut Vec<Violation>) {
    for dependency in &workspace.workspace_dependencies {
        let used = workspace
            .crates
            .iter()
            .any(|krate| krate.all_dependencies().any(|d| d == dependency));
        if !used {
            out.push(Violation::new(
                "Cargo.toml",
                format!("workspace dependency {dependency} is used by no crate"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn krate(name: &str, dir: &str, dependencies: &[&str]) -> Crate {
        Crate {
            name: name.into(),
            dir: dir.into(),
            dependencies: dependencies.iter().map(|d| d.to_string()).collect(),
            workspace_lints: true,
            ..Crate::default()
        }
    }

    fn workspace(crates: Vec<Crate>) -> Workspace {
        Workspace {
            crates,
            workspace_dependencies: vec![],
            rust_lints: vec![
                ("missing_docs".into(), "deny".into()),
                ("unsafe_code".into(), "forbid".into()),
            ],
        }
    }

    #[test]
    fn a_clean_layering_passes() {
        let ws = workspace(vec![
            krate("j", "journal", &[]),
            krate("r", "runtime", &["j"]),
            krate("h", "activities/hetzner", &["hcloud"]),
            krate("w", "workflows", &["r", "h"]),
            krate("t", "twin/world", &["tk"]),
            krate("tk", "twin/kube", &["tonic"]),
        ]);
        assert_eq!(check(&ws), vec![]);
    }

    #[test]
    fn the_runtime_may_not_depend_on_an_activity() {
        let ws = workspace(vec![
            krate("h", "activities/hetzner", &[]),
            krate("r", "runtime", &["h"]),
        ]);
        let violations = check(&ws);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0]
                .rule
                .contains("Runtime may not depend on Activity")
        );
    }

    #[test]
    fn the_twin_may_not_depend_on_a_product_crate_or_hcloud() {
        let ws = workspace(vec![
            krate("h", "activities/hetzner", &[]),
            krate("t", "twin/hetzner", &["h", "hcloud"]),
        ]);
        let rules: Vec<String> = check(&ws).into_iter().map(|v| v.rule).collect();
        assert_eq!(rules.len(), 2, "{rules:?}");
        assert!(rules[0].contains("Twin may not depend on Activity"));
        assert!(rules[1].contains("only activities/hetzner may depend on hcloud"));
    }

    #[test]
    fn only_the_wiring_crate_joins_the_twin_crates() {
        let ws = workspace(vec![
            krate("hk8s-twin-talos", "twin/talos", &[]),
            krate("hk8s-twin-kube", "twin/kube", &[]),
            krate("hk8s-twin-hetzner", "twin/hetzner", &["hk8s-twin-talos"]),
            krate(
                "hk8s-twin",
                "twin",
                &["hk8s-twin-hetzner", "hk8s-twin-talos", "hk8s-twin-kube"],
            ),
        ]);
        let rules: Vec<String> = check(&ws).into_iter().map(|v| v.rule).collect();
        assert_eq!(rules.len(), 1, "{rules:?}");
        assert!(
            rules[0].contains("twin/hetzner is a twin leaf"),
            "{rules:?}"
        );
    }

    #[test]
    fn unknown_folders_lints_and_unused_dependencies_are_named() {
        let mut ws = workspace(vec![krate("x", "xtask", &[])]);
        ws.workspace_dependencies = vec!["libc".into()];
        ws.rust_lints = vec![("missing_docs".into(), "warn".into())];
        let rules: Vec<String> = check(&ws).into_iter().map(|v| v.rule).collect();
        assert!(rules[0].contains("no layering rule knows"), "{rules:?}");
        assert!(rules.iter().any(|r| r.contains("missing_docs = \"deny\"")));
        assert!(rules.iter().any(|r| r.contains("libc is used by no crate")));
    }
}
