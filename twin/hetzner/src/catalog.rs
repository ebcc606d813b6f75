//! The fixed catalogue: locations, server types, system images and load balancer types, with
//! realistic ids, sizes, prices, per-location availability and deprecations (the API as of
//! December 2026: `../shared/reference/hetzner-2026.md`).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// A location (`fsn1`, `ash`, ...).
#[derive(Debug, Clone, Copy)]
pub struct Location {
    /// Hetzner id.
    pub id: i64,
    /// Short name.
    pub name: &'static str,
    /// Description.
    pub description: &'static str,
    /// ISO country code.
    pub country: &'static str,
    /// City.
    pub city: &'static str,
    /// Latitude.
    pub latitude: f64,
    /// Longitude.
    pub longitude: f64,
    /// Network zone.
    pub network_zone: &'static str,
    /// Id of the location's datacenter.
    pub datacenter_id: i64,
    /// Name of the location's datacenter.
    pub datacenter: &'static str,
}

/// All locations.
pub const LOCATIONS: &[Location] = &[
    Location {
        id: 1,
        name: "fsn1",
        description: "Falkenstein DC Park 1",
        country: "DE",
        city: "Falkenstein",
        latitude: 50.47612,
        longitude: 12.370071,
        network_zone: "eu-central",
        datacenter_id: 4,
        datacenter: "fsn1-dc14",
    },
    Location {
        id: 2,
        name: "nbg1",
        description: "Nuremberg DC Park 1",
        country: "DE",
        city: "Nuremberg",
        latitude: 49.452102,
        longitude: 11.076665,
        network_zone: "eu-central",
        datacenter_id: 2,
        datacenter: "nbg1-dc3",
    },
    Location {
        id: 3,
        name: "hel1",
        description: "Helsinki DC Park 1",
        country: "FI",
        city: "Helsinki",
        latitude: 60.169855,
        longitude: 24.938379,
        network_zone: "eu-central",
        datacenter_id: 3,
        datacenter: "hel1-dc2",
    },
    Location {
        id: 4,
        name: "ash",
        description: "Ashburn, VA",
        country: "US",
        city: "Ashburn, VA",
        latitude: 39.045821,
        longitude: -77.487073,
        network_zone: "us-east",
        datacenter_id: 5,
        datacenter: "ash-dc1",
    },
    Location {
        id: 5,
        name: "hil",
        description: "Hillsboro, OR",
        country: "US",
        city: "Hillsboro, OR",
        latitude: 45.54222,
        longitude: -122.95194,
        network_zone: "us-west",
        datacenter_id: 6,
        datacenter: "hil-dc1",
    },
    Location {
        id: 6,
        name: "sin",
        description: "Singapore",
        country: "SG",
        city: "Singapore",
        latitude: 1.283333,
        longitude: 103.833333,
        network_zone: "ap-southeast",
        datacenter_id: 7,
        datacenter: "sin-dc1",
    },
];

const EU: &[&str] = &["fsn1", "nbg1", "hel1"];
const ALL: &[&str] = &["fsn1", "nbg1", "hel1", "ash", "hil", "sin"];

/// When Hetzner announced the deprecation of the `cx22`…`cx52` and `cpx11`…`cpx51` generations
/// (changelog 2025-10-16, `server-types-deprecated`).
pub const OLD_GENERATION_ANNOUNCED: &str = "2025-10-16T06:00:00+00:00";
/// After this instant they can no longer be ordered ("will no longer be available for order as
/// of 2025-12-31").
pub const OLD_GENERATION_UNAVAILABLE_AFTER: &str = "2025-12-31T00:00:00+00:00";

/// A deprecation as the API renders it (`announced`, `unavailable_after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deprecation {
    /// RFC 3339 instant of the announcement.
    pub announced: &'static str,
    /// RFC 3339 instant after which the type cannot be ordered.
    pub unavailable_after: &'static str,
}

/// The deprecation of the previous shared-vCPU generations.
pub const OLD_GENERATION: Deprecation = Deprecation {
    announced: OLD_GENERATION_ANNOUNCED,
    unavailable_after: OLD_GENERATION_UNAVAILABLE_AFTER,
};

