//! A kubelet's first contact with its cluster: the Node object it registers (NotReady, with the
//! uninitialized and not-ready taints) and the kubelet-serving CSR it files.

use std::net::IpAddr;

use base64::Engine;
use serde_json::json;

use crate::state::NodeRole;
use crate::store::{Store, timestamp};

pub(crate) fn register_node(
    store: &mut Store,
    name: &str,
    ip: IpAddr,
    role: NodeRole,
    version: &str,
) {
    let Some(rt) = store.find_type("", "v1", "nodes") else {
        return;
    };
    if let Some(existing) = store.get("", "nodes", "", name).cloned() {
        let mut node = existing;
        node["status"]["nodeInfo"]["kubeletVersion"] = json!(version);
        let _ = store.replace(&rt, node);
        return;
    }
    let mut labels = json!({
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
    });
    let mut taints = vec![
        json!({"key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true", "effect": "NoSchedule"}),
        json!({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule", "timeAdded": timestamp()}),
    ];
    if role == NodeRole::ControlPlane {
        labels["node-role.kubernetes.io/control-plane"] = json!("");
        taints
            .push(json!({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}));
    }
    let now = timestamp();
    let cond = |t: &str, s: &str, reason: &str, msg: &str| {
        json!({"type": t, "status": s, "reason": reason, "message": msg,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach": "true"},
        },
        "spec": {"taints": taints},
        "status": {
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "False", "KubeletNotReady", "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized"),
            ],
            "addresses": [{"type": "InternalIP", "address": ip.to_string()}, {"type": "Hostname", "address": name}],
            "capacity": {"cpu": "2", "memory": "3927804Ki", "pods": "110", "ephemeral-storage": "39937312Ki"},
            "allocatable": {"cpu": "1950m", "memory": "3497724Ki", "pods": "110", "ephemeral-storage": "36574258364"},
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "kubeletVersion": version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "osImage": "Talos",
                "containerRuntimeVersion": "containerd://2.1.4",
                "kernelVersion": "6.12.57-talos",
                "machineID": uuid::Uuid::new_v4().simple().to_string(),
                "systemUUID": uuid::Uuid::new_v4().to_string(),
                "bootID": uuid::Uuid::new_v4().to_string(),
            },
        },
    });
    if let Err(e) = store.create(&rt, node) {
        tracing::warn!(error = ?e, node = name, "register node");
    }
}

pub(crate) fn file_csr(store: &mut Store, node_name: &str, pem: &str) {
    let Some(rt) = store.find_type("certificates.k8s.io", "v1", "certificatesigningrequests")
    else {
        return;
    };
    let suffix: String = (0..5)
        .map(|_| {
            let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
            alphabet[rand::random_range(0..alphabet.len())] as char
        })
        .collect();
    let csr = json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": format!("csr-{suffix}")},
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(pem),
            "signerName": "kubernetes.io/kubelet-serving",
            "usages": ["digital signature", "server auth"],
            "username": format!("system:node:{node_name}"),
            "groups": ["system:nodes", "system:authenticated"],
        },
        "status": {},
    });
    if let Err(e) = store.create(&rt, csr) {
        tracing::warn!(error = ?e, node = node_name, "file kubelet csr");
    }
}
