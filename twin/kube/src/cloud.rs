//! The seam to the Hetzner twin: what the simulated CCM and CSI driver do in the cloud.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;

/// A cloud call made by a simulated in-cluster controller failed.
#[derive(Debug, thiserror::Error)]
#[error("cloud: {0}")]
pub struct CloudError(pub String);

/// What the simulated CCM and CSI driver call in the (twin) cloud. Implemented by the Hetzner
/// twin; [`FakeCloud`] records calls for tests.
pub trait CloudBridge: Send + Sync {
    /// Creates a load balancer; returns its id and public IPv4.
    fn create_load_balancer(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(i64, Ipv4Addr), CloudError>;
    /// Deletes a load balancer (absent is success).
    fn delete_load_balancer(&self, id: i64) -> Result<(), CloudError>;
    /// Creates a volume of `size_gb`; returns its id.
    fn create_volume(
        &self,
        name: &str,
        size_gb: u64,
        labels: &BTreeMap<String, String>,
    ) -> Result<i64, CloudError>;
    /// Deletes a volume (absent is success).
    fn delete_volume(&self, id: i64) -> Result<(), CloudError>;
    /// The id of the server named `node_name`, for `providerID: hcloud://<id>`.
    fn server_id_by_name(&self, node_name: &str) -> Option<i64>;
    /// The public IPv4 of the server named `node_name` (the node's ExternalIP), if any.
    fn server_public_ipv4(&self, node_name: &str) -> Option<Ipv4Addr> {
        let _ = node_name;
        None
    }
}

/// A cloud resource held by [`FakeCloud`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeResource {
    /// Resource id.
    pub id: i64,
    /// Resource name.
    pub name: String,
    /// Labels given at creation.
    pub labels: BTreeMap<String, String>,
    /// Volume size in GB (0 for load balancers).
    pub size_gb: u64,
    /// Load balancer IPv4 (unspecified for volumes).
    pub ip: Ipv4Addr,
}

#[derive(Debug, Default)]
struct FakeState {
    next_id: i64,
    load_balancers: BTreeMap<i64, FakeResource>,
    volumes: BTreeMap<i64, FakeResource>,
    servers: BTreeMap<String, i64>,
}

/// An in-memory [`CloudBridge`] for tests: ids count from 1, LB IPs are `127.200.0.<id>`
/// (never listened on).
#[derive(Debug, Default)]
pub struct FakeCloud {
    state: Mutex<FakeState>,
}

impl FakeCloud {
    /// An empty fake cloud.
    pub fn new() -> FakeCloud {
        FakeCloud::default()
    }

    /// Registers a server so `server_id_by_name` finds it.
    pub fn add_server(&self, name: &str, id: i64) {
        self.lock().servers.insert(name.to_string(), id);
    }

    /// Current load balancers.
    pub fn load_balancers(&self) -> Vec<FakeResource> {
        self.lock().load_balancers.values().cloned().collect()
    }

    /// Current volumes.
    pub fn volumes(&self) -> Vec<FakeResource> {
        self.lock().volumes.values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl CloudBridge for FakeCloud {
    fn create_load_balancer(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(i64, Ipv4Addr), CloudError> {
        let mut st = self.lock();
        st.next_id += 1;
        let id = st.next_id;
        let ip = Ipv4Addr::new(127, 200, (id >> 8) as u8, id as u8);
        st.load_balancers.insert(
            id,
            FakeResource {
                id,
                name: name.to_string(),
                labels: labels.clone(),
                size_gb: 0,
                ip,
            },
        );
        Ok((id, ip))
    }

    fn delete_load_balancer(&self, id: i64) -> Result<(), CloudError> {
        self.lock().load_balancers.remove(&id);
        Ok(())
    }

    fn create_volume(
        &self,
        name: &str,
        size_gb: u64,
        labels: &BTreeMap<String, String>,
    ) -> Result<i64, CloudError> {
        let mut st = self.lock();
        st.next_id += 1;
        let id = st.next_id;
        st.volumes.insert(
            id,
            FakeResource {
                id,
                name: name.to_string(),
                labels: labels.clone(),
                size_gb,
                ip: Ipv4Addr::UNSPECIFIED,
            },
        );
        Ok(id)
    }

    fn delete_volume(&self, id: i64) -> Result<(), CloudError> {
        self.lock().volumes.remove(&id);
        Ok(())
    }

    fn server_id_by_name(&self, node_name: &str) -> Option<i64> {
        self.lock().servers.get(node_name).copied()
    }
}
