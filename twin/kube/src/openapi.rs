//! The OpenAPI documents kube-apiserver serves, for the kinds this server stores, and the
//! field validation (`fieldValidation=Strict|Warn|Ignore`) that uses them.
//!
//! Schemas are not written here: the built-in kinds' come from the `k8s-openapi` crate's
//! `schemars` implementations (generated from Kubernetes' own OpenAPI document), a custom
//! resource's from its CustomResourceDefinition's `openAPIV3Schema`. On top of them this module
//! adds what kube-apiserver adds: `x-kubernetes-group-version-kind` on every kind's schema, and
//! the paths with their operations (each with its group-version-kind and the `fieldValidation`
//! parameter, which is how kubectl learns that the server validates fields itself).
//!
//! - `/openapi/v3`: `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=…"}}}`
//! - `/openapi/v3/api/v1`, `/openapi/v3/apis/<group>/<version>`: OpenAPI 3.0 documents
//! - `/openapi/v2`: one Swagger 2.0 document for every group version (JSON only)

use std::collections::BTreeMap;
use std::sync::OnceLock;

use k8s_openapi::api;
use k8s_openapi::schemars::JsonSchema;
use k8s_openapi::schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use crate::discovery::{ResourceType, builtin_types};

/// The `info.version` of every document (the Kubernetes release `k8s-openapi`'s schemas are of).
const INFO_VERSION: &str = "v1.34.0";

/// Which OpenAPI flavour a document is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    V2,
    V3,
}

impl Flavour {
    fn generator(self) -> SchemaGenerator {
        match self {
            // `allOf: [{$ref}]` beside a description, as kube-apiserver's v3 documents do.
            Flavour::V3 => SchemaSettings::openapi3().into_generator(),
            Flavour::V2 => SchemaSettings::draft07()
                .with(|s| {
                    s.meta_schema = None;
                    s.transforms.clear();
                })
                .into_generator(),
        }
    }

    fn ref_prefix(self) -> &'static str {
        match self {
            Flavour::V2 => "#/definitions/",
            Flavour::V3 => "#/components/schemas/",
        }
    }
}

fn add<T: JsonSchema>(g: &mut SchemaGenerator) -> String {
    g.subschema_for::<T>();
    T::schema_name().into_owned()
}

type Adder = fn(&mut SchemaGenerator) -> String;

