//! Preflight: what a spec asks of Hetzner, checked against the live catalog before anything is
//! created (the CLI reads the catalog with [`hk8s_hetzner::Hetzner::read_catalog`] before it
//! journals a run, and again before every resume).
//!
//! Pure functions over catalog data: every server type of the spec (node pools and image
//! builder) exists, is not past its `deprecation.unavailable_after`, is offered and `available`
//! in its location, and matches its pool's architecture (`arm` ↔ `cax…`); the load balancer
//! type likewise; every location exists and lies in `hetzner.networkZone`. Every problem is
//! returned at once, each naming its spec field.

use chrono::{DateTime, Utc};
use hk8s_hetzner::{Catalog, Deprecation, ServerTypeInfo};

use crate::create_cluster::API_LOAD_BALANCER_TYPE;
use crate::spec::{Arch, ClusterSpec, SpecIssue};

/// What a preflight found: `errors` stop the run, `warnings` are printed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings {
    /// Problems that make the spec impossible to create today.
    pub errors: Vec<SpecIssue>,
    /// Things that work today but soon will not (a type deprecated with a future date).
    pub warnings: Vec<SpecIssue>,
}

impl Findings {
    fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(SpecIssue {
            field: field.into(),
            message: message.into(),
        });
    }

    fn warning(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(SpecIssue {
            field: field.into(),
            message: message.into(),
        });
    }
}

/// Which parts of the spec a workflow will order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Orders {
    /// create-cluster: every node pool, the API load balancer and the image builder's types
    /// for the spec's architectures.
    Cluster,
    /// build-image: the image builder's types for these architectures.
    Images(Vec<Arch>),
}

/// Checks `spec` against `catalog` at `now` for what `orders` will create.
pub fn check(
    spec: &ClusterSpec,
    catalog: &Catalog,
    now: DateTime<Utc>,
    orders: &Orders,
) -> Findings {
    let mut f = Findings::default();
    let zone = spec.hetzner.network_zone.as_str();
    let region_ok = check_location(
        &mut f,
        catalog,
        "hetzner.region",
        &spec.hetzner.region,
        zone,
    );
    let arches = match orders {
        Orders::Cluster => {
            let nodes = &spec.nodes;
            let mut pools = vec![
                (
                    "nodes.controlPlane".to_string(),
                    nodes.control_plane.count,
                    &nodes.control_plane.server_type,
                    nodes.control_plane.arch,
                    None,
                ),
                (
                    "nodes.workers".to_string(),
                    nodes.workers.count,
                    &nodes.workers.server_type,
                    nodes.workers.arch,
                    None,
                ),
            ];
            for (i, p) in spec.worker_pools.iter().enumerate() {
                pools.push((
                    format!("workerPools[{i}]"),
                    p.count,
                    &p.server_type,
                    p.arch,
                    p.location.as_deref(),
                ));
            }
            for (base, count, server_type, arch, location) in pools {
                if count == 0 {
                    continue;
                }
                let location_ok = match location {
                    Some(l) => {
                        check_location(&mut f, catalog, &format!("{base}.location"), l, zone)
                    }
                    None => region_ok,
                };
                let location = location.unwrap_or(&spec.hetzner.region);
                check_server_type(
                    &mut f,
                    catalog,
                    now,
                    &format!("{base}.type"),
                    server_type,
                    arch,
                    location_ok.then_some(location),
                );
            }
            if region_ok {
                check_load_balancer_type(&mut f, catalog, now, &spec.hetzner.region);
            }
            spec.arches().into_iter().collect()
        }
        Orders::Images(arches) => arches.clone(),
    };
    check_image_builder(&mut f, catalog, now, spec, &arches);
    f
}

