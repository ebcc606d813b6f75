//! Cilium agent and operator with the values Talos documents: kube-proxy replacement, API via
//! KubePrism, cgroup v2 from the host at `/sys/fs/cgroup` (no auto-mount), explicit capabilities.

use serde_json::{Map, Value, json};

use super::{ADDON_NAMESPACE, AddonInputs, PodRouting, env_from_field, labels_map, meta, rule};

/// Name of the agent DaemonSet, ServiceAccount, ClusterRole and ClusterRoleBinding.
pub const CILIUM_AGENT: &str = "cilium";
/// Name of the operator Deployment, ServiceAccount, ClusterRole and ClusterRoleBinding.
pub const CILIUM_OPERATOR: &str = "cilium-operator";
/// Name of the configuration ConfigMap.
pub const CILIUM_CONFIG: &str = "cilium-config";

/// Agent capabilities Talos requires (`securityContext.capabilities.ciliumAgent`).
pub const AGENT_CAPABILITIES: [&str; 11] = [
    "CHOWN",
    "KILL",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "SYS_ADMIN",
    "SYS_RESOURCE",
    "DAC_OVERRIDE",
    "FOWNER",
    "SETGID",
    "SETUID",
];
/// `clean-cilium-state` init container capabilities Talos requires.
pub const CLEAN_STATE_CAPABILITIES: [&str; 3] = ["NET_ADMIN", "SYS_ADMIN", "SYS_RESOURCE"];
/// Capabilities of `apply-sysctl-overwrites` (chart default).
const SYSCTL_CAPABILITIES: [&str; 3] = ["SYS_ADMIN", "SYS_CHROOT", "SYS_PTRACE"];
/// Cgroup v2 root on the host; Talos mounts it there itself.
const CGROUP_HOST_ROOT: &str = "/sys/fs/cgroup";
const HEALTH_PORT: u16 = 9879;

fn agent_labels() -> Value {
    labels_map(&[
        ("k8s-app", "cilium"),
        ("app.kubernetes.io/name", "cilium-agent"),
        ("app.kubernetes.io/part-of", "cilium"),
    ])
}

fn operator_labels() -> Value {
    labels_map(&[
        ("io.cilium/app", "operator"),
        ("name", "cilium-operator"),
        ("app.kubernetes.io/name", "cilium-operator"),
        ("app.kubernetes.io/part-of", "cilium"),
    ])
}

