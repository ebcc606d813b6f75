//! Activity tests against an in-process Hetzner twin (`hk8s-twin`) on loopback.
//!
//! The twin's request log (`GET /twin/requests`) is the witness: how many calls, which
//! ones mutate, and what the action polls asked for.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::time::Duration;

use hk8s_hetzner::{
    ApiToken, Arch, DeleteOutcome, EnsureOutcome, ErrorClass, ErrorKind, FirewallSpec, Hetzner,
    HetznerConfig, LoadBalancerSpec, NetworkSpec, Pacing, PlacementGroupSpec, Role, ServerSpec,
    labels,
};
use hk8s_twin::{RateLimit, Twin, TwinHandle, TwinOptions};
use serde_json::{Value, json};

const CLUSTER: &str = "demo";
const TALOS: &str = "v1.11.6";

async fn twin() -> TwinHandle {
    twin_with(RateLimit::default()).await
}

async fn twin_with(rate_limit: RateLimit) -> TwinHandle {
    Twin::start(TwinOptions {
        speed: 1000.0,
        rate_limit,
        seed_talos_snapshots: vec![("amd64".into(), TALOS.into())],
        ..Default::default()
    })
    .await
    .unwrap()
}

fn client(twin: &TwinHandle, pacing: Pacing) -> Hetzner {
    client_polling(twin, pacing, Duration::from_millis(20))
}

fn client_polling(twin: &TwinHandle, pacing: Pacing, poll: Duration) -> Hetzner {
    Hetzner::new(
        HetznerConfig::new(ApiToken::new("twin-token"))
            .with_endpoint(twin.api_url())
            .with_pacing(pacing)
            .with_action_poll_interval(poll),
    )
    .unwrap()
}

/// Raw access to the twin's API and control API, for setting up drift and foreign
/// resources behind the facade's back.
struct Raw {
    http: reqwest::Client,
    api: String,
    control: String,
}

