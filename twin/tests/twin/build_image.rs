//! Building a Talos snapshot the way hk8s's image builder does, entirely through the twin: an
//! SSH key, a Debian server created off with rescue enabled, power on, SSH as root into the
//! rescue system, `wget | xz -d | dd` from the twin's image factory, power off, `create_image`,
//! delete; then a server from the snapshot answers the Talos maintenance API (Disks) on :50000.
//! A wrong-arch image, a truncated write and a system image never boot Talos; a seeded snapshot
//! still does; rescue is one boot.

use std::net::SocketAddr;
use std::time::Duration;

use hk8s_talos::TalosClient;
use hk8s_twin::{Twin, TwinHandle, TwinOptions};
use hk8s_twin_factory::{Arch, Inspection, schematic};
use hk8s_twin_rescue::client;
use serde_json::{Value, json};

use crate::common::SocketApi as Api;

/// Safety net against a hang; the test waits on change notifications, never on a clock.
const HANG: Duration = Duration::from_secs(60);

/// The builder's flow on top of the shared socket client.
trait Actions {
    async fn done(&self, twin: &TwinHandle, action: &Value);
    async fn act(&self, twin: &TwinHandle, server: i64, action: &str, body: Value) -> Value;
}

impl Actions for Api {
    /// Waits (on the twin's change counter) until action `id` succeeded.
    async fn done(&self, twin: &TwinHandle, action: &Value) {
        let id = action["id"].as_i64().unwrap();
        let mut rx = twin.state().changes();
        tokio::time::timeout(HANG, async {
            loop {
                rx.mark_unchanged();
                let a = self
                    .call(reqwest::Method::GET, &format!("/actions/{id}"), None)
                    .await;
                match a["action"]["status"].as_str() {
                    Some("success") => return,
                    Some("error") => panic!("action failed: {a}"),
                    _ => {}
                }
                rx.changed().await.unwrap();
            }
        })
        .await
        .expect("action finished");
    }

    /// POSTs a server action and waits for it.
    async fn act(&self, twin: &TwinHandle, server: i64, action: &str, body: Value) -> Value {
        let r = self
            .post(&format!("/servers/{server}/actions/{action}"), body)
            .await;
        self.done(twin, &r["action"]).await;
        r
    }
}

async fn twin() -> (TwinHandle, Api) {
    let twin = Twin::start(TwinOptions {
        speed: 1000.0,
        rescue_ssh_port: 0,
        seed_talos_snapshots: vec![("arm".into(), "v1.11.5".into())],
        ..Default::default()
    })
    .await
    .unwrap();
    let api = Api::new(twin.api_url());
    (twin, api)
}

/// Creates a server (off, rescue enabled with a fresh key) and boots it into rescue; returns
/// its id, the rescue address and the key.
async fn rescue_server(
    twin: &TwinHandle,
    api: &Api,
    name: &str,
    server_type: &str,
) -> (i64, SocketAddr, russh::keys::PrivateKey) {
    let (key, public) = client::generate_key();
    let k = api
        .post("/ssh_keys", json!({"name": name, "public_key": public}))
        .await;
    let key_id = k["ssh_key"]["id"].as_i64().unwrap();
    let s = api
        .post(
            "/servers",
            json!({
                "name": name, "server_type": server_type, "image": "debian-12",
                "location": "fsn1", "start_after_create": false,
                "ssh_keys": [key_id], "labels": {"role": "image-builder"}
            }),
        )
        .await;
    let id = s["server"]["id"].as_i64().unwrap();
    api.done(twin, &s["action"]).await;
    api.act(
        twin,
        id,
        "enable_rescue",
        json!({"type": "linux64", "ssh_keys": [key_id]}),
    )
    .await;
    api.act(twin, id, "poweron", json!({})).await;
    let machines = twin.machines().unwrap().clone();
    let addr = hk8s_testkit::eventually("the rescue system listens", || {
        let m = machines.clone();
        async move { m.rescue_addr(id) }
    })
    .await;
    (id, addr, key)
}

/// Powers the server off, snapshots it, deletes it; returns the snapshot id.
async fn snapshot(twin: &TwinHandle, api: &Api, id: i64, labels: Value) -> i64 {
    api.act(twin, id, "poweroff", json!({})).await;
    let img = api
        .act(
            twin,
            id,
            "create_image",
            json!({"type": "snapshot", "labels": labels}),
        )
        .await;
    api.done(twin, &api.delete(&format!("/servers/{id}")).await["action"])
        .await;
    img["image"]["id"].as_i64().unwrap()
}

