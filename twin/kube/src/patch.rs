//! JSON merge patch (RFC 7386), an approximation of strategic merge patch (lists of objects
//! with a `name` are merged by name; `$patch`/`$retainKeys` directives are not supported) and
//! JSON patch (RFC 6902: add, remove, replace, test, move, copy).

use serde_json::{Map, Value};

use crate::status::ApiError;

/// Applies an RFC 7386 merge patch to `target`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    merge(target, patch, false);
}

/// Applies a strategic merge patch (approximation, see the module doc) to `target`.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    merge(target, patch, true);
}

fn named_list(v: &Value) -> bool {
    v.as_array()
        .is_some_and(|a| !a.is_empty() && a.iter().all(|e| e["name"].is_string()))
}

fn merge(target: &mut Value, patch: &Value, strategic: bool) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        return;
    };
    for (k, pv) in p {
        if pv.is_null() {
            t.remove(k);
            continue;
        }
        let tv = t.entry(k.clone()).or_insert(Value::Null);
        if strategic && named_list(pv) && named_list(tv) {
            let (Some(items), Value::Array(existing)) = (pv.as_array(), &mut *tv) else {
                continue;
            };
            for item in items {
                match existing.iter_mut().find(|e| e["name"] == item["name"]) {
                    Some(e) => merge(e, item, true),
                    None => existing.push(item.clone()),
                }
            }
        } else if pv.is_object() {
            merge(tv, pv, strategic);
        } else {
            *tv = pv.clone();
        }
    }
}

fn pointer_parts(path: &str) -> Result<Vec<String>, ApiError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| ApiError::bad_request(format!("invalid JSON pointer {path}")))?;
    Ok(rest
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn parent_mut<'a>(root: &'a mut Value, parts: &[String]) -> Result<&'a mut Value, ApiError> {
    let mut cur = root;
    for p in parts {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(p)
                .ok_or_else(|| ApiError::invalid(format!("path {p} does not exist")))?,
            Value::Array(a) => {
                let i: usize = p
                    .parse()
                    .map_err(|_| ApiError::invalid(format!("bad array index {p}")))?;
                a.get_mut(i)
                    .ok_or_else(|| ApiError::invalid(format!("array index {i} out of range")))?
            }
            _ => return Err(ApiError::invalid(format!("path {p} does not exist"))),
        };
    }
    Ok(cur)
}

fn add(root: &mut Value, path: &str, value: Value) -> Result<(), ApiError> {
    let parts = pointer_parts(path)?;
    let Some((last, parents)) = parts.split_last() else {
        *root = value;
        return Ok(());
    };
    match parent_mut(root, parents)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
            } else {
                let i: usize = last
                    .parse()
                    .map_err(|_| ApiError::invalid(format!("bad array index {last}")))?;
                if i > a.len() {
                    return Err(ApiError::invalid(format!("array index {i} out of range")));
                }
                a.insert(i, value);
            }
        }
        _ => return Err(ApiError::invalid(format!("cannot add at {path}"))),
    }
    Ok(())
}

fn remove(root: &mut Value, path: &str) -> Result<Value, ApiError> {
    let parts = pointer_parts(path)?;
    let Some((last, parents)) = parts.split_last() else {
        return Err(ApiError::invalid("cannot remove the root"));
    };
    match parent_mut(root, parents)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| ApiError::invalid(format!("path {path} does not exist"))),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| ApiError::invalid(format!("bad array index {last}")))?;
            if i >= a.len() {
                return Err(ApiError::invalid(format!("array index {i} out of range")));
            }
            Ok(a.remove(i))
        }
        _ => Err(ApiError::invalid(format!("path {path} does not exist"))),
    }
}

/// Applies an RFC 6902 JSON patch to `target`.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| ApiError::bad_request("json patch must be an array"))?;
    for op in ops {
        let path = op["path"].as_str().unwrap_or_default();
        match op["op"].as_str().unwrap_or_default() {
            "add" => add(target, path, op["value"].clone())?,
            "remove" => {
                remove(target, path)?;
            }
            "replace" => {
                remove(target, path)?;
                add(target, path, op["value"].clone())?;
            }
            "test" => {
                let found = target.pointer(path).cloned().unwrap_or(Value::Null);
                if found != op["value"] {
                    return Err(ApiError::invalid(format!("test failed at {path}")));
                }
            }
            "move" => {
                let from = op["from"].as_str().unwrap_or_default();
                let v = remove(target, from)?;
                add(target, path, v)?;
            }
            "copy" => {
                let from = op["from"].as_str().unwrap_or_default();
                let v = target
                    .pointer(from)
                    .cloned()
                    .ok_or_else(|| ApiError::invalid(format!("path {from} does not exist")))?;
                add(target, path, v)?;
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown json patch op {other:?}"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_removes_nulls_and_merges_maps() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]});
        merge_patch(&mut t, &json!({"a": null, "b": {"c": 5}, "l": [3]}));
        assert_eq!(t, json!({"b": {"c": 5, "d": 3}, "l": [3]}));
    }

    #[test]
    fn strategic_merges_named_lists() {
        let mut t =
            json!({"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]});
        strategic_merge_patch(
            &mut t,
            &json!({"containers": [{"name": "b", "image": "z"}]}),
        );
        assert_eq!(t["containers"][1]["image"], "z");
        assert_eq!(t["containers"][0]["image"], "x");
    }

    #[test]
    fn json_patch_ops() {
        let mut t = json!({"spec": {"taints": [{"key": "a"}]}});
        json_patch(
            &mut t,
            &json!([{"op": "add", "path": "/spec/unschedulable", "value": true},
                    {"op": "remove", "path": "/spec/taints/0"},
                    {"op": "test", "path": "/spec/unschedulable", "value": true}]),
        )
        .unwrap();
        assert_eq!(t, json!({"spec": {"taints": [], "unschedulable": true}}));
        assert!(json_patch(&mut t, &json!([{"op": "remove", "path": "/nope"}])).is_err());
    }
}
