//! Server-side printing (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), as kubectl
//! asks for on `get`: the columns kube-apiserver prints for nodes, pods, deployments,
//! daemonsets, services, PVCs, CSRs and namespaces, and `NAME AGE` for other kinds.

use http::HeaderMap;
use serde_json::{Value, json};

/// Whether the Accept header asks for a `meta.k8s.io/v1` Table.
pub fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            let params: Vec<&str> = m.split(';').map(str::trim).collect();
            params.contains(&"as=Table")
                && params.contains(&"g=meta.k8s.io")
                && params.contains(&"v=v1")
        })
}

fn age(obj: &Value) -> String {
    let Some(created) = obj["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    else {
        return "<unknown>".into();
    };
    let secs = (chrono::Utc::now() - created.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn condition(obj: &Value, kind: &str) -> Option<String> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str().map(str::to_string))
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn columns_and_cells(kind: &str, obj: &Value) -> (Vec<&'static str>, Vec<Value>) {
    let name = s(&obj["metadata"]["name"]);
    match kind {
        "Node" => {
            let mut status = match condition(obj, "Ready").as_deref() {
                Some("True") => "Ready".to_string(),
                _ => "NotReady".to_string(),
            };
            if obj["spec"]["unschedulable"] == true {
                status.push_str(",SchedulingDisabled");
            }
            let roles: Vec<String> = obj["metadata"]["labels"]
                .as_object()
                .map(|m| {
                    m.keys()
                        .filter_map(|k| {
                            k.strip_prefix("node-role.kubernetes.io/")
                                .map(str::to_string)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let roles = if roles.is_empty() {
                "<none>".to_string()
            } else {
                roles.join(",")
            };
            (
                vec!["Name", "Status", "Roles", "Age", "Version"],
                vec![
                    json!(name),
                    json!(status),
                    json!(roles),
                    json!(age(obj)),
                    json!(s(&obj["status"]["nodeInfo"]["kubeletVersion"])),
                ],
            )
        }
        "Pod" => {
            let statuses = obj["status"]["containerStatuses"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let total = obj["spec"]["containers"].as_array().map_or(0, Vec::len);
            let ready = statuses.iter().filter(|c| c["ready"] == true).count();
            let phase = s(&obj["status"]["phase"]);
            (
                vec!["Name", "Ready", "Status", "Restarts", "Age"],
                vec![
                    json!(name),
                    json!(format!("{ready}/{total}")),
                    json!(phase),
                    json!(0),
                    json!(age(obj)),
                ],
            )
        }
        "Deployment" => {
            let want = obj["spec"]["replicas"].as_i64().unwrap_or(1);
            let st = &obj["status"];
            (
                vec!["Name", "Ready", "Up-to-date", "Available", "Age"],
                vec![
                    json!(name),
                    json!(format!(
                        "{}/{want}",
                        st["readyReplicas"].as_i64().unwrap_or(0)
                    )),
                    json!(st["updatedReplicas"].as_i64().unwrap_or(0)),
                    json!(st["availableReplicas"].as_i64().unwrap_or(0)),
                    json!(age(obj)),
                ],
            )
        }
        "DaemonSet" => {
            let st = &obj["status"];
            let n = |k: &str| json!(st[k].as_i64().unwrap_or(0));
            (
                vec![
                    "Name",
                    "Desired",
                    "Current",
                    "Ready",
                    "Up-to-date",
                    "Available",
                    "Age",
                ],
                vec![
                    json!(name),
                    n("desiredNumberScheduled"),
                    n("currentNumberScheduled"),
                    n("numberReady"),
                    n("updatedNumberScheduled"),
                    n("numberAvailable"),
                    json!(age(obj)),
                ],
            )
        }
        "Service" => {
            let external = obj["status"]["loadBalancer"]["ingress"][0]["ip"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| {
                    if obj["spec"]["type"] == "LoadBalancer" {
                        "<pending>".into()
                    } else {
                        "<none>".into()
                    }
                });
            let ports: Vec<String> = obj["spec"]["ports"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            format!(
                                "{}/{}",
                                s(&p["port"]),
                                p["protocol"].as_str().unwrap_or("TCP")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            (
                vec![
                    "Name",
                    "Type",
                    "Cluster-IP",
                    "External-IP",
                    "Port(s)",
                    "Age",
                ],
                vec![
                    json!(name),
                    json!(obj["spec"]["type"].as_str().unwrap_or("ClusterIP")),
                    json!(obj["spec"]["clusterIP"].as_str().unwrap_or("<none>")),
                    json!(external),
                    json!(ports.join(",")),
                    json!(age(obj)),
                ],
            )
        }
        "PersistentVolumeClaim" => (
            vec![
                "Name",
                "Status",
                "Volume",
                "Capacity",
                "Access Modes",
                "StorageClass",
                "Age",
            ],
            vec![
                json!(name),
                json!(s(&obj["status"]["phase"])),
                json!(s(&obj["spec"]["volumeName"])),
                json!(s(&obj["status"]["capacity"]["storage"])),
                json!(
                    obj["spec"]["accessModes"]
                        .as_array()
                        .map(|a| a.iter().map(s).collect::<Vec<_>>().join(","))
                        .unwrap_or_default()
                ),
                json!(s(&obj["spec"]["storageClassName"])),
                json!(age(obj)),
            ],
        ),
        "CertificateSigningRequest" => {
            let mut conds: Vec<String> = obj["status"]["conditions"]
                .as_array()
                .map(|cs| {
                    cs.iter()
                        .filter(|c| c["status"] != "False")
                        .map(|c| s(&c["type"]))
                        .collect()
                })
                .unwrap_or_default();
            if obj["status"]["certificate"].is_string() {
                conds.push("Issued".into());
            }
            let condition = if conds.is_empty() {
                "Pending".to_string()
            } else {
                conds.join(",")
            };
            (
                vec![
                    "Name",
                    "Age",
                    "SignerName",
                    "Requestor",
                    "RequestedDuration",
                    "Condition",
                ],
                vec![
                    json!(name),
                    json!(age(obj)),
                    json!(s(&obj["spec"]["signerName"])),
                    json!(s(&obj["spec"]["username"])),
                    json!("<none>"),
                    json!(condition),
                ],
            )
        }
        "Namespace" => (
            vec!["Name", "Status", "Age"],
            vec![
                json!(name),
                json!(s(&obj["status"]["phase"])),
                json!(age(obj)),
            ],
        ),
        _ => (vec!["Name", "Age"], vec![json!(name), json!(age(obj))]),
    }
}

/// A Table of `objects` of `kind`; rows carry the full object when `include_object` is
/// `Object`, else PartialObjectMetadata (the default), or nothing for `None`.
pub fn table(kind: &str, objects: &[Value], resource_version: &str, include_object: &str) -> Value {
    let template = objects.first().cloned().unwrap_or(json!({}));
    let (names, _) = columns_and_cells(kind, &template);
    let columns: Vec<Value> = names
        .iter()
        .map(|n| {
            let format = if *n == "Name" { "name" } else { "" };
            json!({"name": n, "type": "string", "format": format, "description": "", "priority": 0})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let (_, cells) = columns_and_cells(kind, o);
            let object = match include_object {
                "Object" => o.clone(),
                "None" => Value::Null,
                _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
           "columnDefinitions": columns, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_row_shows_status_and_roles() {
        let node = json!({"metadata": {"name": "cp", "labels": {"node-role.kubernetes.io/control-plane": ""},
                                       "creationTimestamp": "2020-01-01T00:00:00Z"},
                          "spec": {"unschedulable": true},
                          "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.34.1"}}});
        let t = table("Node", &[node], "5", "Metadata");
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "cp",
                "Ready,SchedulingDisabled",
                "control-plane",
                t["rows"][0]["cells"][3],
                "v1.34.1"
            ])
        );
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
    }
}