/// Cilium's `cluster-name`: at most 32 characters of `[a-z0-9-]`, starting and ending with a
/// letter or digit (the agent refuses others). hk8s names allow 40, so longer ones are cut;
/// the name only matters for cluster mesh.
pub fn cilium_cluster_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .take(32)
        .collect();
    let trimmed = cleaned.trim_matches('-');
    if trimmed.is_empty() {
        "default".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// The `cilium-config` data. All values are strings, as the agent reads them as flags.
pub(crate) fn config_data(inputs: &AddonInputs) -> Map<String, Value> {
    let mut d: Vec<(&str, String)> = vec![
        ("identity-allocation-mode", "crd".into()),
        ("identity-heartbeat-timeout", "30m0s".into()),
        ("identity-gc-interval", "15m0s".into()),
        ("cilium-endpoint-gc-interval", "5m0s".into()),
        ("nodes-gc-interval", "5m0s".into()),
        ("debug", "false".into()),
        ("enable-policy", "default".into()),
        ("policy-cidr-match-mode", "".into()),
        ("proxy-prometheus-port", "".into()),
        ("operator-prometheus-serve-addr", ":9963".into()),
        ("enable-metrics", "true".into()),
        ("enable-ipv4", "true".into()),
        ("enable-ipv6", "false".into()),
        ("custom-cni-conf", "false".into()),
        ("enable-bpf-clock-probe", "false".into()),
        ("monitor-aggregation", "medium".into()),
        ("monitor-aggregation-interval", "5s".into()),
        ("monitor-aggregation-flags", "all".into()),
        ("bpf-map-dynamic-size-ratio", "0.0025".into()),
        ("bpf-policy-map-max", "16384".into()),
        ("bpf-lb-map-max", "65536".into()),
        ("bpf-lb-external-clusterip", "false".into()),
        ("bpf-events-drop-enabled", "true".into()),
        ("bpf-events-policy-verdict-enabled", "true".into()),
        ("bpf-events-trace-enabled", "true".into()),
        ("preallocate-bpf-maps", "false".into()),
        ("cluster-name", cilium_cluster_name(&inputs.cluster_name)),
        ("cluster-id", "0".into()),
        ("enable-ipv4-masquerade", "true".into()),
        ("enable-ipv6-masquerade", "false".into()),
        ("enable-bpf-masquerade", "true".into()),
        ("enable-masquerade-to-route-source", "false".into()),
        ("enable-xt-socket-fallback", "true".into()),
        ("install-no-conntrack-iptables-rules", "false".into()),
        ("auto-direct-node-routes", "false".into()),
        ("enable-local-redirect-policy", "false".into()),
        ("enable-l7-proxy", "true".into()),
        // Envoy runs inside the agent; no separate cilium-envoy DaemonSet.
        ("external-envoy-proxy", "false".into()),
        ("kube-proxy-replacement", "true".into()),
        ("kube-proxy-replacement-healthz-bind-address", "".into()),
        ("bpf-lb-sock", "false".into()),
        ("enable-health-check-nodeport", "true".into()),
        ("enable-health-checking", "true".into()),
        ("enable-endpoint-health-checking", "true".into()),
        ("enable-well-known-identities", "false".into()),
        ("enable-node-selector-labels", "false".into()),
        ("synchronize-k8s-nodes", "true".into()),
        ("operator-api-serve-addr", "127.0.0.1:9234".into()),
        ("ipam", "kubernetes".into()),
        ("k8s-require-ipv4-pod-cidr", "true".into()),
        ("ipam-cilium-node-update-rate", "15s".into()),
        (
            "egress-gateway-reconciliation-trigger-interval",
            "1s".into(),
        ),
        ("enable-vtep", "false".into()),
        ("enable-hubble", "false".into()),
        ("cni-exclusive", "true".into()),
        ("cni-log-file", "/var/run/cilium/cilium-cni.log".into()),
        (
            "write-cni-conf-when-ready",
            "/host/etc/cni/net.d/05-cilium.conflist".into(),
        ),
        ("remove-cilium-node-taints", "true".into()),
        ("set-cilium-node-taints", "true".into()),
        ("set-cilium-is-up-condition", "true".into()),
        ("unmanaged-pod-watcher-interval", "15".into()),
        (
            "agent-not-ready-taint-key",
            "node.cilium.io/agent-not-ready".into(),
        ),
        ("procfs", "/host/proc".into()),
        ("cgroup-root", CGROUP_HOST_ROOT.into()),
        ("enable-k8s-networkpolicy", "true".into()),
        ("enable-sctp", "false".into()),
        ("dnsproxy-enable-transparent-mode", "true".into()),
        ("tofqdns-dns-reject-response-code", "refused".into()),
        ("tofqdns-enable-dns-compression", "true".into()),
        ("tofqdns-endpoint-max-ip-per-hostname", "1000".into()),
        ("tofqdns-idle-connection-grace-period", "0s".into()),
        ("tofqdns-max-deferred-connection-deletes", "10000".into()),
        ("tofqdns-proxy-response-max-delay", "100ms".into()),
        ("agent-health-port", HEALTH_PORT.to_string()),
        ("clean-cilium-state", "false".into()),
        ("clean-cilium-bpf-state", "false".into()),
    ];
    match inputs.routing {
        PodRouting::Native => {
            // The CCM writes one hcloud network route per node pod CIDR; pod traffic is not
            // encapsulated and not masqueraded inside the pod network.
            d.push(("routing-mode", "native".into()));
            d.push(("ipv4-native-routing-cidr", inputs.pod_cidr.to_string()));
        }
        PodRouting::Tunnel => {
            d.push(("routing-mode", "tunnel".into()));
            d.push(("tunnel-protocol", "vxlan".into()));
        }
    }
    d.into_iter()
        .map(|(k, v)| (k.to_owned(), Value::from(v)))
        .collect()
}

fn api_env(inputs: &AddonInputs) -> [Value; 2] {
    [
        json!({ "name": "KUBERNETES_SERVICE_HOST", "value": inputs.api_endpoint.host }),
        json!({ "name": "KUBERNETES_SERVICE_PORT", "value": inputs.api_endpoint.port.to_string() }),
    ]
}

fn caps(add: &[&str]) -> Value {
    json!({
        "seLinuxOptions": { "level": "s0", "type": "spc_t" },
        "capabilities": { "add": add, "drop": ["ALL"] },
    })
}

fn health_probe(failure_threshold: u32, period: u32) -> Value {
    json!({
        "httpGet": {
            "host": "127.0.0.1", "path": "/healthz", "port": HEALTH_PORT, "scheme": "HTTP",
            "httpHeaders": [{ "name": "brief", "value": "true" }],
        },
        "periodSeconds": period,
        "successThreshold": 1,
        "failureThreshold": failure_threshold,
        "timeoutSeconds": 5,
    })
}

fn host_path(name: &str, path: &str, kind: Option<&str>) -> Value {
    let mut hp = json!({ "path": path });
    if let Some(k) = kind {
        hp["type"] = Value::from(k);
    }
    json!({ "name": name, "hostPath": hp })
}

fn agent_daemonset(inputs: &AddonInputs) -> Value {
    let image = format!("quay.io/cilium/cilium:{}", inputs.versions.cilium);
    let node_env = [
        env_from_field("K8S_NODE_NAME", "spec.nodeName"),
        env_from_field("CILIUM_K8S_NAMESPACE", "metadata.namespace"),
    ];
    let api = api_env(inputs);

    let mut agent_env = node_env.to_vec();
    agent_env.push(
        json!({ "name": "CILIUM_CLUSTERMESH_CONFIG", "value": "/var/lib/cilium/clustermesh/" }),
    );
    agent_env.push(json!({ "name": "GOMEMLIMIT", "valueFrom": { "resourceFieldRef": { "resource": "limits.memory", "divisor": "1" } } }));
    agent_env.extend(api.iter().cloned());

    let mut config_env = node_env.to_vec();
    config_env.extend(api.iter().cloned());

    let optional_config = |name: &str, key: &str| json!({ "name": name, "valueFrom": { "configMapKeyRef": { "name": CILIUM_CONFIG, "key": key, "optional": true } } });
    let mut clean_env = vec![
        optional_config("CILIUM_ALL_STATE", "clean-cilium-state"),
        optional_config("CILIUM_BPF_STATE", "clean-cilium-bpf-state"),
        optional_config("WRITE_CNI_CONF_WHEN_READY", "write-cni-conf-when-ready"),
    ];
    clean_env.extend(api.iter().cloned());

    let mut startup = health_probe(105, 2);
    startup["initialDelaySeconds"] = Value::from(5);
    if let Some(m) = startup.as_object_mut() {
        m.remove("timeoutSeconds");
    }

    let mut pod_spec = json!({
        "containers": [{
            "name": "cilium-agent",
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "command": ["cilium-agent"],
            "args": ["--config-dir=/tmp/cilium/config-map"],
            "startupProbe": startup,
            "livenessProbe": health_probe(10, 30),
            "readinessProbe": health_probe(3, 30),
            "env": agent_env,
            "lifecycle": { "preStop": { "exec": { "command": ["/cni-uninstall.sh"] } } },
            "securityContext": caps(&AGENT_CAPABILITIES),
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "volumeMounts": [
                { "mountPath": "/host/proc/sys/net", "name": "host-proc-sys-net" },
                { "mountPath": "/host/proc/sys/kernel", "name": "host-proc-sys-kernel" },
                { "name": "bpf-maps", "mountPath": "/sys/fs/bpf", "mountPropagation": "HostToContainer" },
                { "name": "cilium-cgroup", "mountPath": CGROUP_HOST_ROOT },
                { "name": "cilium-run", "mountPath": "/var/run/cilium" },
                { "name": "cilium-netns", "mountPath": "/var/run/cilium/netns", "mountPropagation": "HostToContainer" },
                { "name": "etc-cni-netd", "mountPath": "/host/etc/cni/net.d" },
                { "name": "clustermesh-secrets", "mountPath": "/var/lib/cilium/clustermesh", "readOnly": true },
                { "name": "lib-modules", "mountPath": "/lib/modules", "readOnly": true },
                { "name": "xtables-lock", "mountPath": "/run/xtables.lock" },
                { "name": "tmp", "mountPath": "/tmp" },
            ],
        }],
        "initContainers": [
            {
                "name": "config",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["cilium-dbg", "build-config"],
                "env": config_env,
                "volumeMounts": [{ "name": "tmp", "mountPath": "/tmp" }],
                "terminationMessagePolicy": "FallbackToLogsOnError",
            },
            {
                "name": "apply-sysctl-overwrites",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "env": [{ "name": "BIN_PATH", "value": "/opt/cni/bin" }],
                "command": ["sh", "-ec",
                    "cp /usr/bin/cilium-sysctlfix /hostbin/cilium-sysctlfix;\nnsenter --mount=/hostproc/1/ns/mnt \"${BIN_PATH}/cilium-sysctlfix\";\nrm /hostbin/cilium-sysctlfix\n"],
                "volumeMounts": [
                    { "name": "hostproc", "mountPath": "/hostproc" },
                    { "name": "cni-path", "mountPath": "/hostbin" },
                ],
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "securityContext": caps(&SYSCTL_CAPABILITIES),
            },
            {
                "name": "mount-bpf-fs",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "args": ["mount | grep \"/sys/fs/bpf type bpf\" || mount -t bpf bpf /sys/fs/bpf"],
                "command": ["/bin/bash", "-c", "--"],
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "securityContext": { "privileged": true },
                "volumeMounts": [{ "name": "bpf-maps", "mountPath": "/sys/fs/bpf", "mountPropagation": "Bidirectional" }],
            },
            {
                "name": "clean-cilium-state",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["/init-container.sh"],
                "env": clean_env,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "securityContext": caps(&CLEAN_STATE_CAPABILITIES),
                "volumeMounts": [
                    { "name": "bpf-maps", "mountPath": "/sys/fs/bpf" },
                    { "name": "cilium-cgroup", "mountPath": CGROUP_HOST_ROOT, "mountPropagation": "HostToContainer" },
                    { "name": "cilium-run", "mountPath": "/var/run/cilium" },
                ],
            },
            {
                "name": "install-cni-binaries",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["/install-plugin.sh"],
                "resources": { "requests": { "cpu": "100m", "memory": "10Mi" } },
                "securityContext": {
                    "seLinuxOptions": { "level": "s0", "type": "spc_t" },
                    "capabilities": { "drop": ["ALL"] },
                },
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "volumeMounts": [{ "name": "cni-path", "mountPath": "/host/opt/cni/bin" }],
            },
        ],
        "restartPolicy": "Always",
        "priorityClassName": "system-node-critical",
        "serviceAccountName": CILIUM_AGENT,
        "automountServiceAccountToken": true,
        "terminationGracePeriodSeconds": 1,
        "hostNetwork": true,
        "affinity": { "podAntiAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": { "matchLabels": { "k8s-app": "cilium" } },
            "topologyKey": "kubernetes.io/hostname",
        }]}},
        "nodeSelector": { "kubernetes.io/os": "linux" },
        "tolerations": [{ "operator": "Exists" }],
        "volumes": [
            { "name": "tmp", "emptyDir": {} },
            host_path("cilium-run", "/var/run/cilium", Some("DirectoryOrCreate")),
            host_path("cilium-netns", "/var/run/netns", Some("DirectoryOrCreate")),
            host_path("bpf-maps", "/sys/fs/bpf", Some("DirectoryOrCreate")),
            host_path("hostproc", "/proc", Some("Directory")),
            host_path("cilium-cgroup", CGROUP_HOST_ROOT, Some("DirectoryOrCreate")),
            host_path("cni-path", "/opt/cni/bin", Some("DirectoryOrCreate")),
            host_path("etc-cni-netd", "/etc/cni/net.d", Some("DirectoryOrCreate")),
            host_path("lib-modules", "/lib/modules", None),
            host_path("xtables-lock", "/run/xtables.lock", Some("FileOrCreate")),
            {
                "name": "clustermesh-secrets",
                "projected": {
                    "defaultMode": 256,
                    "sources": [
                        { "secret": { "name": "cilium-clustermesh", "optional": true } },
                        { "secret": { "name": "clustermesh-apiserver-remote-cert", "optional": true, "items": [
                            { "key": "tls.key", "path": "common-etcd-client.key" },
                            { "key": "tls.crt", "path": "common-etcd-client.crt" },
                            { "key": "ca.crt", "path": "common-etcd-client-ca.crt" },
                        ]}},
                    ],
                },
            },
            host_path("host-proc-sys-net", "/proc/sys/net", Some("Directory")),
            host_path("host-proc-sys-kernel", "/proc/sys/kernel", Some("Directory")),
        ],
    });

    // Kubernetes 1.30 took AppArmor to a field; older versions need the annotations.
    let mut template_meta = json!({ "labels": agent_labels() });
    if inputs.kubernetes_minor().is_some_and(|v| v >= (1, 30)) {
        pod_spec["securityContext"] = json!({ "appArmorProfile": { "type": "Unconfined" } });
    } else {
        template_meta["annotations"] = json!({
            "container.apparmor.security.beta.kubernetes.io/cilium-agent": "unconfined",
            "container.apparmor.security.beta.kubernetes.io/clean-cilium-state": "unconfined",
            "container.apparmor.security.beta.kubernetes.io/apply-sysctl-overwrites": "unconfined",
        });
    }

    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": { "name": CILIUM_AGENT, "namespace": ADDON_NAMESPACE, "labels": agent_labels() },
        "spec": {
            "selector": { "matchLabels": { "k8s-app": "cilium" } },
            "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 2 } },
            "template": { "metadata": template_meta, "spec": pod_spec },
        },
    })
}

