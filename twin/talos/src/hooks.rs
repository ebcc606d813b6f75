//! The seams through which a node's upgrade reaches the rest of the twin, and the facts the
//! installer checks: [`InstallerRegistry`] (does an installer image exist; what it installs),
//! [`ClusterHooks`] (cordon, drain and uncordon through a Kubernetes API), the installer's
//! pre-flight matrix ([`preflight`]) and the upgrade faults ([`UpgradeFaultKind`]). A leaf: it
//! imports no other module of the crate.

/// What an installer image installs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Installer {
    /// Talos version tag, e.g. `v1.11.6`.
    pub version: String,
    /// Schematic ID (the vanilla ID for `ghcr.io/siderolabs/installer`).
    pub schematic: String,
    /// Platform the installer writes (`hcloud` for `hcloud-installer`, `metal` for `installer`).
    pub platform: String,
}

/// The vanilla schematic ID (`customization: {}`).
pub const VANILLA_SCHEMATIC: &str =
    "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba";

/// Resolves installer image references, as the node's containerd pull does.
pub trait InstallerRegistry: Send + Sync {
    /// The installer behind `image`, or the text containerd reports after
    /// `failed to resolve reference "<image>": ` (e.g. `<image>: not found`).
    fn resolve(&self, image: &str) -> Result<Installer, String>;
}

/// Reads an installer reference by its shape only: `<host>/<platform>-installer/<schematic>:<tag>`,
/// `<host>/installer/<schematic>:<tag>` (metal) or `<repo>/installer:<tag>` (vanilla, metal).
/// Any tag and schematic are accepted (used when no [`InstallerRegistry`] is set).
pub fn parse_installer(image: &str) -> Result<Installer, String> {
    let not_found = || format!("{image}: not found");
    let without_digest = image.split('@').next().unwrap_or(image);
    let (path, tag) = match without_digest.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') && !t.is_empty() => (p, t),
        _ => return Err(not_found()),
    };
    if !tag.starts_with('v') {
        return Err(not_found());
    }
    let parts: Vec<&str> = path.split('/').collect();
    let n = parts.len();
    let (repo, schematic) = match n {
        0 | 1 => return Err(not_found()),
        _ if parts[n - 1].ends_with("installer") => (parts[n - 1], VANILLA_SCHEMATIC.to_string()),
        _ => (parts[n - 2], parts[n - 1].to_string()),
    };
    let repo = repo.trim_end_matches("-secureboot");
    let platform = match repo {
        "installer" => "metal".to_string(),
        r => match r.strip_suffix("-installer") {
            Some(p) if !p.is_empty() => p.to_string(),
            _ => return Err(not_found()),
        },
    };
    if schematic.is_empty() || !schematic.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(not_found());
    }
    Ok(Installer {
        version: tag.to_string(),
        schematic,
        platform,
    })
}

/// `(major, minor, patch)` of a `vX.Y.Z` tag.
pub fn semver(tag: &str) -> Option<(u64, u64, u64)> {
    let t = tag.trim_start_matches('v');
    let t = t.split(['-', '+']).next().unwrap_or(t);
    let mut it = t.split('.').map(|p| p.parse::<u64>().ok());
    Some((it.next()??, it.next()??, it.next().flatten().unwrap_or(0)))
}

/// The installer pre-flight of Talos `target` on a host running `host` (Talos
/// `UpgradeableFrom`; v1.9/v1.10 installers also check the node's Kubernetes version). `Err` is
/// the installer's message.
pub fn preflight(host: &str, target: &str, kubernetes: Option<&str>) -> Result<(), String> {
    let (Some(h), Some(t)) = (semver(host), semver(target)) else {
        return Err(format!("upgrades to version {target} are not supported"));
    };
    let plain = |v: (u64, u64, u64)| format!("{}.{}.{}", v.0, v.1, v.2);
    let minor = t.1;
    // Minimum host (inclusive) and first refused host (exclusive) per target minor.
    let from = if minor <= 10 { 8 } else { minor - 2 };
    let below = minor + 2;
    if h.0 != 1 || t.0 != 1 || h.1 < from {
        return Err(format!(
            "host version {} is too old to upgrade to Talos {}",
            plain(h),
            plain(t)
        ));
    }
    if h.1 >= below {
        return Err(format!(
            "host version {} is too new to downgrade to Talos {}",
            plain(h),
            plain(t)
        ));
    }
    // v1.9 and v1.10 installers check Kubernetes too (v1.11 moved it to RuntimeValidate).
    let window = match minor {
        9 => Some((27, 32)),
        10 => Some((28, 33)),
        _ => None,
    };
    if let (Some((lo, hi)), Some(k)) = (window, kubernetes.and_then(semver)) {
        let k_plain = plain(k);
        if k.1 < lo {
            return Err(format!(
                "version of Kubernetes {k_plain} is too old to be used with Talos {}",
                plain(t)
            ));
        }
        if k.1 > hi {
            return Err(format!(
                "version of Kubernetes {k_plain} is too new to be used with Talos {}",
                plain(t)
            ));
        }
    }
    Ok(())
}

