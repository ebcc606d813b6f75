"""Drives the twin with the official Hetzner Cloud Python client (hcloud from PyPI).

Run by twin/tests/twin/hcloud_python.rs with HCLOUD_ENDPOINT and HCLOUD_TOKEN pointing at a twin
on loopback. Every endpoint hk8s calls (see activities/hetzner) goes through the client, so each
response must parse into the client's models; a few fields are asserted on the way. The last
line printed is `ok <calls>`; any failure raises, prints the traceback and exits non-zero.
"""

import os
import sys
import warnings

import hcloud
from hcloud import APIException, Client
from hcloud.firewalls import FirewallResource, FirewallResourceLabelSelector, FirewallRule
from hcloud.images import Image
from hcloud.load_balancer_types import LoadBalancerType
from hcloud.load_balancers import (
    LoadBalancerHealthCheck,
    LoadBalancerService,
    LoadBalancerTarget,
    LoadBalancerTargetLabelSelector,
)
from hcloud.locations import Location
from hcloud.networks import NetworkSubnet
from hcloud.server_types import ServerType

CALLS = []


def step(what):
    CALLS.append(what)
    print(f"- {what}", flush=True)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def wait(action, what):
    """Polls an action through GET /actions/{id} until it is done (the client's own waiter)."""
    if action is None:
        return
    action.wait_until_finished(max_retries=2000)
    check(action.status == "success", f"{what}: action {action.id} ended {action.status}")