/// The `k8s-openapi` type of each built-in kind, by (group, kind).
const BUILTIN_SCHEMAS: &[(&str, &str, Adder)] = &[
    ("", "Namespace", add::<api::core::v1::Namespace>),
    ("", "Node", add::<api::core::v1::Node>),
    ("", "Pod", add::<api::core::v1::Pod>),
    ("", "Service", add::<api::core::v1::Service>),
    ("", "Secret", add::<api::core::v1::Secret>),
    ("", "ConfigMap", add::<api::core::v1::ConfigMap>),
    ("", "ServiceAccount", add::<api::core::v1::ServiceAccount>),
    (
        "",
        "PersistentVolumeClaim",
        add::<api::core::v1::PersistentVolumeClaim>,
    ),
    ("", "PersistentVolume", add::<api::core::v1::PersistentVolume>),
    ("", "Endpoints", add::<api::core::v1::Endpoints>),
    ("", "Event", add::<api::core::v1::Event>),
    ("", "LimitRange", add::<api::core::v1::LimitRange>),
    ("", "ResourceQuota", add::<api::core::v1::ResourceQuota>),
    ("apps", "Deployment", add::<api::apps::v1::Deployment>),
    ("apps", "DaemonSet", add::<api::apps::v1::DaemonSet>),
    ("apps", "StatefulSet", add::<api::apps::v1::StatefulSet>),
    ("apps", "ReplicaSet", add::<api::apps::v1::ReplicaSet>),
    (
        "apps",
        "ControllerRevision",
        add::<api::apps::v1::ControllerRevision>,
    ),
    ("batch", "Job", add::<api::batch::v1::Job>),
    ("batch", "CronJob", add::<api::batch::v1::CronJob>),
    (
        "rbac.authorization.k8s.io",
        "Role",
        add::<api::rbac::v1::Role>,
    ),
    (
        "rbac.authorization.k8s.io",
        "RoleBinding",
        add::<api::rbac::v1::RoleBinding>,
    ),
    (
        "rbac.authorization.k8s.io",
        "ClusterRole",
        add::<api::rbac::v1::ClusterRole>,
    ),
    (
        "rbac.authorization.k8s.io",
        "ClusterRoleBinding",
        add::<api::rbac::v1::ClusterRoleBinding>,
    ),
    (
        "storage.k8s.io",
        "StorageClass",
        add::<api::storage::v1::StorageClass>,
    ),
    (
        "storage.k8s.io",
        "CSIDriver",
        add::<api::storage::v1::CSIDriver>,
    ),
    ("storage.k8s.io", "CSINode", add::<api::storage::v1::CSINode>),
    (
        "storage.k8s.io",
        "VolumeAttachment",
        add::<api::storage::v1::VolumeAttachment>,
    ),
    (
        "certificates.k8s.io",
        "CertificateSigningRequest",
        add::<api::certificates::v1::CertificateSigningRequest>,
    ),
    (
        "policy",
        "PodDisruptionBudget",
        add::<api::policy::v1::PodDisruptionBudget>,
    ),
    (
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        add::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>,
    ),
    (
        "coordination.k8s.io",
        "Lease",
        add::<api::coordination::v1::Lease>,
    ),
    (
        "networking.k8s.io",
        "NetworkPolicy",
        add::<api::networking::v1::NetworkPolicy>,
    ),
    (
        "networking.k8s.io",
        "Ingress",
        add::<api::networking::v1::Ingress>,
    ),
    (
        "networking.k8s.io",
        "IngressClass",
        add::<api::networking::v1::IngressClass>,
    ),
    (
        "scheduling.k8s.io",
        "PriorityClass",
        add::<api::scheduling::v1::PriorityClass>,
    ),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
        add::<api::admissionregistration::v1::MutatingWebhookConfiguration>,
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
        add::<api::admissionregistration::v1::ValidatingWebhookConfiguration>,
    ),
    (
        "discovery.k8s.io",
        "EndpointSlice",
        add::<api::discovery::v1::EndpointSlice>,
    ),
];

fn builtin_adder(group: &str, kind: &str) -> Option<Adder> {
    BUILTIN_SCHEMAS
        .iter()
        .find(|(g, k, _)| *g == group && *k == kind)
        .map(|(_, _, a)| *a)
}

/// `api/v1` or `apis/<group>/<version>`: a group version's name in `/openapi/v3`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

