//! The object store: every object as JSON keyed by (group, plural) and (namespace, name), one
//! global resourceVersion counter, and a bounded event history feeding watches.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::discovery::{ResourceType, builtin_types, types_of_crd};
use crate::status::ApiError;

/// How many events a watch can resume from.
const HISTORY: usize = 10_000;

/// One change of one object, as streamed by watches.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    /// resourceVersion of the change.
    pub rv: u64,
    /// API group of the object.
    pub group: String,
    /// Resource (plural) of the object.
    pub plural: String,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind: &'static str,
    /// The object after the change (before, for DELETED; with the deletion's resourceVersion).
    pub object: Value,
    /// For MODIFIED: the object before the change (watches with selectors turn a change that
    /// enters or leaves the selection into ADDED or DELETED).
    pub previous: Option<Value>,
}

/// One resource's objects by (namespace, name). Shared, so a controller pass or a list
/// snapshots them without copying; a write replaces the object.
type Objects = BTreeMap<(String, String), Arc<Value>>;

/// All objects of one cluster.
#[derive(Debug)]
pub struct Store {
    rv: u64,
    objects: BTreeMap<(String, String), Objects>,
    history: VecDeque<Arc<WatchEvent>>,
    types: Vec<ResourceType>,
    tx: broadcast::Sender<Arc<WatchEvent>>,
}

