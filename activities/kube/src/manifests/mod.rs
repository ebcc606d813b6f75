//! Addon manifests rendered in Rust from typed inputs: Hetzner CCM, Hetzner CSI and Cilium.
//!
//! Everything here except [`hcloud_secret`] is free of secrets, so [`all`] can be logged,
//! snapshot-tested, dumped for `kubernetes-validate` and journaled. The objects follow what the
//! upstream manifests and charts render (hcloud-cloud-controller-manager `deploy/ccm-networks.yaml`,
//! hcloud-csi `deploy/kubernetes/hcloud-csi.yml`, the Cilium Helm chart with the values the Talos
//! documentation gives), written out by hand so no Helm is needed at run time.

pub mod ccm;
pub mod cilium;
pub mod csi;

pub use ccm::ccm;
pub use cilium::cilium;
pub use csi::csi;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::secret::HcloudToken;

/// Deployments of [`all`], for [`crate::KubeClient::deployments_available`] in [`ADDON_NAMESPACE`].
pub const ADDON_DEPLOYMENTS: [&str; 3] =
    [cilium::CILIUM_OPERATOR, ccm::CCM_NAME, csi::CSI_CONTROLLER];

/// DaemonSets of [`all`], for [`crate::KubeClient::daemonsets_ready`] in [`ADDON_NAMESPACE`].
pub const ADDON_DAEMONSETS: [&str; 2] = [cilium::CILIUM_AGENT, csi::CSI_NODE];

/// Namespace all addons live in.
pub const ADDON_NAMESPACE: &str = "kube-system";

/// Name of the Secret holding the Hetzner token and network id.
pub const HCLOUD_SECRET_NAME: &str = "hcloud";

/// How pod traffic crosses between nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PodRouting {
    /// VXLAN tunnel between the nodes' private IPs; the CCM writes no network routes
    /// (`HCLOUD_NETWORK_ROUTES_ENABLED=false`). Works with any pod CIDR and any node count.
    #[default]
    Tunnel,
    /// Native routing over the Hetzner private network: the CCM writes one route per node pod
    /// CIDR into the network (`HCLOUD_NETWORK_ROUTES_ENABLED=true`), Cilium does not
    /// encapsulate. Limited by Hetzner's 100 routes per network, and the nodes must route the
    /// pod CIDR into the private network: either the pod CIDR lies inside the network's range
    /// (covered by the network route every server gets) or the Talos config adds a route for
    /// it via the network gateway. Otherwise cross-node pod traffic leaves by the default route.
    Native,
}

/// Where in-cluster addons on the host network reach the Kubernetes API without a Service IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiEndpoint {
    /// Host name or address (`localhost` for Talos KubePrism).
    pub host: String,
    /// Port (`7445` for Talos KubePrism).
    pub port: u16,
}

impl Default for ApiEndpoint {
    /// Talos KubePrism, `localhost:7445`.
    fn default() -> Self {
        ApiEndpoint {
            host: "localhost".to_owned(),
            port: 7445,
        }
    }
}

/// Container image versions; [`Default`] gives the pinned, tested set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddonVersions {
    /// hcloud-cloud-controller-manager image tag.
    pub ccm: String,
    /// hcloud-csi-driver image tag.
    pub csi: String,
    /// Cilium agent and operator image tag.
    pub cilium: String,
    /// `registry.k8s.io/sig-storage/csi-attacher` tag.
    pub csi_attacher: String,
    /// `registry.k8s.io/sig-storage/csi-resizer` tag.
    pub csi_resizer: String,
    /// `registry.k8s.io/sig-storage/csi-provisioner` tag.
    pub csi_provisioner: String,
    /// `registry.k8s.io/sig-storage/livenessprobe` tag.
    pub csi_liveness_probe: String,
    /// `registry.k8s.io/sig-storage/csi-node-driver-registrar` tag.
    pub csi_node_driver_registrar: String,
}

impl Default for AddonVersions {
    fn default() -> Self {
        AddonVersions {
            ccm: "v1.26.0".to_owned(),
            csi: "v2.19.0".to_owned(),
            cilium: "v1.18.9".to_owned(),
            csi_attacher: "v4.10.0".to_owned(),
            csi_resizer: "v2.0.0".to_owned(),
            csi_provisioner: "v6.1.0".to_owned(),
            csi_liveness_probe: "v2.17.0".to_owned(),
            csi_node_driver_registrar: "v2.15.0".to_owned(),
        }
    }
}