/// The schema name kube-apiserver gives a custom resource kind (`io.cilium.v2.CiliumNode`).
fn custom_schema_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// The `openAPIV3Schema` of `kind` at `version` in the CustomResourceDefinitions `crds`.
fn crd_schema(crds: &[Value], group: &str, version: &str, kind: &str) -> Option<Value> {
    crds.iter()
        .filter(|c| {
            c["spec"]["group"].as_str() == Some(group)
                && c["spec"]["names"]["kind"].as_str() == Some(kind)
        })
        .flat_map(|c| {
            c["spec"]["versions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|v| v["name"].as_str() == Some(version))
        .map(|v| v["schema"]["openAPIV3Schema"].clone())
        .filter(Value::is_object)
}

/// The component schemas of the kinds in `types` (one group version), each kind's schema
/// carrying its `x-kubernetes-group-version-kind`, and each kind's schema name.
fn schemas(
    types: &[&ResourceType],
    crds: &[Value],
    flavour: Flavour,
) -> (Map<String, Value>, BTreeMap<String, String>) {
    let mut g = flavour.generator();
    let mut names = BTreeMap::new();
    let mut custom = Vec::new();
    for t in types {
        if let Some(adder) = builtin_adder(&t.group, &t.kind).filter(|_| !t.custom) {
            names.insert(t.kind.clone(), adder(&mut g));
        } else {
            let mut schema = crd_schema(crds, &t.group, &t.version, &t.kind).unwrap_or_else(
                || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            );
            if let Some(props) = schema["properties"].as_object_mut() {
                let meta =
                    add::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>(&mut g);
                let reference = json!({"$ref": format!("{}{meta}", flavour.ref_prefix())});
                let meta_schema = match flavour {
                    Flavour::V3 => {
                        json!({"allOf": [reference], "description": "Standard object's metadata."})
                    }
                    Flavour::V2 => reference,
                };
                props.insert("metadata".into(), meta_schema);
                props
                    .entry("apiVersion")
                    .or_insert_with(|| json!({"type": "string"}));
                props
                    .entry("kind")
                    .or_insert_with(|| json!({"type": "string"}));
            }
            let name = custom_schema_name(&t.group, &t.version, &t.kind);
            names.insert(t.kind.clone(), name.clone());
            custom.push((name, schema));
        }
    }
    for extra in [
        add::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>,
        add::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Patch>,
        add::<k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions>,
    ] {
        extra(&mut g);
    }
    let mut defs = g.take_definitions(true);
    for (name, schema) in custom {
        defs.insert(name, schema);
    }
    for t in types {
        if let Some(name) = names.get(&t.kind)
            && let Some(schema) = defs.get_mut(name).and_then(Value::as_object_mut)
        {
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([gvk(&t.group, &t.version, &t.kind)]),
            );
        }
    }
    (defs, names)
}

fn query_param(name: &str, flavour: Flavour) -> Value {
    match flavour {
        Flavour::V3 => {
            json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
        }
        Flavour::V2 => json!({"name": name, "in": "query", "type": "string", "uniqueItems": true}),
    }
}

fn path_param(name: &str, flavour: Flavour) -> Value {
    match flavour {
        Flavour::V3 => {
            json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}})
        }
        Flavour::V2 => {
            json!({"name": name, "in": "path", "required": true, "type": "string", "uniqueItems": true})
        }
    }
}

fn operation(
    t: &ResourceType,
    action: &str,
    verb: &str,
    body: Option<(&[&str], &str)>,
    response: &str,
    flavour: Flavour,
) -> Value {
    let prefix = flavour.ref_prefix();
    let mut params: Vec<Value> = Vec::new();
    if matches!(action, "post" | "put" | "patch") {
        for p in ["dryRun", "fieldManager", "fieldValidation"] {
            params.push(query_param(p, flavour));
        }
    }
    if action == "patch" {
        params.push(query_param("force", flavour));
    }
    let ok = |schema: &str| match flavour {
        Flavour::V3 => {
            json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("{prefix}{schema}")}}}})
        }
        Flavour::V2 => {
            json!({"description": "OK", "schema": {"$ref": format!("{prefix}{schema}")}})
        }
    };
    let mut op = json!({
        "description": format!("{verb} {}", t.kind),
        "operationId": format!("{action}{}", t.kind),
        "tags": [t.api_version().replace(['/', '.'], "_")],
        "responses": {"200": ok(response), "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(&t.group, &t.version, &t.kind),
    });
    if let Some((media, schema)) = body {
        match flavour {
            Flavour::V3 => {
                let content: Map<String, Value> = media
                    .iter()
                    .map(|m| {
                        (
                            m.to_string(),
                            json!({"schema": {"$ref": format!("{prefix}{schema}")}}),
                        )
                    })
                    .collect();
                op["requestBody"] = json!({"content": content, "required": true});
            }
            Flavour::V2 => {
                params.push(json!({"name": "body", "in": "body", "required": true,
                    "schema": {"$ref": format!("{prefix}{schema}")}}));
                op["consumes"] = json!(media);
            }
        }
    }
    op["parameters"] = json!(params);
    op
}

