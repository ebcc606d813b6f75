//! The Kubernetes API of a bootstrapped Talos cluster in a twin started in-process: servers and
//! a load balancer made through the Hetzner API, configs from hk8s-talos-config applied over
//! the Talos maintenance API with hk8s-talos, bootstrap, then kube-rs with the kubeconfig from
//! Talos through `<lb-ip>:6443` and `<cp-ip>:6443`. Plus the CloudBridge over the twin.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use hk8s_talos::{ApplyMode, BootstrapOutcome, TalosClient, TalosCredentials};
use hk8s_talos_config::{
    Contract, MachineConfigInput, Role, SecretsBundle, Talosconfig, generate_machine_config,
};
use hk8s_twin::{Twin, TwinHandle, TwinOptions};
use hk8s_twin_kube::{CloudBridge, LoadBalancerSpec, VolumeSpec};
use hk8s_twin_talos::NodePhase;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::common::SocketApi as Http;

/// Safety net against a hang; the test waits on change notifications, never on a clock.
const HANG: Duration = Duration::from_secs(60);

/// Waits until `f` returns something, re-checking whenever `rx` changes.
async fn until<T>(mut rx: watch::Receiver<u64>, mut f: impl FnMut() -> Option<T>) -> T {
    tokio::time::timeout(HANG, async {
        loop {
            rx.mark_unchanged();
            if let Some(v) = f() {
                return v;
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("condition reached")
}

async fn server_running(twin: &TwinHandle, id: i64) -> Ipv4Addr {
    let st = twin.state();
    until(st.changes(), || {
        st.servers()
            .into_iter()
            .find(|s| s.id == id && s.status == "running")
            .and_then(|s| s.public_ipv4)
    })
    .await
}

async fn configure(twin: &TwinHandle, ip: Ipv4Addr, config: &str) {
    let fleet = twin.talos_fleet();
    let node = until(fleet.changes(), || fleet.handle(ip)).await;
    tokio::time::timeout(HANG, node.wait_for_phase(NodePhase::Maintenance))
        .await
        .unwrap();
    let client = TalosClient::maintenance(SocketAddr::from((ip, 50000)))
        .await
        .unwrap();
    client
        .apply_configuration(config.as_bytes(), ApplyMode::Auto)
        .await
        .unwrap();
}

async fn kube_client(kubeconfig: &str, server: Option<String>, with_user: bool) -> kube::Client {
    let mut kc = kube::config::Kubeconfig::from_yaml(kubeconfig).unwrap();
    if !with_user {
        for a in &mut kc.auth_infos {
            a.auth_info = Some(Default::default());
        }
    }
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap();
    if let Some(s) = server {
        config.cluster_url = s.parse().unwrap();
    }
    kube::Client::try_from(config).unwrap()
}

/// Server-side apply of a JSON object; returns what the server stored.
async fn apply<K>(api: &Api<K>, value: Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let name = value["metadata"]["name"].as_str().unwrap().to_string();
    api.patch(
        &name,
        &PatchParams::apply("test").force(),
        &Patch::Apply(&value),
    )
    .await
    .unwrap()
}

/// The CNI DaemonSet, the hcloud Secret, the CCM and the CSI controller, as the product applies
/// them (only what the Kubernetes twin's controllers look at), plus the CSI storage class.
async fn install_addons(client: &kube::Client) {
    let ks = "kube-system";
    apply(
        &Api::<Secret>::namespaced(client.clone(), ks),
        json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hcloud", "namespace": ks},
        "stringData": {"token": "t", "network": "demo"}}),
    )
    .await;
    apply(&Api::<DaemonSet>::namespaced(client.clone(), ks), json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "cilium", "namespace": ks},
        "spec": {"selector": {"matchLabels": {"k8s-app": "cilium"}},
                 "template": {"metadata": {"labels": {"k8s-app": "cilium"}},
                              "spec": {"hostNetwork": true, "tolerations": [{"operator": "Exists"}],
                                       "containers": [{"name": "cilium-agent", "image": "quay.io/cilium/cilium:v1.18.0"}]}}}})).await;
    apply(&Api::<Deployment>::namespaced(client.clone(), ks), json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hcloud-cloud-controller-manager", "namespace": ks},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "hccm"}},
                 "template": {"metadata": {"labels": {"app": "hccm"}},
                              "spec": {"hostNetwork": true, "tolerations": [
                                  {"key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true", "effect": "NoSchedule"},
                                  {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
                                  {"key": "node.kubernetes.io/not-ready", "operator": "Exists"}],
                                  "containers": [{"name": "hcloud-cloud-controller-manager", "image": "hetznercloud/hcloud-cloud-controller-manager:v1.26.0",
                                                  "env": [{"name": "HCLOUD_LOAD_BALANCERS_LOCATION", "value": "fsn1"}]}]}}}})).await;
    apply(&Api::<Deployment>::namespaced(client.clone(), ks), json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hcloud-csi-controller", "namespace": ks},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "hcloud-csi-controller"}},
                 "template": {"metadata": {"labels": {"app": "hcloud-csi-controller"}},
                              "spec": {"containers": [{"name": "hcloud-csi-driver", "image": "hetznercloud/hcloud-csi-driver:v2.18.0",
                                                       "env": [{"name": "HCLOUD_VOLUME_EXTRA_LABELS", "value": "cluster=demo"}]}]}}}})).await;
    apply(&Api::<StorageClass>::all(client.clone()), json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "hcloud-volumes", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "csi.hetzner.cloud", "volumeBindingMode": "WaitForFirstConsumer", "reclaimPolicy": "Delete"})).await;
}