/// A location exists and lies in `zone`; returns whether it does.
fn check_location(
    f: &mut Findings,
    catalog: &Catalog,
    field: &str,
    location: &str,
    zone: &str,
) -> bool {
    match catalog.locations.iter().find(|l| l.name == location) {
        None => {
            let known: Vec<&str> = catalog.locations.iter().map(|l| l.name.as_str()).collect();
            f.error(
                field,
                format!(
                    "location {location:?} does not exist (Hetzner has: {})",
                    known.join(", ")
                ),
            );
            false
        }
        Some(l) if !l.network_zone.is_empty() && l.network_zone != zone => {
            f.error(
                field,
                format!(
                    "location {location} is in network zone {}, not hetzner.networkZone {zone}",
                    l.network_zone
                ),
            );
            false
        }
        Some(_) => true,
    }
}

/// Whether `d` says "no longer orderable" at `now`.
fn past(d: Option<&Deprecation>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    d.and_then(|d| d.unavailable_after).filter(|t| *t <= now)
}

fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// Whether type `t` can be ordered in `location` at `now`.
fn orderable(t: &ServerTypeInfo, location: &str, now: DateTime<Utc>) -> bool {
    past(t.deprecation.as_ref(), now).is_none()
        && t.location(location).is_some_and(|l| {
            l.available != Some(false) && past(l.deprecation.as_ref(), now).is_none()
        })
}

