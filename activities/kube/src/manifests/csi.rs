//! Hetzner CSI driver (`csi.hetzner.cloud`): controller Deployment, node DaemonSet, CSIDriver,
//! default StorageClass, RBAC and metrics Services.

use serde_json::{Value, json};

use super::{
    ADDON_NAMESPACE, AddonInputs, HCLOUD_SECRET_NAME, env_from_field, env_from_secret, meta, rule,
};

/// CSI driver name.
pub const CSI_DRIVER: &str = "csi.hetzner.cloud";
/// Name of the controller Deployment (and its ServiceAccount).
pub const CSI_CONTROLLER: &str = "hcloud-csi-controller";
/// Name of the node DaemonSet.
pub const CSI_NODE: &str = "hcloud-csi-node";
/// Name of the default StorageClass.
pub const STORAGE_CLASS: &str = "hcloud-volumes";

const SIG_STORAGE: &str = "registry.k8s.io/sig-storage";

fn labels(component: &str) -> [(&'static str, String); 3] {
    [
        ("app.kubernetes.io/name", "hcloud-csi".to_owned()),
        ("app.kubernetes.io/instance", "hcloud-csi".to_owned()),
        ("app.kubernetes.io/component", component.to_owned()),
    ]
}

fn labels_value(component: &str, extra: Option<(&str, &str)>) -> Value {
    let mut m: serde_json::Map<String, Value> = labels(component)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::from(v)))
        .collect();
    if let Some((k, v)) = extra {
        m.insert(k.to_owned(), Value::from(v));
    }
    Value::Object(m)
}

fn named(name: &str, namespaced: bool, component: &str, extra: Option<(&str, &str)>) -> Value {
    let mut m = meta(name, namespaced.then_some(ADDON_NAMESPACE), &[]);
    m["labels"] = labels_value(component, extra);
    m
}

fn sidecar(image: String, args: &[&str], socket_volume: &str) -> Value {
    let name = image
        .rsplit('/')
        .next()
        .and_then(|s| s.split(':').next())
        .unwrap_or("sidecar")
        .replace("livenessprobe", "liveness-probe");
    let mut c = json!({
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "volumeMounts": [{ "name": socket_volume, "mountPath": "/run/csi" }],
    });
    if !args.is_empty() {
        c["args"] = json!(args);
    }
    c
}

fn driver_probe_and_ports() -> (Value, Value) {
    let ports = json!([
        { "name": "metrics", "containerPort": 9189 },
        { "name": "healthz", "protocol": "TCP", "containerPort": 9808 },
    ]);
    let probe = json!({
        "failureThreshold": 5, "initialDelaySeconds": 10, "periodSeconds": 2,
        "successThreshold": 1, "timeoutSeconds": 3,
        "httpGet": { "path": "/healthz", "port": "healthz" },
    });
    (ports, probe)
}

