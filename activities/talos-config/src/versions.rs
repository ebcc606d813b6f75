//! What each Talos minor release accepts: the host versions its installer upgrades from, the
//! Kubernetes versions it runs, and the etcd it ships.
//!
//! Facts from Talos's `pkg/machinery/compatibility` and `constants` packages and its support
//! matrix (see `../shared/reference/upgrades.md` §3). Pure data, no I/O.

use semver::Version;

/// One Talos minor release line, as its installer and its support matrix describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TalosMinor {
    /// The minor number (`11` for v1.11.x).
    pub minor: u64,
    /// The newest patch release of the line hk8s knows: the version a plan steps through.
    pub latest: Version,
    /// Oldest host version the installer upgrades from (inclusive).
    pub upgrades_from: Version,
    /// Host versions from this one on are refused as downgrades (exclusive bound).
    pub upgrades_below: Version,
    /// Oldest Kubernetes minor the release runs (`1.<n>`).
    pub kubernetes_min_minor: u64,
    /// Newest Kubernetes minor the release runs (`1.<n>`, every patch of it).
    pub kubernetes_max_minor: u64,
    /// The Kubernetes version the latest patch release installs by default.
    pub default_kubernetes: Version,
}

impl TalosMinor {
    /// Whether this release runs Kubernetes `version` (Talos's `SupportedWith`).
    pub fn runs_kubernetes(&self, version: &Version) -> bool {
        version.major == 1
            && (self.kubernetes_min_minor..=self.kubernetes_max_minor).contains(&version.minor)
    }

    /// Whether this release's installer accepts a host running `host` (`UpgradeableFrom`).
    pub fn upgrades_host(&self, host: &Version) -> bool {
        *host >= self.upgrades_from && *host < self.upgrades_below
    }
}

fn v(major: u64, minor: u64, patch: u64) -> Version {
    Version::new(major, minor, patch)
}

/// Every Talos minor line hk8s knows, oldest first.
pub fn talos_minors() -> Vec<TalosMinor> {
    vec![
        TalosMinor {
            minor: 9,
            latest: v(1, 9, 6),
            upgrades_from: v(1, 8, 0),
            upgrades_below: v(1, 11, 0),
            kubernetes_min_minor: 27,
            kubernetes_max_minor: 32,
            default_kubernetes: v(1, 32, 4),
        },
        TalosMinor {
            minor: 10,
            latest: v(1, 10, 9),
            upgrades_from: v(1, 8, 0),
            upgrades_below: v(1, 12, 0),
            kubernetes_min_minor: 28,
            kubernetes_max_minor: 33,
            default_kubernetes: v(1, 33, 6),
        },
        TalosMinor {
            minor: 11,
            latest: v(1, 11, 6),
            upgrades_from: v(1, 9, 0),
            upgrades_below: v(1, 13, 0),
            kubernetes_min_minor: 29,
            kubernetes_max_minor: 34,
            default_kubernetes: v(1, 34, 1),
        },
        TalosMinor {
            minor: 12,
            latest: v(1, 12, 11),
            upgrades_from: v(1, 10, 0),
            upgrades_below: v(1, 14, 0),
            kubernetes_min_minor: 30,
            kubernetes_max_minor: 35,
            default_kubernetes: v(1, 35, 4),
        },
    ]
}

/// The release line of a Talos version, if hk8s knows it.
pub fn talos_minor(version: &Version) -> Option<TalosMinor> {
    (version.major == 1)
        .then(|| {
            talos_minors()
                .into_iter()
                .find(|m| m.minor == version.minor)
        })
        .flatten()
}

/// The etcd version a Talos release runs by default (`DefaultEtcdVersion`), where known.
///
/// Known exactly for v1.9 and v1.10; for v1.11 and later only the etcd 3.6 line matters to
/// planning, so the line's first version is returned.
pub fn etcd_version(talos: &Version) -> Option<Version> {
    let (minor, patch) = (talos.minor, talos.patch);
    if talos.major != 1 {
        return None;
    }
    Some(match (minor, patch) {
        (9, 0..=2) => v(3, 5, 17),
        (9, 3..=4) => v(3, 5, 18),
        (9, 5) => v(3, 5, 19),
        (9, _) => v(3, 5, 21),
        (10, 0..=8) => v(3, 5, 21),
        (10, _) => v(3, 5, 26),
        (11, 0..=5) => v(3, 6, 4),
        (11, _) => v(3, 6, 5),
        (12, 0..=10) => v(3, 6, 7),
        (12, _) => v(3, 6, 11),
        _ => return None,
    })
}

/// The oldest etcd 3.5 every member must run before any member moves to 3.6 (etcd's upgrade
/// guide for 3.6; older guides said 3.5.20).
pub fn etcd_3_6_minimum_3_5() -> Version {
    v(3, 5, 26)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ver(s: &str) -> Version {
        Version::parse(s).expect("test version")
    }

    #[test]
    fn installers_accept_the_documented_host_ranges() {
        let v1_11 = talos_minor(&ver("1.11.6")).expect("known");
        assert!(v1_11.upgrades_host(&ver("1.9.0")));
        assert!(
            v1_11.upgrades_host(&ver("1.12.3")),
            "a one-minor downgrade is accepted"
        );
        assert!(!v1_11.upgrades_host(&ver("1.8.9")));
        let v1_12 = talos_minor(&ver("1.12.0")).expect("known");
        assert!(
            !v1_12.upgrades_host(&ver("1.9.6")),
            "v1.9 → v1.12 is refused"
        );
        assert!(v1_12.upgrades_host(&ver("1.10.0")));
    }

    #[test]
    fn kubernetes_windows_follow_the_support_matrix() {
        let windows: Vec<_> = talos_minors()
            .iter()
            .map(|m| (m.minor, m.kubernetes_min_minor, m.kubernetes_max_minor))
            .collect();
        assert_eq!(
            windows,
            [(9, 27, 32), (10, 28, 33), (11, 29, 34), (12, 30, 35)]
        );
        let v1_10 = talos_minor(&ver("1.10.2")).expect("known");
        assert!(v1_10.runs_kubernetes(&ver("1.33.99")));
        assert!(!v1_10.runs_kubernetes(&ver("1.34.0")));
        for minor in talos_minors() {
            assert!(
                minor.runs_kubernetes(&minor.default_kubernetes),
                "{}",
                minor.minor
            );
            assert!(minor.upgrades_host(&minor.latest), "{}", minor.minor);
        }
    }

    #[test]
    fn etcd_moves_to_3_6_with_talos_1_11() {
        assert_eq!(etcd_version(&ver("1.9.5")), Some(ver("3.5.19")));
        assert_eq!(etcd_version(&ver("1.10.8")), Some(ver("3.5.21")));
        assert_eq!(etcd_version(&ver("1.10.9")), Some(ver("3.5.26")));
        assert_eq!(etcd_version(&ver("1.11.0")).map(|v| v.minor), Some(6));
        assert_eq!(etcd_version(&ver("2.0.0")), None);
        assert!(etcd_version(&ver("1.10.9")) >= Some(etcd_3_6_minimum_3_5()));
    }

    #[test]
    fn unknown_lines_are_not_guessed() {
        assert!(talos_minor(&ver("1.13.0")).is_none());
        assert!(talos_minor(&ver("2.11.0")).is_none());
    }
}
