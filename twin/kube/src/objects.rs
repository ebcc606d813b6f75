//! Small helpers the controllers share for reading and writing objects in the store: find a
//! resource type, write or create an object (errors logged, not returned), set a condition, and
//! the readiness and ownership questions asked of pods and nodes.

use serde_json::{Value, json};

use crate::discovery::ResourceType;
use crate::store::{Store, timestamp};

/// The taint the cloud controller manager removes once it initialized a node.
pub(crate) const UNINITIALIZED: &str = "node.cloudprovider.kubernetes.io/uninitialized";

pub(crate) fn rt(store: &Store, group: &str, plural: &str) -> Option<ResourceType> {
    store
        .types()
        .iter()
        .find(|t| t.group == group && t.plural == plural)
        .cloned()
}

pub(crate) fn write(store: &mut Store, group: &str, plural: &str, obj: Value) {
    if let Some(t) = rt(store, group, plural)
        && let Err(e) = store.replace(&t, obj)
    {
        tracing::debug!(error = ?e, "controller write");
    }
}

pub(crate) fn create(store: &mut Store, group: &str, plural: &str, obj: Value) {
    if let Some(t) = rt(store, group, plural)
        && let Err(e) = store.create(&t, obj)
    {
        tracing::debug!(error = ?e, "controller create");
    }
}

pub(crate) fn set_condition(
    conditions: &mut Value,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
) {
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let Some(list) = conditions.as_array_mut() else {
        return;
    };
    let now = timestamp();
    match list.iter_mut().find(|c| c["type"] == kind) {
        Some(c) => {
            if c["status"] != status {
                c["lastTransitionTime"] = json!(now);
            }
            c["status"] = json!(status);
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
        None => list.push(json!({"type": kind, "status": status, "reason": reason,
                                 "message": message, "lastTransitionTime": now})),
    }
}

pub(crate) fn pod_running(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

pub(crate) fn node_ready(node: &Value) -> bool {
    node["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

pub(crate) fn owner_uid(obj: &Value) -> Option<&str> {
    obj["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .and_then(|r| r["uid"].as_str())
}
