//! What a Talos upgrade needs from the rest of the twin: the installer images the image
//! factory serves ([`FactoryInstallers`]) and cordon, drain and uncordon through the cluster's
//! Kubernetes API ([`KubeUpgradeHooks`]).
//!
//! Installer references (what `MachineService/Upgrade` pulls):
//! - `factory.talos.dev/<platform>-installer/<schematic>:<version>` (also with the twin's own
//!   factory address as host): only for Talos ≥ 1.10 (the factory's unified installers), with
//!   a schematic and version the factory knows;
//! - `factory.talos.dev/installer/<schematic>:<version>`: the legacy (metal) form, any version;
//! - `ghcr.io/siderolabs/installer:<version>`: vanilla, metal.
//!
//! Anything else is `not found`, as containerd reports it.

use hk8s_twin_factory::Factory;
use hk8s_twin_talos::hooks::{parse_installer, semver};
use hk8s_twin_talos::{ClusterHooks, Cordon, Eviction, Installer, InstallerRegistry};

use crate::kube_nodes::KubeTwin;

/// The image factory's installers.
pub struct FactoryInstallers {
    factory: Factory,
    /// `127.0.0.1:PORT` of the twin's listener (the factory's own address).
    local_host: String,
}

impl std::fmt::Debug for FactoryInstallers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FactoryInstallers")
            .field("local_host", &self.local_host)
            .finish_non_exhaustive()
    }
}

impl FactoryInstallers {
    /// Installers of `factory`, also reachable as `<local_host>/…`.
    pub fn new(factory: Factory, local_host: impl Into<String>) -> Self {
        FactoryInstallers {
            factory,
            local_host: local_host.into(),
        }
    }
}

impl InstallerRegistry for FactoryInstallers {
    fn resolve(&self, image: &str) -> Result<Installer, String> {
        let not_found = || format!("{image}: not found");
        let installer = parse_installer(image)?;
        let host = image.split('/').next().unwrap_or_default();
        if !self.factory.knows_version(&installer.version) {
            return Err(not_found());
        }
        if host == "ghcr.io" {
            return if image.starts_with("ghcr.io/siderolabs/installer:") {
                Ok(installer)
            } else {
                Err(not_found())
            };
        }
        if host != "factory.talos.dev" && host != self.local_host {
            return Err(not_found());
        }
        if !self.factory.knows_schematic(&installer.schematic) {
            return Err(not_found());
        }
        let unified = image
            .split('/')
            .nth(1)
            .is_none_or(|repo| repo.trim_end_matches("-secureboot") != "installer");
        let minor = semver(&installer.version).map(|v| v.1).unwrap_or_default();
        if unified && minor < 10 {
            // The factory serves `<platform>-installer` only from Talos 1.10 on.
            return Err(not_found());
        }
        Ok(installer)
    }
}

/// Cordon, drain and uncordon in the Kubernetes twin.
#[derive(Debug, Clone)]
pub struct KubeUpgradeHooks {
    kube: KubeTwin,
}

impl KubeUpgradeHooks {
    /// Hooks acting on `kube`'s clusters (by `cluster.clusterName`).
    pub fn new(kube: KubeTwin) -> Self {
        KubeUpgradeHooks { kube }
    }
}

impl ClusterHooks for KubeUpgradeHooks {
    fn cordon(&self, cluster: &str, node: &str) -> Result<Cordon, String> {
        let Some(c) = self.kube.cluster(cluster) else {
            return Ok(Cordon::NoNode);
        };
        Ok(match c.cordon_node(node) {
            Some(true) => Cordon::Cordoned,
            Some(false) => Cordon::AlreadyUnschedulable,
            None => Cordon::NoNode,
        })
    }

    fn drainable_pods(&self, cluster: &str, node: &str) -> Result<Vec<(String, String)>, String> {
        match self.kube.cluster(cluster) {
            Some(c) => Ok(c.drainable_pods(node)),
            None => Err(format!(
                "failed to list pods: Get \"https://localhost:6443/api/v1/pods?fieldSelector=spec.nodeName%3D{node}\": dial tcp: connection refused"
            )),
        }
    }

    fn evict(&self, cluster: &str, namespace: &str, pod: &str) -> Eviction {
        let Some(c) = self.kube.cluster(cluster) else {
            return Eviction::Failed("the Kubernetes API is not running".into());
        };
        match c.evict_pod(namespace, pod) {
            Ok(()) => Eviction::Evicted,
            Err(hk8s_twin_kube::EvictError::Blocked(m)) => Eviction::Blocked(m),
            Err(hk8s_twin_kube::EvictError::Other(code, m)) => {
                Eviction::Failed(format!("{code}: {m}"))
            }
        }
    }

    fn uncordon(&self, cluster: &str, node: &str) {
        if let Some(c) = self.kube.cluster(cluster) {
            c.uncordon_node(node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factory_installers() {
        let f = FactoryInstallers::new(
            Factory::new(hk8s_twin_factory::default_versions()),
            "127.0.0.1:8765",
        );
        let id = hk8s_twin_talos::hooks::VANILLA_SCHEMATIC;
        let ok = f
            .resolve(&format!("factory.talos.dev/hcloud-installer/{id}:v1.11.6"))
            .unwrap();
        assert_eq!(
            (ok.platform.as_str(), ok.version.as_str()),
            ("hcloud", "v1.11.6")
        );
        assert!(
            f.resolve(&format!("127.0.0.1:8765/hcloud-installer/{id}:v1.10.9"))
                .is_ok()
        );
        assert!(
            f.resolve(&format!("factory.talos.dev/installer/{id}:v1.9.6"))
                .is_ok()
        );
        let ghcr = f.resolve("ghcr.io/siderolabs/installer:v1.11.6").unwrap();
        assert_eq!(ghcr.platform, "metal");
        for bad in [
            format!("factory.talos.dev/metal-installer/{id}:v1.9.6"),
            format!("factory.talos.dev/hcloud-installer/{id}:v1.11.99"),
            format!(
                "factory.talos.dev/hcloud-installer/{}:v1.11.6",
                "a".repeat(64)
            ),
            format!("example.com/hcloud-installer/{id}:v1.11.6"),
        ] {
            assert_eq!(f.resolve(&bad).unwrap_err(), format!("{bad}: not found"));
        }
    }
}
