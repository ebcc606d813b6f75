//! Talos upgrades through the gRPC API with a plain tonic client and the twin's own messages:
//! the RPC's pull, pre-checks, texts and ack; the event stream; cordon/drain/uncordon through
//! recording cluster hooks; reboot, boot ID and version; the sequence lock; every fault.
//! Waits are on the twin's exact state (phases, counters), never on guessed timings.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use hk8s_testkit::pki::{self, KeyType};
use hk8s_twin_talos::hooks::VANILLA_SCHEMATIC;
use hk8s_twin_talos::proto;
use hk8s_twin_talos::{
    ClusterHooks, Cordon, Eviction, NodeHandle, NodeOptions, NodePhase, NodeStatus, TalosFleet,
    TalosNode, UpgradeFault, UpgradeFaultKind,
};
use prost::Message;
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
        os_key: os.key.replace("PRIVATE KEY", "ED25519 PRIVATE KEY"),
        k8s_crt: k8s.cert,
        k8s_key: k8s.key,
        client_crt: client.cert,
        client_key: client.key,
    }
}

fn config(pki: &Pki, kind: &str, kubelet: &str) -> Vec<u8> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let cp = kind == "controlplane";
    let key = |pem: &str| if cp { b64(pem) } else { String::new() };
    format!(
        "version: v1alpha1\nmachine:\n  type: {kind}\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:{kubelet}\n  ca:\n    crt: {}\n    key: \"{}\"\ncluster:\n  clusterName: up\n  controlPlane:\n    endpoint: https://up.example:6443\n  ca:\n    crt: {}\n    key: \"{}\"\n",
        b64(&pki.os_crt),
        key(&pki.os_key),
        b64(&pki.k8s_crt),
        key(&pki.k8s_key),
    )
    .into_bytes()
}

/// Cluster hooks that record what the upgrade did and hold pods on nodes.
#[derive(Default)]
struct Hooks {
    log: Mutex<Vec<String>>,
    pods: Mutex<Vec<(String, String, String)>>,
    block: AtomicBool,
}

impl Hooks {
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl ClusterHooks for Hooks {
    fn cordon(&self, cluster: &str, node: &str) -> Result<Cordon, String> {
        self.log
            .lock()
            .unwrap()
            .push(format!("cordon {cluster}/{node}"));
        Ok(Cordon::Cordoned)
    }
    fn drainable_pods(&self, _: &str, node: &str) -> Result<Vec<(String, String)>, String> {
        Ok(self
            .pods
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _, _)| n == node)
            .map(|(_, ns, p)| (ns.clone(), p.clone()))
            .collect())
    }
    fn evict(&self, _: &str, ns: &str, pod: &str) -> Eviction {
        if self.block.load(Ordering::SeqCst) {
            return Eviction::Blocked(
                "Cannot evict pod as it would violate the pod's disruption budget.".into(),
            );
        }
        self.pods
            .lock()
            .unwrap()
            .retain(|(_, n, p)| !(n == ns && p == pod));
        self.log.lock().unwrap().push(format!("evict {ns}/{pod}"));
        Eviction::Evicted
    }
    fn uncordon(&self, cluster: &str, node: &str) {
        self.log
            .lock()
            .unwrap()
            .push(format!("uncordon {cluster}/{node}"));
    }
}

struct Bench {
    fleet: TalosFleet,
    pki: Pki,
    hooks: Arc<Hooks>,
    nodes: Vec<NodeHandle>,
}

const IMAGE_V1116: &str = "factory.talos.dev/hcloud-installer/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba:v1.11.6";

fn ip(net: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 78, net, d)
}

