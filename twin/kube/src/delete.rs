//! Deletion: delete with propagation (garbage collection by ownerReferences, orphaning),
//! namespaces, and pod eviction with PodDisruptionBudgets.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::discovery::ResourceType;
use crate::request::{Req, Target, output};
use crate::selector::LabelSelector;
use crate::state::Inner;
use crate::status::ApiError;
use crate::store::{Store, ns_name};

fn delete_options(req: &Req) -> Value {
    serde_json::from_slice::<Value>(&req.body).unwrap_or(Value::Null)
}

/// Deletes an object and, unless orphaning, its dependents (by ownerReferences).
pub(crate) fn delete(
    inner: &Arc<Inner>,
    req: &Req,
    t: &Target,
    name: &str,
) -> Result<Value, ApiError> {
    let ns = t.ns.clone().unwrap_or_default();
    let opts = delete_options(req);
    let policy = req
        .query
        .get("propagationPolicy")
        .cloned()
        .or_else(|| opts["propagationPolicy"].as_str().map(str::to_string))
        .unwrap_or_else(|| "Background".to_string());
    let orphan = policy == "Orphan" || opts["orphanDependents"].as_bool() == Some(true);
    let mut store = inner.store();
    let current = store
        .get(&t.rt.group, &t.rt.plural, &ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&t.rt.group, &t.rt.plural, name))?;
    if let Some(pre) = opts["preconditions"]["resourceVersion"].as_str()
        && Some(pre) != current["metadata"]["resourceVersion"].as_str()
    {
        return Err(ApiError::stale(&t.rt.group, &t.rt.plural, name));
    }
    let removed = if t.rt.group.is_empty() && t.rt.plural == "namespaces" {
        if matches!(name, "default" | "kube-system" | "kube-public") {
            return Err(ApiError::forbidden(format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            )));
        }
        store.delete_namespace(name)
    } else {
        store.delete(&t.rt.group, &t.rt.plural, &ns, name)
    }
    .ok_or_else(|| ApiError::not_found(&t.rt.group, &t.rt.plural, name))?;
    if orphan {
        orphan_dependents(&mut store, &removed);
    } else {
        collect_garbage(&mut store);
    }
    Ok(output(&removed, &t.rt))
}

/// Removes every object whose owners (all of them) no longer exist, until none is left.
pub(crate) fn collect_garbage(store: &mut Store) {
    loop {
        let mut uids = std::collections::HashSet::new();
        let mut owned = Vec::new();
        for rt in store.types().to_vec() {
            for obj in store.list(&rt.group, &rt.plural, None) {
                if let Some(uid) = obj["metadata"]["uid"].as_str() {
                    uids.insert(uid.to_string());
                }
                if obj["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
                {
                    owned.push((rt.clone(), obj));
                }
            }
        }
        let doomed: Vec<(ResourceType, Value)> = owned
            .into_iter()
            .filter(|(_, o)| o["metadata"]["deletionTimestamp"].is_null())
            .filter(|(_, o)| {
                o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| {
                        refs.iter()
                            .all(|r| r["uid"].as_str().is_none_or(|u| !uids.contains(u)))
                    })
            })
            .collect();
        if doomed.is_empty() {
            return;
        }
        for (rt, o) in doomed {
            let (ns, name) = ns_name(&o);
            store.delete(&rt.group, &rt.plural, &ns, &name);
        }
    }
}

fn orphan_dependents(store: &mut Store, owner: &Value) {
    let Some(uid) = owner["metadata"]["uid"].as_str() else {
        return;
    };
    for rt in store.types().to_vec() {
        for mut obj in store.list(&rt.group, &rt.plural, None) {
            let Some(refs) = obj["metadata"]["ownerReferences"].as_array().cloned() else {
                continue;
            };
            if refs.iter().any(|r| r["uid"] == uid) {
                let kept: Vec<Value> = refs.into_iter().filter(|r| r["uid"] != uid).collect();
                obj["metadata"]["ownerReferences"] = Value::Array(kept);
                let _ = store.replace(&rt, obj);
            }
        }
    }
}

fn int_or_percent(v: &Value, total: i64) -> Option<i64> {
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    let p = v.as_str()?.strip_suffix('%')?.parse::<i64>().ok()?;
    Some((total * p + 99) / 100)
}

fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Eviction: deletes the pod unless a PodDisruptionBudget selecting it would be violated.
pub(crate) fn evict(store: &mut Store, ns: &str, name: &str) -> Result<(), ApiError> {
    let pod = store
        .get("", "pods", ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found("", "pods", name))?;
    for pdb in store.list("policy", "poddisruptionbudgets", Some(ns)) {
        let sel = LabelSelector::from_match_labels(&pdb["spec"]["selector"]["matchLabels"]);
        if !sel.matches(&pod) {
            continue;
        }
        let pods: Vec<Value> = store
            .list("", "pods", Some(ns))
            .into_iter()
            .filter(|p| sel.matches(p))
            .collect();
        let total = pods.len() as i64;
        let healthy = pods.iter().filter(|p| pod_ready(p)).count() as i64;
        let after = if pod_ready(&pod) {
            healthy - 1
        } else {
            healthy
        };
        let blocked = if let Some(min) = int_or_percent(&pdb["spec"]["minAvailable"], total) {
            after < min
        } else if let Some(max) = int_or_percent(&pdb["spec"]["maxUnavailable"], total) {
            total - after > max
        } else {
            false
        };
        if blocked {
            // As kube-apiserver: 429 without Retry-After, the budget in a DisruptionBudget cause.
            let pdb_name = pdb["metadata"]["name"].as_str().unwrap_or_default();
            let needed = total - int_or_percent(&pdb["spec"]["maxUnavailable"], total).unwrap_or(0);
            let needed = int_or_percent(&pdb["spec"]["minAvailable"], total).unwrap_or(needed);
            let mut err = ApiError::too_many_requests(
                "Cannot evict pod as it would violate the pod's disruption budget.",
            );
            err.details = Some(
                json!({"causes": [{"type": "DisruptionBudget", "message": format!(
                    "The disruption budget {pdb_name} needs {needed} healthy pods and has {healthy} currently"
                )}]}),
            );
            return Err(err);
        }
    }
    store.delete("", "pods", ns, name);
    collect_garbage(store);
    Ok(())
}