impl Raw {
    fn new(twin: &TwinHandle) -> Self {
        Self {
            http: reqwest::Client::new(),
            api: twin.api_url(),
            control: twin.control_url(),
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth("twin-token");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn requests(&self) -> Value {
        self.http
            .get(format!("{}/requests", self.control))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn reset_requests(&self) {
        let s = self
            .http
            .post(format!("{}/reset-requests", self.control))
            .send()
            .await
            .unwrap()
            .status();
        assert!(s.is_success());
    }

    /// Waits until `GET /actions?id=..` says every given action finished (twin time).
    async fn settle(&self, ids: &[i64]) {
        for _ in 0..500 {
            let q: Vec<String> = ids.iter().map(|i| format!("id={i}")).collect();
            let v = self
                .send(
                    reqwest::Method::GET,
                    &format!("/actions?{}", q.join("&")),
                    None,
                )
                .await;
            if v["actions"]
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["status"] != "running")
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("actions {ids:?} never finished");
    }
}

fn network_spec() -> NetworkSpec {
    NetworkSpec {
        cluster: CLUSTER.into(),
        ip_range: "10.0.0.0/16".parse().unwrap(),
        subnet_range: "10.0.1.0/24".parse().unwrap(),
        network_zone: "eu-central".into(),
        secrets_fingerprint: None,
    }
}

fn firewall_spec(role: Role) -> FirewallSpec {
    FirewallSpec {
        cluster: CLUSTER.into(),
        role,
        private_cidr: "10.0.0.0/16".parse().unwrap(),
        admin_cidrs: vec!["203.0.113.0/24".parse().unwrap()],
    }
}

fn lb_spec(network_id: i64) -> LoadBalancerSpec {
    LoadBalancerSpec {
        cluster: CLUSTER.into(),
        lb_type: "lb11".into(),
        location: Some("fsn1".into()),
        network_zone: None,
        network_id,
        private_ip: None,
        public_interface: true,
    }
}

#[allow(clippy::too_many_arguments)]
fn server_spec(
    name: &str,
    role: Role,
    image_id: i64,
    network_id: i64,
    firewall_id: i64,
    pg: i64,
    private_ip: Option<Ipv4Addr>,
) -> ServerSpec {
    ServerSpec {
        cluster: CLUSTER.into(),
        name: name.into(),
        role,
        pool: None,
        server_type: "cx23".into(),
        location: "fsn1".into(),
        image_id,
        network_id,
        firewall_ids: vec![firewall_id],
        placement_group_id: Some(pg),
        ssh_key_ids: vec![],
        labels: Default::default(),
        private_ip,
    }
}

/// Everything a small cluster needs, as the ids the ensures returned.
#[derive(Debug, PartialEq)]
struct Ids {
    network: i64,
    fw_cp: i64,
    fw_worker: i64,
    pg_cp: i64,
    pg_worker: i64,
    lb: i64,
    cp: i64,
    worker: i64,
}

async fn ensure_cluster(h: &Hetzner) -> (Ids, Vec<EnsureOutcome>) {
    let net = h.ensure_network(&network_spec()).await.unwrap();
    let fw_cp = h
        .ensure_firewall(&firewall_spec(Role::ControlPlane))
        .await
        .unwrap();
    let fw_worker = h
        .ensure_firewall(&firewall_spec(Role::Worker))
        .await
        .unwrap();
    let pg_cp = h
        .ensure_placement_group(
            &PlacementGroupSpec::for_servers(CLUSTER, Role::ControlPlane, "cp", 1)[0],
        )
        .await
        .unwrap();
    let pg_worker = h
        .ensure_placement_group(
            &PlacementGroupSpec::for_servers(CLUSTER, Role::Worker, "worker", 1)[0],
        )
        .await
        .unwrap();
    let lb = h.ensure_load_balancer(&lb_spec(net.id)).await.unwrap();
    let image = h
        .find_talos_image(Arch::Amd64, TALOS)
        .await
        .unwrap()
        .expect("seeded talos snapshot");
    let cp = h
        .ensure_server(&server_spec(
            "demo-cp-1",
            Role::ControlPlane,
            image.id,
            net.id,
            fw_cp.id,
            pg_cp.id,
            None,
        ))
        .await
        .unwrap();
    let worker = h
        .ensure_server(&server_spec(
            "demo-worker-1",
            Role::Worker,
            image.id,
            net.id,
            fw_worker.id,
            pg_worker.id,
            Some("10.0.1.50".parse().unwrap()),
        ))
        .await
        .unwrap();
    assert!(cp.public_ipv4.is_some(), "{cp:?}");
    assert!(cp.private_ip.is_some(), "{cp:?}");
    assert_eq!(worker.private_ip, Some("10.0.1.50".parse().unwrap()));
    assert_eq!(cp.status, "running");
    let outcomes = vec![
        net.outcome,
        fw_cp.outcome,
        fw_worker.outcome,
        pg_cp.outcome,
        pg_worker.outcome,
        lb.outcome,
        cp.outcome,
        worker.outcome,
    ];
    (
        Ids {
            network: net.id,
            fw_cp: fw_cp.id,
            fw_worker: fw_worker.id,
            pg_cp: pg_cp.id,
            pg_worker: pg_worker.id,
            lb: lb.id,
            cp: cp.id,
            worker: worker.id,
        },
        outcomes,
    )
}

#[tokio::test]
async fn ensure_twice_returns_the_same_ids_without_mutating() {
    let twin = twin().await;
    let raw = Raw::new(&twin);
    let h = client(&twin, Pacing::UNLIMITED);

    let (first, outcomes) = ensure_cluster(&h).await;
    assert!(
        outcomes.iter().all(|o| *o == EnsureOutcome::Created),
        "{outcomes:?}"
    );

    raw.reset_requests().await;
    let (second, outcomes) = ensure_cluster(&h).await;
    assert_eq!(first, second);
    assert!(
        outcomes.iter().all(|o| *o == EnsureOutcome::Unchanged),
        "{outcomes:?}"
    );
    let log = raw.requests().await;
    assert_eq!(log["mutating"], 0, "{log:#}");
    // One lookup per ensure plus the image lookup.
    assert_eq!(log["total"], 9, "{log:#}");

    let lb = h
        .ensure_load_balancer(&lb_spec(first.network))
        .await
        .unwrap();
    assert!(
        lb.public_ipv4.is_some() && lb.private_ip.is_some(),
        "{lb:?}"
    );
    twin.shutdown().await;
}

#[tokio::test]
async fn server_create_polls_all_its_actions_in_one_call() {
    let twin = twin().await;
    let raw = Raw::new(&twin);
    let h = client(&twin, Pacing::UNLIMITED);
    let net = h.ensure_network(&network_spec()).await.unwrap();
    let fw = h
        .ensure_firewall(&firewall_spec(Role::ControlPlane))
        .await
        .unwrap();
    let pg = h
        .ensure_placement_group(
            &PlacementGroupSpec::for_servers(CLUSTER, Role::ControlPlane, "cp", 1)[0],
        )
        .await
        .unwrap();
    let image = h
        .find_talos_image(Arch::Amd64, TALOS)
        .await
        .unwrap()
        .unwrap();

    raw.reset_requests().await;
    let before = h.requests_sent();
    let server = h
        .ensure_server(&server_spec(
            "demo-cp-1",
            Role::ControlPlane,
            image.id,
            net.id,
            fw.id,
            pg.id,
            None,
        ))
        .await
        .unwrap();
    assert_eq!(server.outcome, EnsureOutcome::Created);
    let log = raw.requests().await;
    let requests = log["requests"].as_array().unwrap();
    let polls: Vec<&str> = requests
        .iter()
        .filter(|r| r["endpoint"].as_str().unwrap().contains("/actions") && r["method"] == "GET")
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert!(!polls.is_empty());
    // The first poll asks for the create action and every next action at once.
    let first_ids = polls[0].matches("id=").count();
    assert!(first_ids >= 2, "first poll {:?}", polls[0]);
    assert!(
        polls.iter().all(|p| p.starts_with("/v1/actions?")),
        "{polls:?}"
    );
    let total = requests.len() as u64;
    assert_eq!(total, h.requests_sent() - before);
    println!(
        "requests for one created server: {total} ({} action polls): {:?}",
        polls.len(),
        requests
            .iter()
            .map(|r| format!(
                "{} {}",
                r["method"].as_str().unwrap(),
                r["path"].as_str().unwrap()
            ))
            .collect::<Vec<_>>()
    );
    // Lookup, create, >=1 poll, final get.
    assert!(total >= 4 && total <= 3 + polls.len() as u64, "{log:#}");
    twin.shutdown().await;
}

#[tokio::test]
async fn drift_is_fixed() {
    let twin = twin().await;
    let raw = Raw::new(&twin);
    let h = client(&twin, Pacing::UNLIMITED);
    let net = h.ensure_network(&network_spec()).await.unwrap();
    let fw = h
        .ensure_firewall(&firewall_spec(Role::Worker))
        .await
        .unwrap();
    let lb = h.ensure_load_balancer(&lb_spec(net.id)).await.unwrap();

    // Someone opens the firewall to the world and strips a label.
    let v = raw
        .send(
            reqwest::Method::POST,
            &format!("/firewalls/{}/actions/set_rules", fw.id),
            Some(
                json!({"rules": [{"direction": "in", "protocol": "tcp", "port": "22",
                "source_ips": ["0.0.0.0/0"]}]}),
            ),
        )
        .await;
    let ids: Vec<i64> = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect();
    raw.settle(&ids).await;
    raw.send(
        reqwest::Method::PUT,
        &format!("/firewalls/{}", fw.id),
        Some(json!({"labels": {"cluster": CLUSTER, "managed-by": "hk8s", "team": "x"}})),
    )
    .await;
    // And removes the load balancer's target and service.
    let v = raw
        .send(
            reqwest::Method::POST,
            &format!("/load_balancers/{}/actions/remove_target", lb.id),
            Some(
                json!({"type": "label_selector", "label_selector": {"selector":
                labels::role_server_selector(CLUSTER, Role::ControlPlane)}}),
            ),
        )
        .await;
    raw.settle(&[v["action"]["id"].as_i64().unwrap()]).await;
    let v = raw
        .send(
            reqwest::Method::POST,
            &format!("/load_balancers/{}/actions/delete_service", lb.id),
            Some(json!({"listen_port": 6443})),
        )
        .await;
    raw.settle(&[v["action"]["id"].as_i64().unwrap()]).await;

    let fixed = h
        .ensure_firewall(&firewall_spec(Role::Worker))
        .await
        .unwrap();
    assert_eq!((fixed.id, fixed.outcome), (fw.id, EnsureOutcome::Updated));
    let fixed_lb = h.ensure_load_balancer(&lb_spec(net.id)).await.unwrap();
    assert_eq!(
        (fixed_lb.id, fixed_lb.outcome),
        (lb.id, EnsureOutcome::Updated)
    );

    let live = raw
        .send(reqwest::Method::GET, &format!("/firewalls/{}", fw.id), None)
        .await;
    assert_eq!(
        live["firewall"]["labels"]["team"], "x",
        "foreign labels kept"
    );
    assert_eq!(live["firewall"]["labels"]["component"], "firewall");
    let ports: Vec<&str> = live["firewall"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["port"].as_str())
        .collect();
    assert!(!ports.contains(&"22"), "{ports:?}");
    let live_lb = raw
        .send(
            reqwest::Method::GET,
            &format!("/load_balancers/{}", lb.id),
            None,
        )
        .await;
    assert_eq!(live_lb["load_balancer"]["services"][0]["listen_port"], 6443);
    assert_eq!(
        live_lb["load_balancer"]["targets"][0]["use_private_ip"],
        true
    );

    // Fixed means fixed: a third call changes nothing.
    assert_eq!(
        h.ensure_firewall(&firewall_spec(Role::Worker))
            .await
            .unwrap()
            .outcome,
        EnsureOutcome::Unchanged
    );
    assert_eq!(
        h.ensure_load_balancer(&lb_spec(net.id))
            .await
            .unwrap()
            .outcome,
        EnsureOutcome::Unchanged
    );
    twin.shutdown().await;
}

#[tokio::test]
async fn foreign_resources_are_never_adopted_nor_destroyed() {
    let twin = twin().await;
    let raw = Raw::new(&twin);
    let h = client(&twin, Pacing::UNLIMITED);
    let image = h
        .find_talos_image(Arch::Amd64, TALOS)
        .await
        .unwrap()
        .unwrap();
    // Another tool's server with hk8s's name and even `cluster=demo`.
    let v = raw
        .send(
            reqwest::Method::POST,
            "/servers",
            Some(
                json!({"name": "demo-cp-1", "server_type": "cx23", "image": image.id.to_string(),
                "location": "fsn1", "labels": {"cluster": CLUSTER}}),
            ),
        )
        .await;
    let foreign_id = v["server"]["id"].as_i64().unwrap();
    let net = h.ensure_network(&network_spec()).await.unwrap();
    let err = h
        .ensure_server(&ServerSpec {
            firewall_ids: vec![],
            placement_group_id: None,
            ..server_spec(
                "demo-cp-1",
                Role::ControlPlane,
                image.id,
                net.id,
                0,
                0,
                None,
            )
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotManaged, "{err}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    let err = h.delete_server(CLUSTER, "demo-cp-1").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotManaged);

    let report = h.destroy_cluster_resources(CLUSTER).await.unwrap();
    assert!(report.remaining.is_empty(), "{report:?}");
    assert_eq!(report.deleted.networks.len(), 1);
    assert!(report.deleted.servers.is_empty());
    let still = raw
        .send(
            reqwest::Method::GET,
            &format!("/servers/{foreign_id}"),
            None,
        )
        .await;
    assert_eq!(still["server"]["name"], "demo-cp-1");
    twin.shutdown().await;
}

#[tokio::test]
async fn destroy_deletes_everything_in_order_and_is_repeatable() {
    let twin = twin().await;
    let raw = Raw::new(&twin);
    let h = client(&twin, Pacing::UNLIMITED);
    ensure_cluster(&h).await;
    let before = h.list_cluster_resources(CLUSTER).await.unwrap();
    assert_eq!(
        (
            before.servers.len(),
            before.load_balancers.len(),
            before.firewalls.len(),
            before.placement_groups.len(),
            before.networks.len()
        ),
        (2, 1, 2, 2, 1)
    );

    raw.reset_requests().await;
    let report = h.destroy_cluster_resources(CLUSTER).await.unwrap();
    assert!(report.remaining.is_empty(), "{report:?}");
    assert_eq!(report.deleted.count(), 8);
    let log = raw.requests().await;
    let deletes: Vec<String> = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["method"] == "DELETE")
        .map(|r| r["endpoint"].as_str().unwrap().to_string())
        .collect();
    let kind = |e: &str| {
        [
            "servers",
            "load_balancers",
            "firewalls",
            "placement_groups",
            "networks",
        ]
        .iter()
        .position(|k| e.contains(&format!("/{k}/")))
        .unwrap()
    };
    let order: Vec<usize> = deletes.iter().map(|e| kind(e)).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "dependency order: {deletes:?}");
    assert_eq!(deletes.len(), 8, "{deletes:?}");
    assert!(h.list_cluster_resources(CLUSTER).await.unwrap().is_empty());

    // Again: nothing to do, nothing fails.
    let again = h.destroy_cluster_resources(CLUSTER).await.unwrap();
    assert!(again.deleted.is_empty() && again.remaining.is_empty());
    assert_eq!(
        h.delete_server(CLUSTER, "demo-cp-1").await.unwrap(),
        DeleteOutcome::AlreadyGone
    );
    twin.shutdown().await;
}

#[tokio::test]
async fn a_429_is_classified_rate_limited() {
    // A twin bucket of 3 that practically never refills, and a client that does not pace.
    let twin = twin_with(RateLimit {
        capacity: 3,
        refill_per_sec: 0.001,
    })
    .await;
    let h = client(&twin, Pacing::UNLIMITED);
    let mut last = None;
    for _ in 0..4 {
        last = Some(h.ensure_network(&network_spec()).await);
        if last.as_ref().unwrap().is_err() {
            break;
        }
    }
    let err = last.unwrap().unwrap_err();
    assert_eq!(err.status, Some(429), "{err}");
    assert_eq!(err.code.as_deref(), Some("rate_limit_exceeded"));
    assert!(
        matches!(err.class(), ErrorClass::RateLimited { .. }),
        "{err}"
    );
    twin.shutdown().await;
}

#[tokio::test]
async fn pacing_keeps_a_burst_under_the_twins_limit() {
    // Twin: 5 tokens, 50/s. Client: burst 5 at 40/s, so it can never outrun the twin.
    let twin = twin_with(RateLimit {
        capacity: 5,
        refill_per_sec: 50.0,
    })
    .await;
    let raw = Raw::new(&twin);
    let h = client(
        &twin,
        Pacing {
            per_hour: 40 * 3600,
            burst: 5,
            reserve: 0,
        },
    );
    for _ in 0..30 {
        h.find_talos_image(Arch::Amd64, TALOS).await.unwrap();
    }
    let log = raw.requests().await;
    let limited = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == 429)
        .count();
    assert_eq!(limited, 0, "{log:#}");
    assert_eq!(log["total"], 30);
    twin.shutdown().await;
}

#[tokio::test]
async fn concurrent_server_creates_share_action_polls() {
    let twin = twin().await;
    let raw = Raw::new(&twin);
    let h = client(&twin, Pacing::UNLIMITED);
    let net = h.ensure_network(&network_spec()).await.unwrap();
    let fw = h
        .ensure_firewall(&firewall_spec(Role::Worker))
        .await
        .unwrap();
    let pg = h
        .ensure_placement_group(
            &PlacementGroupSpec::for_servers(CLUSTER, Role::Worker, "worker", 5)[0],
        )
        .await
        .unwrap();
    let image = h
        .find_talos_image(Arch::Amd64, TALOS)
        .await
        .unwrap()
        .unwrap();
    let specs: Vec<ServerSpec> = (1..=5)
        .map(|n| {
            server_spec(
                &labels::server_name(CLUSTER, "worker", n),
                Role::Worker,
                image.id,
                net.id,
                fw.id,
                pg.id,
                None,
            )
        })
        .collect();

    raw.reset_requests().await;
    let servers = futures::future::try_join_all(specs.iter().map(|s| h.ensure_server(s)))
        .await
        .unwrap();
    assert!(servers.iter().all(|s| s.outcome == EnsureOutcome::Created));
    let log = raw.requests().await;
    let requests = log["requests"].as_array().unwrap();
    let polls: Vec<&str> = requests
        .iter()
        .filter(|r| r["method"] == "GET" && r["path"].as_str().unwrap().starts_with("/v1/actions?"))
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    let widest = polls
        .iter()
        .map(|p| p.matches("id=").count())
        .max()
        .unwrap();
    println!(
        "5 concurrent servers: {} requests ({:.1} per server), {} action polls, widest poll {} ids",
        requests.len(),
        requests.len() as f64 / 5.0,
        polls.len(),
        widest
    );
    // A single server brings 4 actions (create + start, attach, apply firewall); a wider
    // poll carried the actions of several servers.
    assert!(widest > 4, "{polls:?}");
    // Per server: lookup and create (the create's reply holds the addresses, so no final
    // get); the polls are shared.
    assert_eq!(requests.len(), 10 + polls.len(), "{log:#}");
    twin.shutdown().await;
}

impl Raw {
    async fn fault(&self, rule: Value) {
        let s = self
            .http
            .post(format!("{}/faults", self.control))
            .json(&rule)
            .send()
            .await
            .unwrap()
            .status();
        assert!(s.is_success(), "{s}");
    }
}

/// Network, firewall, placement group and image for one control-plane server.
async fn server_prereqs(h: &Hetzner) -> ServerSpec {
    let net = h.ensure_network(&network_spec()).await.unwrap();
    let fw = h
        .ensure_firewall(&firewall_spec(Role::ControlPlane))
        .await
        .unwrap();
    let pg = h
        .ensure_placement_group(
            &PlacementGroupSpec::for_servers(CLUSTER, Role::ControlPlane, "cp", 1)[0],
        )
        .await
        .unwrap();
    let image = h
        .find_talos_image(Arch::Amd64, TALOS)
        .await
        .unwrap()
        .unwrap();
    server_spec(
        "demo-cp-1",
        Role::ControlPlane,
        image.id,
        net.id,
        fw.id,
        pg.id,
        None,
    )
}

#[tokio::test]
async fn a_requested_firewall_is_answered_before_its_rules_are_set() {
    let twin = twin().await;
    let raw = Raw::new(&twin);
    let h = client(&twin, Pacing::UNLIMITED);
    raw.reset_requests().await;
    let spec = firewall_spec(Role::Worker);
    let requested = h.request_firewall(&spec).await.unwrap();
    assert_eq!(requested.firewall.outcome, EnsureOutcome::Created);
    assert!(!requested.applying.is_empty(), "{requested:?}");
    let log = raw.requests().await;
    assert_eq!(log["total"], 2, "a lookup and the create, no poll: {log:#}");
    let applied = h.wait_firewall_applied(&requested).await.unwrap();
    assert_eq!(applied, requested.firewall);
    // Asked again: found, nothing left to wait for.
    let again = h.request_firewall(&spec).await.unwrap();
    assert_eq!(again.firewall.id, applied.id);
    assert!(again.applying.is_empty(), "{again:?}");
    twin.shutdown().await;
}

#[tokio::test]
async fn a_requested_server_is_answered_before_it_starts_and_the_wait_confirms_the_start() {
    let twin = twin().await;
    let raw = Raw::new(&twin);
    let h = client(&twin, Pacing::UNLIMITED);
    let spec = server_prereqs(&h).await;
    let listing = h.list_cluster_servers(CLUSTER).await.unwrap();
    raw.reset_requests().await;
    let requested = h.request_listed_server(&spec, &listing).await.unwrap();
    assert_eq!(requested.server.outcome, EnsureOutcome::Created);
    assert!(requested.server.public_ipv4.is_some(), "{requested:?}");
    assert!(!requested.starting.is_empty(), "{requested:?}");
    let log = raw.requests().await;
    assert_eq!(
        log["total"], 1,
        "only the create, no action polled yet: {log:#}"
    );

    let started = h.wait_server_started(&requested, &spec).await.unwrap();
    assert_eq!(started.status, "running");
    assert_eq!(started.id, requested.server.id);
    assert!(started.private_ip.is_some(), "{started:?}");
    let log = raw.requests().await;
    let polls = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["method"] == "GET" && r["path"].as_str().unwrap().starts_with("/v1/actions?"))
        .count();
    assert!(polls > 0, "the start is confirmed by its actions: {log:#}");

    // Asked again (a resume whose journal lost the step): adopted, nothing left to wait for.
    let listing = h.list_cluster_servers(CLUSTER).await.unwrap();
    let again = h.request_listed_server(&spec, &listing).await.unwrap();
    assert_ne!(again.server.outcome, EnsureOutcome::Created);
    assert!(again.starting.is_empty(), "{again:?}");
    assert_eq!(again.server.id, started.id);
    assert_eq!(
        h.list_cluster_resources(CLUSTER)
            .await
            .unwrap()
            .servers
            .len(),
        1
    );
    twin.shutdown().await;
}

#[tokio::test]
async fn a_lost_create_response_is_adopted_not_duplicated() {
    let twin = twin().await;
    let raw = Raw::new(&twin);
    let h = client(&twin, Pacing::UNLIMITED);
    let spec = server_prereqs(&h).await;
    // The server is created, but the connection drops before the response: a crash
    // between the API call and the journal looks the same.
    raw.fault(
        json!({"match": {"method": "POST", "path_prefix": "/servers"},
        "drop_connection": true, "when": "after", "count": 1}),
    )
    .await;
    let err = h.ensure_server(&spec).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable, "{err}");

