//! The spec side of the conformance test: the OpenAPI 3.0 document rewritten to JSON Schema
//! 2020-12 (`nullable: true` → `type: [t, "null"]`), one compiled validator per response schema
//! (with the spec's `components` in the root resource, so `#/components/schemas/...` resolves),
//! the list of endpoints the twin implements, and `call`, which checks one response.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value, json};

use crate::common::{Api, Resp};

/// OpenAPI 3.0 `nullable` → JSON Schema.
fn to_json_schema(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(to_json_schema).collect()),
        Value::Object(m) => {
            let mut out: Map<String, Value> = m
                .iter()
                .filter(|(k, _)| *k != "nullable" && *k != "example" && *k != "examples")
                .map(|(k, v)| (k.clone(), to_json_schema(v)))
                .collect();
            if m.get("nullable") == Some(&Value::Bool(true)) {
                if let Some(Value::Array(e)) = out.get_mut("enum") {
                    e.push(Value::Null);
                }
                match out.get("type").cloned() {
                    Some(Value::String(t)) => {
                        out.insert("type".into(), json!([t, "null"]));
                    }
                    _ => {
                        return json!({"anyOf": [Value::Object(out), {"type": "null"}]});
                    }
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// Where the live API (December 2026) differs from the February 2026 spec copy, exactly these
/// changes are applied to the spec before validating (`../shared/reference/hetzner-2026.md`):
///
/// - changelog 2026-07-01 `removing-datacenters`: the `datacenter` property (marked
///   `deprecated` in the spec) is gone from Server and Primary IP objects, so it is no longer
///   `required` where the spec marks it deprecated;
/// - changelog 2026-04-27 `primary-ips-will-return-unassigned`: `assignee_type` may be
///   `unassigned` (the spec's enum is `["server"]`);
/// - changelog 2026-10-05 `load-balancers-can-use-existing-primary-ips`: `DELETE
///   /load_balancers/{id}` answers 200 with the action tracking the delete (the spec's 204 is
///   replaced by the schema of a server delete's 200, `{action}`), found by hcloud-python 2.27,
///   whose `delete` reads that action (applied in [`Spec::load`]).
///
/// Additions (`available`/`recommended` on server type locations, `timeout_idle` on HTTP
/// services, `deprecation` on load balancer types) need no change: the schemas allow extra
/// properties. `GET /datacenters` answering 410 (changelog 2026-06-02 `datacenters-deprecated`)
/// is checked against the spec's `4xx` error schema.
fn apply_2026_changes(v: &mut Value) -> usize {
    let mut changed = 0;
    match v {
        Value::Object(m) => {
            let deprecated_dc = m
                .get("properties")
                .and_then(|p| p.get("datacenter"))
                .is_some_and(|d| d.get("deprecated") == Some(&Value::Bool(true)));
            if deprecated_dc && let Some(Value::Array(req)) = m.get_mut("required") {
                let before = req.len();
                req.retain(|r| r != "datacenter");
                changed += before - req.len();
            }
            if let Some(at) = m
                .get_mut("properties")
                .and_then(|p| p.get_mut("assignee_type"))
                .and_then(|a| a.get_mut("enum"))
                .and_then(Value::as_array_mut)
                && at == &vec![json!("server")]
            {
                at.push(json!("unassigned"));
                changed += 1;
            }
            for x in m.values_mut() {
                changed += apply_2026_changes(x);
            }
        }
        Value::Array(a) => {
            for x in a {
                changed += apply_2026_changes(x);
            }
        }
        _ => {}
    }
    changed
}

/// The spec with a validator cache and what was checked.
pub(super) struct Spec {
    doc: Value,
    components: Value,
    cache: HashMap<String, jsonschema::Validator>,
    /// (method, template) pairs answered 2xx and validated.
    pub(super) checked: BTreeSet<(String, String)>,
    /// Bodies validated.
    pub(super) validated: usize,
}

impl Spec {
    /// The spec from [`hk8s_testkit::spec_dir`]: `None` after its skip (a failure under CI).
    pub(super) fn load() -> Option<Self> {
        let dir = hk8s_testkit::spec_dir()?;
        let text = hk8s_testkit::spec_file(&dir, "hcloud-openapi.json");
        let mut doc: Value = serde_json::from_str(&text).expect("spec is JSON");
        let mut changed = apply_2026_changes(&mut doc);
        // 2026-10-05: deleting a load balancer returns an action, as deleting a server does.
        let lb_delete = doc
            .pointer_mut("/paths/~1load_balancers~1{id}/delete/responses")
            .and_then(Value::as_object_mut)
            .map(|r| r.remove("204").is_some());
        let server_delete = doc
            .pointer("/paths/~1servers~1{id}/delete/responses/200")
            .cloned();
        if let (Some(true), Some(with_action)) = (lb_delete, server_delete)
            && let Some(r) = doc
                .pointer_mut("/paths/~1load_balancers~1{id}/delete/responses")
                .and_then(Value::as_object_mut)
        {
            r.insert("200".into(), with_action);
            changed += 1;
        }
        assert!(
            changed >= 3,
            "the 2026 changes no longer apply to this spec ({changed})"
        );
        let components = to_json_schema(&doc["components"]);
        Some(Self {
            doc,
            components,
            cache: HashMap::new(),
            checked: BTreeSet::new(),
            validated: 0,
        })
    }

    fn schema_of(&self, template: &str, method: &str, status: u16) -> Option<Value> {
        let op = &self.doc["paths"][template][method.to_lowercase()];
        assert!(op.is_object(), "{method} {template} is not in the spec");
        let responses = &op["responses"];
        let r = if responses.get(status.to_string()).is_some() {
            &responses[status.to_string()]
        } else if status >= 500 {
            &responses["5xx"]
        } else if status >= 400 {
            &responses["4xx"]
        } else {
            panic!("{method} {template}: status {status} is not documented");
        };
        r.pointer("/content/application~1json/schema").cloned()
    }

    pub(super) fn validator(
        &mut self,
        template: &str,
        method: &str,
        status: u16,
    ) -> Option<&jsonschema::Validator> {
        let key = format!("{method} {template} {status}");
        if !self.cache.contains_key(&key) {
            let schema = self.schema_of(template, method, status)?;
            let root = json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$defs": {"target": to_json_schema(&schema)},
                "$ref": "#/$defs/target",
                "components": self.components,
            });
            let v = jsonschema::options()
                .should_validate_formats(true)
                .build(&root)
                .unwrap_or_else(|e| panic!("schema for {key} does not compile: {e}"));
            self.cache.insert(key.clone(), v);
        }
        self.cache.get(&key)
    }

    /// Validates `resp` against the documented schema of `template` + `method` + its status.
    pub(super) fn check(&mut self, method: &str, template: &str, resp: &Resp) {
        let status = resp.status.as_u16();
        match self.validator(template, method, status) {
            Some(v) => {
                let errors: Vec<String> = v
                    .iter_errors(&resp.body)
                    .map(|e| format!("{} at {}", e, e.instance_path()))
                    .take(10)
                    .collect();
                assert!(
                    errors.is_empty(),
                    "{method} {template} ({status}) does not match the spec:\n{}\nbody: {}",
                    errors.join("\n"),
                    serde_json::to_string_pretty(&resp.body).unwrap_or_default()
                );
                self.validated += 1;
            }
            None => assert!(
                resp.body.is_null(),
                "{method} {template} ({status}) must have no body"
            ),
        }
        if resp.status.is_success() {
            self.checked
                .insert((method.to_string(), template.to_string()));
        }
    }
}

/// Calls the API and validates the response; `path` is concrete, `template` the spec path.
pub(super) async fn call(
    api: &Api,
    spec: &mut Spec,
    method: &str,
    template: &str,
    path: &str,
    body: Option<Value>,
) -> Value {
    let r = api.call(method, &format!("/v1{path}"), body).await;
    assert!(
        r.status.is_success(),
        "{method} {path}: {} {:?}",
        r.status,
        r.body
    );
    spec.check(method, template, &r);
    r.body
}

/// Every endpoint the twin implements (spec path templates).
pub(super) const ENDPOINTS: &[(&str, &str)] = &[
    ("GET", "/locations"),
    ("GET", "/locations/{id}"),
    ("GET", "/server_types"),
    ("GET", "/server_types/{id}"),
    ("GET", "/load_balancer_types"),
    ("GET", "/load_balancer_types/{id}"),
    ("GET", "/primary_ips"),
    ("GET", "/primary_ips/{id}"),
    ("GET", "/ssh_keys"),
    ("POST", "/ssh_keys"),
    ("GET", "/ssh_keys/{id}"),
    ("PUT", "/ssh_keys/{id}"),
    ("DELETE", "/ssh_keys/{id}"),
    ("GET", "/networks"),
    ("POST", "/networks"),
    ("GET", "/networks/{id}"),
    ("PUT", "/networks/{id}"),
    ("DELETE", "/networks/{id}"),
    ("POST", "/networks/{id}/actions/add_subnet"),
    ("POST", "/networks/{id}/actions/delete_subnet"),
    ("POST", "/networks/{id}/actions/add_route"),
    ("POST", "/networks/{id}/actions/delete_route"),
    ("GET", "/placement_groups"),
    ("POST", "/placement_groups"),
    ("GET", "/placement_groups/{id}"),
    ("PUT", "/placement_groups/{id}"),
    ("DELETE", "/placement_groups/{id}"),
    ("GET", "/firewalls"),
    ("POST", "/firewalls"),
    ("GET", "/firewalls/{id}"),
    ("PUT", "/firewalls/{id}"),
    ("DELETE", "/firewalls/{id}"),
    ("POST", "/firewalls/{id}/actions/set_rules"),
    ("POST", "/firewalls/{id}/actions/apply_to_resources"),
    ("POST", "/firewalls/{id}/actions/remove_from_resources"),
    ("GET", "/servers"),
    ("POST", "/servers"),
    ("GET", "/servers/{id}"),
    ("PUT", "/servers/{id}"),
    ("DELETE", "/servers/{id}"),
    ("POST", "/servers/{id}/actions/poweron"),
    ("POST", "/servers/{id}/actions/poweroff"),
    ("POST", "/servers/{id}/actions/shutdown"),
    ("POST", "/servers/{id}/actions/reset"),
    ("POST", "/servers/{id}/actions/reboot"),
    ("POST", "/servers/{id}/actions/enable_rescue"),
    ("POST", "/servers/{id}/actions/disable_rescue"),
    ("POST", "/servers/{id}/actions/create_image"),
    ("POST", "/servers/{id}/actions/attach_to_network"),
    ("POST", "/servers/{id}/actions/detach_from_network"),
    ("POST", "/servers/{id}/actions/add_to_placement_group"),
    ("POST", "/servers/{id}/actions/remove_from_placement_group"),
    ("GET", "/images"),
    ("GET", "/images/{id}"),
    ("PUT", "/images/{id}"),
    ("DELETE", "/images/{id}"),
    ("GET", "/load_balancers"),
    ("POST", "/load_balancers"),
    ("GET", "/load_balancers/{id}"),
    ("PUT", "/load_balancers/{id}"),
    ("DELETE", "/load_balancers/{id}"),
    ("POST", "/load_balancers/{id}/actions/add_service"),
    ("POST", "/load_balancers/{id}/actions/update_service"),
    ("POST", "/load_balancers/{id}/actions/delete_service"),
    ("POST", "/load_balancers/{id}/actions/add_target"),
    ("POST", "/load_balancers/{id}/actions/remove_target"),
    ("POST", "/load_balancers/{id}/actions/attach_to_network"),
    ("POST", "/load_balancers/{id}/actions/detach_from_network"),
    ("POST", "/load_balancers/{id}/actions/change_algorithm"),
    (
        "POST",
        "/load_balancers/{id}/actions/enable_public_interface",
    ),
    ("GET", "/volumes"),
    ("POST", "/volumes"),
    ("GET", "/volumes/{id}"),
    ("PUT", "/volumes/{id}"),
    ("DELETE", "/volumes/{id}"),
    ("POST", "/volumes/{id}/actions/attach"),
    ("POST", "/volumes/{id}/actions/detach"),
    ("POST", "/volumes/{id}/actions/resize"),
    ("POST", "/volumes/{id}/actions/change_protection"),
    ("GET", "/volumes/actions"),
    ("GET", "/volumes/actions/{id}"),
    ("GET", "/volumes/{id}/actions"),
    ("GET", "/volumes/{id}/actions/{action_id}"),
    ("GET", "/actions"),
    ("GET", "/actions/{id}"),
    ("GET", "/servers/actions"),
    ("GET", "/servers/actions/{id}"),
    ("GET", "/servers/{id}/actions"),
    ("GET", "/servers/{id}/actions/{action_id}"),
    ("GET", "/images/actions"),
    ("GET", "/images/actions/{id}"),
    ("GET", "/images/{id}/actions"),
    ("GET", "/images/{id}/actions/{action_id}"),
    ("GET", "/networks/actions"),
    ("GET", "/networks/actions/{id}"),
    ("GET", "/networks/{id}/actions"),
    ("GET", "/networks/{id}/actions/{action_id}"),
    ("GET", "/firewalls/actions"),
    ("GET", "/firewalls/actions/{id}"),
    ("GET", "/firewalls/{id}/actions"),
    ("GET", "/firewalls/{id}/actions/{action_id}"),
    ("GET", "/load_balancers/actions"),
    ("GET", "/load_balancers/actions/{id}"),
    ("GET", "/load_balancers/{id}/actions"),
    ("GET", "/load_balancers/{id}/actions/{action_id}"),
];

/// The id at JSON pointer `ptr`.
pub(super) fn id(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("no id at {ptr} in {v}"))
}