const PATCH_MEDIA: [&str; 4] = [
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

/// The collection and object paths of `t`, with their operations.
fn paths_of(t: &ResourceType, schema: &str, flavour: Flavour, out: &mut Map<String, Value>) {
    let base = format!("/{}", gv_path(&t.group, &t.version));
    let (collection, mut params) = if t.namespaced {
        (
            format!("{base}/namespaces/{{namespace}}/{}", t.plural),
            vec![path_param("namespace", flavour)],
        )
    } else {
        (format!("{base}/{}", t.plural), Vec::new())
    };
    params.push(query_param("pretty", flavour));
    out.insert(
        collection.clone(),
        json!({
            "get": operation(t, "list", "list or watch objects of kind", None, "io.k8s.apimachinery.pkg.apis.meta.v1.Status", flavour),
            "post": operation(t, "post", "create a", Some((&["application/json", "application/yaml"], schema)), schema, flavour),
            "parameters": params.clone(),
        }),
    );
    let mut item_params = vec![path_param("name", flavour)];
    item_params.extend(params);
    let item = json!({
        "get": operation(t, "get", "read the specified", None, schema, flavour),
        "put": operation(t, "put", "replace the specified", Some((&["application/json", "application/yaml"], schema)), schema, flavour),
        "patch": operation(t, "patch", "partially update the specified", Some((&PATCH_MEDIA, "io.k8s.apimachinery.pkg.apis.meta.v1.Patch")), schema, flavour),
        "delete": operation(t, "delete", "delete a", Some((&["application/json"], "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions")), "io.k8s.apimachinery.pkg.apis.meta.v1.Status", flavour),
        "parameters": item_params.clone(),
    });
    out.insert(format!("{collection}/{{name}}"), item);
    if t.has_status() {
        out.insert(
            format!("{collection}/{{name}}/status"),
            json!({
                "get": operation(t, "get", "read status of the specified", None, schema, flavour),
                "put": operation(t, "put", "replace status of the specified", Some((&["application/json"], schema)), schema, flavour),
                "patch": operation(t, "patch", "partially update status of the specified", Some((&PATCH_MEDIA, "io.k8s.apimachinery.pkg.apis.meta.v1.Patch")), schema, flavour),
                "parameters": item_params,
            }),
        );
    }
}

fn paths_and_schemas(
    types: &[&ResourceType],
    crds: &[Value],
    flavour: Flavour,
) -> (Map<String, Value>, Map<String, Value>) {
    let (defs, names) = schemas(types, crds, flavour);
    let mut paths = Map::new();
    for t in types {
        if let Some(schema) = names.get(&t.kind) {
            paths_of(t, schema, flavour, &mut paths);
        }
    }
    (paths, defs)
}

fn v3_doc(types: &[&ResourceType], crds: &[Value]) -> Value {
    let (paths, schemas) = paths_and_schemas(types, crds, Flavour::V3);
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": INFO_VERSION},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}},
        },
    })
}

/// The built-in group versions' v3 documents, built once (schema generation walks every type).
fn builtin_v3() -> &'static BTreeMap<String, Value> {
    static DOCS: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let types = builtin_types();
        group_versions(&types)
            .into_iter()
            .map(|(g, v)| {
                let members: Vec<&ResourceType> = types
                    .iter()
                    .filter(|t| t.group == g && t.version == v)
                    .collect();
                (gv_path(&g, &v), v3_doc(&members, &[]))
            })
            .collect()
    })
}

fn group_versions(types: &[ResourceType]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for t in types {
        let gv = (t.group.clone(), t.version.clone());
        if !out.contains(&gv) {
            out.push(gv);
        }
    }
    out
}