impl Deprecation {
    /// The API representation.
    pub fn to_json(&self) -> Value {
        json!({"announced": self.announced, "unavailable_after": self.unavailable_after})
    }

    /// Whether `unavailable_after` has passed at `now`.
    pub fn is_unavailable_at(&self, now: DateTime<Utc>) -> bool {
        DateTime::parse_from_rfc3339(self.unavailable_after)
            .map(|t| now > t)
            .unwrap_or(true)
    }
}

/// A server type.
#[derive(Debug, Clone, Copy)]
pub struct ServerType {
    /// Hetzner id.
    pub id: i64,
    /// Name, e.g. `cx23`.
    pub name: &'static str,
    /// Description.
    pub description: &'static str,
    /// vCPUs.
    pub cores: i64,
    /// Memory in GB.
    pub memory: f64,
    /// Disk in GB.
    pub disk: i64,
    /// `shared` or `dedicated`.
    pub cpu_type: &'static str,
    /// `x86` or `arm`.
    pub architecture: &'static str,
    /// Category shown in the console.
    pub category: &'static str,
    /// Locations that list it (`ServerType.locations[]`).
    pub locations: &'static [&'static str],
    /// Locations where it is listed but has no capacity now (`available: false`).
    pub unavailable_in: &'static [&'static str],
    /// Deprecation (in all its locations), if any.
    pub deprecation: Option<Deprecation>,
    /// Net monthly price in EUR.
    pub monthly_net: f64,
}