/// Creates a server from `image`, waits until it runs; returns (id, ip).
async fn boot(
    twin: &TwinHandle,
    api: &Api,
    name: &str,
    server_type: &str,
    image: Value,
) -> (i64, std::net::Ipv4Addr) {
    let s = api
        .post(
            "/servers",
            json!({"name": name, "server_type": server_type, "image": image, "location": "fsn1"}),
        )
        .await;
    api.done(twin, &s["action"]).await;
    let ip = s["server"]["public_net"]["ipv4"]["ip"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    (s["server"]["id"].as_i64().unwrap(), ip)
}

/// Waits until nothing accepts on `addr` (a stopped rescue system closes its listener on its own
/// task).
async fn closed(addr: SocketAddr) {
    hk8s_testkit::eventually("the rescue SSH listener closed", || async move {
        tokio::net::TcpStream::connect(addr)
            .await
            .is_err()
            .then_some(())
    })
    .await
}

fn image_url(twin: &TwinHandle, version: &str, arch: &str) -> String {
    format!(
        "{}/image/{}/{version}/hcloud-{arch}.raw.xz",
        twin.factory_url(),
        schematic::HETZNER_QEMU_GUEST_AGENT_ID
    )
}

#[tokio::test]
async fn a_snapshot_built_in_rescue_boots_talos() {
    let (twin, api) = twin().await;
    let (id, addr, key) = rescue_server(&twin, &api, "build-amd64", "cx23").await;
    let out = client::exec(
        addr,
        "root",
        &key,
        "uname -m; blockdev --getsize64 /dev/sda",
        b"",
    )
    .await
    .unwrap();
    assert_eq!(out.stdout_text(), "x86_64\n40000000000\n");
    let host_key = out.host_key.to_openssh().unwrap();
    assert_eq!(twin.machines().unwrap().rescue_host_key(id), Some(host_key));
    let cmd = format!(
        "set -o pipefail; wget -qO- {} | xz -d | dd of=/dev/sda bs=4M conv=fsync && sync",
        image_url(&twin, "v1.11.6", "amd64")
    );
    let out = client::exec(addr, "root", &key, &cmd, b"").await.unwrap();
    assert_eq!(out.status, Some(0), "{}", out.stderr_text());
    assert!(
        out.stderr_text()
            .contains("\n2097152 bytes (2.1 MB, 2.0 MiB) copied, ")
    );
    // The control API shows the session.
    let rescue: Value = reqwest::get(format!("{}/rescue", twin.control_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rescue["ssh_port"], 0);
    assert_eq!(rescue["rescue"][0]["commands"][1]["command"], cmd.as_str());
    assert_eq!(rescue["rescue"][0]["commands"][1]["status"], 0);

    let image = snapshot(&twin, &api, id, json!({"built-by": "test"})).await;
    // Rescue ended with the power-off: nothing listens any more.
    closed(addr).await;
    assert!(matches!(
        twin.machines().unwrap().image_inspection(image),
        Some(Inspection::Talos(i)) if i.arch == Arch::Amd64 && i.schematic == schematic::HETZNER_QEMU_GUEST_AGENT_ID
    ));

    let (_, ip) = boot(&twin, &api, "check-amd64", "cx23", json!(image)).await;
    let fleet = twin.talos_fleet();
    let mut rx = fleet.changes();
    let node = tokio::time::timeout(HANG, async {
        loop {
            rx.mark_unchanged();
            if let Some(n) = fleet.handle(ip) {
                return n;
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .unwrap();
    tokio::time::timeout(
        HANG,
        node.wait_for_phase(hk8s_twin_talos::NodePhase::Maintenance),
    )
    .await
    .unwrap();
    let talos = TalosClient::maintenance(SocketAddr::from((ip, 50000)))
        .await
        .unwrap();
    assert!(!talos.disks().await.unwrap().is_empty());
    // The version comes from the image header (the snapshot's labels say nothing about it).
    assert_eq!(fleet.node(ip).unwrap().talos_version, "v1.11.6");
    twin.shutdown().await;
}

#[tokio::test]
async fn wrong_arch_truncated_and_system_disks_never_boot_talos_and_rescue_is_one_boot() {
    let (twin, api) = twin().await;
    let machines = twin.machines().unwrap().clone();
    // An arm64 image written onto an x86 server.
    let (id, addr, key) = rescue_server(&twin, &api, "wrong-arch", "cx23").await;
    let cmd = format!(
        "wget -qO- {} | xz -d | dd of=/dev/sda bs=4M",
        image_url(&twin, "v1.11.6", "arm64")
    );
    assert_eq!(
        client::exec(addr, "root", &key, &cmd, b"")
            .await
            .unwrap()
            .status,
        Some(0)
    );
    // Reboot: rescue was one boot, the server comes up from its disk (which is not x86 Talos).
    api.act(&twin, id, "reboot", json!({})).await;
    closed(addr).await;
    assert!(
        matches!(machines.disk_inspection(id), Some(Inspection::Talos(i)) if i.arch == Arch::Arm64)
    );
    let wrong = snapshot(&twin, &api, id, json!({"os": "talos"})).await;

    // A truncated write.
    let (id, addr, key) = rescue_server(&twin, &api, "truncated", "cx23").await;
    let cmd = format!(
        "wget -qO- {} | xz -d | head -c 1048576 | dd of=/dev/sda bs=4M",
        image_url(&twin, "v1.11.6", "amd64")
    );
    assert_eq!(
        client::exec(addr, "root", &key, &cmd, b"")
            .await
            .unwrap()
            .status,
        Some(0)
    );
    let truncated = snapshot(&twin, &api, id, json!({"os": "talos"})).await;
    assert!(matches!(
        machines.image_inspection(truncated),
        Some(Inspection::Corrupt(_))
    ));

    let (_, ip1) = boot(&twin, &api, "from-wrong", "cx23", json!(wrong)).await;
    let (_, ip2) = boot(&twin, &api, "from-truncated", "cx23", json!(truncated)).await;
    let (_, ip3) = boot(&twin, &api, "from-debian", "cx23", json!("debian-12")).await;
    // A seeded snapshot (no disk behind it) still boots, as a valid image of its labels.
    let seeded = api
        .call(
            reqwest::Method::GET,
            "/images?type=snapshot&label_selector=version%3D%3Dv1.11.5",
            None,
        )
        .await["images"][0]["id"]
        .as_i64()
        .unwrap();
    let (_, ip5) = boot(&twin, &api, "from-seed", "cax11", json!(seeded)).await;
    let fleet = twin.talos_fleet();
    let mut rx = fleet.changes();
    tokio::time::timeout(HANG, async {
        loop {
            rx.mark_unchanged();
            if fleet.handle(ip5).is_some() {
                return;
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .unwrap();
    assert_eq!(fleet.node(ip5).unwrap().talos_version, "v1.11.5");
    for ip in [ip1, ip2, ip3] {
        assert!(fleet.handle(ip).is_none(), "{ip} runs Talos");
        assert!(tokio::net::TcpStream::connect((ip, 50000)).await.is_err());
    }
    twin.shutdown().await;
}

#[tokio::test]
async fn poweroff_typed_in_rescue_turns_the_server_off() {
    let (twin, api) = twin().await;
    let (id, addr, key) = rescue_server(&twin, &api, "guest-off", "cax11").await;
    let out = client::exec(addr, "root", &key, "uname -m", b"")
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "aarch64\n");
    // The session may end before or after the exit status: the server is going down.
    let _ = client::exec(addr, "root", &key, "sync; poweroff", b"").await;
    let st = twin.state();
    let mut rx = st.changes();
    tokio::time::timeout(HANG, async {
        loop {
            rx.mark_unchanged();
            if st.servers().iter().any(|s| s.id == id && s.status == "off") {
                return;
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .unwrap();
    assert!(twin.machines().unwrap().rescue_addr(id).is_none());
    closed(addr).await;
    twin.shutdown().await;
}

#[tokio::test]
async fn rescue_ssh_listens_on_port_22_by_default() {
    // Port 22 needs root (or CAP_NET_BIND_SERVICE); CI runs as root.
    let probe = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()
        .and_then(|l| l.local_addr().ok())
        .and_then(|a| std::net::TcpListener::bind(SocketAddr::new(a.ip(), 22)).ok());
    if probe.is_none() {
        hk8s_testkit::skip("cannot bind port 22 (not root)");
        return;
    }
    drop(probe);
    let twin = Twin::start(TwinOptions {
        speed: 1000.0,
        ..Default::default()
    })
    .await
    .unwrap();
    let api = Api::new(twin.api_url());
    let (id, addr, key) = rescue_server(&twin, &api, "port-22", "cx23").await;
    assert_eq!(addr.port(), 22);
    let ip = twin
        .state()
        .servers()
        .into_iter()
        .find(|s| s.id == id)
        .unwrap()
        .public_ipv4;
    assert_eq!(Some(addr.ip()), ip.map(std::net::IpAddr::V4));
    let out = client::exec(addr, "root", &key, "echo ok", b"")
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "ok\n");
    twin.shutdown().await;
}