/// The v3 document of one group version (`api/v1`, `apis/apps/v1`), if it is served.
pub(crate) fn v3_group_version(
    types: &[ResourceType],
    crds: &[Value],
    path: &str,
) -> Option<Value> {
    let members: Vec<&ResourceType> = types
        .iter()
        .filter(|t| gv_path(&t.group, &t.version) == path)
        .collect();
    if members.is_empty() {
        return None;
    }
    if members.iter().all(|t| !t.custom)
        && let Some(doc) = builtin_v3().get(path)
    {
        return Some(doc.clone());
    }
    Some(v3_doc(&members, crds))
}

/// A short content hash, as in kube-apiserver's `serverRelativeURL`s.
fn content_hash(doc: &Value) -> String {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    doc.to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

/// `/openapi/v3`: the group versions and where their documents are.
pub(crate) fn v3_root(types: &[ResourceType], crds: &[Value]) -> Value {
    let mut paths = Map::new();
    for (g, v) in group_versions(types) {
        let path = gv_path(&g, &v);
        if let Some(doc) = v3_group_version(types, crds, &path) {
            let url = format!("/openapi/v3/{path}?hash={}", content_hash(&doc));
            paths.insert(path, json!({"serverRelativeURL": url}));
        }
    }
    json!({"paths": paths})
}

/// `/openapi/v2`: one Swagger 2.0 document for every group version.
pub(crate) fn v2(types: &[ResourceType], crds: &[Value]) -> Value {
    let members: Vec<&ResourceType> = types.iter().collect();
    let (paths, definitions) = paths_and_schemas(&members, crds, Flavour::V2);
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": INFO_VERSION},
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}},
        "security": [{"BearerToken": []}],
    })
}

/// How a write treats fields its schema does not declare (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldValidation {
    /// Unknown fields are accepted silently.
    Ignore,
    /// Unknown fields are accepted with a `Warning` header each (the default).
    Warn,
    /// Unknown fields fail the request.
    Strict,
}

impl FieldValidation {
    /// The directive of the `fieldValidation` query value (absent: Warn).
    pub(crate) fn parse(value: Option<&str>) -> Result<FieldValidation, String> {
        match value {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(format!(
                "fieldValidation: Unsupported value: \"{other}\": supported values: \"Ignore\", \"Strict\", \"Warn\""
            )),
        }
    }
}

/// The dotted paths (`spec.replicaz`, `spec.template.spec.containers[0].imagez`) of the
/// fields of `obj` that the schema of `t` does not declare. Keys starting with `$` (strategic
/// merge patch directives) are not fields. Kinds without a schema have no unknown fields.
pub(crate) fn unknown_fields(t: &ResourceType, crds: &[Value], obj: &Value) -> Vec<String> {
    let doc = if t.custom {
        v3_group_version(
            std::slice::from_ref(t),
            crds,
            &gv_path(&t.group, &t.version),
        )
    } else {
        builtin_v3().get(&gv_path(&t.group, &t.version)).cloned()
    };
    let Some(doc) = doc else { return Vec::new() };
    let defs = &doc["components"]["schemas"];
    let wanted = gvk(&t.group, &t.version, &t.kind);
    let Some(schema) = defs.as_object().and_then(|m| {
        m.values().find(|s| {
            s["x-kubernetes-group-version-kind"]
                .as_array()
                .is_some_and(|a| a.contains(&wanted))
        })
    }) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk(defs, schema, obj, "", &mut out, 0);
    out
}

/// Follows `$ref` and single-element `allOf` to the schema that describes a value.
fn resolve<'a>(defs: &'a Value, mut schema: &'a Value) -> &'a Value {
    for _ in 0..16 {
        if let Some(r) = schema["$ref"].as_str() {
            let name = r.rsplit('/').next().unwrap_or_default();
            schema = &defs[name];
        } else if let Some([only]) = schema["allOf"].as_array().map(Vec::as_slice)
            && schema["properties"].is_null()
        {
            schema = only;
        } else {
            break;
        }
    }
    schema
}