/// All server types: what Hetzner sells since 2026 (`cx23`…`cx53`, `cpx12`…`cpx62`,
/// `cax11`…`cax41`, `ccx13`…`ccx63`) and the previous generations, still listed with their
/// deprecation. Arm (`cax`) and the cost-optimised `cx` types exist in eu-central only; a few
/// types are listed but out of capacity in one location, so capacity fallback can be tested.
pub const SERVER_TYPES: &[ServerType] = &[
    // Cost-optimised x86 (Intel/AMD), eu-central only.
    st(
        114,
        "cx23",
        2,
        4.0,
        40,
        "shared",
        "x86",
        "cost_optimized",
        EU,
        3.49,
    ),
    st(
        115,
        "cx33",
        4,
        8.0,
        80,
        "shared",
        "x86",
        "cost_optimized",
        EU,
        5.49,
    ),
    st(
        116,
        "cx43",
        8,
        16.0,
        160,
        "shared",
        "x86",
        "cost_optimized",
        EU,
        9.49,
    ),
    st(
        117,
        "cx53",
        16,
        32.0,
        320,
        "shared",
        "x86",
        "cost_optimized",
        EU,
        17.49,
    )
    .unavailable(&["nbg1"]),
    // Regular purpose AMD, every location.
    st(
        108,
        "cpx12",
        1,
        2.0,
        40,
        "shared",
        "x86",
        "regular_purpose",
        ALL,
        6.49,
    ),
    st(
        109,
        "cpx22",
        2,
        4.0,
        80,
        "shared",
        "x86",
        "regular_purpose",
        ALL,
        7.99,
    ),
    st(
        110,
        "cpx32",
        4,
        8.0,
        160,
        "shared",
        "x86",
        "regular_purpose",
        ALL,
        13.99,
    ),
    st(
        111,
        "cpx42",
        8,
        16.0,
        320,
        "shared",
        "x86",
        "regular_purpose",
        ALL,
        25.49,
    ),
    st(
        112,
        "cpx52",
        12,
        24.0,
        480,
        "shared",
        "x86",
        "regular_purpose",
        ALL,
        35.49,
    ),
    st(
        113,
        "cpx62",
        16,
        32.0,
        640,
        "shared",
        "x86",
        "regular_purpose",
        ALL,
        49.49,
    )
    .unavailable(&["hil"]),
    // Ampere arm64, eu-central only.
    st(
        45,
        "cax11",
        2,
        4.0,
        40,
        "shared",
        "arm",
        "cost_optimized",
        EU,
        3.79,
    ),
    st(
        93,
        "cax21",
        4,
        8.0,
        80,
        "shared",
        "arm",
        "cost_optimized",
        EU,
        6.49,
    ),
    st(
        94,
        "cax31",
        8,
        16.0,
        160,
        "shared",
        "arm",
        "cost_optimized",
        EU,
        12.49,
    ),
    st(
        95,
        "cax41",
        16,
        32.0,
        320,
        "shared",
        "arm",
        "cost_optimized",
        EU,
        24.49,
    )
    .unavailable(&["hel1"]),
    // Dedicated vCPU AMD, every location.
    st(
        96,
        "ccx13",
        2,
        8.0,
        80,
        "dedicated",
        "x86",
        "general_purpose",
        ALL,
        12.49,
    ),
    st(
        97,
        "ccx23",
        4,
        16.0,
        160,
        "dedicated",
        "x86",
        "general_purpose",
        ALL,
        24.49,
    ),
    st(
        98,
        "ccx33",
        8,
        32.0,
        240,
        "dedicated",
        "x86",
        "general_purpose",
        ALL,
        48.49,
    ),
    st(
        99,
        "ccx43",
        16,
        64.0,
        360,
        "dedicated",
        "x86",
        "general_purpose",
        ALL,
        96.49,
    ),
    st(
        100,
        "ccx53",
        32,
        128.0,
        600,
        "dedicated",
        "x86",
        "general_purpose",
        ALL,
        192.49,
    ),
    st(
        101,
        "ccx63",
        48,
        192.0,
        960,
        "dedicated",
        "x86",
        "general_purpose",
        ALL,
        288.49,
    )
    .unavailable(&["sin"]),
    // Deprecated 2025-10-16, not orderable after 2025-12-31.
    st(
        104,
        "cx22",
        2,
        4.0,
        40,
        "shared",
        "x86",
        "cost_optimized",
        EU,
        3.79,
    )
    .deprecated(),
    st(
        105,
        "cx32",
        4,
        8.0,
        80,
        "shared",
        "x86",
        "cost_optimized",
        EU,
        6.80,
    )
    .deprecated(),
    st(
        106,
        "cx42",
        8,
        16.0,
        160,
        "shared",
        "x86",
        "cost_optimized",
        EU,
        16.40,
    )
    .deprecated(),
    st(
        107,
        "cx52",
        16,
        32.0,
        320,
        "shared",
        "x86",
        "cost_optimized",
        EU,
        32.40,
    )
    .deprecated(),
    st(
        22,
        "cpx11",
        2,
        2.0,
        40,
        "shared",
        "x86",
        "regular_purpose",
        ALL,
        4.35,
    )
    .deprecated(),
    st(
        23,
        "cpx21",
        3,
        4.0,
        80,
        "shared",
        "x86",
        "regular_purpose",
        ALL,
        7.55,
    )
    .deprecated(),
    st(
        24,
        "cpx31",
        4,
        8.0,
        160,
        "shared",
        "x86",
        "regular_purpose",
        ALL,
        13.60,
    )
    .deprecated(),
    st(
        25,
        "cpx41",
        8,
        16.0,
        240,
        "shared",
        "x86",
        "regular_purpose",
        ALL,
        25.20,
    )
    .deprecated(),
    st(
        26,
        "cpx51",
        16,
        32.0,
        360,
        "shared",
        "x86",
        "regular_purpose",
        ALL,
        54.90,
    )
    .deprecated(),
];

#[allow(clippy::too_many_arguments)]
const fn st(
    id: i64,
    name: &'static str,
    cores: i64,
    memory: f64,
    disk: i64,
    cpu_type: &'static str,
    architecture: &'static str,
    category: &'static str,
    locations: &'static [&'static str],
    monthly_net: f64,
) -> ServerType {
    ServerType {
        id,
        name,
        description: name,
        cores,
        memory,
        disk,
        cpu_type,
        architecture,
        category,
        locations,
        unavailable_in: &[],
        deprecation: None,
        monthly_net,
    }
}

impl ServerType {
    const fn unavailable(mut self, locations: &'static [&'static str]) -> Self {
        self.unavailable_in = locations;
        self
    }

    const fn deprecated(mut self) -> Self {
        self.deprecation = Some(OLD_GENERATION);
        self
    }
}