/// Everything the addon manifests depend on. Holds no secret, so it may be journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddonInputs {
    /// Kubernetes version of the cluster, e.g. `1.34.1` (a leading `v` is accepted).
    pub kubernetes_version: String,
    /// Cluster name (Cilium `cluster-name`; lowercase letters, digits and `-`).
    pub cluster_name: String,
    /// Pod network (CCM `--cluster-cidr`, Cilium native-routing CIDR).
    pub pod_cidr: Ipv4Net,
    /// How pod traffic crosses nodes.
    pub routing: PodRouting,
    /// API endpoint for host-network addons (Cilium, CCM); default KubePrism `localhost:7445`.
    pub api_endpoint: ApiEndpoint,
    /// Hetzner location for load balancers the CCM creates for `LoadBalancer` Services
    /// (`HCLOUD_LOAD_BALANCERS_LOCATION`, e.g. `fsn1`). `None`: each Service must carry the
    /// `load-balancer.hetzner.cloud/location` annotation.
    #[serde(default)]
    pub load_balancer_location: Option<String>,
    /// cilium-operator replicas (upstream default 2, spread over nodes).
    pub cilium_operator_replicas: u8,
    /// Image versions.
    pub versions: AddonVersions,
}

impl AddonInputs {
    /// Inputs with tunnel routing, the KubePrism endpoint, no default load balancer location, two
    /// operator replicas and the pinned versions.
    pub fn new(
        kubernetes_version: impl Into<String>,
        cluster_name: impl Into<String>,
        pod_cidr: Ipv4Net,
    ) -> Self {
        AddonInputs {
            kubernetes_version: kubernetes_version.into(),
            cluster_name: cluster_name.into(),
            pod_cidr,
            routing: PodRouting::default(),
            api_endpoint: ApiEndpoint::default(),
            load_balancer_location: None,
            cilium_operator_replicas: 2,
            versions: AddonVersions::default(),
        }
    }

    /// `(major, minor)` of [`AddonInputs::kubernetes_version`], `None` when it does not parse.
    pub(crate) fn kubernetes_minor(&self) -> Option<(u32, u32)> {
        let v = self.kubernetes_version.trim_start_matches('v');
        let mut parts = v.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some((major, minor))
    }
}

/// All secret-free addon objects: Cilium, then the CCM, then the CSI driver.
///
/// Apply them with [`crate::KubeClient::apply_all`], which orders them (namespaces and CRDs
/// first, then cluster-scoped RBAC, then the rest); apply [`hcloud_secret`] separately.
pub fn all(inputs: &AddonInputs) -> Vec<Value> {
    let mut out = cilium(inputs);
    out.extend(ccm(inputs));
    out.extend(csi(inputs));
    out
}

/// The `kube-system/hcloud` Secret read by the CCM (`token`, `network`) and the CSI controller (`token`).
///
/// The only object that contains the token. Never log, journal or dump it; apply it with
/// [`crate::KubeClient::apply_hcloud_secret`], whose errors never echo the object.
pub fn hcloud_secret(token: &HcloudToken, network_id: i64) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": HCLOUD_SECRET_NAME, "namespace": ADDON_NAMESPACE },
        "type": "Opaque",
        "stringData": { "token": token.expose(), "network": network_id.to_string() },
    })
}

/// `metadata` with a name, an optional namespace and labels.
pub(crate) fn meta(name: &str, namespace: Option<&str>, labels: &[(&str, &str)]) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), Value::from(name));
    if let Some(ns) = namespace {
        m.insert("namespace".into(), Value::from(ns));
    }
    if !labels.is_empty() {
        m.insert("labels".into(), labels_map(labels));
    }
    Value::Object(m)
}

/// A label map from pairs.
pub(crate) fn labels_map(labels: &[(&str, &str)]) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
            .collect(),
    )
}

/// One RBAC rule.
pub(crate) fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({ "apiGroups": groups, "resources": resources, "verbs": verbs })
}

/// An env var read from a Secret key.
pub(crate) fn env_from_secret(name: &str, secret: &str, key: &str) -> Value {
    json!({ "name": name, "valueFrom": { "secretKeyRef": { "name": secret, "key": key } } })
}