fn operator_deployment(inputs: &AddonInputs) -> Value {
    let mut env = vec![
        env_from_field("K8S_NODE_NAME", "spec.nodeName"),
        env_from_field("CILIUM_K8S_NAMESPACE", "metadata.namespace"),
        json!({ "name": "CILIUM_DEBUG", "valueFrom": { "configMapKeyRef": { "name": CILIUM_CONFIG, "key": "debug", "optional": true } } }),
    ];
    env.extend(api_env(inputs));
    let probe = |initial_delay: u32, period: u32, failure: u32| {
        json!({
            "httpGet": { "host": "127.0.0.1", "path": "/healthz", "port": 9234, "scheme": "HTTP" },
            "initialDelaySeconds": initial_delay,
            "periodSeconds": period,
            "timeoutSeconds": 3,
            "failureThreshold": failure,
        })
    };
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": CILIUM_OPERATOR, "namespace": ADDON_NAMESPACE, "labels": operator_labels() },
        "spec": {
            "replicas": inputs.cilium_operator_replicas,
            "selector": { "matchLabels": { "io.cilium/app": "operator", "name": "cilium-operator" } },
            "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxSurge": "25%", "maxUnavailable": "50%" } },
            "template": {
                "metadata": { "labels": operator_labels() },
                "spec": {
                    "containers": [{
                        "name": "cilium-operator",
                        "image": format!("quay.io/cilium/operator-generic:{}", inputs.versions.cilium),
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["cilium-operator-generic"],
                        "args": ["--config-dir=/tmp/cilium/config-map", "--debug=$(CILIUM_DEBUG)"],
                        "env": env,
                        "livenessProbe": probe(60, 10, 3),
                        "readinessProbe": probe(0, 5, 5),
                        "volumeMounts": [{ "name": "cilium-config-path", "mountPath": "/tmp/cilium/config-map", "readOnly": true }],
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                    }],
                    "hostNetwork": true,
                    "restartPolicy": "Always",
                    "priorityClassName": "system-cluster-critical",
                    "serviceAccountName": CILIUM_OPERATOR,
                    "automountServiceAccountToken": true,
                    "affinity": { "podAntiAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [{
                        "labelSelector": { "matchLabels": { "io.cilium/app": "operator" } },
                        "topologyKey": "kubernetes.io/hostname",
                    }]}},
                    "nodeSelector": { "kubernetes.io/os": "linux" },
                    "tolerations": [{ "operator": "Exists" }],
                    "volumes": [{ "name": "cilium-config-path", "configMap": { "name": CILIUM_CONFIG } }],
                },
            },
        },
    })
}