/// How a cordon request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cordon {
    /// The node was schedulable: now `unschedulable` with `talos.dev/cordoned=true`.
    Cordoned,
    /// The node was already unschedulable (cordoned by someone else): left as it is.
    AlreadyUnschedulable,
    /// No Node object (no kubelet registration): nothing to cordon or drain.
    NoNode,
}

/// How one eviction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eviction {
    /// The pod was evicted (or was already gone).
    Evicted,
    /// 429: a PodDisruptionBudget does not allow it now (the message names the budget).
    Blocked(String),
    /// Another error (logged and swallowed, as Talos does).
    Failed(String),
}

/// The Kubernetes side of an upgrade: what Talos does with the kubelet's credentials.
/// `cluster` is `cluster.clusterName`, `node` the node's hostname (its Node name).
pub trait ClusterHooks: Send + Sync {
    /// Cordons `node` (only a schedulable node gets the `talos.dev/cordoned` annotation).
    fn cordon(&self, cluster: &str, node: &str) -> Result<Cordon, String>;
    /// The pods a drain evicts: bound to `node`, not mirror, DaemonSet or controller-less pods,
    /// as `(namespace, name)`. `Err`: the pods cannot be listed (the upgrade fails).
    fn drainable_pods(&self, cluster: &str, node: &str) -> Result<Vec<(String, String)>, String>;
    /// Evicts one pod through the Eviction API.
    fn evict(&self, cluster: &str, namespace: &str, pod: &str) -> Eviction;
    /// Uncordons `node` if it carries `talos.dev/cordoned` (removing the annotation).
    fn uncordon(&self, cluster: &str, node: &str);
}

/// An upgrade failure injected on demand (see [`crate::TalosFleet::add_upgrade_fault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpgradeFaultKind {
    /// The node never comes back after the upgrade reboot (a kexec hang): its API stays
    /// unreachable until the server is power cycled (then it boots the new version).
    NeverReturns,
    /// The new version fails to boot: two reboots, then the old version (new boot ID, old tag).
    BootRollback,
    /// The installer's pre-flight refuses the host version: after the drain, a FATAL sequence
    /// error, 10 s, reboot into the old version.
    InstallerRefuses,
    /// Another upgrade holds the sequence lock: the RPC is acked with a new actor ID, then a
    /// `LOCKED` sequence event with an empty actor ID; nothing else happens.
    Locked,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installer_refs() {
        let id = "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515";
        let i =
            parse_installer(&format!("factory.talos.dev/hcloud-installer/{id}:v1.11.6")).unwrap();
        assert_eq!(
            (
                i.platform.as_str(),
                i.schematic.as_str(),
                i.version.as_str()
            ),
            ("hcloud", id, "v1.11.6")
        );
        let i = parse_installer(&format!("factory.talos.dev/installer/{id}:v1.9.6")).unwrap();
        assert_eq!(i.platform, "metal");
        let i = parse_installer("ghcr.io/siderolabs/installer:v1.11.6").unwrap();
        assert_eq!(
            (i.platform.as_str(), i.schematic.as_str()),
            ("metal", VANILLA_SCHEMATIC)
        );
        assert!(parse_installer("ghcr.io/siderolabs/installer").is_err());
        assert!(parse_installer("factory.talos.dev/hcloud-installer/no_such:v1.11.6").is_err());
    }

    #[test]
    fn preflight_matrix() {
        assert!(preflight("v1.10.9", "v1.11.6", None).is_ok());
        assert!(preflight("v1.9.5", "v1.11.6", None).is_ok());
        assert_eq!(
            preflight("v1.9.6", "v1.12.0", None).unwrap_err(),
            "host version 1.9.6 is too old to upgrade to Talos 1.12.0"
        );
        assert_eq!(
            preflight("v1.12.0", "v1.10.9", None).unwrap_err(),
            "host version 1.12.0 is too new to downgrade to Talos 1.10.9"
        );
        assert!(preflight("v1.11.6", "v1.10.9", Some("v1.33.6")).is_ok());
        assert_eq!(
            preflight("v1.11.6", "v1.10.9", Some("v1.34.1")).unwrap_err(),
            "version of Kubernetes 1.34.1 is too new to be used with Talos 1.10.9"
        );
    }
}