/// The namespace and name of an object.
pub fn ns_name(obj: &Value) -> (String, String) {
    (
        obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// Current time in the API's format.
pub fn timestamp() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn random_suffix(n: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..n)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Everything but metadata and status (what bumps `metadata.generation`).
fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

/// The finalizer admission puts on every PVC.
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";

/// Whether an object has finalizers left.
pub fn has_finalizers(obj: &Value) -> bool {
    obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
}

/// Secrets: `stringData` is merged into `data` (base64), as kube-apiserver does on write.
fn normalize(rt: &ResourceType, obj: &mut Value) {
    if !(rt.group.is_empty() && rt.plural == "secrets") {
        return;
    }
    let Some(Value::Object(string_data)) = obj.as_object_mut().and_then(|m| m.remove("stringData"))
    else {
        return;
    };
    if !obj["data"].is_object() {
        obj["data"] = json!({});
    }
    for (k, v) in string_data {
        let text = v.as_str().unwrap_or_default();
        obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

/// The apiserver's Service defaulting and allocation: clusterIP(s) from 10.96.0.0/12, node
/// ports from 30000-32767 for NodePort and LoadBalancer Services, protocol and targetPort
/// defaults; on update, allocated values not given again are kept.
fn allocate_service(existing: &[Value], obj: &mut Value, old: Option<&Value>) {
    let spec = &mut obj["spec"];
    if !spec.is_object() {
        *spec = json!({});
    }
    if spec["type"].is_null() {
        spec["type"] = json!("ClusterIP");
    }
    let kind = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
    if kind == "ExternalName" {
        return;
    }
    let used_ips: Vec<&str> = existing
        .iter()
        .filter_map(|s| s["spec"]["clusterIP"].as_str())
        .collect();
    let given = spec["clusterIP"].as_str().unwrap_or_default().to_string();
    let ip = if !given.is_empty() {
        given
    } else if let Some(old_ip) = old.and_then(|o| o["spec"]["clusterIP"].as_str()) {
        old_ip.to_string()
    } else {
        loop {
            let candidate = format!(
                "10.{}.{}.{}",
                rand::random_range(96..=111u8),
                rand::random_range(0..=255u8),
                rand::random_range(2..=254u8)
            );
            if !used_ips.contains(&candidate.as_str()) {
                break candidate;
            }
        }
    };
    spec["clusterIP"] = json!(ip);
    spec["clusterIPs"] = json!([ip]);
    for (k, v) in [
        ("sessionAffinity", json!("None")),
        ("ipFamilies", json!(["IPv4"])),
        ("ipFamilyPolicy", json!("SingleStack")),
        ("internalTrafficPolicy", json!("Cluster")),
    ] {
        if spec[k].is_null() {
            spec[k] = v;
        }
    }
    let wants_node_ports = kind == "NodePort" || kind == "LoadBalancer";
    if wants_node_ports && spec["externalTrafficPolicy"].is_null() {
        spec["externalTrafficPolicy"] = json!("Cluster");
    }
    if kind == "LoadBalancer" && spec["allocateLoadBalancerNodePorts"].is_null() {
        spec["allocateLoadBalancerNodePorts"] = json!(true);
    }
    let mut used_ports: Vec<u64> = existing
        .iter()
        .flat_map(|s| s["spec"]["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["nodePort"].as_u64())
        .collect();
    let old_ports = old
        .and_then(|o| o["spec"]["ports"].as_array().cloned())
        .unwrap_or_default();
    if let Some(ports) = spec["ports"].as_array_mut() {
        for p in ports {
            if p["protocol"].is_null() {
                p["protocol"] = json!("TCP");
            }
            if p["targetPort"].is_null() {
                p["targetPort"] = p["port"].clone();
            }
            if !wants_node_ports || p["nodePort"].is_u64() {
                continue;
            }
            let kept = old_ports
                .iter()
                .find(|o| o["port"] == p["port"] && o["protocol"] == p["protocol"])
                .and_then(|o| o["nodePort"].as_u64());
            let port = kept.unwrap_or_else(|| {
                loop {
                    let candidate = rand::random_range(30000..=32767u64);
                    if !used_ports.contains(&candidate) {
                        break candidate;
                    }
                }
            });
            used_ports.push(port);
            p["nodePort"] = json!(port);
        }
    }
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    /// A store with the built-in types and the namespaces every cluster starts with.
    pub fn new() -> Store {
        let (tx, _) = broadcast::channel(4096);
        let mut store = Store {
            rv: 0,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            types: builtin_types(),
            tx,
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            if let Some(rt) = store.find_type("", "v1", "namespaces") {
                // Cannot fail: the store is empty.
                let _ = store.create(&rt, obj);
            }
        }
        if let Some(rt) = store.find_type("", "v1", "services") {
            let svc = json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kubernetes", "namespace": "default",
                             "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "targetPort": 6443}]}});
            let _ = store.create(&rt, svc);
        }
        store
    }

    /// Every served resource type (built-in and from CRDs).
    pub fn types(&self) -> &[ResourceType] {
        &self.types
    }

    /// The type served at `group/version/plural`.
    pub fn find_type(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    /// The current resourceVersion.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// One object.
    pub fn get(&self, group: &str, plural: &str, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&(group.to_string(), plural.to_string()))?
            .get(&(ns.to_string(), name.to_string()))
            .map(Arc::as_ref)
    }

    /// Copies of the objects of one resource, in one namespace or all, sorted by namespace
    /// and name.
    pub fn list(&self, group: &str, plural: &str, ns: Option<&str>) -> Vec<Value> {
        self.shared(group, plural, ns)
            .into_iter()
            .map(Arc::unwrap_or_clone)
            .collect()
    }

    /// [`Store::list`] without the copies: the stored objects themselves, shared (a controller
    /// pass reads every pod and node this way and clones only what it changes).
    pub fn shared(&self, group: &str, plural: &str, ns: Option<&str>) -> Vec<Arc<Value>> {
        self.objects
            .get(&(group.to_string(), plural.to_string()))
            .map(|m| {
                m.iter()
                    .filter(|((n, _), _)| ns.is_none_or(|want| want == n))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every object of every resource in namespace `ns` (for namespace deletion).
    pub fn keys_in_namespace(&self, ns: &str) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for ((g, p), objs) in &self.objects {
            for (n, name) in objs.keys() {
                if n == ns {
                    out.push((g.clone(), p.clone(), name.clone()));
                }
            }
        }
        out
    }

    fn emit(&mut self, group: &str, plural: &str, kind: &'static str, object: Value) {
        self.emit_change(group, plural, kind, object, None);
    }

    fn emit_change(
        &mut self,
        group: &str,
        plural: &str,
        kind: &'static str,
        object: Value,
        previous: Option<Value>,
    ) {
        let ev = Arc::new(WatchEvent {
            rv: self.rv,
            group: group.to_string(),
            plural: plural.to_string(),
            kind,
            object,
            previous,
        });
        self.history.push_back(ev.clone());
        while self.history.len() > HISTORY {
            self.history.pop_front();
        }
        // No receivers is fine.
        let _ = self.tx.send(ev);
        if group == "apiextensions.k8s.io" && plural == "customresourcedefinitions" {
            self.refresh_crd_types();
        }
    }

    fn refresh_crd_types(&mut self) {
        let mut types = builtin_types();
        for crd in self.list("apiextensions.k8s.io", "customresourcedefinitions", None) {
            for t in types_of_crd(&crd) {
                if !types
                    .iter()
                    .any(|x| x.group == t.group && x.version == t.version && x.plural == t.plural)
                {
                    types.push(t);
                }
            }
        }
        self.types = types;
    }

    /// Creates an object: fills uid, resourceVersion, creationTimestamp, generation and a
    /// generated name; 409 AlreadyExists when taken; 404 when its namespace does not exist.
    pub fn create(&mut self, rt: &ResourceType, mut obj: Value) -> Result<Value, ApiError> {
        normalize(rt, &mut obj);
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        let meta = &mut obj["metadata"];
        if meta["name"].as_str().unwrap_or_default().is_empty() {
            match meta["generateName"].as_str() {
                Some(prefix) if !prefix.is_empty() => {
                    meta["name"] = json!(format!("{prefix}{}", random_suffix(5)));
                }
                _ => {
                    return Err(ApiError::invalid(format!(
                        "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                        rt.kind
                    )));
                }
            }
        }
        if !rt.namespaced
            && let Some(m) = meta.as_object_mut()
        {
            m.remove("namespace");
        }
        let (ns, name) = ns_name(&obj);
        if rt.namespaced {
            if ns.is_empty() {
                return Err(ApiError::invalid("metadata.namespace: Required value"));
            }
            match self.get("", "namespaces", "", &ns) {
                None => return Err(ApiError::not_found("", "namespaces", &ns)),
                Some(n) if !n["metadata"]["deletionTimestamp"].is_null() => {
                    return Err(ApiError::forbidden(format!(
                        "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        crate::status::qualified(&rt.group, &rt.plural)
                    )));
                }
                Some(_) => {}
            }
        }
        if self.get(&rt.group, &rt.plural, &ns, &name).is_some() {
            return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
        }
        if rt.group.is_empty() && rt.plural == "services" {
            let existing = self.list("", "services", None);
            allocate_service(&existing, &mut obj, None);
        }
        if rt.group.is_empty() && rt.plural == "persistentvolumeclaims" {
            // Admission (StorageObjectInUseProtection).
            let finalizers = &mut obj["metadata"]["finalizers"];
            if !finalizers.is_array() {
                *finalizers = json!([]);
            }
            if let Some(list) = finalizers.as_array_mut()
                && !list.iter().any(|f| f == PVC_PROTECTION)
            {
                list.push(json!(PVC_PROTECTION));
            }
        }
        self.rv += 1;
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        let meta = &mut obj["metadata"];
        meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
        meta["resourceVersion"] = json!(self.rv.to_string());
        meta["creationTimestamp"] = json!(timestamp());
        meta["generation"] = json!(1);
        if let Some(m) = meta.as_object_mut() {
            m.remove("deletionTimestamp");
        }
        if rt.group.is_empty() && rt.plural == "namespaces" {
            obj["status"] = json!({"phase": "Active"});
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
        }
        self.objects
            .entry((rt.group.clone(), rt.plural.clone()))
            .or_default()
            .insert((ns, name), Arc::new(obj.clone()));
        self.emit(&rt.group, &rt.plural, "ADDED", obj.clone());
        Ok(obj)
    }

    /// Replaces an existing object (caller checked preconditions). Bumps generation when
    /// anything but metadata and status changed; an unchanged object is not written (no new
    /// resourceVersion, no event), as in kube-apiserver.
    pub fn replace(&mut self, rt: &ResourceType, mut obj: Value) -> Result<Value, ApiError> {
        normalize(rt, &mut obj);
        let (ns, name) = ns_name(&obj);
        let Some(old) = self.get(&rt.group, &rt.plural, &ns, &name).cloned() else {
            return Err(ApiError::not_found(&rt.group, &rt.plural, &name));
        };
        if rt.group.is_empty() && rt.plural == "services" {
            let existing: Vec<Value> = self
                .list("", "services", None)
                .into_iter()
                .filter(|s| ns_name(s) != (ns.clone(), name.clone()))
                .collect();
            allocate_service(&existing, &mut obj, Some(&old));
        }
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        for key in [
            "uid",
            "creationTimestamp",
            "resourceVersion",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            obj["metadata"][key] = old["metadata"][key].clone();
            if obj["metadata"][key].is_null()
                && let Some(m) = obj["metadata"].as_object_mut()
            {
                m.remove(key);
            }
        }
        if obj == old {
            return Ok(old);
        }
        let is_namespace = rt.group.is_empty() && rt.plural == "namespaces";
        if !is_namespace && !obj["metadata"]["deletionTimestamp"].is_null() && !has_finalizers(&obj)
        {
            // The last finalizer went: the object goes.
            self.objects
                .entry((rt.group.clone(), rt.plural.clone()))
                .or_default()
                .insert((ns.clone(), name.clone()), Arc::new(obj));
            return self
                .remove(&rt.group, &rt.plural, &ns, &name)
                .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, &name));
        }
        if spec_part(&obj) != spec_part(&old) {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
            obj["metadata"]["generation"] = json!(g + 1);
        }
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.objects
            .entry((rt.group.clone(), rt.plural.clone()))
            .or_default()
            .insert((ns, name), Arc::new(obj.clone()));
        self.emit_change(&rt.group, &rt.plural, "MODIFIED", obj.clone(), Some(old));
        Ok(obj)
    }

    /// Deletes an object as kube-apiserver does: one with finalizers only gets
    /// `deletionTimestamp` (a MODIFIED event) and goes when its last finalizer is removed; one
    /// without is removed. Returns the object as it is after the call.
    pub fn delete(&mut self, group: &str, plural: &str, ns: &str, name: &str) -> Option<Value> {
        let obj = self.get(group, plural, ns, name)?.clone();
        if !has_finalizers(&obj) {
            return self.remove(group, plural, ns, name);
        }
        if !obj["metadata"]["deletionTimestamp"].is_null() {
            return Some(obj);
        }
        let mut obj = obj;
        self.rv += 1;
        obj["metadata"]["deletionTimestamp"] = json!(timestamp());
        obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.objects
            .entry((group.to_string(), plural.to_string()))
            .or_default()
            .insert((ns.to_string(), name.to_string()), Arc::new(obj.clone()));
        self.emit(group, plural, "MODIFIED", obj.clone());
        Some(obj)
    }

    /// Starts deleting a namespace: phase Terminating and deletionTimestamp, its objects
    /// deleted (finalizers honoured); the namespace goes once it is empty
    /// ([`Store::finish_namespace`]).
    pub fn delete_namespace(&mut self, name: &str) -> Option<Value> {
        let mut ns = self.get("", "namespaces", "", name)?.clone();
        if ns["metadata"]["deletionTimestamp"].is_null() {
            self.rv += 1;
            ns["metadata"]["deletionTimestamp"] = json!(timestamp());
            ns["metadata"]["resourceVersion"] = json!(self.rv.to_string());
            ns["status"]["phase"] = json!("Terminating");
            self.objects
                .entry((String::new(), "namespaces".to_string()))
                .or_default()
                .insert((String::new(), name.to_string()), Arc::new(ns.clone()));
            self.emit("", "namespaces", "MODIFIED", ns.clone());
        }
        for (g, p, n) in self.keys_in_namespace(name) {
            self.delete(&g, &p, name, &n);
        }
        Some(self.finish_namespace(name).unwrap_or(ns))
    }

    /// Removes a terminating namespace once nothing is left in it; returns it if removed.
    pub fn finish_namespace(&mut self, name: &str) -> Option<Value> {
        let ns = self.get("", "namespaces", "", name)?;
        if ns["metadata"]["deletionTimestamp"].is_null() || !self.keys_in_namespace(name).is_empty()
        {
            return None;
        }
        self.remove("", "namespaces", "", name)
    }

    /// Removes an object; returns it (with the deletion's resourceVersion).
    pub fn remove(&mut self, group: &str, plural: &str, ns: &str, name: &str) -> Option<Value> {
        let mut obj = self
            .objects
            .get_mut(&(group.to_string(), plural.to_string()))?
            .remove(&(ns.to_string(), name.to_string()))
            .map(Arc::unwrap_or_clone)?;
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        if obj["metadata"]["deletionTimestamp"].is_null() {
            obj["metadata"]["deletionTimestamp"] = json!(timestamp());
        }
        self.emit(group, plural, "DELETED", obj.clone());
        Some(obj)
    }

    /// Events after `rv` of one resource and a receiver for later ones (taken under the same
    /// lock, so nothing is missed); 410 Gone when `rv` is older than the history.
    #[allow(clippy::type_complexity)]
    pub fn watch_from(
        &self,
        rv: u64,
    ) -> Result<(Vec<Arc<WatchEvent>>, broadcast::Receiver<Arc<WatchEvent>>), ApiError> {
        if let Some(first) = self.history.front()
            && rv + 1 < first.rv
            && self.history.len() >= HISTORY
        {
            return Err(ApiError::gone(format!(
                "too old resource version: {rv} ({})",
                first.rv - 1
            )));
        }
        if rv > self.rv {
            // A future resourceVersion: stream from now (real servers wait for it).
            return Ok((Vec::new(), self.tx.subscribe()));
        }
        let past: Vec<Arc<WatchEvent>> =
            self.history.iter().filter(|e| e.rv > rv).cloned().collect();
        Ok((past, self.tx.subscribe()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_replace_remove_bump_resource_version() {
        let mut s = Store::new();
        let rt = s.find_type("", "v1", "configmaps").unwrap();
        let start = s.rv();
        let cm = s
            .create(
                &rt,
                json!({"metadata": {"name": "a", "namespace": "default"}, "data": {"k": "v"}}),
            )
            .unwrap();
        assert_eq!(
            cm["metadata"]["resourceVersion"],
            json!((start + 1).to_string())
        );
        assert!(s.create(&rt, cm.clone()).unwrap_err().code == 409);
        let same = s.replace(&rt, cm.clone()).unwrap();
        assert_eq!(
            same["metadata"]["resourceVersion"],
            cm["metadata"]["resourceVersion"]
        );
        let mut changed = cm.clone();
        changed["data"]["k"] = json!("w");
        let changed = s.replace(&rt, changed).unwrap();
        assert_eq!(changed["metadata"]["generation"], 2);
        s.remove("", "configmaps", "default", "a").unwrap();
        let (events, _) = s.watch_from(start).unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, vec!["ADDED", "MODIFIED", "DELETED"]);
    }

    #[test]
    fn services_get_cluster_ips_and_node_ports_that_survive_updates() {
        let mut s = Store::new();
        let rt = s.find_type("", "v1", "services").unwrap();
        let svc = s
            .create(
                &rt,
                json!({"metadata": {"name": "lb", "namespace": "default"},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}),
            )
            .unwrap();
        let ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
        assert!(ip.starts_with("10."));
        let node_port = svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
        assert!((30000..=32767).contains(&node_port));
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
        let mut again = svc.clone();
        again["spec"] =
            json!({"type": "LoadBalancer", "ports": [{"port": 80}], "selector": {"a": "b"}});
        let updated = s.replace(&rt, again).unwrap();
        assert_eq!(updated["spec"]["clusterIP"], json!(ip));
        assert_eq!(updated["spec"]["ports"][0]["nodePort"], json!(node_port));
        assert_eq!(
            s.get("", "services", "default", "kubernetes").unwrap()["spec"]["clusterIP"],
            "10.96.0.1"
        );
    }

    #[test]
    fn finalizers_hold_deletion_until_removed() {
        let mut s = Store::new();
        let rt = s.find_type("", "v1", "configmaps").unwrap();
        s.create(
            &rt,
            json!({"metadata": {"name": "a", "namespace": "default", "finalizers": ["x/y"]}}),
        )
        .unwrap();
        let held = s.delete("", "configmaps", "default", "a").unwrap();
        assert!(held["metadata"]["deletionTimestamp"].is_string());
        assert!(s.get("", "configmaps", "default", "a").is_some());
        let mut released = held.clone();
        released["metadata"]["finalizers"] = json!([]);
        let gone = s.replace(&rt, released).unwrap();
        assert!(gone["metadata"]["deletionTimestamp"].is_string());
        assert!(s.get("", "configmaps", "default", "a").is_none());
    }

    #[test]
    fn terminating_namespace_refuses_content_and_goes_when_empty() {
        let mut s = Store::new();
        let ns_rt = s.find_type("", "v1", "namespaces").unwrap();
        let cm_rt = s.find_type("", "v1", "configmaps").unwrap();
        s.create(&ns_rt, json!({"metadata": {"name": "apps"}}))
            .unwrap();
        s.create(
            &cm_rt,
            json!({"metadata": {"name": "held", "namespace": "apps", "finalizers": ["x/y"]}}),
        )
        .unwrap();
        let ns = s.delete_namespace("apps").unwrap();
        assert_eq!(ns["status"]["phase"], "Terminating");
        let err = s
            .create(
                &cm_rt,
                json!({"metadata": {"name": "new", "namespace": "apps"}}),
            )
            .unwrap_err();
        assert_eq!(err.code, 403);
        let mut held = s.get("", "configmaps", "apps", "held").unwrap().clone();
        held["metadata"]["finalizers"] = json!([]);
        s.replace(&cm_rt, held).unwrap();
        assert!(s.finish_namespace("apps").is_some());
        assert!(s.get("", "namespaces", "", "apps").is_none());
    }

    #[test]
    fn namespaced_create_needs_namespace() {
        let mut s = Store::new();
        let rt = s.find_type("", "v1", "configmaps").unwrap();
        let err = s
            .create(&rt, json!({"metadata": {"name": "a", "namespace": "nope"}}))
            .unwrap_err();
        assert_eq!(err.code, 404);
    }

    #[test]
    fn crd_adds_types() {
        let mut s = Store::new();
        let rt = s
            .find_type("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .unwrap();
        s.create(
            &rt,
            json!({"metadata": {"name": "widgets.example.com"}, "spec": {"group": "example.com",
            "scope": "Namespaced", "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true}]}}),
        )
        .unwrap();
        assert!(s.find_type("example.com", "v1", "widgets").is_some());
    }
}
