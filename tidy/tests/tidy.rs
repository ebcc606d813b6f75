//! The repository itself keeps every invariant of `ARCHITECTURE.md` (see the crate docs).

use hk8s_tidy::workspace::Workspace;
use hk8s_tidy::{architecture, assert_none, layers, modules, sources, workspace_root};

fn workspace() -> Workspace {
    Workspace::load(&workspace_root()).expect("the workspace manifests")
}

fn all_sources() -> Vec<sources::Source> {
    sources::collect(&workspace_root()).expect("the repository's .rs files")
}

#[test]
fn crates_depend_only_along_the_layers() {
    assert_none("layering", &layers::check(&workspace()));
}

#[test]
fn every_file_opens_with_a_module_doc() {
    assert_none("module docs", &sources::check_module_docs(&all_sources()));
}

#[test]
fn only_the_cli_reads_the_environment() {
    assert_none("environment", &sources::check_environment(&all_sources()));
}

#[test]
fn no_crate_has_a_module_cycle() {
    let sources = all_sources();
    let mut violations = Vec::new();
    for krate in &workspace().crates {
        violations.extend(modules::check(&sources, &format!("{}/src/", krate.dir)));
    }
    assert_none("module cycles", &violations);
}

#[test]
fn architecture_md_maps_every_crate() {
    let text = std::fs::read_to_string(workspace_root().join("ARCHITECTURE.md"))
        .expect("ARCHITECTURE.md at the root");
    assert_none("ARCHITECTURE.md", &architecture::check(&workspace(), &text));
}
