//! The real socket server and the `hk8s-twin` binary (few tests, loopback only).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use hk8s_twin::{Twin, TwinError, TwinOptions};
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[tokio::test]
async fn serves_over_a_socket_and_drops_connections_on_fault() {
    let twin = Twin::start(TwinOptions {
        speed: 1000.0,
        token: Some("tok".into()),
        seed_talos_snapshots: vec![("x86".into(), "v1.11.6".into())],
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(twin.api_url().starts_with("http://127.0.0.1:"));
    assert!(twin.api_url().ends_with("/v1"));
    let c = client();
    let r = c
        .get(format!("{}/images?type=snapshot", twin.api_url()))
        .bearer_auth("tok")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["ratelimit-limit"], "3600");
    let link = r.headers()["link"].to_str().unwrap().to_string();
    assert!(
        link.starts_with(&format!("<http://{}/v1/images?type=snapshot", twin.addr())),
        "{link}"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["images"][0]["labels"]["os"], "talos");

    let r = c
        .post(format!("{}/faults", twin.control_url()))
        .json(&json!({"match": {"path_prefix": "/locations"}, "drop_connection": true, "count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let dropped = c
        .get(format!("{}/locations", twin.api_url()))
        .bearer_auth("tok")
        .send()
        .await;
    assert!(
        dropped.is_err(),
        "the connection must be dropped: {dropped:?}"
    );
    let r = c
        .get(format!("{}/locations", twin.api_url()))
        .bearer_auth("tok")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Server addresses come from the twin's own block.
    let r: Value = c
        .post(format!("{}/servers", twin.api_url()))
        .bearer_auth("tok")
        .json(&json!({"name": "s", "server_type": "cx23", "image": "debian-12"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ip: std::net::Ipv4Addr = r["server"]["public_net"]["ipv4"]["ip"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(twin.addr_block().contains(&ip));
    let state: Value = c
        .get(format!("{}/state", twin.control_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["servers"][0]["name"], "s");
    twin.shutdown().await;
}

#[tokio::test]
async fn twins_get_distinct_blocks_and_refuse_other_addresses() {
    let a = Twin::start(TwinOptions::default()).await.unwrap();
    let b = Twin::start(TwinOptions::default()).await.unwrap();
    assert_ne!(a.addr_block(), b.addr_block());
    let err = Twin::start(TwinOptions {
        listen: Some(SocketAddr::from(([0, 0, 0, 0], 0))),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, TwinError::NotLoopback(_)), "{err}");
    let err = Twin::start(TwinOptions {
        speed: 0.0,
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, TwinError::InvalidSpeed(_)));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn binary_prints_its_url_first_and_survives_its_client() {
    let exe = env!("CARGO_BIN_EXE_hk8s-twin");
    let refused = Command::new(exe)
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));

    let mut child = Command::new(exe)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--speed",
            "1000",
            "--token",
            "t",
            "--seed-talos",
            "x86:v1.11.6,arm:v1.11.6",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("hk8s-twin: Hetzner API at ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/v1"),
        "{url}"
    );
    let c = client();
    let r: Value = c
        .get(format!(
            "{url}/images?type=snapshot&label_selector=os%3Dtalos"
        ))
        .bearer_auth("t")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["images"].as_array().unwrap().len(), 2);
    // The twin keeps serving after its stdout reader is gone (the client died).
    drop(out);
    let r = c
        .get(format!("{url}/locations"))
        .bearer_auth("t")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn actions_finish_on_real_time_and_lost_responses_keep_their_effect() {
    let twin = Twin::start(TwinOptions {
        speed: 1000.0,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = client();
    let api = twin.api_url();
    // The create succeeds but its response is lost: the connection is dropped after the handler.
    c.post(format!("{}/faults", twin.control_url()))
        .json(&json!({"match": {"method": "POST", "path_prefix": "/servers"}, "drop_connection": true, "count": 1, "when": "after"}))
        .send()
        .await
        .unwrap();
    let lost = c
        .post(format!("{api}/servers"))
        .bearer_auth("any")
        .json(&json!({"name": "s", "server_type": "cx23", "image": "debian-12"}))
        .send()
        .await;
    assert!(lost.is_err(), "{lost:?}");
    // Look again: the server exists and reaches `running` (60 s / 1000) without more calls.
    let (client, servers) = (&c, format!("{api}/servers?name=s"));
    let servers = &servers;
    hk8s_testkit::eventually("the server running and unlocked", || async move {
        let r: Value = client
            .get(servers)
            .bearer_auth("any")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (r["servers"][0]["status"] == "running" && r["servers"][0]["locked"] == false).then_some(())
    })
    .await;
    let log: Value = c
        .get(format!("{}/requests", twin.control_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(log["counts"]["POST /v1/servers"], 1);
    twin.shutdown().await;
}