/// A system image.
#[derive(Debug, Clone, Copy)]
pub struct SystemImage {
    /// Hetzner id.
    pub id: i64,
    /// Name (shared by the x86 and arm variants).
    pub name: &'static str,
    /// Description.
    pub description: &'static str,
    /// `debian`, `ubuntu`, ...
    pub os_flavor: &'static str,
    /// `12`, `24.04`, ...
    pub os_version: &'static str,
    /// `x86` or `arm`.
    pub architecture: &'static str,
}

/// All system images.
pub const SYSTEM_IMAGES: &[SystemImage] = &[
    SystemImage {
        id: 114690387,
        name: "debian-12",
        description: "Debian 12",
        os_flavor: "debian",
        os_version: "12",
        architecture: "x86",
    },
    SystemImage {
        id: 114690389,
        name: "debian-12",
        description: "Debian 12",
        os_flavor: "debian",
        os_version: "12",
        architecture: "arm",
    },
    SystemImage {
        id: 161547269,
        name: "ubuntu-24.04",
        description: "Ubuntu 24.04",
        os_flavor: "ubuntu",
        os_version: "24.04",
        architecture: "x86",
    },
    SystemImage {
        id: 161547270,
        name: "ubuntu-24.04",
        description: "Ubuntu 24.04",
        os_flavor: "ubuntu",
        os_version: "24.04",
        architecture: "arm",
    },
];

/// A load balancer type.
#[derive(Debug, Clone, Copy)]
pub struct LoadBalancerType {
    /// Hetzner id.
    pub id: i64,
    /// Name, e.g. `lb11`.
    pub name: &'static str,
    /// Description.
    pub description: &'static str,
    /// Maximum concurrent connections.
    pub max_connections: i64,
    /// Maximum services.
    pub max_services: i64,
    /// Maximum targets.
    pub max_targets: i64,
    /// Maximum certificates.
    pub max_assigned_certificates: i64,
    /// Net monthly price in EUR.
    pub monthly_net: f64,
}

/// All load balancer types.
pub const LOAD_BALANCER_TYPES: &[LoadBalancerType] = &[
    LoadBalancerType {
        id: 1,
        name: "lb11",
        description: "LB11",
        max_connections: 10000,
        max_services: 5,
        max_targets: 25,
        max_assigned_certificates: 10,
        monthly_net: 5.39,
    },
    LoadBalancerType {
        id: 2,
        name: "lb21",
        description: "LB21",
        max_connections: 20000,
        max_services: 15,
        max_targets: 75,
        max_assigned_certificates: 25,
        monthly_net: 16.40,
    },
    LoadBalancerType {
        id: 3,
        name: "lb31",
        description: "LB31",
        max_connections: 40000,
        max_services: 30,
        max_targets: 150,
        max_assigned_certificates: 50,
        monthly_net: 32.90,
    },
];

/// Finds a location by name or id.
pub fn location(name_or_id: &str) -> Option<&'static Location> {
    LOCATIONS
        .iter()
        .find(|l| l.name == name_or_id || l.id.to_string() == name_or_id)
}

/// Finds a location by datacenter name or id.
pub fn location_of_datacenter(name_or_id: &str) -> Option<&'static Location> {
    LOCATIONS
        .iter()
        .find(|l| l.datacenter == name_or_id || l.datacenter_id.to_string() == name_or_id)
}

/// Finds a server type by name or id.
pub fn server_type(name_or_id: &str) -> Option<&'static ServerType> {
    SERVER_TYPES
        .iter()
        .find(|t| t.name == name_or_id || t.id.to_string() == name_or_id)
}

/// Finds a server type by id.
pub fn server_type_by_id(id: i64) -> Option<&'static ServerType> {
    SERVER_TYPES.iter().find(|t| t.id == id)
}

/// Finds a load balancer type by name or id.
pub fn load_balancer_type(name_or_id: &str) -> Option<&'static LoadBalancerType> {
    LOAD_BALANCER_TYPES
        .iter()
        .find(|t| t.name == name_or_id || t.id.to_string() == name_or_id)
}