/// `cps` control planes and `workers` workers at `version`, all Running, etcd bootstrapped on
/// the first control plane (when there is one) with every control plane a healthy member.
async fn bench(
    net: u8,
    cps: u8,
    workers: u8,
    version: &str,
    tune: impl Fn(&mut NodeOptions),
) -> Bench {
    let fleet = TalosFleet::new();
    let hooks = Arc::new(Hooks::default());
    fleet.set_cluster_hooks(hooks.clone());
    let pki = pki();
    let mut nodes = Vec::new();
    for i in 0..cps + workers {
        let kind = if i < cps { "controlplane" } else { "worker" };
        let mut opts = NodeOptions::new(ip(net, i + 1), format!("n{}", i + 1), version);
        opts.speed = 1000.0;
        opts.user_data = Some(config(&pki, kind, "v1.33.6"));
        tune(&mut opts);
        nodes.push(TalosNode::spawn(&fleet, opts).unwrap());
    }
    for n in &nodes {
        within(n.wait_for_phase(NodePhase::Running)).await;
    }
    let b = Bench {
        fleet,
        pki,
        hooks,
        nodes,
    };
    if cps > 0 {
        let ch = b.channel(0).await;
        let _: proto::BootstrapResponse = call(
            &ch,
            "/machine.MachineService/Bootstrap",
            proto::BootstrapRequest::default(),
        )
        .await
        .unwrap();
        let fleet = b.fleet.clone();
        let mut changes = fleet.changes();
        within(async {
            while fleet.clusters()[0].healthy_etcd_members < u64::from(cps) {
                changes.changed().await.unwrap();
            }
        })
        .await;
    }
    b.fleet.reset_upgrade_counters();
    // The first boots uncordoned nothing worth checking.
    b.hooks.log.lock().unwrap().clear();
    b
}

/// A safety bound for waits on exact state (never reached when the twin works).
async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("the twin did not reach the expected state")
}