fn agent_rules() -> Value {
    json!([
        rule(
            &["networking.k8s.io"],
            &["networkpolicies"],
            &["get", "list", "watch"]
        ),
        rule(
            &["discovery.k8s.io"],
            &["endpointslices"],
            &["get", "list", "watch"]
        ),
        rule(
            &[""],
            &["namespaces", "services", "pods", "endpoints", "nodes"],
            &["get", "list", "watch"]
        ),
        rule(
            &["apiextensions.k8s.io"],
            &["customresourcedefinitions"],
            &["list", "watch", "get"]
        ),
        rule(
            &["cilium.io"],
            &[
                "ciliumloadbalancerippools",
                "ciliumbgppeeringpolicies",
                "ciliumclusterwideenvoyconfigs",
                "ciliumclusterwidenetworkpolicies",
                "ciliumegressgatewaypolicies",
                "ciliumendpoints",
                "ciliumendpointslices",
                "ciliumenvoyconfigs",
                "ciliumidentities",
                "ciliumlocalredirectpolicies",
                "ciliumnetworkpolicies",
                "ciliumnodes",
                "ciliumnodeconfigs",
                "ciliumcidrgroups",
                "ciliuml2announcementpolicies",
            ],
            &["list", "watch"],
        ),
        rule(
            &["cilium.io"],
            &["ciliumidentities", "ciliumendpoints", "ciliumnodes"],
            &["create"]
        ),
        rule(&["cilium.io"], &["ciliumidentities"], &["update"]),
        rule(&["cilium.io"], &["ciliumendpoints"], &["delete", "get"]),
        rule(
            &["cilium.io"],
            &["ciliumnodes", "ciliumnodes/status"],
            &["get", "update"]
        ),
        rule(
            &["cilium.io"],
            &[
                "ciliumnetworkpolicies/status",
                "ciliumclusterwidenetworkpolicies/status",
                "ciliumendpoints/status",
                "ciliumendpoints",
                "ciliuml2announcementpolicies/status",
            ],
            &["patch"],
        ),
    ])
}

