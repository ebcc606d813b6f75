//! Behaviour of the Hetzner API through `oneshot`, on paused tokio time.

use std::net::Ipv4Addr;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hk8s_twin::RateLimit;
use serde_json::{Value, json};

use crate::common::{Api, TOKEN};

fn ids(v: &Value, key: &str) -> Vec<i64> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn token_is_required_and_checked() {
    let api = Api::new();
    let none = api
        .raw(Request::get("/v1/locations").body(Body::empty()).unwrap())
        .await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.code(), "unauthorized");
    assert!(none.headers.contains_key("x-correlation-id"));
    assert!(none.headers.contains_key("ratelimit-remaining"));
    let wrong = api
        .raw(
            Request::get("/v1/locations")
                .header("authorization", "Bearer nope")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let ok = api.get("/v1/locations").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body["locations"].as_array().unwrap().len(), 6);
    assert_ne!(TOKEN, "nope");
}

#[tokio::test(start_paused = true)]
async fn malformed_json_and_missing_fields() {
    let api = Api::new();
    let req = Request::post("/v1/ssh_keys")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::from("{\"name\": "))
        .unwrap();
    let r = api.raw(req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "json_error");

    let r = api.post("/v1/servers", json!({})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "invalid_input");
    assert_eq!(r.body["error"]["details"]["fields"][0]["name"], "name");

    let r = api
        .post(
            "/v1/servers",
            json!({"name": "a", "server_type": "cx999", "image": "debian-12"}),
        )
        .await;
    assert_eq!(
        r.body["error"]["details"]["fields"][0]["name"],
        "server_type"
    );

    let r = api
        .post(
            "/v1/networks",
            json!({"name": "n", "ip_range": "10.0.0.0/16", "labels": {"bad key": "x"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["error"]["details"]["fields"][0]["name"], "labels");

    let r = api
        .post(
            "/v1/servers",
            json!({"name": "a", "server_type": "cax11", "image": "debian-12", "location": "ash"}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "arm is only in eu-central"
    );
}

#[tokio::test(start_paused = true)]
async fn names_are_unique_and_unknown_ids_are_404() {
    let api = Api::new();
    api.ssh_key("k1").await;
    let r = api
        .post("/v1/ssh_keys", json!({"name": "k1", "public_key": format!("ssh-ed25519 {} x", crate::common::base64_of("other"))}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.code(), "uniqueness_error");
    assert_eq!(r.body["error"]["details"]["fields"][0]["name"], "name");
    let r = api
        .post("/v1/ssh_keys", json!({"name": "k2", "public_key": format!("ssh-ed25519 {} y", crate::common::base64_of("k1"))}))
        .await;
    assert_eq!(r.code(), "uniqueness_error", "same fingerprint");

    api.network("net").await;
    let r = api
        .post(
            "/v1/networks",
            json!({"name": "net", "ip_range": "10.1.0.0/16"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    for p in [
        "/v1/servers/999",
        "/v1/servers/abc",
        "/v1/networks/5",
        "/v1/nothing",
    ] {
        let r = api.get(p).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{p}");
        assert_eq!(r.code(), "not_found");
    }
    let r = api.call("PATCH", "/v1/servers", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.code(), "method_not_allowed");
}

#[tokio::test(start_paused = true)]
async fn server_lifecycle_locks_hooks_rescue_and_snapshot() {
    let api = Api::new();
    let key = api.ssh_key("admin").await;
    let net = api.network("net").await;
    let r = api
        .server(json!({
            "name": "cp-1", "server_type": "cx23", "image": "debian-12", "location": "nbg1",
            "ssh_keys": ["admin"], "networks": [net["id"]], "labels": {"role": "control-plane"},
        }))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.body["server"]["id"].as_i64().unwrap();
    assert_eq!(r.body["server"]["status"], "initializing");
    assert_eq!(r.body["server"]["locked"], true);
    assert!(r.body["root_password"].is_null());
    assert_eq!(r.body["action"]["command"], "create_server");
    assert_eq!(r.body["action"]["status"], "running");
    let next: Vec<&str> = r.body["next_actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["command"].as_str().unwrap())
        .collect();
    assert!(
        next.contains(&"start_server") && next.contains(&"attach_to_network"),
        "{next:?}"
    );
    let ip: Ipv4Addr = r.body["server"]["public_net"]["ipv4"]["ip"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        "127.66.0.0/20"
            .parse::<ipnet::Ipv4Net>()
            .unwrap()
            .contains(&ip)
    );
    assert_ne!(ip, Ipv4Addr::new(127, 0, 0, 1));
    assert_eq!(r.body["server"]["private_net"][0]["ip"], "10.0.1.1");

    let locked = api
        .post(&format!("/v1/servers/{id}/actions/poweron"), json!({}))
        .await;
    assert_eq!(locked.status, StatusCode::LOCKED);
    assert_eq!(locked.code(), "locked");
    let locked = api.call("DELETE", &format!("/v1/servers/{id}"), None).await;
    assert_eq!(locked.status, StatusCode::LOCKED);
    assert!(api.hooks.events.lock().unwrap().is_empty());

    api.settle().await;
    let s = api.get(&format!("/v1/servers/{id}")).await.body["server"].clone();
    assert_eq!(s["status"], "running");
    assert_eq!(s["locked"], false);
    {
        let boots = api.hooks.boots.lock().unwrap();
        assert_eq!(boots.len(), 1);
        assert_eq!(boots[0].public_ipv4, Some(ip));
        assert_eq!(boots[0].private_ips, vec![Ipv4Addr::new(10, 0, 1, 1)]);
        assert!(!boots[0].rescue);
        assert_eq!(
            boots[0].ssh_public_keys,
            vec![key["public_key"].as_str().unwrap().to_string()]
        );
        assert_eq!(boots[0].labels["role"], "control-plane");
    }

    // Rescue flow: enable → poweroff → poweron boots rescue once, then the flag is gone.
    let r = api
        .post(
            &format!("/v1/servers/{id}/actions/enable_rescue"),
            json!({"type": "linux64", "ssh_keys": [key["id"]]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(r.body["root_password"].as_str().unwrap().len() >= 12);
    api.settle().await;
    assert_eq!(
        api.get(&format!("/v1/servers/{id}")).await.body["server"]["rescue_enabled"],
        true
    );
    let r = api
        .post(&format!("/v1/servers/{id}/actions/reset"), json!({}))
        .await;
    assert_eq!(r.body["action"]["command"], "reset_server");
    api.settle().await;
    {
        let boots = api.hooks.boots.lock().unwrap();
        assert!(boots[1].rescue);
        assert_eq!(boots[1].ssh_public_keys.len(), 1);
    }
    assert_eq!(
        api.get(&format!("/v1/servers/{id}")).await.body["server"]["rescue_enabled"],
        false
    );

    let r = api
        .post(&format!("/v1/servers/{id}/actions/shutdown"), json!({}))
        .await;
    assert_eq!(r.body["action"]["command"], "shutdown_server");
    assert_eq!(
        api.get(&format!("/v1/servers/{id}")).await.body["server"]["status"],
        "stopping"
    );
    api.settle().await;
    assert_eq!(
        api.get(&format!("/v1/servers/{id}")).await.body["server"]["status"],
        "off"
    );

    let r = api
        .post(&format!("/v1/servers/{id}/actions/create_image"), json!({"type": "snapshot", "description": "talos", "labels": {"os": "talos", "arch": "x86", "version": "v1.11.6"}}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let image = r.body["image"]["id"].as_i64().unwrap();
    assert_eq!(r.body["image"]["status"], "creating");
    assert_eq!(r.body["image"]["created_from"]["id"], id);
    let locked = api
        .post(&format!("/v1/servers/{id}/actions/poweron"), json!({}))
        .await;
    assert_eq!(locked.status, StatusCode::LOCKED);
    api.settle().await;
    let imgs = api
        .get("/v1/images?type=snapshot&label_selector=os%3Dtalos")
        .await;
    assert_eq!(ids(&imgs.body, "images"), vec![image]);
    assert_eq!(imgs.body["images"][0]["status"], "available");

    let r = api.call("DELETE", &format!("/v1/servers/{id}"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["action"]["command"], "delete_server");
    assert_eq!(
        api.get(&format!("/v1/servers/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    api.settle().await;
    let events = api.hooks.events.lock().unwrap().clone();
    assert_eq!(
        events,
        vec![
            format!("running {id}"),
            format!("stopped {id}"),
            format!("running {id}"),
            format!("stopped {id}"),
            format!("image {id} {image}"),
            format!("deleted {id}"),
        ]
    );
    // The snapshot survives its server and is still usable.
    let r = api.server(json!({"name": "from-snap", "server_type": "cpx12", "image": image.to_string(), "location": "fsn1"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert!(r.body["root_password"].is_string());
}

#[tokio::test(start_paused = true)]
async fn lists_filter_by_label_selector_name_and_status() {
    let api = Api::new();
    for (n, role) in [
        ("w-1", "worker"),
        ("w-2", "worker"),
        ("cp-1", "control-plane"),
    ] {
        let r = api
            .server(json!({"name": n, "server_type": "cpx12", "image": "ubuntu-24.04", "labels": {"role": role, "cluster": "demo"}, "start_after_create": false}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    api.settle().await;
    let names = |r: &Value| -> Vec<String> {
        r["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };
    let r = api
        .get("/v1/servers?label_selector=role%3D%3Dworker,cluster")
        .await;
    assert_eq!(names(&r.body), vec!["w-1", "w-2"]);
    let r = api
        .get("/v1/servers?label_selector=role%20notin%20(worker)&sort=name:desc")
        .await;
    assert_eq!(names(&r.body), vec!["cp-1"]);
    let r = api.get("/v1/servers?label_selector=!cluster").await;
    assert!(names(&r.body).is_empty());
    let r = api.get("/v1/servers?name=w-2").await;
    assert_eq!(names(&r.body), vec!["w-2"]);
    let r = api
        .get("/v1/servers?status=off&status=running&sort=name")
        .await;
    assert_eq!(names(&r.body), vec!["cp-1", "w-1", "w-2"]);
    let r = api.get("/v1/servers?status=running").await;
    assert!(names(&r.body).is_empty());
    let r = api.get("/v1/servers?label_selector=a%20in%20(b").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // PUT replaces the label set.
    let id = api.get("/v1/servers?name=w-1").await.body["servers"][0]["id"]
        .as_i64()
        .unwrap();
    let r = api
        .call(
            "PUT",
            &format!("/v1/servers/{id}"),
            Some(json!({"labels": {"role": "gone"}})),
        )
        .await;
    assert_eq!(r.body["server"]["labels"], json!({"role": "gone"}));
}

#[tokio::test(start_paused = true)]
async fn pagination_has_meta_and_link_header() {
    let api = Api::new();
    for i in 0..5 {
        api.ssh_key(&format!("key-{i}")).await;
    }
    let r = api
        .get("/v1/ssh_keys?per_page=2&page=2&label_selector=")
        .await;
    let p = &r.body["meta"]["pagination"];
    assert_eq!(
        (p["page"].as_i64(), p["per_page"].as_i64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        (p["previous_page"].as_i64(), p["next_page"].as_i64()),
        (Some(1), Some(3))
    );
    assert_eq!(
        (p["last_page"].as_i64(), p["total_entries"].as_i64()),
        (Some(3), Some(5))
    );
    assert_eq!(r.body["ssh_keys"].as_array().unwrap().len(), 2);
    let link = r.headers["link"].to_str().unwrap();
    assert!(
        link.contains(
            "<http://twin.test/v1/ssh_keys?label_selector=&page=3&per_page=2>; rel=\"next\""
        ),
        "{link}"
    );
    assert!(link.contains("rel=\"prev\"") && link.contains("rel=\"last\""));
    let r = api.get("/v1/ssh_keys?per_page=500").await;
    assert_eq!(r.body["meta"]["pagination"]["per_page"], 50);
    assert!(r.body["meta"]["pagination"]["next_page"].is_null());
    let r = api.get("/v1/ssh_keys?page=0").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_returns_429_with_headers() {
    let api = Api::with(
        1.0,
        RateLimit {
            capacity: 3,
            refill_per_sec: 0.0,
        },
    );
    for expect in [2, 1, 0] {
        let r = api.get("/v1/locations").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers["ratelimit-limit"], "3");
        assert_eq!(
            r.headers["ratelimit-remaining"],
            expect.to_string().as_str()
        );
        assert!(
            r.headers["ratelimit-reset"]
                .to_str()
                .unwrap()
                .parse::<i64>()
                .unwrap()
                > 0
        );
    }
    let r = api.get("/v1/locations").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.code(), "rate_limit_exceeded");
    assert_eq!(r.headers["ratelimit-remaining"], "0");
    // The control API is not rate limited and can refill the bucket.
    let r = api
        .call(
            "PUT",
            "/twin/rate-limit",
            Some(json!({"capacity": 10, "refill_per_sec": 1.0})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(api.get("/v1/locations").await.status, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn spread_group_holds_at_most_ten_servers() {
    let api = Api::new();
    let pg = api
        .post(
            "/v1/placement_groups",
            json!({"name": "pg", "type": "spread"}),
        )
        .await;
    assert_eq!(pg.status, StatusCode::CREATED);
    assert!(pg.body["action"].is_null());
    let pg = pg.body["placement_group"]["id"].clone();
    for i in 0..10 {
        let r = api.server(json!({"name": format!("s-{i}"), "server_type": "cx23", "image": "debian-12", "placement_group": pg})).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let r = api.server(json!({"name": "s-10", "server_type": "cx23", "image": "debian-12", "placement_group": pg})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "placement_error");
    let g = api.get(&format!("/v1/placement_groups/{pg}")).await;
    assert_eq!(
        g.body["placement_group"]["servers"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
    let r = api
        .call("DELETE", &format!("/v1/placement_groups/{pg}"), None)
        .await;
    assert_eq!(r.code(), "resource_in_use");
}

#[tokio::test(start_paused = true)]
async fn faults_and_request_log() {
    let api = Api::new();
    let r = api
        .post("/twin/faults", json!({"match": {"method": "POST", "path_prefix": "/servers"}, "error": {"status": 503, "code": "unavailable"}, "at_call": 2}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let body = |n: &str| json!({"name": n, "server_type": "cx23", "image": "debian-12"});
    assert_eq!(api.server(body("a")).await.status, StatusCode::CREATED);
    let r = api.server(body("b")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.code(), "unavailable");
    assert!(r.headers.contains_key("ratelimit-remaining"));
    assert!(r.headers.contains_key("x-correlation-id"));
    assert_eq!(
        api.get("/v1/servers?name=b").await.body["servers"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(api.server(body("b")).await.status, StatusCode::CREATED);

    // An error after the handler: the server exists although the client saw a 500.
    assert_eq!(
        api.call("DELETE", "/twin/faults", None).await.status,
        StatusCode::NO_CONTENT
    );
    api.post("/twin/faults", json!({"match": {"method": "POST", "path_prefix": "/v1/servers"}, "error": {"status": 500, "code": "server_error"}, "count": 1, "when": "after"}))
        .await;
    assert_eq!(
        api.server(body("c")).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        api.get("/v1/servers?name=c").await.body["servers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(api.server(body("c")).await.code(), "uniqueness_error");

    let log = api.get("/twin/requests").await.body;
    assert_eq!(log["counts"]["POST /v1/servers"], 5);
    assert_eq!(log["counts"]["GET /v1/servers"], 2);
    assert_eq!(log["mutating"], 5);
    let statuses: Vec<i64> = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, vec![201, 503, 200, 201, 500, 200, 409]);
    assert_eq!(
        api.post("/twin/reset-requests", json!({})).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.get("/twin/requests").await.body["total"], 0);
    let bad = api
        .post(
            "/twin/faults",
            json!({"latency_ms": 1, "drop_connection": true}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test(start_paused = true)]
async fn firewalls_by_selector_and_load_balancer_targets() {
    let api = Api::new();
    let net = api.network("net").await;
    let nid = net["id"].as_i64().unwrap();
    let mk = |n: &str, role: &str, networks: Value| json!({"name": n, "server_type": "cx23", "image": "debian-12", "location": "fsn1", "networks": networks, "labels": {"role": role, "cluster": "demo"}});
    let cp = api
        .server(mk("cp-1", "control-plane", json!([nid])))
        .await
        .body["server"]["id"]
        .as_i64()
        .unwrap();
    let lone = api
        .server(mk("cp-2", "control-plane", json!([])))
        .await
        .body["server"]["id"]
        .as_i64()
        .unwrap();
    let w = api.server(mk("w-1", "worker", json!([nid]))).await.body["server"]["id"]
        .as_i64()
        .unwrap();

    let fw = api
        .post("/v1/firewalls", json!({
            "name": "fw", "labels": {"cluster": "demo"},
            "rules": [{"direction": "in", "protocol": "tcp", "port": "6443", "source_ips": ["0.0.0.0/0", "::/0"]}],
            "apply_to": [{"type": "label_selector", "label_selector": {"selector": "cluster=demo,role=control-plane"}}],
        }))
        .await;
    assert_eq!(fw.status, StatusCode::CREATED, "{:?}", fw.body);
    let fid = fw.body["firewall"]["id"].as_i64().unwrap();
    let res: Vec<i64> = fw.body["firewall"]["applied_to"][0]["applied_to_resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["server"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(res, vec![cp, lone]);
    let cmds: Vec<&str> = fw.body["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["command"].as_str().unwrap())
        .collect();
    assert_eq!(cmds, vec!["set_firewall_rules", "apply_firewall"]);
    let s = api.get(&format!("/v1/servers/{cp}")).await.body;
    assert_eq!(
        s["server"]["public_net"]["firewalls"],
        json!([{"id": fid, "status": "applied"}])
    );
    assert_eq!(
        api.get(&format!("/v1/servers/{w}")).await.body["server"]["public_net"]["firewalls"],
        json!([])
    );
    let r = api
        .call("DELETE", &format!("/v1/firewalls/{fid}"), None)
        .await;
    assert_eq!(r.code(), "resource_in_use");
    let r = api
        .post(
            &format!("/v1/firewalls/{fid}/actions/apply_to_resources"),
            json!({"apply_to": [{"type": "server", "server": {"id": 424242}}]}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "firewall_resource_not_found")
    );
    api.settle().await;
    let r = api.post(&format!("/v1/firewalls/{fid}/actions/apply_to_resources"), json!({"apply_to": [{"type": "label_selector", "label_selector": {"selector": "cluster=demo,role=control-plane"}}]})).await;
    assert_eq!(r.code(), "firewall_already_applied");

    let lb = api
        .post("/v1/load_balancers", json!({
            "name": "api", "load_balancer_type": "lb11", "location": "fsn1", "network": nid,
            "services": [{"protocol": "tcp", "listen_port": 6443, "destination_port": 6443, "proxyprotocol": false,
                          "health_check": {"protocol": "tcp", "port": 6443, "interval": 15, "timeout": 10, "retries": 3}}],
            "targets": [{"type": "label_selector", "label_selector": {"selector": "role=control-plane"}, "use_private_ip": true}],
            "labels": {"cluster": "demo"},
        }))
        .await;
    assert_eq!(lb.status, StatusCode::CREATED, "{:?}", lb.body);
    let lid = lb.body["load_balancer"]["id"].as_i64().unwrap();
    assert_eq!(lb.body["load_balancer"]["private_net"][0]["network"], nid);
    let r = api.post(&format!("/v1/load_balancers/{lid}/actions/add_service"), json!({"protocol": "tcp", "listen_port": 50000, "destination_port": 50000, "proxyprotocol": false, "health_check": {"protocol": "tcp", "port": 50000, "interval": 15, "timeout": 10, "retries": 3}})).await;
    assert_eq!(
        r.status,
        StatusCode::LOCKED,
        "create_load_balancer still runs"
    );
    api.settle().await;
    let cloud_ip = api.get(&format!("/v1/servers/{w}")).await.body["server"]["public_net"]["ipv4"]
        ["ip"]
        .clone();
    let r = api
        .post(
            &format!("/v1/load_balancers/{lid}/actions/add_target"),
            json!({"type": "ip", "ip": {"ip": cloud_ip}}),
        )
        .await;
    assert_eq!(r.code(), "cloud_resource_ip_not_allowed");
    let r = api
        .post(
            &format!("/v1/load_balancers/{lid}/actions/add_target"),
            json!({"type": "server", "server": {"id": lone}, "use_private_ip": true}),
        )
        .await;
    assert_eq!(r.code(), "server_not_attached_to_network");
    let r = api.post(&format!("/v1/load_balancers/{lid}/actions/add_target"), json!({"type": "label_selector", "label_selector": {"selector": "role=control-plane"}, "use_private_ip": true})).await;
    assert_eq!(r.code(), "target_already_defined");
    let r = api.post(&format!("/v1/load_balancers/{lid}/actions/add_service"), json!({"protocol": "tcp", "listen_port": 6443, "destination_port": 1, "proxyprotocol": false, "health_check": {"protocol": "tcp", "port": 1, "interval": 15, "timeout": 10, "retries": 3}})).await;
    assert_eq!(r.code(), "source_port_already_used");

    let got = api.get(&format!("/v1/load_balancers/{lid}")).await.body["load_balancer"].clone();
    let resolved = got["targets"][0]["targets"].as_array().unwrap();
    assert_eq!(resolved.len(), 2);
    assert_eq!(
        resolved[0]["health_status"],
        json!([{"listen_port": 6443, "status": "healthy"}])
    );
    let infos = api.state.load_balancers();
    assert_eq!(infos[0].services, vec![("tcp".to_string(), 6443, 6443)]);
    let t: Vec<(i64, Option<Ipv4Addr>)> = infos[0]
        .targets
        .iter()
        .map(|t| (t.server_id, t.ip))
        .collect();
    assert_eq!(
        t,
        vec![(cp, Some(Ipv4Addr::new(10, 0, 1, 1))), (lone, None)]
    );
    let servers = api.state.servers();
    assert_eq!(
        servers.iter().find(|s| s.id == cp).unwrap().labels["role"],
        "control-plane"
    );
    assert_eq!(
        api.get(&format!("/v1/servers/{cp}")).await.body["server"]["load_balancers"],
        json!([lid])
    );

    let r = api
        .post(&format!("/v1/servers/{cp}/actions/poweroff"), json!({}))
        .await;
    assert_eq!(r.body["action"]["command"], "stop_server");
    api.settle().await;
    let got = api.get(&format!("/v1/load_balancers/{lid}")).await.body["load_balancer"].clone();
    assert_eq!(
        got["targets"][0]["targets"][0]["health_status"][0]["status"],
        "unhealthy"
    );
}

#[tokio::test(start_paused = true)]
async fn actions_are_listed_by_id_and_per_resource() {
    let api = Api::new();
    let r = api
        .server(json!({"name": "s", "server_type": "cx23", "image": "debian-12"}))
        .await;
    let sid = r.body["server"]["id"].as_i64().unwrap();
    let a = r.body["action"]["id"].as_i64().unwrap();
    let b = r.body["next_actions"][0]["id"].as_i64().unwrap();
    let r = api.get("/v1/actions").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = api
        .get(&format!("/v1/actions?id={a}&id={b}&id=999999"))
        .await;
    assert_eq!(ids(&r.body, "actions"), vec![a, b]);
    assert!(
        r.body["actions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["status"] == "running" && x["finished"].is_null())
    );
    api.settle().await;
    let r = api.get(&format!("/v1/actions/{a}")).await;
    assert_eq!(r.body["action"]["status"], "success");
    assert_eq!(r.body["action"]["progress"], 100);
    assert!(r.body["action"]["finished"].is_string());
    let r = api
        .get(&format!("/v1/servers/{sid}/actions?sort=id:desc"))
        .await;
    assert_eq!(ids(&r.body, "actions"), vec![b, a]);
    let r = api.get(&format!("/v1/servers/{sid}/actions/{a}")).await;
    assert_eq!(r.body["action"]["command"], "create_server");
    let r = api.get(&format!("/v1/servers/actions?id={b}")).await;
    assert_eq!(ids(&r.body, "actions"), vec![b]);
    assert_eq!(
        api.get(&format!("/v1/networks/actions/{a}")).await.status,
        StatusCode::NOT_FOUND
    );
    let r = api
        .post(&format!("/v1/servers/{sid}/actions/poweron"), json!({}))
        .await;
    assert_eq!(
        r.body["action"]["status"], "success",
        "already running: nothing to do"
    );
}

#[tokio::test(start_paused = true)]
async fn seeded_talos_snapshots_boot_servers() {
    let api = Api::new();
    let r = api
        .post(
            "/twin/images/talos",
            json!({"arch": "arm", "version": "v1.11.6"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let img = r.body["image"]["id"].as_i64().unwrap();
    assert_eq!(r.body["image"]["architecture"], "arm");
    let r = api.get("/v1/images?type=snapshot&architecture=arm&label_selector=os%3Dtalos%2Cversion%3Dv1.11.6").await;
    assert_eq!(ids(&r.body, "images"), vec![img]);
    let r = api
        .server(json!({"name": "t", "server_type": "cx23", "image": img.to_string()}))
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "x86 server from an arm image"
    );
    let r = api
        .server(json!({"name": "t", "server_type": "cax11", "image": img}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    api.settle().await;
    {
        let boots = api.hooks.boots.lock().unwrap();
        assert_eq!(boots[0].image_id, Some(img));
        assert_eq!(boots[0].image_labels["os"], "talos");
        assert_eq!(boots[0].architecture, "arm");
    }
    let id = api
        .state
        .seed_talos_snapshot("amd64", "v1.12.0", Default::default())
        .unwrap();
    let r = api.get(&format!("/v1/images/{id}")).await;
    assert_eq!(r.body["image"]["architecture"], "x86");
    assert_eq!(r.body["image"]["labels"]["arch"], "amd64");
    assert!(
        api.state
            .seed_talos_snapshot("sparc", "v1", Default::default())
            .is_err()
    );
    let r = api
        .call("PUT", "/twin/speed", Some(json!({"speed": 50.0})))
        .await;
    assert_eq!(r.body["speed"], 50.0);
    assert_eq!(api.state.speed(), 50.0);
    let r = api
        .call("PUT", "/twin/speed", Some(json!({"speed": 0})))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let dump = api.get("/twin/state").await.body;
    assert_eq!(dump["servers"].as_array().unwrap().len(), 1);
    assert_eq!(dump["address_block"], "127.66.0.0/20");
    assert!(dump["images"].as_array().unwrap().len() >= 5);
}

#[tokio::test(start_paused = true)]
async fn volumes_lock_attach_detach_protect_and_validate() {
    let api = Api::new();
    let srv = api
        .server(json!({"name": "vol-host", "server_type": "cx23", "image": "debian-12", "location": "nbg1"}))
        .await;
    let sid = srv.body["server"]["id"].as_i64().unwrap();
    // Validation: size bounds, name charset, location or server required, unknown location.
    for (body, field) in [
        (json!({"name": "v", "size": 9, "location": "nbg1"}), "size"),
        (
            json!({"name": "v", "size": 10241, "location": "nbg1"}),
            "size",
        ),
        (
            json!({"name": "-v", "size": 10, "location": "nbg1"}),
            "name",
        ),
        (json!({"name": "v", "size": 10}), "location"),
        (
            json!({"name": "v", "size": 10, "location": "mars"}),
            "location",
        ),
        (
            json!({"name": "v", "size": 10, "location": "nbg1", "format": "ntfs"}),
            "format",
        ),
        (
            json!({"name": "v", "size": 10, "location": "nbg1", "automount": true}),
            "automount",
        ),
    ] {
        let r = api.post("/v1/volumes", body.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {:?}",
            r.body
        );
        assert_eq!(
            r.body["error"]["details"]["fields"][0]["name"], field,
            "{body}"
        );
    }
    let r = api
        .post(
            "/v1/volumes",
            json!({"name": "data", "size": 10, "server": sid, "automount": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let vid = r.body["volume"]["id"].as_i64().unwrap();
    assert_eq!(r.body["volume"]["location"]["name"], "nbg1");
    assert_eq!(r.body["volume"]["server"], Value::Null);
    assert_eq!(
        r.body["volume"]["linux_device"],
        format!("/dev/disk/by-id/scsi-0HC_Volume_{vid}")
    );
    // Locked while creating; names are unique.
    let r = api
        .call("DELETE", &format!("/v1/volumes/{vid}"), None)
        .await;
    assert_eq!(r.status, StatusCode::LOCKED);
    let r = api
        .post(
            "/v1/volumes",
            json!({"name": "data", "size": 10, "location": "nbg1"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    api.settle().await;
    let v = api.get(&format!("/v1/volumes/{vid}")).await;
    assert_eq!(v.body["volume"]["status"], "available");
    assert_eq!(
        v.body["volume"]["server"],
        json!(sid),
        "attached by next_actions"
    );
    let s = api.get(&format!("/v1/servers/{sid}")).await;
    assert_eq!(s.body["server"]["volumes"], json!([vid]));
    // Attached volumes cannot be deleted; protected ones neither.
    let r = api
        .call("DELETE", &format!("/v1/volumes/{vid}"), None)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["error"]["code"], "resource_in_use");
    // A volume in another location cannot be attached.
    let far = api
        .post(
            "/v1/volumes",
            json!({"name": "far", "size": 10, "location": "hel1"}),
        )
        .await;
    let far_id = far.body["volume"]["id"].as_i64().unwrap();
    api.settle().await;
    let r = api
        .post(
            &format!("/v1/volumes/{far_id}/actions/attach"),
            json!({"server": sid}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    let r = api
        .post(&format!("/v1/volumes/{vid}/actions/detach"), json!({}))
        .await;
    assert_eq!(r.body["action"]["command"], "detach_volume");
    api.settle().await;
    let r = api
        .post(
            &format!("/v1/volumes/{vid}/actions/change_protection"),
            json!({"delete": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    api.settle().await;
    let r = api
        .call("DELETE", &format!("/v1/volumes/{vid}"), None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body["error"]["code"], "protected");
    api.post(
        &format!("/v1/volumes/{vid}/actions/change_protection"),
        json!({"delete": false}),
    )
    .await;
    let r = api
        .post(
            &format!("/v1/volumes/{vid}/actions/resize"),
            json!({"size": 5}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    api.settle().await;
    let r = api
        .post(
            &format!("/v1/volumes/{vid}/actions/resize"),
            json!({"size": 20}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    api.settle().await;
    assert_eq!(
        api.get(&format!("/v1/volumes/{vid}")).await.body["volume"]["size"],
        20
    );
    for id in [vid, far_id] {
        let r = api.call("DELETE", &format!("/v1/volumes/{id}"), None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    }
    assert_eq!(api.get("/v1/volumes").await.body["volumes"], json!([]));
    // A server created with a volume has it attached.
    let v = api
        .post(
            "/v1/volumes",
            json!({"name": "boot-data", "size": 10, "location": "nbg1"}),
        )
        .await;
    let bid = v.body["volume"]["id"].as_i64().unwrap();
    let r = api
        .server(
            json!({"name": "with-vol", "server_type": "cx23", "image": "debian-12",
                       "location": "nbg1", "volumes": [bid], "automount": false}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["server"]["volumes"], json!([bid]));
    let r = api
        .server(
            json!({"name": "with-vol-2", "server_type": "cx23", "image": "debian-12",
                       "location": "nbg1", "volumes": [bid]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    let r = api.get(&format!("/v1/volumes/{vid}/actions")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// The catalog as Hetzner sells it in December 2026 (`../shared/reference/hetzner-2026.md`).
#[tokio::test(start_paused = true)]
async fn catalog_follows_the_2026_api() {
    let api = Api::new();
    let all = api.get("/v1/server_types?per_page=50").await.body;
    let by_name = |n: &str| {
        all["server_types"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("{n} is not listed"))
    };
    for n in [
        "cx23", "cx33", "cx43", "cx53", "cpx12", "cpx22", "cpx32", "cpx42", "cpx52", "cpx62",
        "cax11", "cax21", "cax31", "cax41", "ccx13", "ccx23", "ccx33", "ccx43", "ccx53", "ccx63",
    ] {
        let t = by_name(n);
        assert_eq!(t["deprecated"], false, "{n}");
        assert!(t["deprecation"].is_null(), "{n}");
        for l in t["locations"].as_array().unwrap() {
            assert!(
                l["available"].is_boolean() && l["recommended"].is_boolean(),
                "{n}"
            );
        }
    }
    let cx23 = by_name("cx23");
    assert_eq!(
        (
            cx23["cores"].as_i64(),
            cx23["memory"].as_f64(),
            cx23["disk"].as_i64()
        ),
        (Some(2), Some(4.0), Some(40))
    );
    assert_eq!(by_name("cax31")["architecture"], "arm");
    assert_eq!(by_name("ccx13")["cpu_type"], "dedicated");
    let names = |t: &Value| -> Vec<String> {
        t["locations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(&by_name("cax11")),
        ["fsn1", "nbg1", "hel1"],
        "arm only in eu-central"
    );
    assert!(names(&by_name("cpx22")).contains(&"ash".to_string()));
    for n in [
        "cx22", "cx32", "cx42", "cx52", "cpx11", "cpx21", "cpx31", "cpx41", "cpx51",
    ] {
        let t = by_name(n);
        assert_eq!(t["deprecated"], true, "{n}");
        assert_eq!(
            t["deprecation"]["unavailable_after"], "2025-12-31T00:00:00+00:00",
            "{n}"
        );
        for l in t["locations"].as_array().unwrap() {
            assert_eq!(l["available"], false, "{n}");
            assert!(l["deprecation"]["announced"].is_string(), "{n}");
        }
    }

    // A deprecated type past unavailable_after: refused as Hetzner refuses it.
    let r = api
        .server(
            json!({"name": "old", "server_type": "cx22", "image": "debian-12", "location": "fsn1"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "invalid_input");
    assert_eq!(
        r.body["error"]["message"],
        "unsupported location for server type"
    );
    let r = api
        .server(json!({"name": "old", "server_type": "cpx11", "image": "debian-12"}))
        .await;
    assert_eq!(r.code(), "invalid_input", "no location: still refused");
    // Not sold there at all.
    let r = api
        .server(
            json!({"name": "x", "server_type": "cx23", "image": "debian-12", "location": "ash"}),
        )
        .await;
    assert_eq!(
        r.body["error"]["message"],
        "unsupported location for server type"
    );
    // Listed but out of capacity (available: false): resource_unavailable, so hk8s falls back.
    let cax41 = by_name("cax41");
    let hel1 = cax41["locations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "hel1")
        .cloned()
        .unwrap();
    assert_eq!(
        (hel1["available"].clone(), hel1["recommended"].clone()),
        (json!(false), json!(false))
    );
    let r = api
        .server(json!({"name": "big", "server_type": "cax41", "image": "debian-12", "location": "hel1"}))
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(r.code(), "resource_unavailable");
    let r = api
        .server(json!({"name": "big", "server_type": "cax41", "image": "debian-12", "location": "nbg1"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);

    // No datacenter on servers; /datacenters is gone.
    let srv = &r.body["server"];
    assert!(srv.get("datacenter").is_none(), "{srv}");
    assert_eq!(srv["location"]["name"], "nbg1");
    for path in ["/v1/datacenters", "/v1/datacenters/2"] {
        let r = api.get(path).await;
        assert_eq!(r.status, StatusCode::GONE, "{path}");
        assert_eq!(r.code(), "deprecated_api_endpoint");
    }

    // Primary IPs: the server's public IPs carry their ids.
    let v4 = srv["public_net"]["ipv4"]["id"].as_i64().expect("ipv4 id");
    let v6 = srv["public_net"]["ipv6"]["id"].as_i64().expect("ipv6 id");
    let p = api.get(&format!("/v1/primary_ips/{v4}")).await.body;
    assert_eq!(p["primary_ip"]["type"], "ipv4");
    assert_eq!(p["primary_ip"]["ip"], srv["public_net"]["ipv4"]["ip"]);
    assert_eq!(p["primary_ip"]["assignee_type"], "server");
    assert_eq!(p["primary_ip"]["assignee_id"], srv["id"]);
    assert!(p["primary_ip"].get("datacenter").is_none());
    let ip = srv["public_net"]["ipv4"]["ip"].as_str().unwrap();
    let l = api.get(&format!("/v1/primary_ips?ip={ip}")).await.body;
    assert_eq!(ids(&l, "primary_ips"), vec![v4]);
    assert_eq!(
        api.get(&format!("/v1/primary_ips/{v6}")).await.body["primary_ip"]["type"],
        "ipv6"
    );
    let sid = srv["id"].as_i64().unwrap();
    api.settle().await;
    let d = api
        .call("DELETE", &format!("/v1/servers/{sid}"), None)
        .await;
    assert_eq!(d.status, StatusCode::OK, "{:?}", d.body);
    assert_eq!(
        api.get(&format!("/v1/primary_ips/{v4}")).await.status,
        StatusCode::NOT_FOUND,
        "auto_delete"
    );

    // Load balancer types carry deprecation; HTTP services take timeout_idle.
    let lbt = api.get("/v1/load_balancer_types").await.body;
    assert!(
        lbt["load_balancer_types"][0]
            .as_object()
            .unwrap()
            .contains_key("deprecation")
    );
}