def main():
    client = Client(
        token=os.environ["HCLOUD_TOKEN"],
        api_endpoint=os.environ["HCLOUD_ENDPOINT"],
        application_name="hk8s-twin-test",
        poll_interval=0.02,
    )
    print(f"hcloud-python {hcloud.__version__}", flush=True)

    # --- catalog (the preflight's reads) ---------------------------------------------------
    step("GET /locations")
    locations = client.locations.get_all()
    names = {l.name for l in locations}
    check({"fsn1", "nbg1", "hel1"} <= names, f"locations: {sorted(names)}")
    fsn1 = client.locations.get_by_name("fsn1")
    check(fsn1.network_zone == "eu-central", f"fsn1 zone {fsn1.network_zone}")

    step("GET /server_types")
    types = {t.name: t for t in client.server_types.get_all()}
    for name in ["cx23", "cx33", "cpx22", "cax11", "cax21", "ccx13"]:
        check(name in types, f"server type {name} missing: {sorted(types)}")
    check(types["cax11"].architecture == "arm", "cax11 architecture")
    check(types["cx23"].architecture == "x86", "cx23 architecture")
    cx23 = types["cx23"]
    check(any(l.recommended for l in cx23.locations), "cx23 is recommended nowhere")
    check(cx23.locations, "cx23 has no per-location entries")
    here = {l.location.name: l for l in cx23.locations}
    check("fsn1" in here and here["fsn1"].available is not None, "cx23 availability in fsn1")
    # Deprecated types carry their deprecation, globally and per location.
    # (The global `deprecation` is deprecated in favour of `locations[].deprecation` since
    # 2025-09-24; the API still sends both, and the client still reads both.)
    deprecated = [t for t in types.values() if any(l.deprecation for l in t.locations)]
    check(deprecated, "no server type carries deprecation info")
    for t in deprecated:
        for l in t.locations:
            check(l.deprecation is not None, f"{t.name}: not deprecated in {l.location.name}")
            check(l.deprecation.unavailable_after is not None, f"{t.name}: no unavailable_after")
            check(l.deprecation.announced is not None, f"{t.name}: no announced")
            check(l.available is False, f"{t.name} is still available in {l.location.name}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            check(t.deprecation is not None and t.deprecated, f"{t.name}: global deprecation")
    check("cx22" in {t.name for t in deprecated}, "cx22 is not deprecated")
    check(all(l.deprecation is None for l in cx23.locations), "cx23 is deprecated")
    step("GET /server_types/{id}")
    again = client.server_types.get_by_id(cx23.id)
    check(again.name == "cx23" and again.cores > 0, "server type by id")

    step("GET /load_balancer_types")
    lb_types = {t.name: t for t in client.load_balancer_types.get_all()}
    check("lb11" in lb_types, f"load balancer types: {sorted(lb_types)}")

    # --- images ----------------------------------------------------------------------------
    step("GET /images?type=system&architecture=x86")
    system = client.images.get_all(type="system", architecture="x86")
    check(any(i.name == "debian-12" for i in system), "debian-12 system image")
    check(all(i.architecture == "x86" for i in system), "architecture filter")
    step("GET /images?label_selector=os=talos")
    talos = client.images.get_all(label_selector="os=talos", type="snapshot", architecture="x86")
    check(len(talos) == 1 and talos[0].labels["os"] == "talos", f"talos snapshots: {talos}")

    # --- SSH keys ----------------------------------------------------------------------------
    step("POST /ssh_keys")
    key = client.ssh_keys.create(
        name="hk8s-builder",
        public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEJ3FYc1Yc4WjQjTgkfvm8qTmgY0y4X3qSE3rU8SJw8q x",
        labels={"managed-by": "hk8s", "component": "image-builder"},
    )
    check(key.fingerprint, "ssh key fingerprint")
    step("GET /ssh_keys?label_selector")
    keys = client.ssh_keys.get_all(label_selector="component=image-builder")
    check([k.id for k in keys] == [key.id], "ssh keys by label")

    # --- network -----------------------------------------------------------------------------
    labels = {"cluster": "py", "managed-by": "hk8s"}
    step("POST /networks")
    net = client.networks.create(
        name="py",
        ip_range="10.0.0.0/16",
        labels={**labels, "component": "network"},
    )
    step("POST /networks/{id}/actions/add_subnet")
    wait(
        net.add_subnet(
            NetworkSubnet(type="cloud", ip_range="10.0.1.0/24", network_zone="eu-central")
        ),
        "add_subnet",
    )
    step("PUT /networks/{id}")
    net = net.update(labels={**labels, "component": "network", "secrets-fingerprint": "abc"})
    step("GET /networks?label_selector")
    nets = client.networks.get_all(label_selector="cluster=py,managed-by=hk8s")
    check(len(nets) == 1 and nets[0].subnets[0].ip_range == "10.0.1.0/24", "network subnets")
    check(nets[0].labels["secrets-fingerprint"] == "abc", "network labels")

    # --- firewalls ---------------------------------------------------------------------------
    step("POST /firewalls")
    fw = client.firewalls.create(
        name="py-control-plane",
        labels={**labels, "component": "firewall"},
        rules=[
            FirewallRule(direction="in", protocol="tcp", port="50000", source_ips=["203.0.113.7/32"]),
        ],
    ).firewall
    step("POST /firewalls/{id}/actions/set_rules")
    for a in fw.set_rules(
        [
            FirewallRule(direction="in", protocol="tcp", port="50000", source_ips=["203.0.113.7/32"]),
            FirewallRule(direction="in", protocol="tcp", port="6443", source_ips=["203.0.113.7/32"]),
            FirewallRule(direction="in", protocol="icmp", source_ips=["0.0.0.0/0", "::/0"]),
        ]
    ):
        wait(a, "set_rules")
    step("PUT /firewalls/{id}")
    fw = fw.update(labels={**labels, "component": "firewall", "role": "control-plane"})
    step("GET /firewalls?label_selector")
    fws = client.firewalls.get_all(label_selector="cluster=py")
    check(len(fws) == 1 and len(fws[0].rules) == 3, "firewall rules")

    # --- placement groups ----------------------------------------------------------------------
    step("POST /placement_groups")
    pg = client.placement_groups.create(
        name="py-control-plane", type="spread", labels={**labels, "component": "placement"}
    ).placement_group
    step("PUT /placement_groups/{id}")
    pg = pg.update(labels={**labels, "component": "placement", "role": "control-plane"})
    step("GET /placement_groups?label_selector")
    pgs = client.placement_groups.get_all(label_selector="cluster=py")
    check([p.id for p in pgs] == [pg.id] and pgs[0].type == "spread", "placement groups")

    # --- servers -----------------------------------------------------------------------------
    step("POST /servers (stopped, labels, network, placement group, firewall)")
    created = client.servers.create(
        name="py-cp-1",
        server_type=ServerType(name="cx23"),
        image=Image(id=talos[0].id),
        location=Location(name="fsn1"),
        networks=[net],
        firewalls=[fw],
        placement_group=pg,
        labels={**labels, "role": "control-plane"},
        user_data=None,
        start_after_create=False,
    )
    server = created.server
    wait(created.action, "create server")
    for a in created.next_actions:
        wait(a, "create server (next)")
    check(server.server_type.name == "cx23", "server type of the server")
    check(server.location.name == "fsn1", "server location")
    step("GET /servers/{id}")
    server = client.servers.get_by_id(server.id)
    check(server.status == "off", f"a server created stopped is off: {server.status}")
    check(server.private_net and server.private_net[0].network.id == net.id, "private net")
    check(server.public_net.ipv4.ip.startswith("127."), "public IPv4 on loopback")
    check(server.placement_group.id == pg.id, "placement group of the server")
    check([f.firewall.id for f in server.public_net.firewalls] == [fw.id], "firewall of the server")
    step("GET /servers?label_selector")
    listed = client.servers.get_all(label_selector="cluster=py,role=control-plane")
    check([s.id for s in listed] == [server.id], "servers by label")
    step("POST /servers/{id}/actions/poweron")
    wait(server.power_on(), "poweron")
    check(client.servers.get_by_id(server.id).status == "running", "running after poweron")
    step("POST /servers/{id}/actions/reset")
    wait(server.reset(), "reset")
    step("PUT /servers/{id}")
    server = server.update(labels={**labels, "role": "control-plane", "extra": "1"})
    check(server.labels["extra"] == "1", "server labels")
    step("GET /servers/{id}/actions")
    actions = server.get_actions()
    check(any(a.command == "start_server" for a in actions), f"{[a.command for a in actions]}")

    # A second server the image builder's way: created stopped, rescue, power, snapshot.
    step("POST /servers (builder: debian-12, ssh key)")
    built = client.servers.create(
        name="py-builder",
        server_type=ServerType(name="cax11"),
        image=Image(name="debian-12"),
        location=Location(name="nbg1"),
        ssh_keys=[key],
        labels={"managed-by": "hk8s", "component": "image-builder"},
        start_after_create=False,
    )
    wait(built.action, "create builder")
    builder = client.servers.get_by_id(built.server.id)
    check(builder.server_type.architecture == "arm", "builder arch")
    step("POST /servers/{id}/actions/attach_to_network")
    wait(builder.attach_to_network(net), "attach_to_network")
    step("POST /servers/{id}/actions/enable_rescue")
    rescue = builder.enable_rescue(type="linux64", ssh_keys=[key.id])
    wait(rescue.action, "enable_rescue")
    check(client.servers.get_by_id(builder.id).rescue_enabled, "rescue enabled")
    wait(builder.power_on(), "builder poweron")
    step("POST /servers/{id}/actions/poweroff")
    wait(builder.power_off(), "poweroff")
    step("POST /servers/{id}/actions/create_image")
    snap = builder.create_image(
        description="talos v1.11.6 arm64", type="snapshot",
        labels={"managed-by": "hk8s", "component": "image-builder"},
    )
    wait(snap.action, "create_image")
    step("PUT /images/{id}")
    image = client.images.get_by_id(snap.image.id).update(
        labels={"os": "talos", "arch": "arm64", "managed-by": "hk8s"}
    )
    check(image.type == "snapshot" and image.architecture == "arm", "snapshot of the builder")

    # --- load balancer -----------------------------------------------------------------------
    step("POST /load_balancers")
    lb_created = client.load_balancers.create(
        name="py-api",
        load_balancer_type=LoadBalancerType(name="lb11"),
        location=Location(name="fsn1"),
        labels={**labels, "component": "load-balancer"},
    )
    wait(lb_created.action, "create load balancer")
    lb = client.load_balancers.get_by_id(lb_created.load_balancer.id)
    step("POST /load_balancers/{id}/actions/attach_to_network")
    wait(lb.attach_to_network(net, ip="10.0.1.100"), "lb attach_to_network")
    step("POST /load_balancers/{id}/actions/add_target (label selector)")
    wait(
        lb.add_target(
            LoadBalancerTarget(
                type="label_selector",
                label_selector=LoadBalancerTargetLabelSelector(selector="cluster=py,role=control-plane"),
                use_private_ip=True,
            )
        ),
        "add_target",
    )
    health = LoadBalancerHealthCheck(protocol="tcp", port=6443, interval=5, timeout=3, retries=3)
    step("POST /load_balancers/{id}/actions/add_service")
    wait(
        lb.add_service(
            LoadBalancerService(protocol="tcp", listen_port=6443, destination_port=6443,
                                proxyprotocol=False, health_check=health)
        ),
        "add_service",
    )
    step("POST /load_balancers/{id}/actions/update_service")
    wait(
        lb.update_service(
            LoadBalancerService(listen_port=6443, destination_port=6443, proxyprotocol=False,
                                health_check=LoadBalancerHealthCheck(protocol="tcp", port=6443,
                                                                     interval=10, timeout=5, retries=3))
        ),
        "update_service",
    )
    step("POST /load_balancers/{id}/actions/disable_public_interface")
    wait(lb.disable_public_interface(), "disable_public_interface")
    check(not client.load_balancers.get_by_id(lb.id).public_net.enabled, "public interface off")
    step("POST /load_balancers/{id}/actions/enable_public_interface")
    wait(lb.enable_public_interface(), "enable_public_interface")
    step("PUT /load_balancers/{id}")
    lb = lb.update(labels={**labels, "component": "load-balancer", "role": "api"})
    step("GET /load_balancers?label_selector")
    lbs = client.load_balancers.get_all(label_selector="cluster=py")
    check(len(lbs) == 1, "load balancers by label")
    lb = lbs[0]
    check(lb.public_net.enabled and lb.public_net.ipv4.ip, "load balancer public IPv4")
    check(lb.services[0].health_check.interval == 10, "updated service")
    check(lb.targets[0].type == "label_selector", "label selector target")
    check(lb.load_balancer_type.name == "lb11", "load balancer type")
    step("POST /load_balancers/{id}/actions/remove_target")
    wait(
        lb.remove_target(
            LoadBalancerTarget(
                type="label_selector",
                label_selector=LoadBalancerTargetLabelSelector(selector="cluster=py,role=control-plane"),
            )
        ),
        "remove_target",
    )

    # --- firewall attachment by label selector (the CCM-free worker path) ---------------------
    step("POST /firewalls/{id}/actions/apply_to_resources")
    for a in fw.apply_to_resources(
        [FirewallResource(type="label_selector",
                          label_selector=FirewallResourceLabelSelector(selector="component=image-builder"))]
    ):
        wait(a, "apply_to_resources")
    step("POST /firewalls/{id}/actions/remove_from_resources")
    for a in fw.remove_from_resources(
        [FirewallResource(type="label_selector",
                          label_selector=FirewallResourceLabelSelector(selector="component=image-builder"))]
    ):
        wait(a, "remove_from_resources")

    # --- primary IPs and volumes (listed and deleted by destroy) -----------------------------
    step("GET /primary_ips")
    pips = client.primary_ips.get_all()
    check(any(p.assignee_id == server.id for p in pips), "the server's primary IP")
    for p in pips:
        check(p.location is not None, f"primary IP {p.id} has a location")
    step("GET /volumes?label_selector")
    check(client.volumes.get_all(label_selector="cluster=py") == [], "no volumes")

    # --- actions -----------------------------------------------------------------------------
    step("GET /actions/{id}")
    got = client.actions.get_by_id(created.action.id)
    check(got.status == "success" and got.command == "create_server", "action by id")

    # --- errors parse as the client's APIException ---------------------------------------------
    step("POST /servers with a deprecated type")
    try:
        client.servers.create(name="py-old", server_type=ServerType(name="cx22"),
                              image=Image(name="debian-12"), location=Location(name="fsn1"))
        raise AssertionError("cx22 was orderable")
    except APIException as e:
        check(e.code == "invalid_input", f"cx22: {e.code} {e.message}")
    step("GET /datacenters (410)")
    try:
        client.datacenters.get_all()
        raise AssertionError("/datacenters answered")
    except APIException as e:
        check(e.code == "deprecated_api_endpoint", f"/datacenters: {e.code}")

    # --- destroy ------------------------------------------------------------------------------
    step("DELETE /load_balancers/{id}")
    lb.delete()
    for s in client.servers.get_all(label_selector="managed-by=hk8s"):
        step("DELETE /servers/{id}")
        wait(s.delete(), "delete server")
    step("DELETE /images/{id}")
    image.delete()
    step("DELETE /ssh_keys/{id}")
    key.delete()
    step("DELETE /placement_groups/{id}")
    pg.delete()
    step("DELETE /firewalls/{id}")
    fw.delete()
    step("DELETE /networks/{id}")
    net.delete()
    check(client.servers.get_all() == [], "servers left")
    print(f"ok {len(CALLS)}", flush=True)


if __name__ == "__main__":
    try:
        main()
    except Exception:  # noqa: BLE001 - the test prints everything
        import traceback

        traceback.print_exc()
        sys.exit(1)