fn included_traffic(loc: &Location) -> i64 {
    if loc.network_zone == "eu-central" {
        20 * (1i64 << 40)
    } else {
        1i64 << 40
    }
}

fn price(net: f64) -> Value {
    json!({"net": format!("{net:.10}"), "gross": format!("{:.10}", net * 1.19)})
}

fn prices(locations: &[&str], monthly_net: f64) -> Value {
    let list: Vec<Value> = locations
        .iter()
        .filter_map(|n| location(n))
        .map(|l| {
            json!({
                "location": l.name,
                "price_hourly": price(monthly_net / 730.0),
                "price_monthly": price(monthly_net),
                "included_traffic": included_traffic(l),
                "price_per_tb_traffic": price(1.0),
            })
        })
        .collect();
    Value::Array(list)
}

impl Location {
    /// The API representation.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id, "name": self.name, "description": self.description,
            "country": self.country, "city": self.city, "latitude": self.latitude,
            "longitude": self.longitude, "network_zone": self.network_zone,
        })
    }
}

/// Whether `server_type` can be ordered in `location` now, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orderable {
    /// It can be ordered.
    Yes,
    /// Not listed in that location, or deprecated there and past `unavailable_after`:
    /// Hetzner answers 422 `invalid_input` "unsupported location for server type".
    UnsupportedLocation,
    /// Listed, but `available: false` (no capacity now): 412 `resource_unavailable`.
    NoCapacity,
}

impl ServerType {
    /// Whether `location` is listed and the type is not out of capacity there.
    fn available_now(&self, location: &str, now: DateTime<Utc>) -> bool {
        self.locations.contains(&location)
            && !self.unavailable_in.contains(&location)
            && !self.deprecation.is_some_and(|d| d.is_unavailable_at(now))
    }

    /// The API representation at `now` (`available` and `recommended` per location, as since
    /// changelog 2026-04-01 `datacenter-deprecations`).
    pub fn to_json_at(&self, now: DateTime<Utc>) -> Value {
        let deprecation = self.deprecation.map(|d| d.to_json());
        let locations: Vec<Value> = self
            .locations
            .iter()
            .filter_map(|n| location(n))
            .map(|l| {
                let available = self.available_now(l.name, now);
                json!({
                    "id": l.id, "name": l.name,
                    "deprecation": deprecation,
                    "available": available,
                    "recommended": available && self.deprecation.is_none(),
                })
            })
            .collect();
        json!({
            "id": self.id, "name": self.name, "description": self.description,
            "cores": self.cores, "memory": self.memory, "disk": self.disk,
            "cpu_type": self.cpu_type, "architecture": self.architecture,
            "storage_type": "local", "category": self.category,
            "deprecated": self.deprecation.is_some(), "deprecation": deprecation,
            "locations": locations,
            "prices": prices(self.locations, self.monthly_net),
        })
    }

    /// The API representation now.
    pub fn to_json(&self) -> Value {
        self.to_json_at(Utc::now())
    }

    /// Whether the type can be ordered in `location` at `now`.
    pub fn orderable_in(&self, location: &str, now: DateTime<Utc>) -> Orderable {
        if !self.locations.contains(&location)
            || self.deprecation.is_some_and(|d| d.is_unavailable_at(now))
        {
            Orderable::UnsupportedLocation
        } else if self.unavailable_in.contains(&location) {
            Orderable::NoCapacity
        } else {
            Orderable::Yes
        }
    }

    /// Whether the type is listed in `location` (orderable or not).
    pub fn available_in(&self, location: &str) -> bool {
        self.locations.contains(&location)
    }

    /// The first location where the type can be ordered at `now` (a create without location).
    pub fn default_location(&self, now: DateTime<Utc>) -> Option<&'static Location> {
        self.locations
            .iter()
            .find(|l| self.orderable_in(l, now) == Orderable::Yes)
            .and_then(|l| location(l))
    }
}

impl LoadBalancerType {
    /// The API representation.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id, "name": self.name, "description": self.description,
            "max_connections": self.max_connections, "max_services": self.max_services,
            "max_targets": self.max_targets,
            "max_assigned_certificates": self.max_assigned_certificates,
            "deprecated": null,
            "deprecation": null,
            "prices": prices(ALL, self.monthly_net),
        })
    }
}