/// An env var from a field of the pod.
pub(crate) fn env_from_field(name: &str, path: &str) -> Value {
    json!({ "name": name, "valueFrom": { "fieldRef": { "apiVersion": "v1", "fieldPath": path } } })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn inputs() -> AddonInputs {
        AddonInputs::new(
            "1.34.1",
            "demo",
            "10.244.0.0/16".parse().unwrap_or_default(),
        )
    }

    /// `kind/namespace/name` of every object.
    pub(crate) fn ids(objects: &[Value]) -> Vec<String> {
        objects
            .iter()
            .map(|o| {
                format!(
                    "{}/{}/{}",
                    o["kind"].as_str().unwrap_or("?"),
                    o["metadata"]["namespace"].as_str().unwrap_or(""),
                    o["metadata"]["name"].as_str().unwrap_or("?")
                )
            })
            .collect()
    }

    /// Finds one object by kind and name.
    pub(crate) fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind} {name} missing from {:?}", ids(objects)))
    }

    #[test]
    fn every_object_has_api_version_kind_and_name() {
        let objects = all(&inputs());
        assert!(objects.len() > 15, "{}", objects.len());
        for o in &objects {
            assert!(
                o["apiVersion"].as_str().is_some_and(|s| !s.is_empty()),
                "{o}"
            );
            assert!(o["kind"].as_str().is_some_and(|s| !s.is_empty()), "{o}");
            assert!(
                o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{o}"
            );
        }
        let ids = ids(&objects);
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "duplicate objects in {ids:?}");
    }

    #[test]
    fn all_holds_no_secret_object() {
        let objects = all(&inputs());
        assert!(
            objects.iter().all(|o| o["kind"] != "Secret"),
            "{:?}",
            ids(&objects)
        );
        // And the token is referenced, not embedded.
        let text = serde_json::to_string(&objects).unwrap_or_default();
        assert!(text.contains("\"secretKeyRef\""));
        assert!(!text.contains("stringData"));
    }

    #[test]
    fn hcloud_secret_holds_token_and_network() {
        let s = hcloud_secret(&HcloudToken::new("tok-123"), 4711);
        assert_eq!(s["kind"], "Secret");
        assert_eq!(s["metadata"]["namespace"], "kube-system");
        assert_eq!(s["metadata"]["name"], "hcloud");
        assert_eq!(s["stringData"]["token"], "tok-123");
        assert_eq!(s["stringData"]["network"], "4711");
    }

    #[test]
    fn every_secret_reference_points_at_keys_the_secret_has() {
        let secret = hcloud_secret(&HcloudToken::new("t"), 1);
        let keys: Vec<&String> = secret["stringData"]
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        let text = serde_json::to_value(all(&inputs())).unwrap_or_default();
        let mut refs = Vec::new();
        collect_secret_refs(&text, &mut refs);
        assert!(refs.len() >= 3, "{refs:?}");
        for (name, key) in refs {
            assert_eq!(name, "hcloud");
            assert!(
                keys.iter().any(|k| **k == key),
                "key {key} not in the hcloud secret"
            );
        }
    }

    fn collect_secret_refs(v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("secretKeyRef") {
                    out.push((
                        r["name"].as_str().unwrap_or("").to_owned(),
                        r["key"].as_str().unwrap_or("").to_owned(),
                    ));
                }
                m.values().for_each(|x| collect_secret_refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| collect_secret_refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn versions_are_pinned_and_configurable() {
        let mut i = inputs();
        i.versions.cilium = "v1.18.99".into();
        i.versions.ccm = "v9.9.9".into();
        let text = serde_json::to_string(&all(&i)).unwrap_or_default();
        assert!(text.contains("quay.io/cilium/cilium:v1.18.99"));
        assert!(text.contains("quay.io/cilium/operator-generic:v1.18.99"));
        assert!(text.contains("hcloud-cloud-controller-manager:v9.9.9"));
        assert!(!text.contains(":latest"));
    }

    /// The whole rendered set, so every change to an addon shows up in review.
    #[test]
    fn rendered_addons_snapshot() {
        insta::assert_yaml_snapshot!("addons_default", all(&inputs()));
        let mut native = inputs();
        native.routing = PodRouting::Native;
        let diff: Vec<Value> = all(&native)
            .into_iter()
            .zip(all(&inputs()))
            .filter(|(n, d)| n != d)
            .map(|(n, _)| n)
            .collect();
        insta::assert_yaml_snapshot!("addons_native_changes", diff);
    }

    #[test]
    fn workload_lists_name_exactly_the_workloads_of_all() {
        let objects = all(&inputs());
        let names = |kind: &str| {
            let mut v: Vec<String> = objects
                .iter()
                .filter(|o| o["kind"] == kind)
                .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_owned))
                .collect();
            v.sort();
            v
        };
        let sorted = |a: &[&str]| {
            let mut v: Vec<String> = a.iter().map(|s| (*s).to_owned()).collect();
            v.sort();
            v
        };
        assert_eq!(names("Deployment"), sorted(&ADDON_DEPLOYMENTS));
        assert_eq!(names("DaemonSet"), sorted(&ADDON_DAEMONSETS));
        assert!(
            objects
                .iter()
                .filter(|o| o["kind"] == "Deployment" || o["kind"] == "DaemonSet")
                .all(|o| o["metadata"]["namespace"] == ADDON_NAMESPACE)
        );
    }

    /// What the API server would accept but the cluster could not run: selectors that miss
    /// their pods, references to service accounts, roles or config maps that do not exist.
    #[test]
    fn references_inside_the_set_resolve() {
        for routing in [PodRouting::Tunnel, PodRouting::Native] {
            let mut i = inputs();
            i.routing = routing;
            let objects = all(&i);
            let exists = |kind: &str, ns: Option<&str>, name: &str| {
                objects.iter().any(|o| {
                    o["kind"] == kind
                        && o["metadata"]["name"] == name
                        && ns.is_none_or(|ns| o["metadata"]["namespace"] == ns)
                })
            };
            for o in objects
                .iter()
                .filter(|o| o["kind"] == "Deployment" || o["kind"] == "DaemonSet")
            {
                let name = o["metadata"]["name"].as_str().unwrap_or("?");
                let ns = o["metadata"]["namespace"].as_str();
                let labels = &o["spec"]["template"]["metadata"]["labels"];
                for (k, v) in o["spec"]["selector"]["matchLabels"]
                    .as_object()
                    .into_iter()
                    .flatten()
                {
                    assert_eq!(
                        &labels[k], v,
                        "{name}: selector {k} does not select its pods"
                    );
                }
                let pod = &o["spec"]["template"]["spec"];
                if let Some(sa) = pod["serviceAccountName"].as_str() {
                    assert!(
                        exists("ServiceAccount", ns, sa),
                        "{name}: service account {sa} missing"
                    );
                }
                for v in pod["volumes"].as_array().into_iter().flatten() {
                    if let Some(cm) = v["configMap"]["name"].as_str() {
                        assert!(
                            exists("ConfigMap", ns, cm),
                            "{name}: config map {cm} missing"
                        );
                    }
                }
                for c in pod["containers"]
                    .as_array()
                    .into_iter()
                    .chain(pod["initContainers"].as_array())
                    .flatten()
                {
                    let image = c["image"].as_str().unwrap_or("");
                    let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
                    assert!(
                        tag.starts_with('v')
                            || tag.chars().next().is_some_and(|ch| ch.is_ascii_digit()),
                        "{name}: image {image} is not pinned"
                    );
                    for e in c["env"].as_array().into_iter().flatten() {
                        if let Some(cm) = e["valueFrom"]["configMapKeyRef"]["name"].as_str() {
                            assert!(
                                exists("ConfigMap", ns, cm),
                                "{name}: config map {cm} missing"
                            );
                        }
                    }
                }
            }
            for b in objects
                .iter()
                .filter(|o| o["kind"] == "ClusterRoleBinding" || o["kind"] == "RoleBinding")
            {
                let name = b["metadata"]["name"].as_str().unwrap_or("?");
                let role = b["roleRef"]["name"].as_str().unwrap_or("");
                let role_kind = b["roleRef"]["kind"].as_str().unwrap_or("");
                let builtin = role_kind == "ClusterRole" && role == "cluster-admin";
                assert!(
                    builtin || exists(role_kind, b["metadata"]["namespace"].as_str(), role),
                    "{name}: role {role} missing"
                );
                for subject in b["subjects"].as_array().into_iter().flatten() {
                    let sa = subject["name"].as_str().unwrap_or("");
                    assert!(
                        exists("ServiceAccount", subject["namespace"].as_str(), sa),
                        "{name}: subject {sa} missing"
                    );
                }
            }
        }
    }

    #[test]
    fn kubernetes_minor_parses_with_or_without_v() {
        let mut i = inputs();
        assert_eq!(i.kubernetes_minor(), Some((1, 34)));
        i.kubernetes_version = "v1.29.3".into();
        assert_eq!(i.kubernetes_minor(), Some((1, 29)));
        i.kubernetes_version = "latest".into();
        assert_eq!(i.kubernetes_minor(), None);
    }
}
