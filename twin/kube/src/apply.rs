//! Field ownership (`metadata.managedFields`, FieldsV1) and server-side apply.
//!
//! Granularity: every leaf of nested maps is a field; lists are atomic (a list is one field,
//! owned as a whole — real SSA merges associative lists such as `containers` by key).
//! Tracked: everything but `apiVersion`, `kind`, `status` of kinds with a status subresource,
//! and `metadata` other than `labels`, `annotations`, `finalizers` and `ownerReferences`.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::status::ApiError;

/// A field path (map keys from the root).
pub type Path = Vec<String>;

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Field manager name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// apiVersion the fields were written with.
    pub api_version: String,
    /// Time of the last write (RFC 3339).
    pub time: String,
    /// Owned leaf fields.
    pub fields: BTreeSet<Path>,
    /// Subresource (`status`) or "".
    pub subresource: String,
}

fn collect(value: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                prefix.push(k.clone());
                collect(v, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

/// The tracked leaf fields of an object (see the module doc).
pub fn fields_of(obj: &Value, skip_status: bool) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    let Some(m) = obj.as_object() else {
        return out;
    };
    for (k, v) in m {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "status" if skip_status => {}
            "metadata" => {
                for mk in ["labels", "annotations", "finalizers", "ownerReferences"] {
                    if let Some(sub) = v.get(mk) {
                        let mut prefix = vec!["metadata".to_string(), mk.to_string()];
                        collect(sub, &mut prefix, &mut out);
                    }
                }
            }
            _ => {
                let mut prefix = vec![k.clone()];
                collect(v, &mut prefix, &mut out);
            }
        }
    }
    out
}

/// The status fields of an object (for writes through the status subresource).
pub fn status_fields_of(obj: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    if let Some(s) = obj.get("status") {
        collect(s, &mut vec!["status".to_string()], &mut out);
    }
    out
}

fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

fn value_at<'a>(obj: &'a Value, path: &Path) -> Option<&'a Value> {
    let mut cur = obj;
    for seg in path {
        cur = cur.get(seg)?;
    }
    Some(cur)
}

