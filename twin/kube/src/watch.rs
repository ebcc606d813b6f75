//! Watches: newline-delimited events from the store's history and live changes, filtered
//! by namespace and selectors, with selection changes turned into ADDED/DELETED.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use http::{Response, header};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::discovery::ResourceType;
use crate::request::{Req, Target, output, selectors, truthy};
use crate::selector::{FieldSelector, LabelSelector};
use crate::state::Inner;
use crate::status::ApiError;
use crate::store::WatchEvent;

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

struct WatchState {
    pending: VecDeque<Bytes>,
    rx: Option<broadcast::Receiver<Arc<WatchEvent>>>,
    rt: ResourceType,
    ns: Option<String>,
    ls: LabelSelector,
    fs: FieldSelector,
    deadline: tokio::time::Instant,
}

impl WatchState {
    fn selects(&self, obj: &Value) -> bool {
        self.ns
            .as_deref()
            .is_none_or(|ns| obj["metadata"]["namespace"].as_str() == Some(ns))
            && self.ls.matches(obj)
            && self.fs.matches(obj)
    }

    /// The event type this watch sends for `ev`, if any: a change entering the selection is
    /// ADDED, one leaving it DELETED, as kube-apiserver's watch cache does.
    fn translate(&self, ev: &WatchEvent) -> Option<&'static str> {
        if ev.group != self.rt.group || ev.plural != self.rt.plural {
            return None;
        }
        let now = self.selects(&ev.object);
        match (ev.kind, ev.previous.as_ref().map(|p| self.selects(p))) {
            ("MODIFIED", Some(true)) if !now => Some("DELETED"),
            ("MODIFIED", Some(false)) if now => Some("ADDED"),
            ("MODIFIED", Some(false)) => None,
            (kind, _) => now.then_some(kind),
        }
    }

    fn line(&self, ev: &WatchEvent) -> Option<Bytes> {
        self.translate(ev)
            .map(|kind| event_line(kind, &output(&ev.object, &self.rt)))
    }
}

pub(crate) fn watch(inner: &Arc<Inner>, req: &Req, t: &Target) -> Result<Response<Body>, ApiError> {
    let (ls, fs) = selectors(req)?;
    let timeout = req
        .query
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(1800);
    let rv_param = req
        .query
        .get("resourceVersion")
        .cloned()
        .unwrap_or_default();
    let send_initial = truthy(&req.query, "sendInitialEvents");
    let mut state = WatchState {
        pending: Default::default(),
        rx: None,
        rt: t.rt.clone(),
        ns: t.ns.clone(),
        ls,
        fs,
        deadline: tokio::time::Instant::now() + Duration::from_secs(timeout),
    };
    {
        let store = inner.store();
        let from = if rv_param.is_empty() || rv_param == "0" || send_initial {
            for obj in store.list(&t.rt.group, &t.rt.plural, t.ns.as_deref()) {
                if state.ls.matches(&obj) && state.fs.matches(&obj) {
                    state
                        .pending
                        .push_back(event_line("ADDED", &output(&obj, &t.rt)));
                }
            }
            if send_initial {
                state.pending.push_back(event_line(
                    "BOOKMARK",
                    &json!({"kind": t.rt.kind, "apiVersion": t.rt.api_version(),
                            "metadata": {"resourceVersion": store.rv().to_string(),
                                         "annotations": {"k8s.io/initial-events-end": "true"}}}),
                ));
            }
            store.rv()
        } else {
            rv_param.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("invalid resourceVersion {rv_param:?}"))
            })?
        };
        match store.watch_from(from) {
            Ok((past, rx)) => {
                let lines: Vec<Bytes> = past.iter().filter_map(|ev| state.line(ev)).collect();
                state.pending.extend(lines);
                state.rx = Some(rx);
            }
            Err(e) => state.pending.push_back(event_line("ERROR", &e.to_status())),
        }
    }
    let stream = futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(line) = st.pending.pop_front() {
                return Some((Ok::<Bytes, Infallible>(line), st));
            }
            let rx = st.rx.as_mut()?;
            let ev = tokio::select! {
                ev = rx.recv() => ev,
                _ = tokio::time::sleep_until(st.deadline) => return None,
            };
            match ev {
                Ok(ev) => {
                    if let Some(line) = st.line(&ev) {
                        st.pending.push_back(line);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    st.rx = None;
                    st.pending.push_back(event_line(
                        "ERROR",
                        &ApiError::gone("watch fell behind; too old resource version").to_status(),
                    ));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::TRANSFER_ENCODING,
        http::HeaderValue::from_static("chunked"),
    );
    Ok(resp)
}
