//! Conformance: every response body the twin returns in a realistic scenario validates against
//! the response schema the spec documents for that path, method and status.
//!
//! The spec is OpenAPI 3.0 (`nullable: true`); it is rewritten to JSON Schema 2020-12
//! (`type: [t, "null"]`) and each response schema is compiled with the spec's `components` as
//! part of the root resource, so `#/components/schemas/...` references resolve.

mod spec;

use serde_json::{Value, json};

use crate::common::Api;
use spec::{ENDPOINTS, Spec, call, id};

#[tokio::test(start_paused = true)]
async fn every_response_matches_the_spec() {
    let Some(mut spec) = Spec::load() else {
        return;
    };
    let s = &mut spec;
    let api = Api::new();
    api.post(
        "/twin/images/talos",
        json!({"arch": "x86", "version": "v1.11.6"}),
    )
    .await;

    // Catalogue.
    for (list, one, item) in [
        ("/locations", "/locations/{id}", "/locations/0/id"),
        ("/server_types", "/server_types/{id}", "/server_types/0/id"),
        (
            "/load_balancer_types",
            "/load_balancer_types/{id}",
            "/load_balancer_types/0/id",
        ),
    ] {
        let b = call(&api, s, "GET", list, list, None).await;
        let i = id(&b, item);
        call(
            &api,
            s,
            "GET",
            one,
            &one.replace("{id}", &i.to_string()),
            None,
        )
        .await;
    }
    call(
        &api,
        s,
        "GET",
        "/server_types",
        "/server_types?name=cax11",
        None,
    )
    .await;

    // Datacenters are gone (changelog 2026-06-02): 410 in the documented error envelope.
    for (template, path) in [
        ("/datacenters", "/datacenters"),
        ("/datacenters/{id}", "/datacenters/4"),
    ] {
        let r = api.get(&format!("/v1{path}")).await;
        assert_eq!(r.status.as_u16(), 410, "{path}");
        assert_eq!(r.code(), "deprecated_api_endpoint");
        s.check("GET", template, &r);
    }

    // SSH keys.
    let key = call(&api, s, "POST", "/ssh_keys", "/ssh_keys",
        Some(json!({"name": "admin", "public_key": format!("ssh-ed25519 {} admin@x", crate::common::base64_of("admin")), "labels": {"cluster": "demo"}}))).await;
    let kid = id(&key, "/ssh_key/id");
    call(
        &api,
        s,
        "GET",
        "/ssh_keys",
        "/ssh_keys?label_selector=cluster%3Ddemo",
        None,
    )
    .await;
    call(
        &api,
        s,
        "GET",
        "/ssh_keys/{id}",
        &format!("/ssh_keys/{kid}"),
        None,
    )
    .await;
    call(
        &api,
        s,
        "PUT",
        "/ssh_keys/{id}",
        &format!("/ssh_keys/{kid}"),
        Some(json!({"labels": {"cluster": "demo", "x": "y"}})),
    )
    .await;

    // Networks.
    let net = call(
        &api,
        s,
        "POST",
        "/networks",
        "/networks",
        Some(json!({
            "name": "demo", "ip_range": "10.0.0.0/16", "labels": {"cluster": "demo"},
            "subnets": [{"type": "cloud", "network_zone": "eu-central", "ip_range": "10.0.1.0/24"}],
            "routes": [{"destination": "10.100.0.0/24", "gateway": "10.0.1.10"}],
        })),
    )
    .await;
    let nid = id(&net, "/network/id");
    let net2 = call(
        &api,
        s,
        "POST",
        "/networks",
        "/networks",
        Some(json!({"name": "other", "ip_range": "10.1.0.0/16"})),
    )
    .await;
    let nid2 = id(&net2, "/network/id");
    call(
        &api,
        s,
        "POST",
        "/networks/{id}/actions/add_subnet",
        &format!("/networks/{nid2}/actions/add_subnet"),
        Some(json!({"type": "cloud", "network_zone": "eu-central"})),
    )
    .await;
    api.settle().await;
    call(
        &api,
        s,
        "POST",
        "/networks/{id}/actions/add_route",
        &format!("/networks/{nid}/actions/add_route"),
        Some(json!({"destination": "10.200.0.0/24", "gateway": "10.0.1.11"})),
    )
    .await;
    api.settle().await;
    call(
        &api,
        s,
        "POST",
        "/networks/{id}/actions/delete_route",
        &format!("/networks/{nid}/actions/delete_route"),
        Some(json!({"destination": "10.200.0.0/24", "gateway": "10.0.1.11"})),
    )
    .await;
    api.settle().await;
    call(&api, s, "GET", "/networks", "/networks", None).await;
    call(
        &api,
        s,
        "GET",
        "/networks/{id}",
        &format!("/networks/{nid}"),
        None,
    )
    .await;
    call(
        &api,
        s,
        "PUT",
        "/networks/{id}",
        &format!("/networks/{nid}"),
        Some(json!({"name": "demo", "labels": {"cluster": "demo"}})),
    )
    .await;

    // Placement group, firewall.
    let pg = call(
        &api,
        s,
        "POST",
        "/placement_groups",
        "/placement_groups",
        Some(json!({"name": "demo-cp", "type": "spread", "labels": {"cluster": "demo"}})),
    )
    .await;
    let pgid = id(&pg, "/placement_group/id");
    call(
        &api,
        s,
        "GET",
        "/placement_groups",
        "/placement_groups?type=spread",
        None,
    )
    .await;
    call(
        &api,
        s,
        "GET",
        "/placement_groups/{id}",
        &format!("/placement_groups/{pgid}"),
        None,
    )
    .await;
    call(
        &api,
        s,
        "PUT",
        "/placement_groups/{id}",
        &format!("/placement_groups/{pgid}"),
        Some(json!({"labels": {"cluster": "demo"}})),
    )
    .await;
    let fw = call(&api, s, "POST", "/firewalls", "/firewalls", Some(json!({
        "name": "demo", "labels": {"cluster": "demo"},
        "rules": [
            {"direction": "in", "protocol": "tcp", "port": "6443", "source_ips": ["0.0.0.0/0", "::/0"], "description": "kube-apiserver"},
            {"direction": "in", "protocol": "icmp", "source_ips": ["0.0.0.0/0"]},
            {"direction": "out", "protocol": "udp", "port": "1-65535", "destination_ips": ["0.0.0.0/0"]},
        ],
        "apply_to": [{"type": "label_selector", "label_selector": {"selector": "cluster=demo"}}],
    }))).await;
    let fid = id(&fw, "/firewall/id");
    let fw2 = call(
        &api,
        s,
        "POST",
        "/firewalls",
        "/firewalls",
        Some(json!({"name": "empty"})),
    )
    .await;
    let fid2 = id(&fw2, "/firewall/id");

    // Servers with every option.
    let srv = call(&api, s, "POST", "/servers", "/servers", Some(json!({
        "name": "demo-cp-1", "server_type": "cx23", "image": "debian-12", "location": "fsn1",
        "ssh_keys": ["admin"], "networks": [nid], "firewalls": [{"firewall": fid2}],
        "placement_group": pgid, "labels": {"cluster": "demo", "role": "control-plane"},
        "public_net": {"enable_ipv4": true, "enable_ipv6": true}, "user_data": "#cloud-config\n",
        "start_after_create": true, "automount": false,
    }))).await;
    let sid = id(&srv, "/server/id");
    let talos = call(
        &api,
        s,
        "GET",
        "/images",
        "/images?type=snapshot&label_selector=os%3Dtalos",
        None,
    )
    .await;
    let talos_id = id(&talos, "/images/0/id");
    let srv2 = call(&api, s, "POST", "/servers", "/servers", Some(json!({
        "name": "demo-w-1", "server_type": "cpx22", "image": talos_id.to_string(), "location": "fsn1",
        "labels": {"cluster": "demo", "role": "worker"}, "start_after_create": false,
    }))).await;
    let sid2 = id(&srv2, "/server/id");
    // The servers' public IPs are Primary IPs, with the ids the servers carry.
    let pip = id(&srv, "/server/public_net/ipv4/id");
    let pips = call(&api, s, "GET", "/primary_ips", "/primary_ips", None).await;
    assert_eq!(pips["primary_ips"].as_array().map(Vec::len), Some(4));
    let one = call(
        &api,
        s,
        "GET",
        "/primary_ips/{id}",
        &format!("/primary_ips/{pip}"),
        None,
    )
    .await;
    assert_eq!(one["primary_ip"]["assignee_id"], json!(sid));
    assert_eq!(
        one["primary_ip"]["ip"],
        srv["server"]["public_net"]["ipv4"]["ip"]
    );
    assert!(srv["server"].get("datacenter").is_none());
    call(
        &api,
        s,
        "GET",
        "/servers",
        "/servers?label_selector=cluster%3Ddemo",
        None,
    )
    .await;
    call(
        &api,
        s,
        "GET",
        "/servers/{id}",
        &format!("/servers/{sid}"),
        None,
    )
    .await;
    call(
        &api,
        s,
        "GET",
        "/firewalls/{id}",
        &format!("/firewalls/{fid}"),
        None,
    )
    .await;
    api.settle().await;
    call(&api, s, "GET", "/servers", "/servers", None).await;
    call(
        &api,
        s,
        "PUT",
        "/servers/{id}",
        &format!("/servers/{sid}"),
        Some(json!({"labels": {"cluster": "demo", "role": "control-plane", "x": ""}})),
    )
    .await;
    let server_actions: [(&str, Option<Value>); 5] = [
        (
            "enable_rescue",
            Some(json!({"type": "linux64", "ssh_keys": [kid]})),
        ),
        ("reset", None),
        ("reboot", None),
        ("disable_rescue", None),
        ("poweroff", None),
    ];
    for (a, body) in server_actions {
        call(
            &api,
            s,
            "POST",
            &format!("/servers/{{id}}/actions/{a}"),
            &format!("/servers/{sid}/actions/{a}"),
            body,
        )
        .await;
        api.settle().await;
    }
    call(
        &api,
        s,
        "POST",
        "/servers/{id}/actions/remove_from_placement_group",
        &format!("/servers/{sid}/actions/remove_from_placement_group"),
        None,
    )
    .await;
    call(
        &api,
        s,
        "POST",
        "/servers/{id}/actions/add_to_placement_group",
        &format!("/servers/{sid}/actions/add_to_placement_group"),
        Some(json!({"placement_group": pgid})),
    )
    .await;
    call(
        &api,
        s,
        "POST",
        "/servers/{id}/actions/poweron",
        &format!("/servers/{sid}/actions/poweron"),
        None,
    )
    .await;
    api.settle().await;
    call(
        &api,
        s,
        "POST",
        "/servers/{id}/actions/shutdown",
        &format!("/servers/{sid}/actions/shutdown"),
        None,
    )
    .await;
    api.settle().await;
    call(
        &api,
        s,
        "POST",
        "/servers/{id}/actions/attach_to_network",
        &format!("/servers/{sid}/actions/attach_to_network"),
        Some(json!({"network": nid2})),
    )
    .await;
    api.settle().await;
    call(
        &api,
        s,
        "POST",
        "/servers/{id}/actions/detach_from_network",
        &format!("/servers/{sid}/actions/detach_from_network"),
        Some(json!({"network": nid2})),
    )
    .await;
    api.settle().await;
    let img = call(&api, s, "POST", "/servers/{id}/actions/create_image", &format!("/servers/{sid}/actions/create_image"),
        Some(json!({"type": "snapshot", "description": "talos v1.11.6", "labels": {"os": "talos", "arch": "x86", "version": "v1.11.6"}}))).await;
    let iid = id(&img, "/image/id");
    call(
        &api,
        s,
        "GET",
        "/images/{id}",
        &format!("/images/{iid}"),
        None,
    )
    .await;
    call(
        &api,
        s,
        "GET",
        "/servers/{id}",
        &format!("/servers/{sid}"),
        None,
    )
    .await;
    api.settle().await;
    call(&api, s, "GET", "/images", "/images", None).await;
    call(
        &api,
        s,
        "GET",
        "/images",
        "/images?architecture=arm&type=system&status=available",
        None,
    )
    .await;
    call(
        &api,
        s,
        "PUT",
        "/images/{id}",
        &format!("/images/{iid}"),
        Some(json!({"description": "renamed", "labels": {"os": "talos"}})),
    )
    .await;

    // Firewall actions.
    call(&api, s, "POST", "/firewalls/{id}/actions/set_rules", &format!("/firewalls/{fid}/actions/set_rules"),
        Some(json!({"rules": [{"direction": "in", "protocol": "tcp", "port": "50000", "source_ips": ["10.0.0.0/8"]}]}))).await;
    api.settle().await;
    call(
        &api,
        s,
        "POST",
        "/firewalls/{id}/actions/apply_to_resources",
        &format!("/firewalls/{fid}/actions/apply_to_resources"),
        Some(json!({"apply_to": [{"type": "server", "server": {"id": sid2}}]})),
    )
    .await;
    api.settle().await;
    call(&api, s, "GET", "/firewalls", "/firewalls", None).await;
    call(
        &api,
        s,
        "PUT",
        "/firewalls/{id}",
        &format!("/firewalls/{fid}"),
        Some(json!({"name": "demo-fw"})),
    )
    .await;

    // Volumes.
    let vol = call(
        &api,
        s,
        "POST",
        "/volumes",
        "/volumes",
        Some(json!({
            "name": "pvc-demo-1", "size": 10, "location": "fsn1", "format": "ext4",
            "labels": {"cluster": "demo"}, "automount": false,
        })),
    )
    .await;
    let vid = id(&vol, "/volume/id");
    assert_eq!(vol["volume"]["status"], "creating");
    assert_eq!(vol["next_actions"], json!([]));
    let vol2 = call(
        &api,
        s,
        "POST",
        "/volumes",
        "/volumes",
        Some(json!({
            "name": "pvc-demo-2", "size": 20, "server": sid2, "automount": true,
        })),
    )
    .await;
    let vid2 = id(&vol2, "/volume/id");
    assert_eq!(vol2["next_actions"][0]["command"], "attach_volume");
    api.settle().await;
    call(
        &api,
        s,
        "POST",
        "/volumes/{id}/actions/attach",
        &format!("/volumes/{vid}/actions/attach"),
        Some(json!({"server": sid2, "automount": false})),
    )
    .await;
    api.settle().await;
    let srv2_now = call(
        &api,
        s,
        "GET",
        "/servers/{id}",
        &format!("/servers/{sid2}"),
        None,
    )
    .await;
    assert_eq!(srv2_now["server"]["volumes"], json!([vid, vid2]));
    call(
        &api,
        s,
        "POST",
        "/volumes/{id}/actions/detach",
        &format!("/volumes/{vid}/actions/detach"),
        None,
    )
    .await;
    api.settle().await;
    call(
        &api,
        s,
        "POST",
        "/volumes/{id}/actions/resize",
        &format!("/volumes/{vid}/actions/resize"),
        Some(json!({"size": 15})),
    )
    .await;
    api.settle().await;
    call(
        &api,
        s,
        "POST",
        "/volumes/{id}/actions/change_protection",
        &format!("/volumes/{vid}/actions/change_protection"),
        Some(json!({"delete": false})),
    )
    .await;
    api.settle().await;
    call(
        &api,
        s,
        "PUT",
        "/volumes/{id}",
        &format!("/volumes/{vid}"),
        Some(json!({"name": "pvc-demo-1b", "labels": {"cluster": "demo", "x": "y"}})),
    )
    .await;
    let one = call(
        &api,
        s,
        "GET",
        "/volumes/{id}",
        &format!("/volumes/{vid}"),
        None,
    )
    .await;
    assert_eq!(one["volume"]["status"], "available");
    assert_eq!(one["volume"]["server"], Value::Null);
    let listed = call(
        &api,
        s,
        "GET",
        "/volumes",
        "/volumes?label_selector=cluster%3Ddemo&status=available&per_page=1",
        None,
    )
    .await;
    assert_eq!(listed["volumes"][0]["id"], json!(vid));
    assert_eq!(listed["meta"]["pagination"]["total_entries"], 1);
    call(&api, s, "GET", "/volumes", "/volumes?name=pvc-demo-2", None).await;

    // Load balancers.
    let service = json!({"protocol": "tcp", "listen_port": 6443, "destination_port": 6443, "proxyprotocol": false,
        "health_check": {"protocol": "tcp", "port": 6443, "interval": 15, "timeout": 10, "retries": 3}});
    let lb = call(&api, s, "POST", "/load_balancers", "/load_balancers", Some(json!({
        "name": "demo-api", "load_balancer_type": "lb11", "location": "fsn1", "network": nid,
        "algorithm": {"type": "round_robin"}, "public_interface": true, "labels": {"cluster": "demo"},
        "services": [service],
        "targets": [{"type": "label_selector", "label_selector": {"selector": "role=control-plane"}, "use_private_ip": true}],
    }))).await;
    let lid = id(&lb, "/load_balancer/id");
    let lb2 = call(
        &api,
        s,
        "POST",
        "/load_balancers",
        "/load_balancers",
        Some(json!({"name": "plain", "load_balancer_type": "lb11", "network_zone": "eu-central"})),
    )
    .await;
    let lid2 = id(&lb2, "/load_balancer/id");
    api.settle().await;
    let lb_actions: Vec<(&str, Value)> = vec![
        (
            "add_service",
            json!({"protocol": "http", "listen_port": 80, "destination_port": 8080, "proxyprotocol": false,
            "health_check": {"protocol": "http", "port": 8080, "interval": 15, "timeout": 10, "retries": 3, "http": {"domain": null, "path": "/healthz"}},
            "http": {"timeout_idle": 30}}),
        ),
        (
            "update_service",
            json!({"listen_port": 80, "destination_port": 8081}),
        ),
        ("delete_service", json!({"listen_port": 80})),
        (
            "add_target",
            json!({"type": "server", "server": {"id": sid2}, "use_private_ip": false}),
        ),
        (
            "add_target",
            json!({"type": "ip", "ip": {"ip": "203.0.113.5"}}),
        ),
        (
            "remove_target",
            json!({"type": "ip", "ip": {"ip": "203.0.113.5"}}),
        ),
        ("change_algorithm", json!({"type": "least_connections"})),
        ("enable_public_interface", json!({})),
    ];
    for (a, body) in lb_actions {
        call(
            &api,
            s,
            "POST",
            &format!("/load_balancers/{{id}}/actions/{a}"),
            &format!("/load_balancers/{lid}/actions/{a}"),
            Some(body),
        )
        .await;
        api.settle().await;
    }
    call(
        &api,
        s,
        "GET",
        "/load_balancers/{id}",
        &format!("/load_balancers/{lid}"),
        None,
    )
    .await;
    call(
        &api,
        s,
        "POST",
        "/load_balancers/{id}/actions/remove_target",
        &format!("/load_balancers/{lid}/actions/remove_target"),
        Some(json!({"type": "server", "server": {"id": sid2}})),
    )
    .await;
    api.settle().await;
    call(
        &api,
        s,
        "POST",
        "/load_balancers/{id}/actions/attach_to_network",
        &format!("/load_balancers/{lid2}/actions/attach_to_network"),
        Some(json!({"network": nid})),
    )
    .await;
    api.settle().await;
    call(
        &api,
        s,
        "POST",
        "/load_balancers/{id}/actions/detach_from_network",
        &format!("/load_balancers/{lid2}/actions/detach_from_network"),
        Some(json!({"network": nid})),
    )
    .await;
    api.settle().await;
    call(&api, s, "GET", "/load_balancers", "/load_balancers", None).await;
    call(
        &api,
        s,
        "PUT",
        "/load_balancers/{id}",
        &format!("/load_balancers/{lid}"),
        Some(json!({"labels": {"cluster": "demo"}})),
    )
    .await;

    // Actions, globally and per resource.
    let sa = id(&srv, "/action/id");
    let na = id(&srv, "/next_actions/0/id");
    call(
        &api,
        s,
        "GET",
        "/actions",
        &format!("/actions?id={sa}&id={na}"),
        None,
    )
    .await;
    call(
        &api,
        s,
        "GET",
        "/actions/{id}",
        &format!("/actions/{sa}"),
        None,
    )
    .await;
    for (res, rid) in [
        ("servers", sid),
        ("images", iid),
        ("networks", nid),
        ("firewalls", fid),
        ("load_balancers", lid),
        ("volumes", vid),
    ] {
        let list = call(
            &api,
            s,
            "GET",
            &format!("/{res}/{{id}}/actions"),
            &format!("/{res}/{rid}/actions?sort=id:desc"),
            None,
        )
        .await;
        let aid = id(&list, "/actions/0/id");
        call(
            &api,
            s,
            "GET",
            &format!("/{res}/{{id}}/actions/{{action_id}}"),
            &format!("/{res}/{rid}/actions/{aid}"),
            None,
        )
        .await;
        call(
            &api,
            s,
            "GET",
            &format!("/{res}/actions"),
            &format!("/{res}/actions?status=success"),
            None,
        )
        .await;
        call(
            &api,
            s,
            "GET",
            &format!("/{res}/actions/{{id}}"),
            &format!("/{res}/actions/{aid}"),
            None,
        )
        .await;
    }

    // Errors use the error envelope.
    for (m, t, p, b) in [
        ("GET", "/servers/{id}", "/servers/1", None),
        (
            "POST",
            "/servers",
            "/servers",
            Some(json!({"name": "demo-cp-1", "server_type": "cx23", "image": "debian-12"})),
        ),
        (
            "POST",
            "/firewalls/{id}/actions/apply_to_resources",
            &*format!("/firewalls/{fid}/actions/apply_to_resources"),
            Some(json!({"apply_to": [{"type": "server", "server": {"id": 1}}]})),
        ),
        (
            "DELETE",
            "/firewalls/{id}",
            &*format!("/firewalls/{fid}"),
            None,
        ),
        ("GET", "/actions", "/actions", None),
    ] {
        let r = api.call(m, &format!("/v1{p}"), b).await;
        assert!(r.status.is_client_error(), "{m} {p}: {}", r.status);
        s.check(m, t, &r);
    }

    // Deletes, in dependency order.
    call(&api, s, "POST", "/firewalls/{id}/actions/remove_from_resources", &format!("/firewalls/{fid}/actions/remove_from_resources"),
        Some(json!({"remove_from": [{"type": "label_selector", "label_selector": {"selector": "cluster=demo"}}, {"type": "server", "server": {"id": sid2}}]}))).await;
    api.settle().await;
    for (t, p) in [
        ("/load_balancers/{id}", format!("/load_balancers/{lid}")),
        ("/load_balancers/{id}", format!("/load_balancers/{lid2}")),
        ("/servers/{id}", format!("/servers/{sid}")),
        ("/servers/{id}", format!("/servers/{sid2}")),
    ] {
        call(&api, s, "DELETE", t, &p, None).await;
    }
    api.settle().await;
    let v2 = call(
        &api,
        s,
        "GET",
        "/volumes/{id}",
        &format!("/volumes/{vid2}"),
        None,
    )
    .await;
    assert_eq!(
        v2["volume"]["server"],
        Value::Null,
        "a server delete detaches its volumes"
    );
    for (t, p) in [
        ("/volumes/{id}", format!("/volumes/{vid}")),
        ("/volumes/{id}", format!("/volumes/{vid2}")),
        ("/firewalls/{id}", format!("/firewalls/{fid}")),
        ("/firewalls/{id}", format!("/firewalls/{fid2}")),
        (
            "/placement_groups/{id}",
            format!("/placement_groups/{pgid}"),
        ),
        ("/images/{id}", format!("/images/{iid}")),
        ("/ssh_keys/{id}", format!("/ssh_keys/{kid}")),
    ] {
        call(&api, s, "DELETE", t, &p, None).await;
    }
    call(
        &api,
        s,
        "POST",
        "/networks/{id}/actions/delete_subnet",
        &format!("/networks/{nid2}/actions/delete_subnet"),
        Some(json!({"ip_range": "10.1.0.0/24"})),
    )
    .await;
    api.settle().await;
    call(
        &api,
        s,
        "DELETE",
        "/networks/{id}",
        &format!("/networks/{nid}"),
        None,
    )
    .await;

    let missing: Vec<String> = ENDPOINTS
        .iter()
        .filter(|(m, t)| !s.checked.contains(&(m.to_string(), t.to_string())))
        .map(|(m, t)| format!("{m} {t}"))
        .collect();
    assert!(missing.is_empty(), "endpoints never validated: {missing:?}");
    println!(
        "conformance: {} responses validated over {} endpoints",
        s.validated,
        s.checked.len()
    );
    assert_eq!(api.get("/v1/servers").await.body["servers"], json!([]));
}