async fn node_names(client: kube::Client) -> Vec<String> {
    let nodes: Api<Node> = Api::all(client);
    let mut names: Vec<String> = nodes
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrapped_cluster_serves_kubernetes_on_control_planes_and_the_load_balancer() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let twin = Twin::start(TwinOptions {
        speed: 1000.0,
        seed_talos_snapshots: vec![("x86".into(), "v1.11.6".into())],
        ..Default::default()
    })
    .await
    .unwrap();
    let api = Http::new(twin.api_url());
    let images = api
        .get("/images?type=snapshot&label_selector=os%3Dtalos")
        .await;
    let image = images["images"][0]["id"].as_i64().unwrap();
    let net = api
        .post(
            "/networks",
            json!({"name": "demo", "ip_range": "10.0.0.0/16",
                   "subnets": [{"type": "cloud", "ip_range": "10.0.1.0/24", "network_zone": "eu-central"}]}),
        )
        .await;
    let nid = net["network"]["id"].as_i64().unwrap();
    let lb = api
        .post(
            "/load_balancers",
            json!({"name": "demo-api", "load_balancer_type": "lb11", "location": "fsn1", "network": nid,
                   "services": [{"protocol": "tcp", "listen_port": 6443, "destination_port": 6443, "proxyprotocol": false,
                                 "health_check": {"protocol": "tcp", "port": 6443, "interval": 15, "timeout": 10, "retries": 3}}],
                   "targets": [{"type": "label_selector", "label_selector": {"selector": "cluster=demo,role=control-plane"}, "use_private_ip": true}],
                   "labels": {"cluster": "demo"}}),
        )
        .await;
    let lb_id = lb["load_balancer"]["id"].as_i64().unwrap();
    let lb_ip: Ipv4Addr = lb["load_balancer"]["public_net"]["ipv4"]["ip"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let contract = Contract::from_talos_version("v1.11.6").unwrap();
    let bundle = SecretsBundle::generate(contract, SystemTime::now()).unwrap();
    let config = |role: Role, host: &str| {
        let input = MachineConfigInput::hetzner(
            role,
            "demo",
            lb_ip.to_string(),
            "1.34.1",
            "v1.11.6",
            None,
            "10.0.0.0/16",
            host,
        )
        .unwrap();
        generate_machine_config(&bundle, &input)
            .unwrap()
            .to_yaml()
            .unwrap()
    };
    let mut ids = BTreeMap::new();
    for (name, role) in [
        ("demo-cp-1", "control-plane"),
        ("demo-cp-2", "control-plane"),
        ("demo-worker-1", "worker"),
    ] {
        let s = api
            .post(
                "/servers",
                json!({"name": name, "server_type": "cx23", "image": image, "location": "fsn1",
                       "networks": [nid], "labels": {"cluster": "demo", "role": role}}),
            )
            .await;
        ids.insert(name, s["server"]["id"].as_i64().unwrap());
    }
    let cp_ip = server_running(&twin, ids["demo-cp-1"]).await;
    let cp2_ip = server_running(&twin, ids["demo-cp-2"]).await;
    let worker_ip = server_running(&twin, ids["demo-worker-1"]).await;
    configure(&twin, cp_ip, &config(Role::ControlPlane, "demo-cp-1")).await;
    configure(&twin, cp2_ip, &config(Role::ControlPlane, "demo-cp-2")).await;
    configure(&twin, worker_ip, &config(Role::Worker, "demo-worker-1")).await;

    let talosconfig = Talosconfig::new(
        "demo",
        vec![cp_ip.to_string()],
        vec![cp_ip.to_string()],
        &bundle,
        SystemTime::now(),
    )
    .unwrap();
    let (cert_pem, key_pem) = talosconfig.client_identity_pem();
    let creds = TalosCredentials {
        ca_pem: talosconfig.ca_pem().to_string(),
        cert_pem,
        key_pem: key_pem.expose().to_string(),
    };
    let fleet = twin.talos_fleet();
    for ip in [cp_ip, cp2_ip, worker_ip] {
        let node = fleet.handle(ip).unwrap();
        tokio::time::timeout(HANG, node.wait_for_phase(NodePhase::Running))
            .await
            .unwrap();
    }
    let admin = TalosClient::secure(SocketAddr::from((cp_ip, 50000)), &creds)
        .await
        .unwrap();
    assert_eq!(
        admin.bootstrap().await.unwrap(),
        BootstrapOutcome::Bootstrapped
    );
    let kubeconfig = String::from_utf8(admin.kubeconfig().await.unwrap()).unwrap();
    assert!(
        kubeconfig.contains(&format!("https://{lb_ip}:6443")),
        "{kubeconfig}"
    );

    // The cluster's API serves on the control plane with both kubelets registered, and the
    // load balancer forwards to it.
    let kube = twin.kube();
    let status = until(kube.changes(), || {
        kube.clusters()
            .into_iter()
            .find(|c| c.kubelets.len() == 3 && c.api_servers.len() == 2)
    })
    .await;
    assert_eq!(status.cluster_name, "demo");
    assert_eq!(status.kubernetes_version, "v1.34.1");
    let mut served = status.api_servers.clone();
    served.sort();
    let mut cps = vec![
        SocketAddr::from((cp_ip, 6443)),
        SocketAddr::from((cp2_ip, 6443)),
    ];
    cps.sort();
    assert_eq!(served, cps);
    assert!(status.cert_sans.contains(&lb_ip.to_string()));
    let lbs = twin.lb_forwarding();
    until(lbs.changes(), || {
        lbs.listeners()
            .get(&SocketAddr::from((lb_ip, 6443)))
            .filter(|b| b.len() == 2)
            .cloned()
    })
    .await;

    let control: Value = reqwest::get(format!("{}/kube", twin.control_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(control["clusters"][0]["cluster_name"], "demo", "{control}");
    assert_eq!(
        control["clusters"][0]["nodes"].as_array().unwrap().len(),
        3,
        "{control}"
    );
    assert!(
        control["load_balancer_listeners"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["listen"] == format!("{lb_ip}:6443")),
        "{control}"
    );

    let via_lb = node_names(kube_client(&kubeconfig, None, true).await).await;
    assert_eq!(via_lb, vec!["demo-cp-1", "demo-cp-2", "demo-worker-1"]);
    let via_cp =
        node_names(kube_client(&kubeconfig, Some(format!("https://{cp_ip}:6443")), true).await)
            .await;
    assert_eq!(via_cp, via_lb);
    // InternalIP is the private network address.
    let worker = kube
        .cluster("demo")
        .unwrap()
        .object("", "nodes", "", "demo-worker-1")
        .unwrap();
    let internal = worker["status"]["addresses"][0]["address"]
        .as_str()
        .unwrap();
    assert!(internal.starts_with("10.0.1."), "{worker}");
    // Without a client certificate: 401.
    let anonymous: Api<Node> = Api::all(kube_client(&kubeconfig, None, false).await);
    match anonymous.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 401, "{s:?}"),
        other => panic!("expected 401, got {other:?}"),
    }

    // Addons: the CCM makes a Hetzner load balancer for a Service of type LoadBalancer, the
    // CSI driver a Hetzner volume for a PVC of its class; both are found through the API.
    let client = kube_client(&kubeconfig, None, true).await;
    install_addons(&client).await;
    let svc = apply(
        &Api::<Service>::namespaced(client.clone(), "default"),
        json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "ingress"},
        "spec": {"type": "LoadBalancer", "selector": {"app": "ingress"}, "ports": [{"port": 80}]}}),
    )
    .await;
    let svc_uid = svc.metadata.uid.unwrap();
    apply(
        &Api::<PersistentVolumeClaim>::namespaced(client.clone(), "default"),
        json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "hcloud-volumes",
                 "resources": {"requests": {"storage": "10Gi"}}}}),
    )
    .await;
    apply(
        &Api::<Pod>::namespaced(client.clone(), "default"),
        json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "user"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}],
                 "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}),
    )
    .await;
    let st = twin.state();
    until(st.changes(), || {
        let w = st.world();
        let lb = w
            .load_balancers
            .values()
            .any(|l| l.labels.get("hcloud-ccm/service-uid") == Some(&svc_uid));
        let vol = w
            .volumes
            .values()
            .any(|v| v.labels.get("pvc-name").map(String::as_str) == Some("data"));
        (lb && vol).then_some(())
    })
    .await;
    let ccm_lbs = api
        .get(&format!(
            "/load_balancers?label_selector=hcloud-ccm%2Fservice-uid%3D{svc_uid}"
        ))
        .await;
    let ccm_lb = &ccm_lbs["load_balancers"][0];
    assert_eq!(ccm_lb["location"]["name"], "fsn1", "{ccm_lb}");
    assert_eq!(ccm_lb["services"][0]["listen_port"], 80);
    assert_eq!(ccm_lb["targets"].as_array().unwrap().len(), 3, "{ccm_lb}");
    let csi_vols = api
        .get("/volumes?label_selector=managed-by%3Dcsi-driver%2Ccluster%3Ddemo")
        .await;
    let vol = &csi_vols["volumes"][0];
    assert_eq!(vol["labels"]["pvc-namespace"], "default", "{vol}");
    assert_eq!(vol["location"]["name"], "fsn1");
    assert_eq!(vol["size"], 10);

    // A Talos reboot of the worker stops its kubelet and starts it again once it is back.
    let starts = kube.clusters()[0].kubelet_starts;
    TalosClient::secure(SocketAddr::from((worker_ip, 50000)), &creds)
        .await
        .unwrap()
        .reboot()
        .await
        .unwrap();
    until(kube.changes(), || {
        kube.clusters()
            .into_iter()
            .find(|c| c.kubelet_starts == starts + 1 && c.kubelets.len() == 3)
    })
    .await;

    // A second load balancer whose IP is not in the certSANs forwards too, but the control
    // plane's certificate does not name it: TLS fails as it would for real.
    let other = api
        .post(
            "/load_balancers",
            json!({"name": "other-api", "load_balancer_type": "lb11", "location": "fsn1",
                   "services": [{"protocol": "tcp", "listen_port": 6443, "destination_port": 6443, "proxyprotocol": false,
                                 "health_check": {"protocol": "tcp", "port": 6443, "interval": 15, "timeout": 10, "retries": 3}}],
                   "targets": [{"type": "server", "server": {"id": ids["demo-cp-1"]}}]}),
        )
        .await;
    let other_ip: Ipv4Addr = other["load_balancer"]["public_net"]["ipv4"]["ip"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    until(lbs.changes(), || {
        lbs.listeners()
            .get(&SocketAddr::from((other_ip, 6443)))
            .filter(|b| !b.is_empty())
            .cloned()
    })
    .await;
    let wrong_san: Api<Node> =
        Api::all(kube_client(&kubeconfig, Some(format!("https://{other_ip}:6443")), true).await);
    let err = wrong_san.list(&ListParams::default()).await.unwrap_err();
    assert!(
        !matches!(err, kube::Error::Api(_)),
        "expected a TLS failure, got {err:?}"
    );
    assert_not_valid_for_name(&err, other_ip.into());

    // The load balancer's target health reflects the API on 6443.
    let health = |lb: &Value| -> BTreeMap<i64, String> {
        lb["load_balancer"]["targets"][0]["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["server"]["id"].as_i64().unwrap(),
                    t["health_status"][0]["status"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            })
            .collect()
    };
    let lb = api.get(&format!("/load_balancers/{lb_id}")).await;
    let expected: BTreeMap<i64, String> = [
        (ids["demo-cp-1"], "healthy".to_string()),
        (ids["demo-cp-2"], "healthy".to_string()),
    ]
    .into();
    assert_eq!(health(&lb), expected, "{lb}");

    // Powering the worker off stops its kubelet.
    api.post(
        &format!("/servers/{}/actions/poweroff", ids["demo-worker-1"]),
        json!({}),
    )
    .await;
    until(kube.changes(), || {
        kube.clusters()
            .into_iter()
            .find(|c| c.kubelets == vec!["demo-cp-1".to_string(), "demo-cp-2".to_string()])
    })
    .await;
    // Powering a control plane off closes its API and turns its target unhealthy; the load
    // balancer still reaches the other one.
    api.post(
        &format!("/servers/{}/actions/poweroff", ids["demo-cp-1"]),
        json!({}),
    )
    .await;
    until(kube.changes(), || {
        kube.clusters()
            .into_iter()
            .find(|c| c.api_servers == vec![SocketAddr::from((cp2_ip, 6443))])
    })
    .await;
    let lb = api.get(&format!("/load_balancers/{lb_id}")).await;
    let expected: BTreeMap<i64, String> = [
        (ids["demo-cp-1"], "unhealthy".to_string()),
        (ids["demo-cp-2"], "healthy".to_string()),
    ]
    .into();
    assert_eq!(health(&lb), expected, "{lb}");
    until(lbs.changes(), || {
        lbs.listeners()
            .get(&SocketAddr::from((lb_ip, 6443)))
            .filter(|b| *b == &vec![SocketAddr::from((cp2_ip, 6443))])
            .cloned()
    })
    .await;
    for _ in 0..2 {
        let names = node_names(kube_client(&kubeconfig, None, true).await).await;
        assert_eq!(names.len(), 3);
    }
    twin.shutdown().await;
}

