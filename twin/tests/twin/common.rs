//! Helpers: an in-process API driven with `tower::ServiceExt::oneshot`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use hk8s_twin::Id;
use hk8s_twin::{RateLimit, ServerBoot, ServerHooks, TwinState};
use serde_json::{Value, json};
use tower::ServiceExt;

pub const TOKEN: &str = "test-token";

/// A response: status, headers, JSON body (`null` when empty).
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// Hook calls recorded in order.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<String>>,
    pub boots: Mutex<Vec<ServerBoot>>,
}

impl ServerHooks for Recorder {
    fn server_running(&self, boot: &ServerBoot) {
        self.events
            .lock()
            .unwrap()
            .push(format!("running {}", boot.id));
        self.boots.lock().unwrap().push(boot.clone());
    }
    fn server_stopped(&self, id: Id) {
        self.events.lock().unwrap().push(format!("stopped {id}"));
    }
    fn server_deleted(&self, id: Id) {
        self.events.lock().unwrap().push(format!("deleted {id}"));
    }
    fn image_created(&self, server: Id, image: Id) {
        self.events
            .lock()
            .unwrap()
            .push(format!("image {server} {image}"));
    }
}

pub struct Api {
    pub app: Router,
    pub state: TwinState,
    pub hooks: Arc<Recorder>,
}

impl Api {
    /// Realistic speed (1.0): tests run on paused tokio time.
    pub fn new() -> Self {
        Self::with(
            1.0,
            RateLimit {
                capacity: 100_000,
                refill_per_sec: 100.0,
            },
        )
    }

    pub fn with(speed: f64, rate: RateLimit) -> Self {
        let state = TwinState::new(
            "127.66.0.0/20".parse().unwrap(),
            speed,
            Some(TOKEN.to_string()),
            rate,
        );
        let hooks = Arc::new(Recorder::default());
        state.set_hooks(hooks.clone());
        Self {
            app: hk8s_twin::app(state.clone()),
            state,
            hooks,
        }
    }

    pub async fn raw(&self, req: Request<Body>) -> Resp {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "twin.test")
            .header("authorization", format!("Bearer {TOKEN}"));
        if body.is_some() {
            b = b.header("content-type", "application/json");
        }
        let req = b
            .body(
                body.map(|v| Body::from(v.to_string()))
                    .unwrap_or_else(Body::empty),
            )
            .unwrap();
        self.raw(req).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call("POST", path, Some(body)).await
    }

    /// Lets every running action finish (paused time advances instantly).
    pub async fn settle(&self) {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }

    pub async fn ssh_key(&self, name: &str) -> Value {
        let key = format!("ssh-ed25519 {} {name}", base64_of(name));
        let r = self
            .post("/v1/ssh_keys", json!({"name": name, "public_key": key}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body["ssh_key"].clone()
    }

    pub async fn network(&self, name: &str) -> Value {
        let r = self
            .post(
                "/v1/networks",
                json!({"name": name, "ip_range": "10.0.0.0/16",
                       "subnets": [{"type": "cloud", "network_zone": "eu-central", "ip_range": "10.0.1.0/24"}]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body["network"].clone()
    }

    pub async fn server(&self, body: Value) -> Resp {
        self.post("/v1/servers", body).await
    }
}

/// A syntactically valid key blob that differs per name.
pub fn base64_of(name: &str) -> String {
    use base64::Engine;
    let mut blob = b"\0\0\0\x0bssh-ed25519\0\0\0\x20".to_vec();
    let mut key = [0u8; 32];
    for (i, b) in name.bytes().enumerate() {
        key[i % 32] ^= b.wrapping_add(i as u8);
    }
    blob.extend_from_slice(&key);
    base64::engine::general_purpose::STANDARD.encode(blob)
}

/// A client of a twin served on a real socket (`Twin::start`): JSON in and out, panics on a
/// non-2xx answer with method, path, status and body.
pub struct SocketApi {
    /// The API base URL (`twin.api_url()`).
    pub base: String,
    /// The HTTP client.
    pub client: reqwest::Client,
}

impl SocketApi {
    /// A client of `base`.
    pub fn new(base: String) -> Self {
        Self {
            base,
            client: reqwest::Client::new(),
        }
    }

    /// Sends `method path` with an optional JSON body; the answer's JSON (`null` when empty).
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth("t");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// `POST path` with `body`.
    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Value {
        self.call(reqwest::Method::DELETE, path, None).await
    }
}