#[tokio::test(start_paused = true)]
async fn the_validator_rejects_incomplete_bodies() {
    let Some(mut spec) = Spec::load() else {
        return;
    };
    let api = Api::new();
    let r = api
        .server(json!({"name": "s", "server_type": "cx23", "image": "debian-12"}))
        .await;
    let good = r.body["server"].clone();
    let v = spec.validator("/servers/{id}", "GET", 200).unwrap();
    assert!(v.is_valid(&json!({"server": good})));
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("location");
    assert!(!v.is_valid(&json!({"server": missing})), "required field");
    let mut bad_enum = good.clone();
    bad_enum["status"] = json!("sleeping");
    assert!(!v.is_valid(&json!({"server": bad_enum})), "closed enum");
    let mut null_ok = good.clone();
    null_ok["image"] = Value::Null;
    assert!(v.is_valid(&json!({"server": null_ok})), "nullable image");
    let mut null_bad = good;
    null_bad["name"] = Value::Null;
    assert!(
        !v.is_valid(&json!({"server": null_bad})),
        "name is not nullable"
    );
    let mut bad_time = r.body["action"].clone();
    bad_time["started"] = json!("yesterday");
    let v = spec.validator("/actions/{id}", "GET", 200).unwrap();
    assert!(v.is_valid(&json!({"action": r.body["action"]})));
    assert!(
        !v.is_valid(&json!({"action": bad_time})),
        "date-time format"
    );
}