#[tokio::test]
async fn cloud_bridge_resources_are_visible_through_the_api() {
    let twin = Twin::start(TwinOptions {
        speed: 1000.0,
        ..Default::default()
    })
    .await
    .unwrap();
    let api = Http::new(twin.api_url());
    let cloud = hk8s_twin::kube_cloud::HetznerCloud::new(twin.state(), "fsn1");
    let uid = "5f1c2a9e-0000-4000-8000-000000000001";
    let (lb_id, lb_ip) = cloud
        .create_load_balancer(&LoadBalancerSpec {
            name: "a5f1c2a9e000040008000000000000001".into(),
            labels: [("hcloud-ccm/service-uid".to_string(), uid.to_string())].into(),
            lb_type: "lb11".into(),
            location: None,
            network_zone: Some("eu-central".into()),
            target_server_ids: Vec::new(),
            ports: vec![(8080, 30080)],
        })
        .unwrap();
    let vol_id = cloud
        .create_volume(&VolumeSpec {
            name: "pvc-0b7f".into(),
            size_gb: 10,
            labels: [
                ("managed-by".to_string(), "csi-driver".to_string()),
                ("pvc-name".to_string(), "data".to_string()),
            ]
            .into(),
            location: Some("fsn1".into()),
        })
        .unwrap();
    let lbs = api
        .get(&format!(
            "/load_balancers?label_selector=hcloud-ccm%2Fservice-uid%3D{uid}"
        ))
        .await;
    assert_eq!(lbs["load_balancers"][0]["id"], json!(lb_id));
    assert_eq!(
        lbs["load_balancers"][0]["public_net"]["ipv4"]["ip"],
        json!(lb_ip.to_string())
    );
    assert_eq!(lbs["load_balancers"][0]["services"][0]["listen_port"], 8080);
    let vols = api
        .get("/volumes?label_selector=managed-by%3Dcsi-driver")
        .await;
    assert_eq!(vols["volumes"][0]["id"], json!(vol_id));
    assert_eq!(vols["volumes"][0]["labels"]["pvc-name"], "data");
    // Destroy finds and deletes them through the API once their create actions are done.
    let st = twin.state();
    until(st.changes(), || {
        let w = st.world();
        (!w.is_locked(hk8s_twin::Kind::Volume, vol_id)
            && !w.is_locked(hk8s_twin::Kind::LoadBalancer, lb_id))
        .then_some(())
    })
    .await;
    api.call(reqwest::Method::DELETE, &format!("/volumes/{vol_id}"), None)
        .await;
    api.call(
        reqwest::Method::DELETE,
        &format!("/load_balancers/{lb_id}"),
        None,
    )
    .await;
    assert_eq!(api.get("/volumes").await["volumes"], json!([]));
    assert_eq!(
        api.get("/load_balancers").await["load_balancers"],
        json!([])
    );
    // Deleting what is gone is success for the bridge.
    cloud.delete_volume(vol_id).unwrap();
    cloud.delete_load_balancer(lb_id).unwrap();
    twin.shutdown().await;
}

/// The `rustls::Error` in `err`'s source chain, looking inside `std::io::Error`s too (their
/// `source()` skips the error they wrap, which is where the TLS stack puts rustls's).
fn rustls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// Asserts `err` is rustls refusing the server certificate because it does not name `expected`.
fn assert_not_valid_for_name(err: &(dyn std::error::Error + 'static), expected: std::net::IpAddr) {
    let tls = rustls_error(err).unwrap_or_else(|| panic!("no rustls error in {err:?}"));
    match tls {
        rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext {
            expected: name,
            presented,
        }) => {
            assert_eq!(
                *name,
                rustls::pki_types::ServerName::from(expected),
                "{tls:?}"
            );
            // rustls lists the names as `IpAddress(<ip>)` / `DnsName("<name>")`.
            assert!(
                !presented.contains(&format!("IpAddress({expected})")),
                "{tls:?}"
            );
        }
        other => panic!("expected a certificate not valid for {expected}, got {other:?}"),
    }
}