impl Bench {
    async fn channel(&self, i: usize) -> Channel {
        let ip = self.nodes[i].ip();
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.pki.os_crt))
            .identity(Identity::from_pem(
                &self.pki.client_crt,
                &self.pki.client_key,
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

    fn status(&self, i: usize) -> NodeStatus {
        self.nodes[i].status()
    }

    async fn wait(&self, i: usize, pred: impl FnMut(&NodeStatus) -> bool) -> NodeStatus {
        if tokio::time::timeout(Duration::from_secs(60), self.nodes[i].wait_until(pred))
            .await
            .is_err()
        {
            panic!(
                "node {i} did not reach the expected state: {:#?}",
                self.status(i)
            );
        }
        self.status(i)
    }

    async fn upgrade(
        &self,
        i: usize,
        req: proto::UpgradeRequest,
    ) -> Result<proto::Upgrade, tonic::Status> {
        let ch = self.channel(i).await;
        let r: proto::UpgradeResponse = call(&ch, "/machine.MachineService/Upgrade", req).await?;
        Ok(r.messages.into_iter().next().unwrap())
    }

    async fn boot_id(&self, i: usize) -> String {
        let ch = self.channel(i).await;
        let mut grpc = tonic::client::Grpc::new(ch);
        grpc.ready().await.unwrap();
        let mut stream = grpc
            .server_streaming(
                tonic::Request::new(proto::ReadRequest {
                    path: "/proc/sys/kernel/random/boot_id".into(),
                }),
                PathAndQuery::from_static("/machine.MachineService/Read"),
                ProstCodec::<proto::ReadRequest, proto::Data>::default(),
            )
            .await
            .unwrap()
            .into_inner();
        let mut out = Vec::new();
        while let Some(d) = stream.message().await.unwrap() {
            out.extend(d.bytes);
        }
        String::from_utf8(out).unwrap().trim().to_string()
    }

    async fn version(&self, i: usize) -> String {
        let ch = self.channel(i).await;
        let v: proto::VersionResponse =
            call(&ch, "/machine.MachineService/Version", proto::Empty {})
                .await
                .unwrap();
        v.messages[0].version.as_ref().unwrap().tag.clone()
    }

    async fn events(&self, i: usize, tail: i32) -> tonic::Streaming<proto::Event> {
        let ch = self.channel(i).await;
        let mut grpc = tonic::client::Grpc::new(ch);
        grpc.ready().await.unwrap();
        grpc.server_streaming(
            tonic::Request::new(proto::EventsRequest {
                tail_events: tail,
                ..Default::default()
            }),
            PathAndQuery::from_static("/machine.MachineService/Events"),
            ProstCodec::<proto::EventsRequest, proto::Event>::default(),
        )
        .await
        .unwrap()
        .into_inner()
    }
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

fn upgrade_req(image: &str) -> proto::UpgradeRequest {
    proto::UpgradeRequest {
        image: image.into(),
        ..Default::default()
    }
}

/// An event decoded for assertions: (type name, actor ID, summary).
#[derive(Debug, Clone, PartialEq)]
struct Ev {
    kind: String,
    actor: String,
    what: String,
}

fn decode(e: &proto::Event) -> Ev {
    let any = e.data.clone().unwrap_or_default();
    let kind = any
        .type_url
        .strip_prefix("talos/runtime/machine.")
        .unwrap_or(&any.type_url)
        .to_string();
    let v = any.value.as_slice();
    let what = match kind.as_str() {
        "SequenceEvent" => {
            let s = proto::SequenceEvent::decode(v).unwrap();
            format!(
                "{} {} {}",
                s.sequence,
                s.action,
                s.error
                    .map(|e| format!("{}:{}", e.code, e.message))
                    .unwrap_or_default()
            )
        }
        "PhaseEvent" => {
            let p = proto::PhaseEvent::decode(v).unwrap();
            format!("{} {}", p.phase, p.action)
        }
        "TaskEvent" => {
            let t = proto::TaskEvent::decode(v).unwrap();
            format!("{} {}", t.task, t.action)
        }
        "MachineStatusEvent" => {
            let m = proto::MachineStatusEvent::decode(v).unwrap();
            format!("{} {}", m.stage, m.status.unwrap_or_default().ready)
        }
        "RestartEvent" => format!("{}", proto::RestartEvent::decode(v).unwrap().cmd),
        _ => String::new(),
    };
    Ev {
        kind,
        actor: e.actor_id.clone(),
        what,
    }
}

/// Every event until the stream ends (the node rebooted).
async fn drain_stream(mut s: tonic::Streaming<proto::Event>) -> Vec<Ev> {
    within(async {
        let mut out = Vec::new();
        while let Ok(Some(e)) = s.message().await {
            out.push(decode(&e));
        }
        out
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_drains_reboots_into_the_target_and_keeps_quorum() {
    let b = bench(10, 3, 1, "v1.10.9", |_| {}).await;
    b.hooks
        .pods
        .lock()
        .unwrap()
        .push(("n1".into(), "default".into(), "web-1".into()));
    let boot_before = b.boot_id(0).await;
    assert_eq!(boot_before, b.status(0).boot_id);
    let boots = b.status(0).boots;
    let stream = b.events(0, 0).await;

    let ack = b.upgrade(0, upgrade_req(IMAGE_V1116)).await.unwrap();
    assert_eq!(ack.ack, "Upgrade request received");
    assert!(uuid::Uuid::parse_str(&ack.actor_id).is_ok(), "{ack:?}");

    let events = drain_stream(stream).await;
    // The hello event, then the actor-tagged sequence.
    assert_eq!(events[0].kind, "", "{events:#?}");
    let seq: Vec<&Ev> = events.iter().filter(|e| e.actor == ack.actor_id).collect();
    assert_eq!(seq[0].what, "upgrade 1 ", "{events:#?}");
    let phases: Vec<&str> = seq
        .iter()
        .filter(|e| e.kind == "PhaseEvent" && e.what.ends_with(" 0"))
        .map(|e| e.what.trim_end_matches(" 0"))
        .collect();
    assert_eq!(
        phases,
        [
            "drain",
            "cleanup",
            "dbus",
            "stopServices",
            "unmount",
            "unmountBind",
            "unmountSystem",
            "volumeFinalize",
            "upgrade",
            "meta",
            "kexec",
            "stopEverything",
            "reboot"
        ]
    );
    assert!(seq.iter().any(|e| e.what == "cordonAndDrainNode 0"));
    let stages: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == "MachineStatusEvent")
        .map(|e| e.what.as_str())
        .collect();
    assert_eq!(stages, ["8 false", "5 false"], "UPGRADING then REBOOTING");
    // The reboot ends the boot: the restart (kexec) is the last event.
    assert_eq!(seq.last().unwrap().kind, "RestartEvent");
    assert_eq!(seq.last().unwrap().what, "1163412803");

    let after = b
        .wait(0, |s| s.phase == NodePhase::Running && s.boots > boots)
        .await;
    assert_eq!(after.talos_version, "v1.11.6");
    assert_eq!(after.schematic, VANILLA_SCHEMATIC);
    assert_eq!(after.platform, "hcloud");
    assert_ne!(after.boot_id, boot_before);
    assert_eq!(b.boot_id(0).await, after.boot_id);
    assert_eq!(b.version(0).await, "v1.11.6");
    assert_eq!(after.upgrade_rpcs_accepted, 1);
    assert_eq!(after.upgrades_started, 1);
    let record = after.last_upgrade.unwrap();
    assert_eq!(
        (
            record.outcome.as_str(),
            record.cordon.as_str(),
            record.evicted,
            record.drain_gave_up
        ),
        ("upgraded", "cordoned", 1, false)
    );
    assert_eq!(
        b.hooks.log(),
        ["cordon up/n1", "evict default/web-1", "uncordon up/n1"]
    );
    // etcd: the member was down during the reboot, never more than one.
    let cluster = &b.fleet.clusters()[0];
    assert_eq!(cluster.min_healthy_etcd_members, Some(2));
    b.wait(0, |_| b.fleet.clusters()[0].healthy_etcd_members == 3)
        .await;

    // The new boot's buffer: BOOTING, the boot sequence, RUNNING ready.
    let mut s = b.events(0, -1).await;
    let mut first = Vec::new();
    while first.len() < 5 {
        first.push(decode(&within(s.message()).await.unwrap().unwrap()));
    }
    assert_eq!(first[0].kind, "");
    assert_eq!(first[1].what, "1 false");
    assert_eq!(first[4].what, "4 true");
    for n in &b.nodes {
        n.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_refusals_use_talos_texts_and_start_nothing() {
    // Unknown installer: the pull fails before the reply.
    let b = bench(11, 3, 1, "v1.10.9", |_| {}).await;
    let err = b
        .upgrade(0, upgrade_req("ghcr.io/siderolabs/installer"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unknown);
    assert_eq!(
        err.message(),
        "error validating installer image \"ghcr.io/siderolabs/installer\": failed to resolve reference \"ghcr.io/siderolabs/installer\": ghcr.io/siderolabs/installer: not found"
    );
    // A control plane refuses while another member is down (the probe times out) ...
    b.nodes[1].power_off();
    b.wait(1, |s| s.phase == NodePhase::Off).await;
    let err = b.upgrade(0, upgrade_req(IMAGE_V1116)).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        err.message().starts_with("error validating etcd for upgrade: etcd member ")
            && err.message().ends_with(" is not healthy; all members must be healthy to perform an upgrade: context deadline exceeded"),
        "{}",
        err.message()
    );
    assert_eq!(b.status(0).upgrade_rpcs_accepted, 0);
    assert_eq!(b.status(0).upgrades_started, 0);
    assert_eq!(b.status(0).phase, NodePhase::Running);
    // ... a worker has no etcd checks, and `force` skips them.
    let ack = b.upgrade(3, upgrade_req(IMAGE_V1116)).await.unwrap();
    assert_eq!(ack.ack, "Upgrade request received");
    let forced = b
        .upgrade(
            0,
            proto::UpgradeRequest {
                force: true,
                ..upgrade_req(IMAGE_V1116)
            },
        )
        .await
        .unwrap();
    assert!(!forced.actor_id.is_empty());
    for n in &b.nodes {
        n.stop();
    }

    // Exactly two members: quorum would be lost.
    let b = bench(12, 2, 0, "v1.10.9", |_| {}).await;
    let err = b.upgrade(0, upgrade_req(IMAGE_V1116)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unknown);
    assert_eq!(
        err.message(),
        "error validating etcd for upgrade: etcd member count(2) is insufficient to maintain quorum if upgrade commences"
    );
    for n in &b.nodes {
        n.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_upgrade_or_a_reboot_while_one_runs_is_acked_then_locked() {
    // The cleanup phase (before etcd stops) lasts long enough to observe.
    let b = bench(13, 3, 0, "v1.10.9", |o| {
        o.phase_delay = Duration::from_secs(3600 * 1000)
    })
    .await;
    let first = b.upgrade(0, upgrade_req(IMAGE_V1116)).await.unwrap();
    b.wait(0, |s| {
        s.upgrade.as_ref().is_some_and(|u| u.phase == "cleanup")
    })
    .await;
    let mut stream = b.events(0, 0).await;
    let second = b.upgrade(0, upgrade_req(IMAGE_V1116)).await.unwrap();
    assert_eq!(second.ack, "Upgrade request received");
    assert_ne!(second.actor_id, first.actor_id);
    let reboot: proto::RebootResponse = call(
        &b.channel(0).await,
        "/machine.MachineService/Reboot",
        proto::RebootRequest::default(),
    )
    .await
    .unwrap();
    assert!(!reboot.messages[0].actor_id.is_empty());
    let mut locked = Vec::new();
    while locked.len() < 3 {
        locked.push(decode(&within(stream.message()).await.unwrap().unwrap()));
    }
    assert_eq!(locked[0].kind, "");
    for e in &locked[1..] {
        assert_eq!((e.kind.as_str(), e.actor.as_str()), ("SequenceEvent", ""));
        assert_eq!(e.what, " 0 1:sequence not started: locked");
    }
    let s = b.status(0);
    assert_eq!((s.upgrade_rpcs_accepted, s.upgrades_started), (2, 1));
    assert_eq!(s.upgrade.unwrap().actor_id, first.actor_id);
    for n in &b.nodes {
        n.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_have_the_outward_shape_of_real_failures() {
    // Workers (no etcd checks); the control plane issues their certificates.
    let b = bench(14, 1, 5, "v1.10.9", |_| {}).await;
    let fault = |i: usize, kind| {
        b.fleet.add_upgrade_fault(UpgradeFault {
            id: 0,
            ip: Some(b.nodes[i].ip()),
            kind,
            count: 1,
            fired: 0,
        })
    };

    // A node that never returns: down after the reboot until power cycled (then it boots the
    // slot the installer wrote).
    fault(1, UpgradeFaultKind::NeverReturns);
    let boots = b.status(1).boots;
    b.upgrade(1, upgrade_req(IMAGE_V1116)).await.unwrap();
    let s = b
        .wait(1, |s| {
            s.last_upgrade
                .as_ref()
                .is_some_and(|u| u.outcome == "never_returned")
        })
        .await;
    assert_eq!((s.phase, s.boots), (NodePhase::Rebooting, boots));
    assert!(
        tokio::net::TcpStream::connect((b.nodes[1].ip(), 50000))
            .await
            .is_err()
    );
    b.nodes[1].reset();
    let s = b
        .wait(1, |s| s.phase == NodePhase::Running && s.boots > boots)
        .await;
    assert_eq!(s.talos_version, "v1.11.6");

    // A failed boot rolls back: new boot ID, old version, no RPC error.
    fault(2, UpgradeFaultKind::BootRollback);
    let (boots, boot_id) = (b.status(2).boots, b.status(2).boot_id);
    b.upgrade(2, upgrade_req(IMAGE_V1116)).await.unwrap();
    let s = b
        .wait(2, |s| s.phase == NodePhase::Running && s.boots > boots)
        .await;
    assert_eq!(s.talos_version, "v1.10.9");
    assert_ne!(s.boot_id, boot_id);
    assert_eq!(b.version(2).await, "v1.10.9");
    assert_eq!(s.last_upgrade.unwrap().outcome, "rolled_back");

    // The installer refuses: a FATAL sequence error after the drain, then the old version.
    fault(3, UpgradeFaultKind::InstallerRefuses);
    let boots = b.status(3).boots;
    let stream = b.events(3, 0).await;
    let ack = b.upgrade(3, upgrade_req(IMAGE_V1116)).await.unwrap();
    let events = drain_stream(stream).await;
    let fatal = events
        .iter()
        .find(|e| e.kind == "SequenceEvent" && e.what.contains("0:sequence failed"))
        .unwrap();
    assert_eq!(fatal.actor, ack.actor_id);
    assert_eq!(
        fatal.what,
        "upgrade 0 0:sequence failed: error running phase 9 in upgrade sequence: task 1/1: failed, upgrades to version 1.11.6 are not supported"
    );
    let s = b
        .wait(3, |s| s.phase == NodePhase::Running && s.boots > boots)
        .await;
    assert_eq!(s.talos_version, "v1.10.9");
    assert_eq!(s.last_upgrade.unwrap().outcome, "failed");
    assert!(b.hooks.log().contains(&"uncordon up/n4".to_string()));

    // Another actor holds the lock: acked, LOCKED, nothing runs.
    fault(4, UpgradeFaultKind::Locked);
    let mut stream = b.events(4, 0).await;
    b.upgrade(4, upgrade_req(IMAGE_V1116)).await.unwrap();
    within(stream.message()).await.unwrap().unwrap();
    let locked = decode(&within(stream.message()).await.unwrap().unwrap());
    assert_eq!(locked.what, " 0 1:sequence not started: locked");
    let s = b.status(4);
    assert_eq!((s.upgrade_rpcs_accepted, s.upgrades_started), (1, 0));

    // A PDB that never allows eviction: retried for the 5 minutes, then the upgrade goes on.
    b.hooks.block.store(true, Ordering::SeqCst);
    b.hooks
        .pods
        .lock()
        .unwrap()
        .push(("n6".into(), "default".into(), "db-0".into()));
    let boots = b.status(5).boots;
    b.upgrade(5, upgrade_req(IMAGE_V1116)).await.unwrap();
    let s = b
        .wait(5, |s| s.phase == NodePhase::Running && s.boots > boots)
        .await;
    let record = s.last_upgrade.unwrap();
    assert!(
        record.drain_gave_up && record.eviction_refusals >= 1,
        "{record:?}"
    );
    assert_eq!((record.evicted, s.talos_version.as_str()), (0, "v1.11.6"));
    assert_eq!(
        b.fleet
            .upgrade_faults()
            .iter()
            .map(|f| f.fired)
            .sum::<u64>(),
        4
    );
    for n in &b.nodes {
        n.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_installer_preflight_refuses_unsupported_jumps() {
    let b = bench(15, 1, 1, "v1.9.6", |_| {}).await;
    let boots = b.status(1).boots;
    let image = IMAGE_V1116.replace("v1.11.6", "v1.12.0");
    b.upgrade(1, upgrade_req(&image)).await.unwrap();
    let s = b
        .wait(1, |s| s.phase == NodePhase::Running && s.boots > boots)
        .await;
    let record = s.last_upgrade.unwrap();
    assert_eq!(record.outcome, "failed");
    assert!(
        record
            .error
            .unwrap()
            .ends_with("host version 1.9.6 is too old to upgrade to Talos 1.12.0")
    );
    assert_eq!(s.talos_version, "v1.9.6");
    // Staged: no drain, the new version installs at the next boot.
    let stage = proto::UpgradeRequest {
        stage: true,
        ..upgrade_req(IMAGE_V1116)
    };
    let boots = s.boots;
    b.upgrade(1, stage).await.unwrap();
    let s = b
        .wait(1, |s| s.phase == NodePhase::Running && s.boots > boots)
        .await;
    assert_eq!(s.talos_version, "v1.11.6");
    let record = s.last_upgrade.unwrap();
    assert_eq!((record.outcome.as_str(), record.evicted), ("staged", 0));
    for n in &b.nodes {
        n.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arm64_hosts_of_v1_11_4_to_v1_11_5_hang_in_kexec_unless_powercycled() {
    let b = bench(16, 1, 2, "v1.11.5", |o| o.arch = "arm64".into()).await;
    let boots = b.status(1).boots;
    b.upgrade(1, upgrade_req(IMAGE_V1116)).await.unwrap();
    let s = b
        .wait(1, |s| {
            s.last_upgrade
                .as_ref()
                .is_some_and(|u| u.outcome == "never_returned")
        })
        .await;
    assert_eq!((s.phase, s.boots), (NodePhase::Rebooting, boots));
    let boots = b.status(2).boots;
    let powercycle = proto::UpgradeRequest {
        reboot_mode: proto::reboot_mode::POWERCYCLE,
        ..upgrade_req(IMAGE_V1116)
    };
    b.upgrade(2, powercycle).await.unwrap();
    let s = b
        .wait(2, |s| s.phase == NodePhase::Running && s.boots > boots)
        .await;
    assert_eq!(s.talos_version, "v1.11.6");
    for n in &b.nodes {
        n.stop();
    }
}