fn operator_rules() -> Value {
    json!([
        rule(&[""], &["pods"], &["get", "list", "watch", "delete"]),
        { "apiGroups": [""], "resources": ["configmaps"], "resourceNames": [CILIUM_CONFIG], "verbs": ["patch"] },
        rule(&[""], &["nodes"], &["list", "watch"]),
        rule(&[""], &["nodes", "nodes/status"], &["patch"]),
        rule(&["discovery.k8s.io"], &["endpointslices"], &["get", "list", "watch"]),
        rule(&[""], &["services/status"], &["update", "patch"]),
        rule(&[""], &["namespaces"], &["get", "list", "watch"]),
        rule(&[""], &["services"], &["get", "list", "watch"]),
        rule(
            &["cilium.io"],
            &["ciliumnetworkpolicies", "ciliumclusterwidenetworkpolicies"],
            &["create", "update", "deletecollection", "patch", "get", "list", "watch"],
        ),
        rule(&["cilium.io"], &["ciliumnetworkpolicies/status", "ciliumclusterwidenetworkpolicies/status"], &["patch", "update"]),
        rule(&["cilium.io"], &["ciliumendpoints", "ciliumidentities"], &["delete", "list", "watch"]),
        rule(&["cilium.io"], &["ciliumidentities"], &["update"]),
        rule(&["cilium.io"], &["ciliumnodes"], &["create", "update", "get", "list", "watch", "delete"]),
        rule(&["cilium.io"], &["ciliumnodes/status"], &["update"]),
        rule(
            &["cilium.io"],
            &["ciliumendpointslices", "ciliumenvoyconfigs", "ciliumbgppeerconfigs", "ciliumbgpadvertisements", "ciliumbgpnodeconfigs"],
            &["create", "update", "get", "list", "watch", "delete", "patch"],
        ),
        rule(&["cilium.io"], &["ciliumbgpclusterconfigs/status", "ciliumbgppeerconfigs/status"], &["update"]),
        rule(&["apiextensions.k8s.io"], &["customresourcedefinitions"], &["create", "get", "list", "watch"]),
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["update"],
            "resourceNames": [
                "ciliumloadbalancerippools.cilium.io", "ciliumbgpclusterconfigs.cilium.io", "ciliumbgppeerconfigs.cilium.io",
                "ciliumbgpadvertisements.cilium.io", "ciliumbgpnodeconfigs.cilium.io", "ciliumbgpnodeconfigoverrides.cilium.io",
                "ciliumclusterwideenvoyconfigs.cilium.io", "ciliumclusterwidenetworkpolicies.cilium.io",
                "ciliumegressgatewaypolicies.cilium.io", "ciliumendpoints.cilium.io", "ciliumendpointslices.cilium.io",
                "ciliumenvoyconfigs.cilium.io", "ciliumidentities.cilium.io", "ciliumlocalredirectpolicies.cilium.io",
                "ciliumnetworkpolicies.cilium.io", "ciliumnodes.cilium.io", "ciliumnodeconfigs.cilium.io",
                "ciliumcidrgroups.cilium.io", "ciliuml2announcementpolicies.cilium.io", "ciliumpodippools.cilium.io",
                "ciliumgatewayclassconfigs.cilium.io",
            ],
        },
        rule(
            &["cilium.io"],
            &["ciliumloadbalancerippools", "ciliumpodippools", "ciliumbgpclusterconfigs", "ciliumbgpnodeconfigoverrides", "ciliumbgppeerconfigs"],
            &["get", "list", "watch"],
        ),
        rule(&["cilium.io"], &["ciliumpodippools"], &["create"]),
        rule(&["cilium.io"], &["ciliumloadbalancerippools/status"], &["patch"]),
        rule(&["coordination.k8s.io"], &["leases"], &["create", "get", "update"]),
        rule(&["cilium.io"], &["ciliumendpointslices"], &["deletecollection"]),
    ])
}