/// Network zone of a location name.
pub fn network_zone_of(location: &str) -> Option<&'static str> {
    self::location(location).map(|l| l.network_zone)
}

/// The first location of a network zone.
pub fn first_location_in_zone(zone: &str) -> Option<&'static Location> {
    LOCATIONS.iter().find(|l| l.network_zone == zone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-02T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn lookups_by_name_and_id() {
        assert_eq!(location("nbg1").map(|l| l.id), Some(2));
        assert_eq!(location("6").map(|l| l.name), Some("sin"));
        assert_eq!(server_type("cax11").map(|t| t.architecture), Some("arm"));
        assert_eq!(server_type("114").map(|t| t.name), Some("cx23"));
        assert_eq!(server_type("104").map(|t| t.name), Some("cx22"));
        assert_eq!(load_balancer_type("lb11").map(|t| t.id), Some(1));
        assert_eq!(
            location_of_datacenter("fsn1-dc14").map(|l| l.name),
            Some("fsn1")
        );
    }

    #[test]
    fn arm_and_cost_optimised_only_in_eu_central() {
        for t in SERVER_TYPES
            .iter()
            .filter(|t| t.architecture == "arm" || t.name.starts_with("cx"))
        {
            assert!(t.available_in("fsn1"), "{}", t.name);
            assert!(!t.available_in("ash"), "{}", t.name);
            assert_eq!(t.orderable_in("sin", now()), Orderable::UnsupportedLocation);
        }
        let cpx22 = server_type("cpx22").unwrap();
        assert_eq!(cpx22.orderable_in("sin", now()), Orderable::Yes);
    }

    #[test]
    fn deprecated_types_are_listed_but_not_orderable_after_unavailable_after() {
        let cx22 = server_type("cx22").unwrap();
        let j = cx22.to_json_at(now());
        assert_eq!(j["deprecated"], true);
        assert_eq!(
            j["deprecation"]["unavailable_after"],
            OLD_GENERATION_UNAVAILABLE_AFTER
        );
        assert_eq!(j["locations"][0]["available"], false);
        assert_eq!(j["locations"][0]["recommended"], false);
        assert_eq!(
            j["locations"][0]["deprecation"]["announced"],
            OLD_GENERATION_ANNOUNCED
        );
        assert_eq!(
            cx22.orderable_in("fsn1", now()),
            Orderable::UnsupportedLocation
        );
        let before: DateTime<Utc> = "2025-11-01T00:00:00Z".parse().unwrap();
        assert_eq!(cx22.orderable_in("fsn1", before), Orderable::Yes);
        assert_eq!(cx22.to_json_at(before)["locations"][0]["available"], true);
        assert!(cx22.default_location(now()).is_none());
    }

    #[test]
    fn current_types_are_available_and_recommended_except_where_out_of_capacity() {
        let cx23 = server_type("cx23").unwrap().to_json_at(now());
        assert_eq!(cx23["deprecated"], false);
        assert!(cx23["deprecation"].is_null());
        for l in cx23["locations"].as_array().unwrap() {
            assert_eq!(l["available"], true);
            assert_eq!(l["recommended"], true);
        }
        let cax41 = server_type("cax41").unwrap();
        assert_eq!(cax41.orderable_in("hel1", now()), Orderable::NoCapacity);
        assert_eq!(cax41.orderable_in("fsn1", now()), Orderable::Yes);
        let hel1 = cax41.to_json_at(now())["locations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == "hel1")
            .cloned()
            .unwrap();
        assert_eq!(hel1["available"], false);
        assert_eq!(hel1["recommended"], false);
        assert!(
            SERVER_TYPES
                .iter()
                .filter(|t| t.deprecation.is_none())
                .all(|t| t.unavailable_in.len() < t.locations.len())
        );
    }

    #[test]
    fn every_system_image_has_both_architectures() {
        for name in ["debian-12", "ubuntu-24.04"] {
            for arch in ["x86", "arm"] {
                assert!(
                    SYSTEM_IMAGES
                        .iter()
                        .any(|i| i.name == name && i.architecture == arch)
                );
            }
        }
    }
}
