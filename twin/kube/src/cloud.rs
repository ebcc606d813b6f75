//! The seam to the Hetzner twin: what the simulated CCM and CSI driver do in the cloud.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;

/// A cloud call made by a simulated in-cluster controller failed.
#[derive(Debug, thiserror::Error)]
#[error("cloud: {0}")]
pub struct CloudError(pub String);

/// A load balancer the simulated CCM creates for a Service of type LoadBalancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancerSpec {
    /// `load-balancer.hetzner.cloud/name` or `a<service uid without dashes>` (32 chars).
    pub name: String,
    /// `hcloud-ccm/service-uid=<uid>`, as the real CCM labels it.
    pub labels: BTreeMap<String, String>,
    /// Load balancer type (`load-balancer.hetzner.cloud/type`, default `lb11`).
    pub lb_type: String,
    /// Location (`load-balancer.hetzner.cloud/location` or `HCLOUD_LOAD_BALANCERS_LOCATION`).
    pub location: Option<String>,
    /// Network zone (`load-balancer.hetzner.cloud/network-zone` or
    /// `HCLOUD_LOAD_BALANCERS_NETWORK_ZONE`); one of location and network zone is set.
    pub network_zone: Option<String>,
    /// Server ids of the initialized nodes (targets).
    pub target_server_ids: Vec<i64>,
    /// (listen port, node port) per Service port.
    pub ports: Vec<(u16, u16)>,
}

/// A volume the simulated CSI driver creates for a PersistentVolumeClaim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    /// The PV name, `pvc-<claim uid>`.
    pub name: String,
    /// Size in GB (at least 10).
    pub size_gb: u64,
    /// `managed-by=csi-driver`, `pvc-name`, `pvc-namespace`, `pv-name` and
    /// `HCLOUD_VOLUME_EXTRA_LABELS`.
    pub labels: BTreeMap<String, String>,
    /// Location of the node the volume is for (its `topology.kubernetes.io/region`), if known.
    pub location: Option<String>,
}

/// What the CCM learns about a node's server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// Server id (`providerID: hcloud://<id>`).
    pub id: i64,
    /// Public IPv4 (the node's ExternalIP).
    pub public_ipv4: Option<Ipv4Addr>,
    /// Server type (`node.kubernetes.io/instance-type`).
    pub server_type: Option<String>,
    /// Location (`topology.kubernetes.io/region`).
    pub location: Option<String>,
    /// Datacenter (`topology.kubernetes.io/zone`).
    pub datacenter: Option<String>,
}

/// What the simulated CCM and CSI driver call in the (twin) cloud. Implemented by the Hetzner
/// twin; [`FakeCloud`] records calls for tests. Calls are made from the cluster's controller
/// task (a tokio worker) without holding any lock of the Kubernetes twin; they should return
/// quickly and must not call back into the [`KubeCluster`](crate::KubeCluster).
pub trait CloudBridge: Send + Sync {
    /// Creates a load balancer; returns its id and public IPv4.
    fn create_load_balancer(&self, spec: &LoadBalancerSpec) -> Result<(i64, Ipv4Addr), CloudError>;
    /// Deletes a load balancer (absent is success).
    fn delete_load_balancer(&self, id: i64) -> Result<(), CloudError>;
    /// Creates a volume; returns its id.
    fn create_volume(&self, spec: &VolumeSpec) -> Result<i64, CloudError>;
    /// Deletes a volume (absent is success).
    fn delete_volume(&self, id: i64) -> Result<(), CloudError>;
    /// The id of the server named `node_name`, for `providerID: hcloud://<id>`.
    fn server_id_by_name(&self, node_name: &str) -> Option<i64>;
    /// More about the server named `node_name` (default: only its id).
    fn server_info(&self, node_name: &str) -> Option<ServerInfo> {
        self.server_id_by_name(node_name).map(|id| ServerInfo {
            id,
            public_ipv4: None,
            server_type: None,
            location: None,
            datacenter: None,
        })
    }
}

/// A load balancer held by [`FakeCloud`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeLoadBalancer {
    /// Id.
    pub id: i64,
    /// Public IPv4: `127.200.<id / 256>.<id % 256>` (never listened on).
    pub ip: Ipv4Addr,
    /// What it was created with.
    pub spec: LoadBalancerSpec,
}

/// A volume held by [`FakeCloud`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeVolume {
    /// Id.
    pub id: i64,
    /// What it was created with.
    pub spec: VolumeSpec,
}

#[derive(Debug, Default)]
struct FakeState {
    next_id: i64,
    load_balancers: BTreeMap<i64, FakeLoadBalancer>,
    volumes: BTreeMap<i64, FakeVolume>,
    servers: BTreeMap<String, ServerInfo>,
}

/// An in-memory [`CloudBridge`] for tests; ids count from 1.
#[derive(Debug, Default)]
pub struct FakeCloud {
    state: Mutex<FakeState>,
}

impl FakeCloud {
    /// An empty fake cloud.
    pub fn new() -> FakeCloud {
        FakeCloud::default()
    }

    /// Registers a server so `server_info` finds it (location `nbg1`, datacenter
    /// `nbg1-dc3`, type `cx23`, public IPv4 `127.201.<id / 256>.<id % 256>`).
    pub fn add_server(&self, name: &str, id: i64) {
        let info = ServerInfo {
            id,
            public_ipv4: Some(Ipv4Addr::new(127, 201, (id >> 8) as u8, id as u8)),
            server_type: Some("cx23".into()),
            location: Some("nbg1".into()),
            datacenter: Some("nbg1-dc3".into()),
        };
        self.lock().servers.insert(name.to_string(), info);
    }

    /// Forgets a server (as if it was deleted).
    pub fn remove_server(&self, name: &str) {
        self.lock().servers.remove(name);
    }

    /// Current load balancers.
    pub fn load_balancers(&self) -> Vec<FakeLoadBalancer> {
        self.lock().load_balancers.values().cloned().collect()
    }

    /// Current volumes.
    pub fn volumes(&self) -> Vec<FakeVolume> {
        self.lock().volumes.values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl CloudBridge for FakeCloud {
    fn create_load_balancer(&self, spec: &LoadBalancerSpec) -> Result<(i64, Ipv4Addr), CloudError> {
        if spec.location.is_none() && spec.network_zone.is_none() {
            return Err(CloudError("location or network_zone is required".into()));
        }
        let mut st = self.lock();
        st.next_id += 1;
        let id = st.next_id;
        let ip = Ipv4Addr::new(127, 200, (id >> 8) as u8, id as u8);
        st.load_balancers.insert(
            id,
            FakeLoadBalancer {
                id,
                ip,
                spec: spec.clone(),
            },
        );
        Ok((id, ip))
    }

    fn delete_load_balancer(&self, id: i64) -> Result<(), CloudError> {
        self.lock().load_balancers.remove(&id);
        Ok(())
    }

    fn create_volume(&self, spec: &VolumeSpec) -> Result<i64, CloudError> {
        let mut st = self.lock();
        st.next_id += 1;
        let id = st.next_id;
        st.volumes.insert(
            id,
            FakeVolume {
                id,
                spec: spec.clone(),
            },
        );
        Ok(id)
    }

    fn delete_volume(&self, id: i64) -> Result<(), CloudError> {
        self.lock().volumes.remove(&id);
        Ok(())
    }

    fn server_id_by_name(&self, node_name: &str) -> Option<i64> {
        self.lock().servers.get(node_name).map(|s| s.id)
    }

    fn server_info(&self, node_name: &str) -> Option<ServerInfo> {
        self.lock().servers.get(node_name).cloned()
    }
}