/// `use cx23 (or cpx22)`: the smallest orderable, non-deprecated types of the same architecture
/// and CPU type with at least `t`'s cores and memory, the same category first.
fn successors(
    catalog: &Catalog,
    t: &ServerTypeInfo,
    location: &str,
    now: DateTime<Utc>,
) -> Option<String> {
    let mut candidates: Vec<&ServerTypeInfo> = catalog
        .server_types
        .iter()
        .filter(|c| {
            c.name != t.name
                && c.deprecation.is_none()
                && c.architecture == t.architecture
                && c.cpu_type == t.cpu_type
                && c.cores >= t.cores
                && c.memory >= t.memory
                && orderable(c, location, now)
        })
        .collect();
    candidates.sort_by(|a, b| {
        (a.category != t.category, a.cores, a.memory, &a.name)
            .partial_cmp(&(b.category != t.category, b.cores, b.memory, &b.name))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let first = candidates.first()?;
    let other = candidates.iter().find(|c| c.category != first.category);
    Some(match other {
        Some(o) => format!("use {} (or {})", first.name, o.name),
        None => format!("use {}", first.name),
    })
}

/// Up to eight orderable types of `arch` in `location`, for "not orderable" messages.
fn orderable_names(catalog: &Catalog, arch: &str, location: &str, now: DateTime<Utc>) -> String {
    let names: Vec<&str> = catalog
        .server_types
        .iter()
        .filter(|t| {
            t.architecture == arch && t.deprecation.is_none() && orderable(t, location, now)
        })
        .map(|t| t.name.as_str())
        .take(8)
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// One server type of a node pool, ordered in `location` (`None`: the location is already
/// reported wrong, so only existence, deprecation and architecture are checked).
fn check_server_type(
    f: &mut Findings,
    catalog: &Catalog,
    now: DateTime<Utc>,
    field: &str,
    name: &str,
    arch: Arch,
    location: Option<&str>,
) {
    let Some(t) = catalog.server_types.iter().find(|t| t.name == name) else {
        let hint = location
            .map(|l| {
                format!(
                    " (orderable {arch} types in {l}: {})",
                    orderable_names(catalog, arch.hetzner_name(), l, now)
                )
            })
            .unwrap_or_default();
        f.error(field, format!("server type {name:?} does not exist{hint}"));
        return;
    };
    if !t.architecture.is_empty() && t.architecture != arch.hetzner_name() {
        let want = match arch {
            Arch::Arm => "arm types are cax…",
            Arch::X86 => "x86 types are cx…, cpx…, ccx…",
        };
        f.error(
            field,
            format!(
                "server type {name:?} is {}, but the pool's arch is {arch} ({want})",
                t.architecture
            ),
        );
        return;
    }
    let suggest = |l: &str| {
        successors(catalog, t, l, now)
            .map(|s| format!("; {s}"))
            .unwrap_or_default()
    };
    let here = location.unwrap_or("");
    if let Some(after) = past(t.deprecation.as_ref(), now) {
        f.error(
            field,
            format!(
                "server type {name:?} is deprecated and was not orderable after {}{}",
                day(after),
                suggest(here)
            ),
        );
        return;
    }
    let Some(location) = location else { return };
    match t.location(location) {
        None => f.error(
            field,
            format!(
                "server type {name:?} is not offered in {location} (orderable {arch} types there: {})",
                orderable_names(catalog, &t.architecture, location, now)
            ),
        ),
        Some(l) => {
            if let Some(after) = past(l.deprecation.as_ref(), now) {
                f.error(
                    field,
                    format!("server type {name:?} is deprecated in {location} and was not orderable there after {}{}", day(after), suggest(location)),
                );
            } else if l.available == Some(false) {
                f.error(
                    field,
                    format!("server type {name:?} is not available for order in {location} right now{}", suggest(location)),
                );
            } else if let Some(after) = t
                .deprecation
                .as_ref()
                .or(l.deprecation.as_ref())
                .and_then(|d| d.unavailable_after)
            {
                f.warning(
                    field,
                    format!("server type {name:?} is deprecated and will not be orderable after {}{}", day(after), suggest(location)),
                );
            }
        }
    }
}

/// The API load balancer's type (built into hk8s) in `location`.
fn check_load_balancer_type(
    f: &mut Findings,
    catalog: &Catalog,
    now: DateTime<Utc>,
    location: &str,
) {
    let name = API_LOAD_BALANCER_TYPE;
    let field = format!("hetzner.region (the API load balancer, type {name})");
    match catalog.load_balancer_types.iter().find(|t| t.name == name) {
        None => f.error(field, format!("load balancer type {name:?} does not exist")),
        Some(t) => {
            if let Some(after) = past(t.deprecation.as_ref(), now) {
                f.error(
                    field,
                    format!(
                        "load balancer type {name:?} is deprecated and was not orderable after {}",
                        day(after)
                    ),
                );
            } else if !t.prices.is_empty() && !t.prices.iter().any(|p| p.location == location) {
                f.error(
                    field,
                    format!("load balancer type {name:?} is not offered in {location}"),
                );
            }
        }
    }
}

/// The image builder's types for `arches`: each exists, matches its architecture and is not
/// past its deprecation; together they must be orderable in at least one builder location
/// (the builder falls back type by type, location by location).
fn check_image_builder(
    f: &mut Findings,
    catalog: &Catalog,
    now: DateTime<Utc>,
    spec: &ClusterSpec,
    arches: &[Arch],
) {
    let builder = &spec.image_builder;
    let zone = spec.hetzner.network_zone.as_str();
    let locations: Vec<String> = if builder.locations.is_empty() {
        builder.locations(&spec.hetzner.region, zone)
    } else {
        let mut ok = Vec::new();
        for (i, l) in builder.locations.iter().enumerate() {
            if check_location(f, catalog, &format!("imageBuilder.locations[{i}]"), l, zone) {
                ok.push(l.clone());
            }
        }
        ok
    };
    for arch in arches {
        let key = arch.hetzner_name();
        let mut any = false;
        for (j, name) in builder.server_types(*arch).iter().enumerate() {
            let field = format!("imageBuilder.{key}[{j}]");
            let Some(t) = catalog.server_types.iter().find(|t| t.name == *name) else {
                f.error(field, format!("server type {name:?} does not exist"));
                continue;
            };
            if !t.architecture.is_empty() && t.architecture != key {
                f.error(
                    field,
                    format!("server type {name:?} is {}, not {key}", t.architecture),
                );
                continue;
            }
            if let Some(after) = past(t.deprecation.as_ref(), now) {
                let hint = locations
                    .first()
                    .and_then(|l| successors(catalog, t, l, now))
                    .map(|s| format!("; {s}"))
                    .unwrap_or_default();
                f.error(
                    field,
                    format!(
                        "server type {name:?} is deprecated and was not orderable after {}{hint}",
                        day(after)
                    ),
                );
                continue;
            }
            any |= locations.iter().any(|l| orderable(t, l, now));
        }
        if !any && !builder.server_types(*arch).is_empty() && !locations.is_empty() {
            f.error(
                format!("imageBuilder.{key}"),
                format!(
                    "none of these types can be ordered in {} right now",
                    locations.join(", ")
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::EXAMPLE_YAML;
    use hk8s_hetzner::{LoadBalancerTypeInfo, LocationInfo, PriceLocation, TypeLocation};

    fn now() -> DateTime<Utc> {
        "2026-12-02T10:00:00Z".parse().unwrap()
    }

    fn dep(after: &str) -> Option<Deprecation> {
        Some(Deprecation {
            announced: None,
            unavailable_after: Some(after.parse().unwrap()),
        })
    }

    fn st(
        name: &str,
        arch: &str,
        cores: f64,
        mem: f64,
        category: &str,
        locs: &[(&str, bool)],
        deprecation: Option<Deprecation>,
    ) -> ServerTypeInfo {
        ServerTypeInfo {
            name: name.into(),
            architecture: arch.into(),
            cores,
            memory: mem,
            cpu_type: "shared".into(),
            category: Some(category.into()),
            deprecation: deprecation.clone(),
            locations: locs
                .iter()
                .map(|(l, available)| TypeLocation {
                    name: (*l).into(),
                    available: Some(*available),
                    recommended: Some(*available),
                    deprecation: deprecation.clone(),
                })
                .collect(),
            prices: Vec::new(),
        }
    }

    /// A 2026-style catalog: cx22/cx32 deprecated since 2025-12-31, their successors orderable.
    fn catalog() -> Catalog {
        let eu = [("fsn1", true), ("nbg1", true), ("hel1", true)];
        let gone = dep("2025-12-31T23:59:59Z");
        Catalog {
            locations: [
                ("fsn1", "eu-central"),
                ("nbg1", "eu-central"),
                ("hel1", "eu-central"),
                ("ash", "us-east"),
            ]
            .iter()
            .map(|(n, z)| LocationInfo {
                name: (*n).into(),
                network_zone: (*z).into(),
            })
            .collect(),
            server_types: vec![
                st(
                    "cx22",
                    "x86",
                    2.0,
                    4.0,
                    "cost_optimized",
                    &[("fsn1", false), ("nbg1", false)],
                    gone.clone(),
                ),
                st(
                    "cx32",
                    "x86",
                    4.0,
                    8.0,
                    "cost_optimized",
                    &[("fsn1", false)],
                    gone,
                ),
                st("cx23", "x86", 2.0, 4.0, "cost_optimized", &eu, None),
                st("cx33", "x86", 4.0, 8.0, "cost_optimized", &eu, None),
                st(
                    "cpx22",
                    "x86",
                    2.0,
                    4.0,
                    "regular_purpose",
                    &[("fsn1", true), ("nbg1", true), ("ash", true)],
                    None,
                ),
                st(
                    "cax11",
                    "arm",
                    2.0,
                    4.0,
                    "cost_optimized",
                    &[("fsn1", true), ("nbg1", false)],
                    None,
                ),
                st("cax21", "arm", 4.0, 8.0, "cost_optimized", &eu, None),
            ],
            load_balancer_types: vec![LoadBalancerTypeInfo {
                name: "lb11".into(),
                deprecation: None,
                prices: ["fsn1", "nbg1", "hel1", "ash"]
                    .iter()
                    .map(|l| PriceLocation {
                        location: (*l).into(),
                    })
                    .collect(),
            }],
        }
    }

    fn spec(yaml_edit: impl Fn(String) -> String) -> ClusterSpec {
        let yaml = EXAMPLE_YAML
            .replace("type: cx22", "type: cx23")
            .replace("type: cx32", "type: cx33")
            .replace("x86: [cx22]", "x86: [cx23]");
        ClusterSpec::from_yaml(&yaml_edit(yaml), "t").unwrap()
    }

    fn fields(f: &Findings) -> Vec<&str> {
        f.errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn an_orderable_spec_passes() {
        let f = check(&spec(|y| y), &catalog(), now(), &Orders::Cluster);
        assert_eq!(f, Findings::default());
    }

    #[test]
    fn a_deprecated_type_names_its_field_and_successors() {
        let f = check(
            &spec(|y| y.replacen("type: cx23", "type: cx22", 1)),
            &catalog(),
            now(),
            &Orders::Cluster,
        );
        assert_eq!(fields(&f), ["nodes.controlPlane.type"]);
        assert_eq!(
            f.errors[0].to_string(),
            "nodes.controlPlane.type: server type \"cx22\" is deprecated and was not orderable after 2025-12-31; use cx23 (or cpx22)"
        );
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let f = check(
            &spec(|y| {
                y.replacen("type: cx23", "type: cx22", 1)
                    .replace("type: cx33\n    arch: x86", "type: cax11\n    arch: x86")
                    .replace("x86: [cx23]", "x86: [cx99]")
                    + "workerPools:\n  - { name: arm, count: 1, type: cax11, arch: arm, location: nbg1 }\n"
            }),
            &catalog(),
            now(),
            &Orders::Cluster,
        );
        assert_eq!(
            fields(&f),
            [
                "nodes.controlPlane.type",
                "nodes.workers.type",
                "workerPools[0].type",
                "imageBuilder.x86[0]",
                "imageBuilder.x86"
            ],
            "{:#?}",
            f.errors
        );
        assert!(
            f.errors[1]
                .message
                .contains("is arm, but the pool's arch is x86"),
            "{}",
            f.errors[1]
        );
        assert!(
            f.errors[2]
                .message
                .contains("not available for order in nbg1"),
            "{}",
            f.errors[2]
        );
    }

    #[test]
    fn locations_must_exist_and_lie_in_the_zone() {
        let mut c = catalog();
        c.locations.retain(|l| l.name != "hel1");
        let f = check(
            &spec(|y| {
                y + "workerPools:\n  - { name: far, count: 1, type: cx23, arch: x86, location: hel1 }\n"
            }),
            &c,
            now(),
            &Orders::Cluster,
        );
        assert_eq!(fields(&f), ["workerPools[0].location"], "{:#?}", f.errors);
        // A catalog whose location moved zones is believed over the built-in table.
        let mut c = catalog();
        c.locations[0].network_zone = "us-east".into();
        let f = check(&spec(|y| y), &c, now(), &Orders::Cluster);
        assert_eq!(fields(&f)[0], "hetzner.region");
    }

    #[test]
    fn a_type_deprecated_later_is_a_warning_and_old_catalogs_work() {
        let mut c = catalog();
        c.server_types[2].deprecation = dep("2027-06-30T00:00:00Z");
        let f = check(&spec(|y| y), &c, now(), &Orders::Cluster);
        assert!(f.errors.is_empty(), "{:#?}", f.errors);
        assert!(
            f.warnings[0]
                .message
                .contains("will not be orderable after 2027-06-30")
        );
        // Catalogs before 2026-04 have no `available`: a listed location is orderable.
        let mut c = catalog();
        for t in &mut c.server_types {
            for l in &mut t.locations {
                l.available = None;
            }
        }
        let f = check(&spec(|y| y), &c, now(), &Orders::Cluster);
        assert!(f.errors.is_empty(), "{:#?}", f.errors);
    }

    #[test]
    fn build_image_checks_only_the_builder_types_of_its_arches() {
        let s = spec(|y| {
            y.replacen("type: cx23", "type: cx22", 1)
                .replace("arm: [cax11]", "arm: [cx23]")
        });
        let f = check(&s, &catalog(), now(), &Orders::Images(vec![Arch::X86]));
        assert!(f.errors.is_empty(), "{:#?}", f.errors);
        let f = check(&s, &catalog(), now(), &Orders::Images(vec![Arch::Arm]));
        assert_eq!(fields(&f), ["imageBuilder.arm[0]", "imageBuilder.arm"]);
    }

    #[test]
    fn a_deprecated_load_balancer_type_is_reported() {
        let mut c = catalog();
        c.load_balancer_types[0].deprecation = dep("2026-01-01T00:00:00Z");
        let f = check(&spec(|y| y), &c, now(), &Orders::Cluster);
        assert!(
            f.errors[0]
                .field
                .starts_with("hetzner.region (the API load balancer"),
            "{:#?}",
            f.errors
        );
    }
}
