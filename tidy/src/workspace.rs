//! The workspace as its manifests describe it: members, their dependencies, the workspace's
//! dependency table and lints.

use std::path::{Path, PathBuf};

/// Why the manifests could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A manifest could not be read from disk.
    #[error("cannot read {path}")]
    Read {
        /// The manifest's path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A manifest is not valid TOML.
    #[error("cannot parse {path}")]
    Parse {
        /// The manifest's path.
        path: PathBuf,
        /// The TOML error.
        #[source]
        source: toml::de::Error,
    },
    /// A manifest lacks a field every manifest here has.
    #[error("{path} has no {field}")]
    Missing {
        /// The manifest's path.
        path: PathBuf,
        /// The dotted field name.
        field: &'static str,
    },
}

/// One member crate.
#[derive(Debug, Clone, Default)]
pub struct Crate {
    /// The package name (`hk8s-journal`).
    pub name: String,
    /// The crate's folder, relative to the root, with `/` separators (`activities/hetzner`).
    pub dir: String,
    /// Names of the normal dependencies (any target).
    pub dependencies: Vec<String>,
    /// Names of the dev-dependencies.
    pub dev_dependencies: Vec<String>,
    /// Names of the build-dependencies.
    pub build_dependencies: Vec<String>,
    /// Whether the manifest says `[lints] workspace = true`.
    pub workspace_lints: bool,
}

impl Crate {
    /// Every dependency of any kind.
    pub fn all_dependencies(&self) -> impl Iterator<Item = &String> {
        self.dependencies
            .iter()
            .chain(&self.dev_dependencies)
            .chain(&self.build_dependencies)
    }
}

/// The workspace: its members and its shared tables.
#[derive(Debug, Clone, Default)]
pub struct Workspace {
    /// The member crates, in manifest order.
    pub crates: Vec<Crate>,
    /// Names in `[workspace.dependencies]`.
    pub workspace_dependencies: Vec<String>,
    /// `[workspace.lints.rust]`, as `lint = level` pairs.
    pub rust_lints: Vec<(String, String)>,
}

impl Workspace {
    /// Reads the root manifest and every member's.
    ///
    /// # Errors
    /// A manifest that cannot be read or parsed, or lacks `workspace.members` / `package.name`.
    pub fn load(root: &Path) -> Result<Self, Error> {
        let root_path = root.join("Cargo.toml");
        let manifest = read(&root_path)?;
        let workspace = manifest
            .get("workspace")
            .and_then(toml::Value::as_table)
            .ok_or_else(|| Error::Missing {
                path: root_path.clone(),
                field: "workspace",
            })?;
        let members = workspace
            .get("members")
            .and_then(toml::Value::as_array)
            .ok_or_else(|| Error::Missing {
                path: root_path.clone(),
                field: "workspace.members",
            })?;
        let mut crates = Vec::new();
        for member in members.iter().filter_map(toml::Value::as_str) {
            crates.push(load_crate(root, member)?);
        }
        let workspace_dependencies = keys(workspace.get("dependencies"));
        let rust_lints = workspace
            .get("lints")
            .and_then(|lints| lints.get("rust"))
            .and_then(toml::Value::as_table)
            .map(|table| {
                table
                    .iter()
                    .map(|(lint, level)| (lint.clone(), level_of(level)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            crates,
            workspace_dependencies,
            rust_lints,
        })
    }

    /// The member named `name`.
    pub fn crate_named(&self, name: &str) -> Option<&Crate> {
        self.crates.iter().find(|krate| krate.name == name)
    }
}

fn load_crate(root: &Path, member: &str) -> Result<Crate, Error> {
    let path = root.join(member).join("Cargo.toml");
    let manifest = read(&path)?;
    let name = manifest
        .get("package")
        .and_then(|package| package.get("name"))
        .and_then(toml::Value::as_str)
        .ok_or_else(|| Error::Missing {
            path: path.clone(),
            field: "package.name",
        })?
        .to_string();
    let mut dependencies = keys(manifest.get("dependencies"));
    if let Some(targets) = manifest.get("target").and_then(toml::Value::as_table) {
        for target in targets.values() {
            dependencies.extend(keys(target.get("dependencies")));
        }
    }
    let workspace_lints = manifest
        .get("lints")
        .and_then(|lints| lints.get("workspace"))
        .and_then(toml::Value::as_bool)
        .unwrap_or(false);
    Ok(Crate {
        name,
        dir: member.trim_end_matches('/').to_string(),
        dependencies,
        dev_dependencies: keys(manifest.get("dev-dependencies")),
        build_dependencies: keys(manifest.get("build-dependencies")),
        workspace_lints,
    })
}

fn read(path: &Path) -> Result<toml::Table, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.parse::<toml::Table>().map_err(|source| Error::Parse {
        path: path.to_path_buf(),
        source,
    })
}

fn keys(table: Option<&toml::Value>) -> Vec<String> {
    table
        .and_then(toml::Value::as_table)
        .map(|table| table.keys().cloned().collect())
        .unwrap_or_default()
}

/// `"deny"` or `{ level = "deny", priority = … }` → `deny`.
fn level_of(value: &toml::Value) -> String {
    match value {
        toml::Value::String(level) => level.clone(),
        other => other
            .get("level")
            .and_then(toml::Value::as_str)
            .unwrap_or_default()
            .to_string(),
    }
}
