//! `GET /twin/critical-path`: the shortest a create of the servers that exist now could take,
//! from the durations this twin actually applied to each of them.
//!
//! Per server the chain is `create_server` → `start_server` (Hetzner actions, jittered) →
//! `boot` (maintenance mode) → `install` (after the config was applied; install and reboot) →
//! `configured_boot` → `kubernetes` (the Kubernetes twin's CNI pod start and node Ready delays).
//! Applying a config, bootstrapping and the API calls themselves count zero, so the chain is a
//! lower bound no client can beat. The critical path is the longest chain; the reply lists
//! every server's chain so a reader can see the spread the jitter made.
//!
//! `POST /twin/critical-path/reset` forgets the recorded durations (a new measurement).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::talos_nodes::TalosHooks;
use hk8s_twin_hetzner::handle::TwinState;

#[derive(Clone)]
struct Views {
    state: TwinState,
    talos: Arc<TalosHooks>,
}

/// The route (paths include `/twin`).
pub fn router(state: TwinState, talos: Arc<TalosHooks>) -> Router {
    Router::new()
        .route("/twin/critical-path", get(critical_path))
        .route("/twin/critical-path/reset", post(reset))
        .with_state(Views { state, talos })
}

/// The critical path of the servers that exist now, as JSON (see the module docs).
pub fn compute(state: &TwinState, talos: &TalosHooks) -> Value {
    let speed = state.speed();
    let kube_secs = (hk8s_twin_kube::POD_START + hk8s_twin_kube::NODE_READY) / speed;
    let w = state.world();
    let talos_timeline = talos.timeline();
    let mut nodes = Vec::new();
    for (id, name, segments) in w.timeline.servers() {
        if !w.servers.contains_key(&id) {
            continue;
        }
        let mut chain: Vec<Value> = segments
            .iter()
            .map(|s| json!({"phase": s.phase, "secs": s.secs}))
            .collect();
        let talos_segments = talos_timeline
            .servers()
            .find(|(tid, _, _)| *tid == id)
            .map(|(_, _, s)| s)
            .unwrap_or_default();
        if talos_segments.is_empty() {
            // Not a Talos server (an image builder's): no Kubernetes node at the end.
            continue;
        }
        chain.extend(
            talos_segments
                .iter()
                .map(|s| json!({"phase": s.phase, "secs": s.secs})),
        );
        chain.push(json!({"phase": "kubernetes", "secs": kube_secs}));
        let total: f64 = segments.iter().map(|s| s.secs).sum::<f64>()
            + talos_segments.iter().map(|s| s.secs).sum::<f64>()
            + kube_secs;
        nodes.push(json!({"id": id, "name": name, "secs": total, "chain": chain}));
    }
    let longest = nodes
        .iter()
        .max_by(|a, b| {
            let (a, b) = (a["secs"].as_f64(), b["secs"].as_f64());
            a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal)
        })
        .cloned();
    let shortest = nodes
        .iter()
        .filter_map(|n| n["secs"].as_f64())
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.min(x))));
    json!({
        "speed": speed,
        "jitter": w.jitter.fraction(),
        "secs": longest.as_ref().and_then(|n| n["secs"].as_f64()).unwrap_or(0.0),
        "shortest_node_secs": shortest,
        "longest": longest,
        "nodes": nodes,
    })
}

async fn critical_path(State(v): State<Views>) -> Response {
    axum::Json(compute(&v.state, &v.talos)).into_response()
}

async fn reset(State(v): State<Views>) -> Response {
    v.state.world().timeline.clear();
    v.talos.timeline().clear();
    axum::http::StatusCode::NO_CONTENT.into_response()
}
