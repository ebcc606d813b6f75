//! A rolling Talos upgrade and a Kubernetes component upgrade in a twin started in-process,
//! driven only through the twin's public APIs with the twin's own messages: servers booted
//! from a v1.10.9 snapshot with machine configs in `user_data`, bootstrap and Upgrade over
//! the Talos gRPC API (plain tonic client), workloads and PodDisruptionBudgets in the
//! Kubernetes twin, the control API's counters (`GET /twin/talos`) and faults
//! (`/twin/talos/faults`). Waits follow the twin's state (node phases, Kubernetes watches).

use std::net::Ipv4Addr;
use std::time::Duration;

use base64::Engine;
use hk8s_testkit::pki::{self, KeyType};
use hk8s_twin::{Twin, TwinHandle, TwinOptions};
use hk8s_twin_talos::{NodePhase, NodeStatus, proto};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::wait::await_condition;
use serde_json::{Value, json};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_prost::ProstCodec;

use crate::common::SocketApi as Http;

const HANG: Duration = Duration::from_secs(90);

struct Keys {
    os: pki::CertPem,
    k8s: pki::CertPem,
    talos_client: pki::CertPem,
    kube_client: pki::CertPem,
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn machine_config(keys: &Keys, kind: &str, k8s: &str, apiserver: &str) -> String {
    let cp = kind == "controlplane";
    let key = |pem: &str| if cp { b64(pem) } else { String::new() };
    let os_key = keys.os.key.replace("PRIVATE KEY", "ED25519 PRIVATE KEY");
    format!(
        "version: v1alpha1\nmachine:\n  type: {kind}\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:{k8s}\n  ca:\n    crt: {}\n    key: \"{}\"\ncluster:\n  clusterName: up\n  controlPlane:\n    endpoint: https://up.example:6443\n  ca:\n    crt: {}\n    key: \"{}\"\n  apiServer:\n    image: registry.k8s.io/kube-apiserver:{apiserver}\n  controllerManager:\n    image: registry.k8s.io/kube-controller-manager:{k8s}\n  scheduler:\n    image: registry.k8s.io/kube-scheduler:{k8s}\n",
        b64(&keys.os.cert),
        key(&os_key),
        b64(&keys.k8s.cert),
        key(&keys.k8s.key),
    )
}

async fn talos(keys: &Keys, ip: Ipv4Addr) -> Channel {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&keys.os.cert))
        .identity(Identity::from_pem(
            &keys.talos_client.cert,
            &keys.talos_client.key,
        ))
        .domain_name(ip.to_string());
    Endpoint::from_shared(format!("https://{ip}:50000"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn call<Req, Resp>(ch: &Channel, path: &'static str, req: Req) -> Result<Resp, tonic::Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(req),
        PathAndQuery::from_static(path),
        ProstCodec::<Req, Resp>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

async fn kube_client(keys: &Keys, ip: Ipv4Addr) -> kube::Client {
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: up\n  cluster:\n    server: https://{ip}:6443\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: admin@up\n  context:\n    cluster: up\n    user: admin\ncurrent-context: admin@up\n",
        b64(&keys.k8s.cert),
        b64(&keys.kube_client.cert),
        b64(&keys.kube_client.key),
    );
    let kc = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap();
    kube::Client::try_from(config).unwrap()
}

async fn node_until(
    twin: &TwinHandle,
    ip: Ipv4Addr,
    pred: impl FnMut(&NodeStatus) -> bool,
) -> NodeStatus {
    let node = twin.talos_fleet().handle(ip).unwrap();
    if tokio::time::timeout(HANG, node.wait_until(pred))
        .await
        .is_err()
    {
        panic!(
            "node {ip} did not reach the expected state: {:#?}",
            node.status()
        );
    }
    node.status()
}

async fn control(twin: &TwinHandle, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let url = format!("{}{path}", twin.control_url());
    let req = match method {
        "POST" => client.post(url).json(&body.unwrap_or(Value::Null)),
        "DELETE" => client.delete(url),
        _ => client.get(url),
    };
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn node_json<'a>(talos: &'a Value, name: &str) -> &'a Value {
    talos["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["hostname"] == name)
        .unwrap()
}

const SCHEMATIC: &str = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba";

fn installer(version: &str) -> proto::UpgradeRequest {
    proto::UpgradeRequest {
        image: format!("factory.talos.dev/hcloud-installer/{SCHEMATIC}:{version}"),
        ..Default::default()
    }
}

/// Upgrades one node and waits for its next boot; returns its status then.
async fn upgrade(
    twin: &TwinHandle,
    keys: &Keys,
    ip: Ipv4Addr,
    req: proto::UpgradeRequest,
) -> NodeStatus {
    let before = twin.talos_fleet().node(ip).unwrap();
    let ack: proto::UpgradeResponse = call(
        &talos(keys, ip).await,
        "/machine.MachineService/Upgrade",
        req,
    )
    .await
    .unwrap();
    assert_eq!(ack.messages[0].ack, "Upgrade request received");
    node_until(twin, ip, |s| {
        s.phase == NodePhase::Running && s.boots > before.boots
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_upgrade_drains_with_pdbs_keeps_etcd_quorum_and_follows_configs() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let twin = Twin::start(TwinOptions {
        speed: 1000.0,
        seed_talos_snapshots: vec![("x86".into(), "v1.10.9".into())],
        ..Default::default()
    })
    .await
    .unwrap();
    let os = pki::ca(KeyType::Ed25519, "talos");
    let k8s = pki::ca(KeyType::EcdsaP256, "kubernetes");
    let keys = Keys {
        talos_client: pki::client_cert(&os, KeyType::Ed25519, "admin", "os:admin"),
        kube_client: pki::client_cert(&k8s, KeyType::EcdsaP256, "admin", "system:masters"),
        os,
        k8s,
    };
    let api = Http::new(twin.api_url());
    let images = api
        .get("/images?type=snapshot&label_selector=os%3Dtalos")
        .await;
    let image = images["images"][0]["id"].as_i64().unwrap();
    let mut ips = Vec::new();
    for (name, kind) in [
        ("up-cp-1", "controlplane"),
        ("up-cp-2", "controlplane"),
        ("up-cp-3", "controlplane"),
        ("up-w-1", "worker"),
        ("up-w-2", "worker"),
    ] {
        let s = api
            .post(
                "/servers",
                json!({"name": name, "server_type": "cx23", "image": image, "location": "fsn1",
                       "user_data": machine_config(&keys, kind, "v1.33.6", "v1.33.6")}),
            )
            .await;
        let ip: Ipv4Addr = s["server"]["public_net"]["ipv4"]["ip"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        ips.push((name, ip));
    }
    let fleet = twin.talos_fleet();
    for (_, ip) in &ips {
        let mut changes = fleet.changes();
        tokio::time::timeout(HANG, async {
            while fleet.handle(*ip).is_none() {
                changes.changed().await.unwrap();
            }
        })
        .await
        .unwrap();
        node_until(&twin, *ip, |s| s.phase == NodePhase::Running).await;
    }
    let ip = |name: &str| ips.iter().find(|(n, _)| *n == name).unwrap().1;
    let _: proto::BootstrapResponse = call(
        &talos(&keys, ip("up-cp-1")).await,
        "/machine.MachineService/Bootstrap",
        proto::BootstrapRequest::default(),
    )
    .await
    .unwrap();
    let kube = twin.kube();
    let mut changes = kube.changes();
    tokio::time::timeout(HANG, async {
        while !kube
            .clusters()
            .iter()
            .any(|c| c.kubelets.len() == 5 && c.api_servers.len() == 3)
        {
            changes.changed().await.unwrap();
        }
    })
    .await
    .unwrap();
    let cluster = kube.cluster("up").unwrap();
    let client = kube_client(&keys, ip("up-cp-1")).await;

    // Two replicas behind a PDB that allows one disruption.
    cluster
        .create_object("apps", "deployments", json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"hostNetwork": true, "tolerations": [
                                      {"key": "node.cloudprovider.kubernetes.io/uninitialized", "operator": "Exists"},
                                      {"key": "node.kubernetes.io/not-ready", "operator": "Exists"}],
                                      "containers": [{"name": "web", "image": "nginx:1.29"}]}}}}))
        .unwrap();
    cluster
        .create_object("policy", "poddisruptionbudgets", json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}))
        .unwrap();
    let running_web = || {
        cluster
            .objects("", "pods")
            .into_iter()
            .filter(|p| {
                p["metadata"]["labels"]["app"] == "web" && p["status"]["phase"] == "Running"
            })
            .collect::<Vec<_>>()
    };
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    tokio::time::timeout(
        HANG,
        await_condition(deployments, "web", |d: Option<&Deployment>| {
            d.and_then(|d| d.status.as_ref())
                .is_some_and(|s| s.ready_replicas == Some(2))
        }),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(running_web().len(), 2);

    let (code, _) = control(&twin, "POST", "/talos/reset-counters", None).await;
    assert_eq!(code, 204);

    // Workers first here (the drain matters there), then the control planes one at a time.
    // The worker with a web pod goes first; its pods move to the other worker.
    let first = running_web()[0]["spec"]["nodeName"]
        .as_str()
        .unwrap()
        .to_string();
    let second = if first == "up-w-1" {
        "up-w-2"
    } else {
        "up-w-1"
    };
    let on_first = running_web()
        .iter()
        .filter(|p| p["spec"]["nodeName"] == first.as_str())
        .count() as u64;
    let w1 = upgrade(&twin, &keys, ip(&first), installer("v1.11.6")).await;
    assert_eq!(w1.talos_version, "v1.11.6");
    let record = w1.last_upgrade.clone().unwrap();
    assert_eq!(
        (
            record.outcome.as_str(),
            record.cordon.as_str(),
            record.evicted,
            record.drain_gave_up
        ),
        ("upgraded", "cordoned", on_first, false)
    );
    for name in ["up-cp-1", "up-cp-2", "up-cp-3"] {
        let s = upgrade(&twin, &keys, ip(name), installer("v1.11.6")).await;
        assert_eq!(s.talos_version, "v1.11.6", "{name}");
        // The next control plane's pre-check needs every member healthy again.
        node_until(&twin, ip(name), |_| {
            fleet.clusters()[0].healthy_etcd_members == 3
        })
        .await;
    }
    let (_, view) = control(&twin, "GET", "/talos", None).await;
    assert_eq!(view["clusters"][0]["min_healthy_etcd_members"], 2, "{view}");
    assert_eq!(view["clusters"][0]["healthy_etcd_members"], 3, "{view}");
    for name in ["up-cp-1", "up-cp-2", "up-cp-3", first.as_str()] {
        let n = node_json(&view, name);
        assert_eq!(n["upgrade_rpcs_accepted"], 1, "{n}");
        assert_eq!(n["talos_version"], "v1.11.6");
        assert_eq!(n["schematic"], SCHEMATIC);
        assert_eq!(n["cordoned"], false, "{n}");
        assert_eq!(n["talos_cordoned"], false, "{n}");
    }
    assert_eq!(node_json(&view, second)["upgrade_rpcs_accepted"], 0);
    let node = cluster.object("", "nodes", "", &first).unwrap();
    assert!(
        node["metadata"]["annotations"]["talos.dev/cordoned"].is_null(),
        "{node}"
    );
    assert_eq!(node["status"]["nodeInfo"]["osImage"], "Talos (v1.11.6)");

    // Faults through the control API: a PDB that never allows eviction, then a boot that
    // rolls back.
    let (code, body) = control(
        &twin,
        "POST",
        "/talos/faults",
        Some(json!({"kind": "pdb_never_allows"})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = control(
        &twin,
        "POST",
        "/talos/faults",
        Some(json!({"kind": "boot_rollback", "node": second})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = control(
        &twin,
        "POST",
        "/talos/faults",
        Some(json!({"kind": "nope"})),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    let before = fleet.node(ip(second)).unwrap();
    let w2 = upgrade(&twin, &keys, ip(second), installer("v1.11.6")).await;
    let record = w2.last_upgrade.clone().unwrap();
    assert_eq!(w2.talos_version, "v1.10.9");
    assert_ne!(w2.boot_id, before.boot_id);
    assert_eq!(record.outcome, "rolled_back");
    // Both web pods run there now; the drain retried for its 5 minutes and gave up.
    assert!(
        record.drain_gave_up && record.eviction_refusals > 0 && record.evicted == 0,
        "{record:?}"
    );
    let (_, faults) = control(&twin, "GET", "/talos/faults", None).await;
    assert_eq!(faults["upgrade_faults"][0]["fired"], 1, "{faults}");
    assert_eq!(faults["pdb_faults"][0]["namespace"], "default", "{faults}");
    let (code, _) = control(&twin, "DELETE", "/talos/faults", None).await;
    assert_eq!(code, 204);
    assert!(
        cluster
            .object(
                "policy",
                "poddisruptionbudgets",
                "default",
                "hk8s-twin-fault-pdb"
            )
            .is_none()
    );

    // Kubernetes: a new apiserver image on cp-1 without reboot replaces its mirror pod and
    // changes what its /version reports; cp-2 still runs the old one.
    let static_pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let old_uid =
        cluster.static_pod("kube-apiserver", "up-cp-1").unwrap()["metadata"]["uid"].clone();
    assert_eq!(
        cluster.static_pod("kube-apiserver", "up-cp-1").unwrap()["metadata"]["annotations"]["talos.dev/config-version"],
        "1"
    );
    let apply = |data: String| proto::ApplyConfigurationRequest {
        data: data.into_bytes(),
        mode: proto::apply_mode::NO_REBOOT,
        dry_run: false,
        try_mode_timeout: None,
    };
    // Talos 1.11 refuses Kubernetes outside its window (RuntimeValidate).
    let err = call::<_, proto::ApplyConfigurationResponse>(
        &talos(&keys, ip("up-cp-1")).await,
        "/machine.MachineService/ApplyConfiguration",
        apply(machine_config(&keys, "controlplane", "v1.33.6", "v1.35.0")),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message()
            .contains("version of Kubernetes 1.35.0 is too new to be used with Talos 1.11.6"),
        "{err:?}"
    );
    let r: proto::ApplyConfigurationResponse = call(
        &talos(&keys, ip("up-cp-1")).await,
        "/machine.MachineService/ApplyConfiguration",
        apply(machine_config(&keys, "controlplane", "v1.33.6", "v1.34.1")),
    )
    .await
    .unwrap();
    assert_eq!(
        r.messages[0].mode_details,
        "Applied configuration without a reboot"
    );
    let ready = tokio::time::timeout(
        HANG,
        await_condition(
            static_pods.clone(),
            "kube-apiserver-up-cp-1",
            |p: Option<&Pod>| {
                p.is_some_and(|p| {
                    p.spec.as_ref().is_some_and(|s| {
                        s.containers[0].image.as_deref()
                            == Some("registry.k8s.io/kube-apiserver:v1.34.1")
                    }) && is_pod_ready()(Some(p))
                })
            },
        ),
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    assert_ne!(json!(ready.metadata.uid), old_uid);
    assert_eq!(
        ready.metadata.annotations.unwrap()["talos.dev/config-version"],
        "2"
    );
    assert_eq!(
        ready.status.unwrap().host_ip.as_deref(),
        Some(ip("up-cp-1").to_string().as_str())
    );
    let v1 = kube_client(&keys, ip("up-cp-1"))
        .await
        .apiserver_version()
        .await
        .unwrap();
    let v2 = kube_client(&keys, ip("up-cp-2"))
        .await
        .apiserver_version()
        .await
        .unwrap();
    assert_eq!(
        (v1.git_version.as_str(), v2.git_version.as_str()),
        ("v1.34.1", "v1.33.6")
    );

    // A new kubelet image restarts the kubelet, which then reports its version.
    let _: proto::ApplyConfigurationResponse = call(
        &talos(&keys, ip(&first)).await,
        "/machine.MachineService/ApplyConfiguration",
        apply(machine_config(&keys, "worker", "v1.34.1", "v1.34.1")),
    )
    .await
    .unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    tokio::time::timeout(
        HANG,
        await_condition(nodes, &first, |n: Option<&Node>| {
            n.and_then(|n| n.status.as_ref())
                .and_then(|s| s.node_info.as_ref())
                .is_some_and(|i| i.kubelet_version == "v1.34.1")
        }),
    )
    .await
    .unwrap()
    .unwrap();
    twin.shutdown().await;
}

fn is_pod_ready() -> impl Fn(Option<&Pod>) -> bool + Copy {
    |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    }
}
