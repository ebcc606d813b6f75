//! The fixed catalogue: locations, datacenters, server types, system images and load balancer
//! types, with realistic ids, sizes, prices and per-location availability.

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

/// A server type.
#[derive(Debug, Clone, Copy)]
pub struct ServerType {
    /// Hetzner id.
    pub id: i64,
    /// Name, e.g. `cx22`.
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
    /// Locations where it can be ordered.
    pub locations: &'static [&'static str],
    /// Net monthly price in EUR.
    pub monthly_net: f64,
}

/// All server types.
pub const SERVER_TYPES: &[ServerType] = &[
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
    ),
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
    ),
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
    ),
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
    ),
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
    ),
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
    ),
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
        monthly_net,
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

    /// The API representation of this location's datacenter.
    pub fn datacenter_json(&self) -> Value {
        let supported: Vec<i64> = SERVER_TYPES.iter().map(|t| t.id).collect();
        let available: Vec<i64> = SERVER_TYPES
            .iter()
            .filter(|t| t.locations.contains(&self.name))
            .map(|t| t.id)
            .collect();
        json!({
            "id": self.datacenter_id,
            "name": self.datacenter,
            "description": format!("{} virtual DC", self.description),
            "location": self.to_json(),
            "server_types": {
                "supported": supported,
                "available": available.clone(),
                "available_for_migration": available,
            },
        })
    }
}

impl ServerType {
    /// The API representation.
    pub fn to_json(&self) -> Value {
        let locations: Vec<Value> = self
            .locations
            .iter()
            .filter_map(|n| location(n))
            .map(|l| json!({"id": l.id, "name": l.name, "deprecation": null}))
            .collect();
        json!({
            "id": self.id, "name": self.name, "description": self.description,
            "cores": self.cores, "memory": self.memory, "disk": self.disk,
            "cpu_type": self.cpu_type, "architecture": self.architecture,
            "storage_type": "local", "category": self.category,
            "deprecated": false, "deprecation": null,
            "locations": locations,
            "prices": prices(self.locations, self.monthly_net),
        })
    }

    /// Whether the type can be ordered in `location`.
    pub fn available_in(&self, location: &str) -> bool {
        self.locations.contains(&location)
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

    #[test]
    fn lookups_by_name_and_id() {
        assert_eq!(location("nbg1").map(|l| l.id), Some(2));
        assert_eq!(location("6").map(|l| l.name), Some("sin"));
        assert_eq!(server_type("cax11").map(|t| t.architecture), Some("arm"));
        assert_eq!(server_type("104").map(|t| t.name), Some("cx22"));
        assert_eq!(load_balancer_type("lb11").map(|t| t.id), Some(1));
        assert_eq!(
            location_of_datacenter("fsn1-dc14").map(|l| l.name),
            Some("fsn1")
        );
    }

    #[test]
    fn arm_only_in_eu_central() {
        for t in SERVER_TYPES.iter().filter(|t| t.architecture == "arm") {
            assert!(t.available_in("fsn1"));
            assert!(!t.available_in("ash"));
        }
        let sin = location("sin").unwrap().datacenter_json();
        let avail = sin["server_types"]["available"].as_array().unwrap();
        assert!(!avail.contains(&json!(45)));
        assert!(avail.contains(&json!(22)));
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
