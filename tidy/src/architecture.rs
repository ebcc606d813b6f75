//! `ARCHITECTURE.md` has a section for every crate: a `### \`<folder>/\`` heading in its Code
//! Map, so a new crate cannot land without its place on the map.

use crate::Violation;
use crate::workspace::Workspace;

/// One violation per crate whose folder has no `### \`<folder>/\`` heading.
pub fn check(workspace: &Workspace, architecture: &str) -> Vec<Violation> {
    let headings: Vec<&str> = architecture
        .lines()
        .filter_map(|line| line.strip_prefix("### "))
        .collect();
    workspace
        .crates
        .iter()
        .filter(|krate| {
            let wanted = format!("`{}/`", krate.dir);
            !headings.iter().any(|heading| heading.contains(&wanted))
        })
        .map(|krate| {
            Violation::new(
                "ARCHITECTURE.md",
                format!(
                    "no Code Map section for {} ({}): add a \"### `{}/`\" heading",
                    krate.name, krate.dir, krate.dir
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::Crate;

    #[test]
    fn a_crate_without_a_heading_is_named() {
        let workspace = Workspace {
            crates: vec![
                Crate {
                    name: "hk8s-journal".into(),
                    dir: "journal".into(),
                    ..Crate::default()
                },
                Crate {
                    name: "hk8s-kube".into(),
                    dir: "activities/kube".into(),
                    ..Crate::default()
                },
            ],
            ..Workspace::default()
        };
        let map =
            "## Code Map\n### `journal/` (hk8s-journal)\nText mentioning `activities/kube/`.\n";
        let violations = check(&workspace, map);
        assert_eq!(violations.len(), 1);
        assert!(violations[0].rule.contains("hk8s-kube"));
    }
}
