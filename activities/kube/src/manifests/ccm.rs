//! Hetzner Cloud Controller Manager (hcloud-cloud-controller-manager), networks variant.

use serde_json::{Value, json};

use super::{ADDON_NAMESPACE, AddonInputs, HCLOUD_SECRET_NAME, PodRouting, env_from_secret, meta};

/// Name of the CCM Deployment and ServiceAccount.
pub const CCM_NAME: &str = "hcloud-cloud-controller-manager";

/// ServiceAccount, ClusterRoleBinding (to `cluster-admin`, as upstream) and Deployment of the CCM.
///
/// As upstream's `ccm-networks.yaml`: `--cloud-provider=hcloud`, `--allocate-node-cidrs=true
/// --cluster-cidr=<pod cidr>`, token and network id from the `hcloud` Secret, tolerations for the
/// `node.cloudprovider.kubernetes.io/uninitialized` and control-plane taints, host network.
/// `HCLOUD_NETWORK_ROUTES_ENABLED` follows [`PodRouting`]. Unlike upstream it also sets
/// `KUBERNETES_SERVICE_HOST/PORT` to the host-local API endpoint (Talos KubePrism), so the CCM
/// needs no working Service IP — it starts before or independently of the CNI.
pub fn ccm(inputs: &AddonInputs) -> Vec<Value> {
    let routes = match inputs.routing {
        PodRouting::Native => "true",
        PodRouting::Tunnel => "false",
    };
    let labels = [("app", CCM_NAME)];
    let mut env = vec![
        env_from_secret("HCLOUD_TOKEN", HCLOUD_SECRET_NAME, "token"),
        env_from_secret("HCLOUD_NETWORK", HCLOUD_SECRET_NAME, "network"),
        json!({ "name": "HCLOUD_NETWORK_ROUTES_ENABLED", "value": routes }),
        // Every node is in the network: load balancers reach targets by private IP.
        json!({ "name": "HCLOUD_LOAD_BALANCERS_USE_PRIVATE_IP", "value": "true" }),
    ];
    if let Some(location) = &inputs.load_balancer_location {
        env.push(json!({ "name": "HCLOUD_LOAD_BALANCERS_LOCATION", "value": location }));
    }
    env.push(json!({ "name": "KUBERNETES_SERVICE_HOST", "value": inputs.api_endpoint.host }));
    env.push(
        json!({ "name": "KUBERNETES_SERVICE_PORT", "value": inputs.api_endpoint.port.to_string() }),
    );
    vec![
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(CCM_NAME, Some(ADDON_NAMESPACE), &[]),
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": meta("system:hcloud-cloud-controller-manager", None, &[]),
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin" },
            "subjects": [{ "kind": "ServiceAccount", "name": CCM_NAME, "namespace": ADDON_NAMESPACE }],
        }),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(CCM_NAME, Some(ADDON_NAMESPACE), &labels),
            "spec": {
                "replicas": 1,
                "revisionHistoryLimit": 2,
                "selector": { "matchLabels": { "app": CCM_NAME } },
                "template": {
                    "metadata": { "labels": { "app": CCM_NAME } },
                    "spec": {
                        "serviceAccountName": CCM_NAME,
                        "dnsPolicy": "Default",
                        "hostNetwork": true,
                        "priorityClassName": "system-cluster-critical",
                        "tolerations": [
                            { "key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true", "effect": "NoSchedule" },
                            { "key": "CriticalAddonsOnly", "operator": "Exists" },
                            { "key": "node-role.kubernetes.io/master", "effect": "NoSchedule", "operator": "Exists" },
                            { "key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule", "operator": "Exists" },
                            { "key": "node.kubernetes.io/not-ready", "effect": "NoExecute" },
                        ],
                        "containers": [{
                            "name": CCM_NAME,
                            "image": format!("docker.io/hetznercloud/hcloud-cloud-controller-manager:{}", inputs.versions.ccm),
                            "args": [
                                "--allow-untagged-cloud",
                                "--cloud-provider=hcloud",
                                "--route-reconciliation-period=30s",
                                "--webhook-secure-port=0",
                                "--allocate-node-cidrs=true",
                                format!("--cluster-cidr={}", inputs.pod_cidr),
                                "--leader-elect=false",
                            ],
                            "env": env,
                            "ports": [{ "name": "metrics", "containerPort": 8233 }],
                            "resources": { "requests": { "cpu": "100m", "memory": "50Mi" } },
                        }],
                    },
                },
            },
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::tests::{find, inputs};

    fn env<'a>(container: &'a Value, name: &str) -> &'a Value {
        container["env"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["name"] == name))
            .unwrap_or_else(|| panic!("env {name} missing"))
    }

    #[test]
    fn ccm_runs_with_network_and_pod_cidr() {
        let mut i = inputs();
        i.routing = PodRouting::Native;
        let objects = ccm(&i);
        let d = find(&objects, "Deployment", CCM_NAME);
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        let args: Vec<&str> = c["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert!(args.contains(&"--cloud-provider=hcloud"));
        assert!(args.contains(&"--allocate-node-cidrs=true"));
        assert!(args.contains(&"--cluster-cidr=10.244.0.0/16"));
        assert_eq!(
            env(c, "HCLOUD_NETWORK")["valueFrom"]["secretKeyRef"]["key"],
            "network"
        );
        assert_eq!(
            env(c, "HCLOUD_TOKEN")["valueFrom"]["secretKeyRef"]["name"],
            "hcloud"
        );
        assert_eq!(env(c, "HCLOUD_NETWORK_ROUTES_ENABLED")["value"], "true");
        assert_eq!(env(c, "KUBERNETES_SERVICE_PORT")["value"], "7445");
        assert_eq!(
            env(c, "HCLOUD_LOAD_BALANCERS_USE_PRIVATE_IP")["value"],
            "true"
        );
        let has_location = c["env"].as_array().is_some_and(|a| {
            a.iter()
                .any(|e| e["name"] == "HCLOUD_LOAD_BALANCERS_LOCATION")
        });
        assert!(!has_location);
        let tolerations = d["spec"]["template"]["spec"]["tolerations"].to_string();
        assert!(tolerations.contains("node.cloudprovider.kubernetes.io/uninitialized"));
        assert!(tolerations.contains("node-role.kubernetes.io/control-plane"));
    }

    #[test]
    fn tunnel_routing_is_the_default_and_turns_ccm_routes_off() {
        let i = inputs();
        assert_eq!(i.routing, PodRouting::Tunnel);
        let objects = ccm(&i);
        let c =
            &find(&objects, "Deployment", CCM_NAME)["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(env(c, "HCLOUD_NETWORK_ROUTES_ENABLED")["value"], "false");
    }

    #[test]
    fn load_balancer_location_is_passed_when_set() {
        let mut i = inputs();
        i.load_balancer_location = Some("fsn1".into());
        let objects = ccm(&i);
        let c =
            &find(&objects, "Deployment", CCM_NAME)["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(env(c, "HCLOUD_LOAD_BALANCERS_LOCATION")["value"], "fsn1");
    }
}