/// Cilium's ServiceAccounts, ConfigMap, RBAC, agent DaemonSet and operator Deployment.
///
/// Values are those of the Talos Cilium guide: `ipam kubernetes`, `kube-proxy-replacement`,
/// `KUBERNETES_SERVICE_HOST/PORT` = the API endpoint (KubePrism `localhost:7445`),
/// `cgroup.autoMount.enabled=false` with `cgroup.hostRoot=/sys/fs/cgroup`, and the agent and
/// `clean-cilium-state` capabilities listed in [`AGENT_CAPABILITIES`] and
/// [`CLEAN_STATE_CAPABILITIES`]. Hubble is off. The operator registers Cilium's CRDs itself.
pub fn cilium(inputs: &AddonInputs) -> Vec<Value> {
    let part_of = [("app.kubernetes.io/part-of", "cilium")];
    let binding = |name: &str| {
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": meta(name, None, &part_of),
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name },
            "subjects": [{ "kind": "ServiceAccount", "name": name, "namespace": ADDON_NAMESPACE }],
        })
    };
    vec![
        json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(CILIUM_AGENT, Some(ADDON_NAMESPACE), &[]) }),
        json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(CILIUM_OPERATOR, Some(ADDON_NAMESPACE), &[]) }),
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta(CILIUM_CONFIG, Some(ADDON_NAMESPACE), &[]),
            "data": config_data(inputs),
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": meta(CILIUM_AGENT, None, &part_of),
            "rules": agent_rules(),
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": meta(CILIUM_OPERATOR, None, &part_of),
            "rules": operator_rules(),
        }),
        binding(CILIUM_AGENT),
        binding(CILIUM_OPERATOR),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta("cilium-config-agent", Some(ADDON_NAMESPACE), &part_of),
            "rules": [rule(&[""], &["configmaps"], &["get", "list", "watch"])],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta("cilium-config-agent", Some(ADDON_NAMESPACE), &part_of),
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cilium-config-agent" },
            "subjects": [{ "kind": "ServiceAccount", "name": CILIUM_AGENT, "namespace": ADDON_NAMESPACE }],
        }),
        agent_daemonset(inputs),
        operator_deployment(inputs),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::tests::{find, inputs};

    fn container<'a>(pod: &'a Value, list: &str, name: &str) -> &'a Value {
        pod[list]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == name))
            .unwrap_or_else(|| panic!("{list} {name} missing"))
    }

    fn strings(v: &Value) -> Vec<&str> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect()
    }

    #[test]
    fn config_has_the_talos_values() {
        let mut i = inputs();
        i.routing = PodRouting::Native;
        let d = config_data(&i);
        assert_eq!(d["kube-proxy-replacement"], "true");
        assert_eq!(d["ipam"], "kubernetes");
        assert_eq!(d["cgroup-root"], "/sys/fs/cgroup");
        assert_eq!(d["routing-mode"], "native");
        assert_eq!(d["ipv4-native-routing-cidr"], "10.244.0.0/16");
        assert_eq!(d["cluster-name"], "demo");
        assert!(
            d.values().all(Value::is_string),
            "configmap values must all be strings"
        );
    }

    #[test]
    fn cluster_names_fit_cilium_rules() {
        assert_eq!(cilium_cluster_name("demo"), "demo");
        let long = "a-very-long-cluster-name-of-forty-chars-x";
        let cut = cilium_cluster_name(long);
        assert!(cut.len() <= 32 && !cut.ends_with('-'), "{cut}");
        assert_eq!(cut, "a-very-long-cluster-name-of-fort");
        assert_eq!(
            cilium_cluster_name("ab-cd-ef-gh-ij-kl-mn-op-qr-st-uv-wx"),
            "ab-cd-ef-gh-ij-kl-mn-op-qr-st-uv"
        );
        assert_eq!(cilium_cluster_name("Demo_1"), "demo-1");
        assert_eq!(cilium_cluster_name("--"), "default");
    }

    #[test]
    fn tunnel_routing_uses_vxlan() {
        let d = config_data(&inputs());
        assert_eq!(d["routing-mode"], "tunnel");
        assert_eq!(d["tunnel-protocol"], "vxlan");
        assert!(!d.contains_key("ipv4-native-routing-cidr"));
    }

    #[test]
    fn agent_has_talos_capabilities_kubeprism_and_no_cgroup_automount() {
        let objects = cilium(&inputs());
        let ds = find(&objects, "DaemonSet", CILIUM_AGENT);
        let pod = &ds["spec"]["template"]["spec"];
        let agent = container(pod, "containers", "cilium-agent");
        assert_eq!(
            strings(&agent["securityContext"]["capabilities"]["add"]),
            AGENT_CAPABILITIES
        );
        assert_eq!(
            strings(&agent["securityContext"]["capabilities"]["drop"]),
            ["ALL"]
        );
        let clean = container(pod, "initContainers", "clean-cilium-state");
        assert_eq!(
            strings(&clean["securityContext"]["capabilities"]["add"]),
            CLEAN_STATE_CAPABILITIES
        );
        for c in [agent, clean, container(pod, "initContainers", "config")] {
            let env = c["env"].to_string();
            assert!(
                env.contains(r#"{"name":"KUBERNETES_SERVICE_HOST","value":"localhost"}"#),
                "{env}"
            );
            assert!(
                env.contains(r#"{"name":"KUBERNETES_SERVICE_PORT","value":"7445"}"#),
                "{env}"
            );
        }
        let inits: Vec<&str> = pod["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert!(!inits.contains(&"mount-cgroup"), "{inits:?}");
        let cgroup = pod["volumes"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["name"] == "cilium-cgroup"));
        assert_eq!(
            cgroup.map(|v| &v["hostPath"]["path"]),
            Some(&Value::from("/sys/fs/cgroup"))
        );
        assert_eq!(
            pod["securityContext"]["appArmorProfile"]["type"],
            "Unconfined"
        );
        assert_eq!(pod["hostNetwork"], true);
    }

    #[test]
    fn every_mount_has_a_volume() {
        let objects = cilium(&inputs());
        for (kind, name) in [("DaemonSet", CILIUM_AGENT), ("Deployment", CILIUM_OPERATOR)] {
            let pod = &find(&objects, kind, name)["spec"]["template"]["spec"];
            let volumes: Vec<&str> = pod["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v["name"].as_str())
                .collect();
            for list in ["containers", "initContainers"] {
                for c in pod[list].as_array().into_iter().flatten() {
                    for m in c["volumeMounts"].as_array().into_iter().flatten() {
                        let v = m["name"].as_str().unwrap_or("");
                        assert!(volumes.contains(&v), "{name}: mount {v} has no volume");
                    }
                }
            }
        }
    }

    #[test]
    fn old_kubernetes_gets_apparmor_annotations() {
        let mut i = inputs();
        i.kubernetes_version = "1.29.4".into();
        let objects = cilium(&i);
        let ds = find(&objects, "DaemonSet", CILIUM_AGENT);
        assert!(ds["spec"]["template"]["spec"]["securityContext"].is_null());
        assert_eq!(
            ds["spec"]["template"]["metadata"]["annotations"]["container.apparmor.security.beta.kubernetes.io/cilium-agent"],
            "unconfined"
        );
    }
}