fn walk(
    defs: &Value,
    schema: &Value,
    value: &Value,
    path: &str,
    out: &mut Vec<String>,
    depth: usize,
) {
    if depth > 64 {
        return;
    }
    let schema = resolve(defs, schema);
    if schema["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true) {
        return;
    }
    match value {
        Value::Object(fields) => {
            let props = schema["properties"].as_object();
            let additional = &schema["additionalProperties"];
            for (key, v) in fields {
                if key.starts_with('$') {
                    continue;
                }
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match props.and_then(|p| p.get(key)) {
                    Some(s) => walk(defs, s, v, &child, out, depth + 1),
                    None if additional.is_object() => {
                        walk(defs, additional, v, &child, out, depth + 1)
                    }
                    None if props.is_some() && additional.as_bool() != Some(true) => {
                        out.push(child)
                    }
                    None => {}
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for (i, v) in items.iter().enumerate() {
                walk(
                    defs,
                    &schema["items"],
                    v,
                    &format!("{path}[{i}]"),
                    out,
                    depth + 1,
                );
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment_type() -> ResourceType {
        builtin_types()
            .into_iter()
            .find(|t| t.kind == "Deployment")
            .unwrap()
    }

    #[test]
    fn every_builtin_kind_has_a_schema_with_its_gvk() {
        for t in builtin_types() {
            let doc =
                v3_group_version(&builtin_types(), &[], &gv_path(&t.group, &t.version)).unwrap();
            let schemas = doc["components"]["schemas"].as_object().unwrap();
            let found = schemas.values().any(|s| {
                s["x-kubernetes-group-version-kind"]
                    .as_array()
                    .is_some_and(|a| a.contains(&gvk(&t.group, &t.version, &t.kind)))
            });
            assert!(found, "no schema for {} {}", t.api_version(), t.kind);
        }
    }

    #[test]
    fn refs_resolve_within_the_document() {
        let doc = v3_group_version(&builtin_types(), &[], "apis/apps/v1").unwrap();
        let text = doc.to_string();
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap();
            assert!(doc["components"]["schemas"][name].is_object(), "{name}");
        }
        let spec = &doc["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"];
        assert_eq!(spec["properties"]["replicas"]["type"], "integer");
    }

    #[test]
    fn unknown_fields_are_named_by_path() {
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"any": "thing"}},
            "spec": {"replicaz": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "w", "image": "nginx", "imagez": "x",
                        "resources": {"limits": {"cpu": "1"}}}]}}}});
        assert_eq!(
            unknown_fields(&deployment_type(), &[], &obj),
            vec![
                "spec.replicaz".to_string(),
                "spec.template.spec.containers[0].imagez".to_string()
            ]
        );
        let ok = json!({"spec": {"replicas": 2, "$setElementOrder/x": []}});
        assert!(unknown_fields(&deployment_type(), &[], &ok).is_empty());
    }

    #[test]
    fn custom_resources_use_their_crd_schema() {
        let crd = json!({"spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "schema": {"openAPIV3Schema": {
                "type": "object", "properties": {"spec": {"type": "object",
                    "properties": {"size": {"type": "integer"}},
                    "x-kubernetes-preserve-unknown-fields": false}}}}}]}});
        let types = crate::discovery::types_of_crd(&crd);
        let crds = [crd];
        let bad = json!({"metadata": {"name": "w"}, "spec": {"size": 1, "colour": "red"}});
        assert_eq!(unknown_fields(&types[0], &crds, &bad), vec!["spec.colour"]);
        let root = v3_root(&types, &crds);
        assert!(
            root["paths"]["apis/example.com/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/apis/example.com/v1?hash=")
        );
        let doc = v3_group_version(&types, &crds, "apis/example.com/v1").unwrap();
        assert_eq!(
            doc["components"]["schemas"]["com.example.v1.Widget"]["x-kubernetes-group-version-kind"]
                [0]["kind"],
            "Widget"
        );
    }
}
