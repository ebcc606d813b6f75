//! The twin's own end-to-end checks with a plain tonic client (tonic's built-in rustls TLS) and
//! the twin's own messages — independent of the product's client.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::time::Duration;

use base64::Engine;
use hk8s_testkit::pki::{self, KeyType};
use hk8s_twin_talos::proto;
use hk8s_twin_talos::{NodeHandle, NodeOptions, NodePhase, TalosFleet, TalosNode};
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_prost::ProstCodec;

struct Pki {
    os_crt: String,
    os_key: String,
    k8s_crt: String,
    k8s_key: String,
    client_crt: String,
    client_key: String,
}

fn pki() -> Pki {
    let os = pki::ca(KeyType::Ed25519, "talos");
    let k8s = pki::ca(KeyType::EcdsaP256, "kubernetes");
    let client = pki::client_cert(&os, KeyType::Ed25519, "admin", "os:admin");
    Pki {
        os_crt: os.cert,
        // Talos writes its Ed25519 keys with this PEM label.
        os_key: os.key.replace("PRIVATE KEY", "ED25519 PRIVATE KEY"),
        k8s_crt: k8s.cert,
        k8s_key: k8s.key,
        client_crt: client.cert,
        client_key: client.key,
    }
}

fn config(pki: &Pki, kind: &str) -> Vec<u8> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let cp = kind == "controlplane";
    let key = |pem: &str| if cp { b64(pem) } else { String::new() };
    format!(
        "version: v1alpha1\nmachine:\n  type: {kind}\n  ca:\n    crt: {}\n    key: \"{}\"\ncluster:\n  clusterName: raw\n  controlPlane:\n    endpoint: https://raw.example:6443\n  ca:\n    crt: {}\n    key: \"{}\"\n",
        b64(&pki.os_crt),
        key(&pki.os_key),
        b64(&pki.k8s_crt),
        key(&pki.k8s_key),
    )
    .into_bytes()
}

fn spawn(fleet: &TalosFleet, ip: Ipv4Addr, user_data: Vec<u8>) -> NodeHandle {
    let mut opts = NodeOptions::new(ip, format!("raw-{}", ip.octets()[3]), "v1.11.6");
    opts.speed = 1000.0;
    opts.user_data = Some(user_data);
    TalosNode::spawn(fleet, opts).unwrap()
}

async fn channel(pki: &Pki, ip: Ipv4Addr) -> Channel {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.os_crt))
        .identity(Identity::from_pem(&pki.client_crt, &pki.client_key))
        .domain_name(ip.to_string());
    Endpoint::from_shared(format!("https://{ip}:50000"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn call<Req, Resp>(
    ch: &Channel,
    path: &'static str,
    req: Req,
    meta: &[(&'static str, String)],
) -> Result<Resp, tonic::Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(req);
    for (k, v) in meta {
        request.metadata_mut().append(*k, v.parse().unwrap());
    }
    grpc.unary(
        request,
        PathAndQuery::from_static(path),
        ProstCodec::<Req, Resp>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

async fn running(node: &NodeHandle) {
    tokio::time::timeout(
        Duration::from_secs(30),
        node.wait_for_phase(NodePhase::Running),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn user_data_boot_and_one_to_many_proxying() {
    let fleet = TalosFleet::new();
    let pki = pki();
    let ip = |d| Ipv4Addr::new(127, 77, 200, d);
    let cp1 = spawn(&fleet, ip(1), config(&pki, "controlplane"));
    let cp2 = spawn(&fleet, ip(2), config(&pki, "controlplane"));
    let w = spawn(&fleet, ip(3), config(&pki, "worker"));
    for n in [&cp1, &cp2, &w] {
        running(n).await;
    }
    let ch = channel(&pki, ip(1)).await;

    let nodes = format!("{},{},{},{}", ip(1), ip(2), ip(3), ip(99));
    let version: proto::VersionResponse = call(
        &ch,
        "/machine.MachineService/Version",
        proto::Empty {},
        &[("nodes", nodes)],
    )
    .await
    .unwrap();
    assert_eq!(version.messages.len(), 4);
    for (i, m) in version.messages.iter().take(3).enumerate() {
        let meta = m.metadata.as_ref().unwrap();
        assert_eq!(meta.hostname, ip(i as u8 + 1).to_string());
        assert!(meta.error.is_empty());
        assert_eq!(m.version.as_ref().unwrap().tag, "v1.11.6");
    }
    let failed = version.messages[3].metadata.as_ref().unwrap();
    assert!(failed.error.contains("Unavailable"), "{failed:?}");
    assert_eq!(
        failed.status.as_ref().unwrap().code,
        Code::Unavailable as i32
    );

    // Bootstrap cp-2 through cp-1 (`node`), then etcd members on both via `nodes`.
    let _: proto::BootstrapResponse = call(
        &ch,
        "/machine.MachineService/Bootstrap",
        proto::BootstrapRequest::default(),
        &[("node", ip(2).to_string())],
    )
    .await
    .unwrap();
    let members: proto::EtcdMemberListResponse = call(
        &ch,
        "/machine.MachineService/EtcdMemberList",
        proto::EtcdMemberListRequest::default(),
        &[("nodes", format!("{},{}", ip(1), ip(2)))],
    )
    .await
    .unwrap();
    assert_eq!(members.messages.len(), 2);
    assert!(members.messages.iter().all(|m| m.members.len() == 2));
    assert_eq!(members.messages[0].members[0].hostname, "raw-2");

    // `node` with two values is refused.
    let err = call::<_, proto::VersionResponse>(
        &ch,
        "/machine.MachineService/Version",
        proto::Empty {},
        &[("node", ip(1).to_string()), ("node", ip(2).to_string())],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Unsimulated methods say so.
    let err = call::<_, proto::RebootResponse>(
        &ch,
        "/machine.MachineService/Reset",
        proto::Empty {},
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);

    for n in [&cp1, &cp2, &w] {
        n.stop();
    }
    assert!(fleet.nodes().is_empty());
    assert_eq!(fleet.clusters()[0].etcd_members.len(), 2);
}

#[tokio::test]
async fn invalid_user_data_boots_to_maintenance() {
    let fleet = TalosFleet::new();
    let node = spawn(
        &fleet,
        Ipv4Addr::new(127, 77, 201, 1),
        b"not: [valid".to_vec(),
    );
    tokio::time::timeout(
        Duration::from_secs(30),
        node.wait_for_phase(NodePhase::Maintenance),
    )
    .await
    .unwrap();
    assert_eq!(node.status().role, None);
    let err = TalosNode::spawn(&fleet, NodeOptions::new(node.ip(), "dup", "v1.11.6")).unwrap_err();
    assert!(err.to_string().contains("already has a node"));
    node.stop();
}