fn remove_at(obj: &mut Value, path: &Path) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for seg in parents {
        match cur.get_mut(seg) {
            Some(v) => cur = v,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

fn to_fields_v1(fields: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut cur = &mut root;
        for seg in path {
            let entry = cur
                .entry(format!("f:{seg}"))
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(next) = entry else {
                break;
            };
            cur = next;
        }
    }
    Value::Object(root)
}

fn from_fields_v1(v: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>) {
    let Some(m) = v.as_object() else {
        return;
    };
    let children: Vec<(&String, &Value)> = m.iter().filter(|(k, _)| k.starts_with("f:")).collect();
    if children.is_empty() {
        if !prefix.is_empty() {
            out.insert(prefix.clone());
        }
        return;
    }
    for (k, child) in children {
        prefix.push(k[2..].to_string());
        from_fields_v1(child, prefix, out);
        prefix.pop();
    }
}

/// Reads `metadata.managedFields`.
pub fn read_entries(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    let mut fields = BTreeSet::new();
                    from_fields_v1(&e["fieldsV1"], &mut Vec::new(), &mut fields);
                    Entry {
                        manager: e["manager"].as_str().unwrap_or_default().to_string(),
                        operation: e["operation"].as_str().unwrap_or("Update").to_string(),
                        api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
                        time: e["time"].as_str().unwrap_or_default().to_string(),
                        fields,
                        subresource: e["subresource"].as_str().unwrap_or_default().to_string(),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Writes `metadata.managedFields` (entries without fields are dropped).
pub fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if obj["metadata"].is_object() {
        obj["metadata"]["managedFields"] = Value::Array(list);
    }
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Records a non-apply write (create, update, patch) by `manager`: the fields whose value
/// changed become the manager's (`Update` entry) and leave every other manager; fields no
/// longer present leave everybody.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: &str,
    skip_status: bool,
) {
    let mut entries = old.map(read_entries).unwrap_or_default();
    let fields = if subresource == "status" {
        status_fields_of(new)
    } else {
        fields_of(new, skip_status)
    };
    let changed: BTreeSet<Path> = fields
        .iter()
        .filter(|p| old.and_then(|o| value_at(o, p)) != value_at(new, p))
        .cloned()
        .collect();
    for e in entries.iter_mut() {
        e.fields.retain(|f| value_at(new, f).is_some());
        if e.manager != manager || e.operation != "Update" {
            e.fields.retain(|f| !changed.iter().any(|c| overlaps(c, f)));
        }
    }
    if !changed.is_empty() {
        match entries.iter_mut().find(|e| {
            e.manager == manager && e.operation == "Update" && e.subresource == subresource
        }) {
            Some(e) => {
                e.fields.extend(changed);
                e.time = now();
                e.api_version = api_version.to_string();
            }
            None => entries.push(Entry {
                manager: manager.to_string(),
                operation: "Update".to_string(),
                api_version: api_version.to_string(),
                time: now(),
                fields: changed,
                subresource: subresource.to_string(),
            }),
        }
    }
    write_entries(new, &entries);
}

/// Whether two versions of an object differ only in managedFields timestamps.
pub fn same_but_times(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(entries) = v["metadata"]["managedFields"].as_array_mut() {
            for e in entries {
                if let Some(m) = e.as_object_mut() {
                    m.remove("time");
                }
            }
        }
        v
    };
    strip(a) == strip(b)
}

fn deep_merge(target: &mut Value, src: &Value) {
    match (target, src) {
        (Value::Object(t), Value::Object(s)) => {
            for (k, v) in s {
                match t.get_mut(k) {
                    Some(tv) if tv.is_object() && v.is_object() => deep_merge(tv, v),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, s) => *t = s.clone(),
    }
}

/// Server-side apply of `applied` by `manager` onto `current` (None: create). Returns the
/// merged object with managedFields updated, or a 409 Conflict Status listing the fields
/// another manager owns with a different value (unless `force`, which takes them over).
pub fn apply(
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    api_version: &str,
    skip_status: bool,
) -> Result<Value, ApiError> {
    let applied_fields = fields_of(applied, skip_status);
    let mut entries = current.map(read_entries).unwrap_or_default();
    let mut result = current.cloned().unwrap_or_else(|| json!({"metadata": {}}));

    // Conflicts: fields another manager owns whose value the apply would change.
    let mut conflicts: Vec<(String, Path)> = Vec::new();
    if let Some(cur) = current {
        for e in entries.iter().filter(|e| e.manager != manager) {
            for owned in &e.fields {
                if let Some(p) = applied_fields.iter().find(|p| overlaps(p, owned)) {
                    let key = if owned.len() <= p.len() { owned } else { p };
                    if value_at(cur, key) != value_at(applied, key)
                        && !conflicts.iter().any(|(m, f)| m == &e.manager && f == key)
                    {
                        conflicts.push((e.manager.clone(), key.clone()));
                    }
                }
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(m, f)| {
                json!({
                    "type": "FieldManagerConflict",
                    "message": format!("conflict with \"{m}\""),
                    "field": format!(".{}", f.join(".")),
                })
            })
            .collect();
        let n = conflicts.len();
        let list: Vec<String> = conflicts
            .iter()
            .map(|(m, f)| format!("conflict with \"{m}\": .{}", f.join(".")))
            .collect();
        let message = format!(
            "Apply failed with {n} conflict{}: {}",
            if n == 1 { "" } else { "s" },
            list.join("\n")
        );
        return Err(ApiError::conflict(message, json!({"causes": causes})));
    }
    if force {
        for e in entries.iter_mut().filter(|e| e.manager != manager) {
            e.fields.retain(|f| {
                !conflicts
                    .iter()
                    .any(|(m, c)| *m == e.manager && overlaps(c, f))
            });
        }
    }

    // Fields this manager applied before and no longer applies, owned by nobody else, go.
    let previous: BTreeSet<Path> = entries
        .iter()
        .find(|e| e.manager == manager && e.operation == "Apply")
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for gone in previous.difference(&applied_fields) {
        let owned_elsewhere = entries
            .iter()
            .filter(|e| !(e.manager == manager && e.operation == "Apply"))
            .any(|e| e.fields.iter().any(|f| overlaps(f, gone)));
        if !owned_elsewhere && !applied_fields.iter().any(|a| overlaps(a, gone)) {
            remove_at(&mut result, gone);
        }
    }

    // Merge what the manager applies.
    let mut patch = applied.clone();
    if let Some(m) = patch.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        if skip_status {
            m.remove("status");
        }
        if let Some(Value::Object(meta)) = m.get_mut("metadata") {
            meta.retain(|k, _| {
                matches!(
                    k.as_str(),
                    "labels" | "annotations" | "finalizers" | "ownerReferences"
                )
            });
        }
    }
    deep_merge(&mut result, &patch);

    entries.retain(|e| !(e.manager == manager && e.operation == "Apply"));
    entries.push(Entry {
        manager: manager.to_string(),
        operation: "Apply".to_string(),
        api_version: api_version.to_string(),
        time: now(),
        fields: applied_fields,
        subresource: String::new(),
    });
    write_entries(&mut result, &entries);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(replicas: i64, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "labels": {"app": "web"}},
               "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    #[test]
    fn apply_records_fields_and_round_trips() {
        let obj = apply(None, &deploy(1, "a"), "hk8s", false, "apps/v1", true).unwrap();
        let entries = read_entries(&obj);
        assert_eq!(entries.len(), 1);
        assert!(
            entries[0]
                .fields
                .contains(&vec!["spec".to_string(), "replicas".to_string()])
        );
        assert!(entries[0].fields.contains(&vec![
            "metadata".to_string(),
            "labels".to_string(),
            "app".to_string()
        ]));
        assert_eq!(
            obj["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:replicas"],
            json!({})
        );
    }

    #[test]
    fn conflicting_apply_is_refused_unless_forced() {
        let obj = apply(None, &deploy(1, "a"), "hk8s", false, "apps/v1", true).unwrap();
        // Same value from another manager: shared ownership, no conflict.
        let shared = apply(Some(&obj), &deploy(1, "a"), "other", false, "apps/v1", true).unwrap();
        let err = apply(
            Some(&shared),
            &deploy(3, "a"),
            "other",
            false,
            "apps/v1",
            true,
        )
        .unwrap_err();
        assert_eq!(err.code, 409);
        assert!(err.message.contains(".spec.replicas"), "{}", err.message);
        let forced = apply(
            Some(&shared),
            &deploy(3, "a"),
            "other",
            true,
            "apps/v1",
            true,
        )
        .unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        let hk8s = read_entries(&forced)
            .into_iter()
            .find(|e| e.manager == "hk8s")
            .unwrap();
        assert!(
            !hk8s
                .fields
                .contains(&vec!["spec".to_string(), "replicas".to_string()])
        );
    }

    #[test]
    fn fields_dropped_from_apply_are_removed() {
        let obj = apply(None, &deploy(1, "a"), "hk8s", false, "apps/v1", true).unwrap();
        let mut smaller = deploy(1, "a");
        smaller["metadata"]["labels"] = json!({});
        smaller["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("labels");
        let after = apply(Some(&obj), &smaller, "hk8s", false, "apps/v1", true).unwrap();
        assert!(after["metadata"]["labels"].get("app").is_none());
    }

    #[test]
    fn update_takes_ownership_without_conflict() {
        let obj = apply(None, &deploy(1, "a"), "hk8s", false, "apps/v1", true).unwrap();
        let mut new = obj.clone();
        new["spec"]["replicas"] = json!(5);
        record_update(Some(&obj), &mut new, "kubectl", "apps/v1", "", true);
        let err = apply(Some(&new), &deploy(1, "a"), "hk8s", false, "apps/v1", true).unwrap_err();
        assert!(err.message.contains("kubectl"));
    }
}