    let again = h.ensure_server(&spec).await.unwrap();
    assert_ne!(again.outcome, EnsureOutcome::Created);
    assert_eq!(again.status, "running");
    assert!(again.private_ip.is_some());
    let all = h.list_cluster_resources(CLUSTER).await.unwrap();
    assert_eq!(all.servers.len(), 1, "{all:?}");
    assert_eq!(all.servers[0].id, again.id);
    twin.shutdown().await;
}

#[tokio::test]
async fn a_half_configured_server_is_completed() {
    let twin = twin().await;
    let raw = Raw::new(&twin);
    let h = client(&twin, Pacing::UNLIMITED);
    let spec = server_prereqs(&h).await;
    // hk8s's server, but created without network and firewall and then stopped.
    let v = raw
        .send(
            reqwest::Method::POST,
            "/servers",
            Some(json!({"name": spec.name, "server_type": "cx23",
                "image": spec.image_id.to_string(), "location": "fsn1",
                "labels": {"cluster": CLUSTER, "managed-by": "hk8s"}})),
        )
        .await;
    let id = v["server"]["id"].as_i64().unwrap();
    let mut ids = vec![v["action"]["id"].as_i64().unwrap()];
    ids.extend(
        v["next_actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_i64().unwrap()),
    );
    raw.settle(&ids).await;
    let off = raw
        .send(
            reqwest::Method::POST,
            &format!("/servers/{id}/actions/poweroff"),
            None,
        )
        .await;
    raw.settle(&[off["action"]["id"].as_i64().unwrap()]).await;

    let info = h.ensure_server(&spec).await.unwrap();
    assert_eq!((info.id, info.outcome), (id, EnsureOutcome::Updated));
    assert_eq!(info.status, "running");
    assert!(info.private_ip.is_some(), "{info:?}");
    let live = raw
        .send(reqwest::Method::GET, &format!("/servers/{id}"), None)
        .await;
    assert_eq!(live["server"]["labels"]["role"], "control-plane");
    assert_eq!(live["server"]["labels"]["component"], "server");
    let firewalls: Vec<i64> = live["server"]["public_net"]["firewalls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_i64().unwrap())
        .collect();
    assert_eq!(firewalls, spec.firewall_ids);
    assert_eq!(
        h.ensure_server(&spec).await.unwrap().outcome,
        EnsureOutcome::Unchanged
    );
    twin.shutdown().await;
}

#[tokio::test]
async fn uniqueness_error_on_create_means_look_again() {
    let twin = twin().await;
    let raw = Raw::new(&twin);
    let h = client(&twin, Pacing::UNLIMITED);
    // The network is created, but the answer is a uniqueness error (as if a concurrent
    // run created it first).
    raw.fault(
        json!({"match": {"method": "POST", "path_prefix": "/networks"},
        "error": {"status": 409, "code": "uniqueness_error"}, "when": "after", "count": 1}),
    )
    .await;
    let net = h.ensure_network(&network_spec()).await.unwrap();
    let again = h.ensure_network(&network_spec()).await.unwrap();
    assert_eq!(net.id, again.id);
    assert_eq!(again.outcome, EnsureOutcome::Unchanged);
    twin.shutdown().await;
}

#[tokio::test]
async fn capacity_and_lock_errors_are_classified() {
    let twin = twin().await;
    let raw = Raw::new(&twin);
    let h = client(&twin, Pacing::UNLIMITED);
    let spec = server_prereqs(&h).await;
    raw.fault(json!({"match": {"method": "POST", "path_prefix": "/servers"},
        "error": {"status": 412, "code": "resource_unavailable", "message": "error during placement"},
        "count": 1}))
        .await;
    let err = h.ensure_server(&spec).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::CapacityUnavailable, "{err}");
    assert_eq!(err.message, "error during placement");

    raw.fault(
        json!({"match": {"method": "POST", "path_prefix": "/servers"},
        "error": {"status": 423, "code": "locked"}, "count": 1}),
    )
    .await;
    let err = h.ensure_server(&spec).await.unwrap_err();
    assert_eq!(
        (err.status, err.class()),
        (Some(423), ErrorClass::Retryable)
    );

    // With the faults spent, the same spec goes through.
    assert_eq!(
        h.ensure_server(&spec).await.unwrap().outcome,
        EnsureOutcome::Created
    );
    twin.shutdown().await;
}

#[tokio::test]
async fn load_balancer_with_a_fixed_private_ip() {
    let twin = twin().await;
    let h = client(&twin, Pacing::UNLIMITED);
    let net = h.ensure_network(&network_spec()).await.unwrap();
    let spec = LoadBalancerSpec {
        private_ip: Some("10.0.1.5".parse().unwrap()),
        location: None,
        network_zone: Some("eu-central".into()),
        ..lb_spec(net.id)
    };
    let lb = h.ensure_load_balancer(&spec).await.unwrap();
    assert_eq!(lb.outcome, EnsureOutcome::Created);
    assert_eq!(lb.private_ip, Some("10.0.1.5".parse().unwrap()));
    let again = h.ensure_load_balancer(&spec).await.unwrap();
    assert_eq!((again.id, again.outcome), (lb.id, EnsureOutcome::Unchanged));
    assert_eq!(again.public_ipv4, lb.public_ipv4);
    assert_eq!(again.private_ip, lb.private_ip);
    twin.shutdown().await;
}

#[tokio::test]
async fn image_build_resources_are_idempotent_and_cleaned_up_by_run() {
    let twin = twin().await;
    let raw = Raw::new(&twin);
    let h = client(&twin, Pacing::UNLIMITED);
    let run = "run-1";
    let key_spec = hk8s_hetzner::SshKeySpec {
        name: format!("hk8s-build-{run}"),
        public_key:
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGtQv0kpmY0S1q3l3Ckk9dQ1ZC4u5m2h8c2tLwZ8XH7c hk8s"
                .into(),
        labels: hk8s_hetzner::builder_labels(run),
    };
    let key = h.ensure_ssh_key(&key_spec).await.unwrap();
    assert_eq!(key.outcome, EnsureOutcome::Created);
    assert_eq!(h.ensure_ssh_key(&key_spec).await.unwrap().id, key.id);

    let server_spec = hk8s_hetzner::BuilderServerSpec {
        name: format!("hk8s-build-amd64-{run}"),
        server_type: "cx23".into(),
        location: "fsn1".into(),
        image: "debian-12".into(),
        ssh_key_ids: vec![key.id],
        labels: hk8s_hetzner::builder_labels(run),
    };
    let server = h.ensure_builder_server(&server_spec).await.unwrap();
    assert_eq!(server.outcome, EnsureOutcome::Created);
    assert!(server.public_ipv4.is_some());
    let again = h.ensure_builder_server(&server_spec).await.unwrap();
    assert_eq!(
        (again.id, again.outcome),
        (server.id, EnsureOutcome::Unchanged)
    );

    h.boot_rescue(server.id, &[key.id]).await.unwrap();
    h.boot_rescue(server.id, &[key.id]).await.unwrap();
    h.power_off(server.id).await.unwrap();
    h.power_off(server.id).await.unwrap();

    let mut labels = hk8s_hetzner::talos_image_labels(Arch::Amd64, "v1.12.0");
    labels.insert(hk8s_hetzner::LABEL_RUN.into(), run.into());
    let snap = h
        .ensure_snapshot(server.id, "Talos v1.12.0 amd64", &labels)
        .await
        .unwrap();
    assert_eq!(snap.outcome, EnsureOutcome::Created);
    let snap_again = h
        .ensure_snapshot(server.id, "Talos v1.12.0 amd64", &labels)
        .await
        .unwrap();
    assert_eq!(
        (snap_again.id, snap_again.outcome),
        (snap.id, EnsureOutcome::Unchanged)
    );
    let found = h
        .find_talos_image(Arch::Amd64, "v1.12.0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, snap.id);

    let report = h
        .delete_by_labels(&hk8s_hetzner::builder_selector(run))
        .await
        .unwrap();
    assert_eq!(report.deleted.servers.len(), 1);
    assert_eq!(report.deleted.ssh_keys.len(), 1);
    assert!(report.remaining.is_empty(), "{report:?}");
    // The snapshot stays: it is what the build was for.
    let image = raw
        .send(reqwest::Method::GET, &format!("/images/{}", snap.id), None)
        .await;
    assert_eq!(image["image"]["status"], "available");
    assert_eq!(
        h.delete_image(snap.id).await.unwrap(),
        DeleteOutcome::Deleted
    );
    assert_eq!(
        h.delete_image(snap.id).await.unwrap(),
        DeleteOutcome::AlreadyGone
    );
    let err = h.delete_by_labels("hk8s-run=run-1").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config);
    twin.shutdown().await;
}

#[tokio::test]
async fn a_bad_token_is_permanent_and_never_echoed() {
    let twin = Twin::start(TwinOptions {
        speed: 1000.0,
        token: Some("the-right-token".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let h = Hetzner::new(
        HetznerConfig::new(ApiToken::new("wrong-secret-token")).with_endpoint(twin.api_url()),
    )
    .unwrap();
    let err = h.ensure_network(&network_spec()).await.unwrap_err();
    assert_eq!(err.status, Some(401));
    assert_eq!(err.code.as_deref(), Some("unauthorized"));
    assert_eq!(err.class(), ErrorClass::Permanent);
    let shown = format!("{err} {err:?} {h:?}");
    assert!(!shown.contains("wrong-secret-token"), "{shown}");
    twin.shutdown().await;
}

impl Raw {
    async fn clear_faults(&self) {
        let s = self
            .http
            .delete(format!("{}/faults", self.control))
            .send()
            .await
            .unwrap()
            .status();
        assert!(s.is_success(), "{s}");
    }
}

/// Issue 10, point 2: the API moving again, served by the twin's `reshape` faults. The
/// preflight's catalog (decoded leniently) reads around a new enum value, an extra field and a
/// dropped deprecated field; the `hcloud` models read around an extra field, and fail on a
/// dropped `server_type.deprecated` (naming the operation and the field) and on a new enum value
/// (naming the operation, the value and the values the model knows).
#[tokio::test]
async fn reshaped_responses_are_read_around_or_named() {
    let twin = twin().await;
    let raw = Raw::new(&twin);
    let h = client(&twin, Pacing::UNLIMITED);
    let bound = Duration::from_secs(10);

    // The catalog.
    for (what, reshape) in [
        (
            "unknown enum value",
            json!({"set": {"server_types.*.architecture": "riscv", "server_types.*.cpu_type": "quantum", "server_types.*.storage_type": "tape"}}),
        ),
        (
            "extra field",
            json!({"set": {"server_types.*.carbon": {"g_per_h": 3}, "locations.*.moon": true}}),
        ),
        (
            "missing deprecated field",
            json!({"remove": ["server_types.*.deprecated", "server_types.*.deprecation", "load_balancer_types.*.deprecated"]}),
        ),
    ] {
        raw.fault(json!({"match": {"method": "GET"}, "reshape": reshape}))
            .await;
        let catalog = h
            .read_catalog(bound)
            .await
            .unwrap_or_else(|e| panic!("catalog, {what}: {e}"));
        let cx23 = catalog
            .server_types
            .iter()
            .find(|t| t.name == "cx23")
            .unwrap_or_else(|| panic!("catalog, {what}: no cx23"));
        if what == "unknown enum value" {
            assert_eq!(cx23.architecture, "riscv", "the value is read as it came");
        }
        println!(
            "catalog, {what}: read around ({} server types)",
            catalog.server_types.len()
        );
        raw.clear_faults().await;
    }

    // The servers list behind every ensure_server (one server exists, so the list has an item).
    let spec = server_prereqs(&h).await;
    h.ensure_server(&spec).await.unwrap();
    raw.fault(json!({"match": {"method": "GET", "path_prefix": "/servers"},
                     "reshape": {"set": {"servers.*.new_field": {"a": 1}, "servers.*.server_type.new_field": 2}}}))
        .await;
    let server = h
        .ensure_server(&spec)
        .await
        .unwrap_or_else(|e| panic!("servers, extra field: {e}"));
    assert_eq!(server.name, "demo-cp-1");
    println!("servers, extra field: read around");
    raw.clear_faults().await;

    // The embedded server type's `deprecated` (itself deprecated since 2025-09-24 in favour of
    // `locations[].deprecation`) is required by hcloud 0.26's model: dropping it fails every
    // server lookup, with the operation and the field named.
    raw.fault(
        json!({"match": {"method": "GET", "path_prefix": "/servers"},
                     "reshape": {"remove": ["servers.*.server_type.deprecated"]}}),
    )
    .await;
    let e = h.ensure_server(&spec).await.unwrap_err();
    let text = e.to_string();
    println!("servers, missing deprecated field: {text}");
    assert_eq!(e.kind, ErrorKind::Decode, "{text}");
    assert!(
        text.starts_with("look up server demo-cp-1: the response did not match the hcloud model: missing field `deprecated`"),
        "{text}"
    );
    raw.clear_faults().await;

    raw.fault(
        json!({"match": {"method": "GET", "path_prefix": "/servers"},
                     "reshape": {"set": {"servers.*.status": "hibernating"}}}),
    )
    .await;
    let e = h.ensure_server(&spec).await.unwrap_err();
    let text = e.to_string();
    println!("servers, unknown enum value: {text}");
    assert_eq!(e.kind, ErrorKind::Decode, "{text}");
    assert_eq!(e.class(), ErrorClass::Permanent, "{text}");
    assert!(
        text.starts_with("look up server demo-cp-1: "),
        "the operation is not named: {text}"
    );
    assert!(
        text.contains("the response did not match the hcloud model")
            && text.contains("unknown variant `hibernating`")
            && text.contains("running"),
        "the value and the known values are not named: {text}"
    );
    raw.clear_faults().await;
    twin.shutdown().await;
}