/// All objects of the Hetzner CSI driver, as upstream's `hcloud-csi.yml`.
///
/// The controller reads `HCLOUD_TOKEN` from the `hcloud` Secret. The StorageClass
/// `hcloud-volumes` is the default class with `WaitForFirstConsumer`, reclaim `Delete` and
/// volume expansion.
pub fn csi(inputs: &AddonInputs) -> Vec<Value> {
    let v = &inputs.versions;
    let driver_image = format!("docker.io/hetznercloud/hcloud-csi-driver:{}", v.csi);
    let liveness = format!("{SIG_STORAGE}/livenessprobe:{}", v.csi_liveness_probe);
    let (ports, probe) = driver_probe_and_ports();
    let metrics_env = [
        json!({ "name": "CSI_ENDPOINT", "value": "unix:///run/csi/socket" }),
        json!({ "name": "METRICS_ENDPOINT", "value": "0.0.0.0:9189" }),
        json!({ "name": "ENABLE_METRICS", "value": "true" }),
    ];
    let mut controller_env = metrics_env.to_vec();
    controller_env.push(env_from_field("KUBE_NODE_NAME", "spec.nodeName"));
    controller_env.push(env_from_secret("HCLOUD_TOKEN", HCLOUD_SECRET_NAME, "token"));

    let controller_rules = json!([
        // attacher
        rule(
            &[""],
            &["persistentvolumes"],
            &["get", "list", "watch", "update", "patch"]
        ),
        rule(&[""], &["nodes"], &["get", "list", "watch"]),
        rule(
            &["csi.storage.k8s.io"],
            &["csinodeinfos"],
            &["get", "list", "watch"]
        ),
        rule(
            &["storage.k8s.io"],
            &["csinodes"],
            &["get", "list", "watch"]
        ),
        rule(
            &["storage.k8s.io"],
            &["volumeattachments"],
            &["get", "list", "watch", "update", "patch"]
        ),
        rule(
            &["storage.k8s.io"],
            &["volumeattachments/status"],
            &["patch"]
        ),
        // provisioner
        rule(&[""], &["secrets"], &["get", "list"]),
        rule(
            &[""],
            &["persistentvolumes"],
            &["get", "list", "watch", "create", "delete", "patch"]
        ),
        rule(
            &[""],
            &["persistentvolumeclaims", "persistentvolumeclaims/status"],
            &["get", "list", "watch", "update", "patch"]
        ),
        rule(
            &["storage.k8s.io"],
            &["storageclasses"],
            &["get", "list", "watch"]
        ),
        rule(
            &[""],
            &["events"],
            &["list", "watch", "create", "update", "patch"]
        ),
        rule(
            &["snapshot.storage.k8s.io"],
            &["volumesnapshots"],
            &["get", "list"]
        ),
        rule(
            &["snapshot.storage.k8s.io"],
            &["volumesnapshotcontents"],
            &["get", "list"]
        ),
        // resizer
        rule(&[""], &["pods"], &["get", "list", "watch"]),
        rule(
            &["storage.k8s.io"],
            &["volumeattributesclasses"],
            &["get", "list", "watch"]
        ),
        // node
        rule(
            &[""],
            &["events"],
            &["get", "list", "watch", "create", "update", "patch"]
        ),
    ]);

    let metrics_service = |name: &str, component: &str| {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": named(name, true, component, None),
            "spec": {
                "ports": [{ "name": "metrics", "port": 9189 }],
                "selector": labels_value(component, None),
            },
        })
    };

    vec![
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": named(CSI_CONTROLLER, true, "controller", None),
            "automountServiceAccountToken": true,
        }),
        json!({
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": { "storageclass.kubernetes.io/is-default-class": "true" },
            },
            "provisioner": CSI_DRIVER,
            "volumeBindingMode": "WaitForFirstConsumer",
            "allowVolumeExpansion": true,
            "reclaimPolicy": "Delete",
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": named(CSI_CONTROLLER, false, "controller", None),
            "rules": controller_rules,
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": named(CSI_CONTROLLER, false, "controller", None),
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CSI_CONTROLLER },
            "subjects": [{ "kind": "ServiceAccount", "name": CSI_CONTROLLER, "namespace": ADDON_NAMESPACE }],
        }),
        metrics_service("hcloud-csi-controller-metrics", "controller"),
        metrics_service("hcloud-csi-node-metrics", "node"),
        json!({
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": named(CSI_NODE, true, "node", Some(("app", "hcloud-csi"))),
            "spec": {
                "updateStrategy": { "type": "RollingUpdate" },
                "selector": { "matchLabels": { "app": "hcloud-csi" } },
                "template": {
                    "metadata": { "labels": labels_value("node", Some(("app", "hcloud-csi"))) },
                    "spec": {
                        "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{ "matchExpressions": [
                                { "key": "instance.hetzner.cloud/is-root-server", "operator": "NotIn", "values": ["true"] },
                                { "key": "instance.hetzner.cloud/provided-by", "operator": "NotIn", "values": ["robot"] },
                            ]}],
                        }}},
                        "tolerations": [
                            { "effect": "NoExecute", "operator": "Exists" },
                            { "effect": "NoSchedule", "operator": "Exists" },
                            { "key": "CriticalAddonsOnly", "operator": "Exists" },
                        ],
                        "securityContext": { "fsGroup": 1001 },
                        "containers": [
                            {
                                "name": "csi-node-driver-registrar",
                                "image": format!("{SIG_STORAGE}/csi-node-driver-registrar:{}", v.csi_node_driver_registrar),
                                "imagePullPolicy": "IfNotPresent",
                                "args": [format!("--kubelet-registration-path=/var/lib/kubelet/plugins/{CSI_DRIVER}/socket")],
                                "volumeMounts": [
                                    { "name": "plugin-dir", "mountPath": "/run/csi" },
                                    { "name": "registration-dir", "mountPath": "/registration" },
                                ],
                            },
                            sidecar(liveness.clone(), &[], "plugin-dir"),
                            {
                                "name": "hcloud-csi-driver",
                                "image": driver_image,
                                "imagePullPolicy": "IfNotPresent",
                                "args": ["-node"],
                                "volumeMounts": [
                                    { "name": "kubelet-dir", "mountPath": "/var/lib/kubelet", "mountPropagation": "Bidirectional" },
                                    { "name": "plugin-dir", "mountPath": "/run/csi" },
                                    { "name": "device-dir", "mountPath": "/dev" },
                                ],
                                "securityContext": { "privileged": true },
                                "env": metrics_env,
                                "ports": ports,
                                "livenessProbe": probe,
                            },
                        ],
                        "volumes": [
                            { "name": "kubelet-dir", "hostPath": { "path": "/var/lib/kubelet", "type": "Directory" } },
                            { "name": "plugin-dir", "hostPath": { "path": format!("/var/lib/kubelet/plugins/{CSI_DRIVER}/"), "type": "DirectoryOrCreate" } },
                            { "name": "registration-dir", "hostPath": { "path": "/var/lib/kubelet/plugins_registry/", "type": "Directory" } },
                            { "name": "device-dir", "hostPath": { "path": "/dev", "type": "Directory" } },
                        ],
                    },
                },
            },
        }),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": named(CSI_CONTROLLER, true, "controller", Some(("app", CSI_CONTROLLER))),
            "spec": {
                "replicas": 1,
                "strategy": { "type": "RollingUpdate" },
                "selector": { "matchLabels": { "app": CSI_CONTROLLER } },
                "template": {
                    "metadata": { "labels": labels_value("controller", Some(("app", CSI_CONTROLLER))) },
                    "spec": {
                        "serviceAccountName": CSI_CONTROLLER,
                        "affinity": { "nodeAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [{
                            "weight": 1,
                            "preference": { "matchExpressions": [
                                { "key": "instance.hetzner.cloud/provided-by", "operator": "In", "values": ["cloud"] },
                            ]},
                        }]}},
                        "securityContext": { "fsGroup": 1001 },
                        "containers": [
                            sidecar(format!("{SIG_STORAGE}/csi-attacher:{}", v.csi_attacher), &["--default-fstype=ext4"], "socket-dir"),
                            sidecar(format!("{SIG_STORAGE}/csi-resizer:{}", v.csi_resizer), &[], "socket-dir"),
                            sidecar(
                                format!("{SIG_STORAGE}/csi-provisioner:{}", v.csi_provisioner),
                                &["--feature-gates=Topology=true", "--default-fstype=ext4", "--extra-create-metadata"],
                                "socket-dir",
                            ),
                            sidecar(liveness, &[], "socket-dir"),
                            {
                                "name": "hcloud-csi-driver",
                                "image": format!("docker.io/hetznercloud/hcloud-csi-driver:{}", v.csi),
                                "imagePullPolicy": "IfNotPresent",
                                "args": ["-controller"],
                                "env": controller_env,
                                "ports": driver_probe_and_ports().0,
                                "livenessProbe": driver_probe_and_ports().1,
                                "volumeMounts": [{ "name": "socket-dir", "mountPath": "/run/csi" }],
                            },
                        ],
                        "volumes": [{ "name": "socket-dir", "emptyDir": {} }],
                    },
                },
            },
        }),
        json!({
            "apiVersion": "storage.k8s.io/v1",
            "kind": "CSIDriver",
            "metadata": { "name": CSI_DRIVER },
            "spec": {
                "attachRequired": true,
                "fsGroupPolicy": "File",
                "podInfoOnMount": true,
                "seLinuxMount": true,
                "volumeLifecycleModes": ["Persistent"],
            },
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::tests::{find, inputs};

    #[test]
    fn storage_class_is_default_wait_for_consumer_delete_expandable() {
        let objects = csi(&inputs());
        let sc = find(&objects, "StorageClass", STORAGE_CLASS);
        assert_eq!(
            sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"],
            "true"
        );
        assert_eq!(sc["provisioner"], CSI_DRIVER);
        assert_eq!(sc["volumeBindingMode"], "WaitForFirstConsumer");
        assert_eq!(sc["reclaimPolicy"], "Delete");
        assert_eq!(sc["allowVolumeExpansion"], true);
        find(&objects, "CSIDriver", CSI_DRIVER);
    }

    #[test]
    fn controller_and_node_have_their_containers() {
        let objects = csi(&inputs());
        let names = |o: &Value| -> Vec<String> {
            o["spec"]["template"]["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        };
        assert_eq!(
            names(find(&objects, "Deployment", CSI_CONTROLLER)),
            [
                "csi-attacher",
                "csi-resizer",
                "csi-provisioner",
                "liveness-probe",
                "hcloud-csi-driver"
            ]
        );
        assert_eq!(
            names(find(&objects, "DaemonSet", CSI_NODE)),
            [
                "csi-node-driver-registrar",
                "liveness-probe",
                "hcloud-csi-driver"
            ]
        );
        let d = find(&objects, "Deployment", CSI_CONTROLLER);
        let selector = &d["spec"]["selector"]["matchLabels"];
        let template = &d["spec"]["template"]["metadata"]["labels"];
        for (k, v) in selector.as_object().into_iter().flatten() {
            assert_eq!(&template[k], v, "selector {k} must match the template");
        }
    }
}
