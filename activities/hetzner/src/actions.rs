//! Waiting for actions: one `GET /actions?id=…&id=…` per poll for all pending actions.
//!
//! This request is made with reqwest directly (the same rustls client the `hcloud`
//! crate uses), not through the crate: the crate drops the response headers, and the
//! waiter is the facade's busiest caller, so it is where `RateLimit-Remaining`,
//! `RateLimit-Reset` and `X-Correlation-Id` are read. The reply is decoded leniently
//! (unknown statuses and missing fields do not fail a whole poll).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use hcloud::models;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::{ApiToken, HetznerConfig};
use crate::error::{ErrorKind, HetznerError};
use crate::pacing::RequestGate;

/// The id of a Hetzner action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ActionId(pub i64);

impl fmt::Display for ActionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Ids per `GET /actions` call: the API's largest page (`per_page` at most 50), asked for
/// explicitly, so a hundred servers' actions are two requests per poll, not four as with the
/// default page of 25 (hcloud-go's chunk).
pub(crate) const IDS_PER_POLL: usize = 50;

#[derive(Debug, Deserialize)]
struct ActionsReply {
    #[serde(default)]
    actions: Vec<LenientAction>,
}

#[derive(Debug, Deserialize)]
struct LenientAction {
    id: i64,
    #[serde(default)]
    command: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    error: Option<LenientActionError>,
}

#[derive(Debug, Deserialize)]
struct LenientActionError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

fn action_failed(id: i64, command: &str, code: Option<String>, message: String) -> HetznerError {
    let mut err = HetznerError::new(
        ErrorKind::ActionFailed,
        format!("action {id} ({command})"),
        if message.is_empty() {
            "action failed".to_string()
        } else {
            message
        },
    );
    err.code = code.filter(|c| !c.is_empty());
    err
}

/// The ids of `actions` still running; an action that already failed is an error.
pub(crate) fn pending_ids<'a>(
    actions: impl IntoIterator<Item = &'a models::Action>,
) -> Result<Vec<ActionId>, HetznerError> {
    let mut out = Vec::new();
    for a in actions {
        match a.status {
            models::action::Status::Success => {}
            models::action::Status::Running => out.push(ActionId(a.id)),
            models::action::Status::Error => {
                let (code, message) = a
                    .error
                    .as_ref()
                    .map(|e| (Some(e.code.clone()), e.message.clone()))
                    .unwrap_or((None, String::new()));
                return Err(action_failed(a.id, &a.command, code, message));
            }
        }
    }
    Ok(out)
}

/// How one action ended, as recorded by whichever waiter polled it.
#[derive(Clone, Debug)]
enum Finished {
    Success,
    Failed {
        command: String,
        code: Option<String>,
        message: String,
    },
    Missing,
}

/// The process-wide action waiter: every id some caller waits for, what the polls found
/// out, and what it needs to poll (HTTP client, URL, token, intervals). Concurrent
/// `Hetzner::wait_actions` calls share it, so ten servers created at once cost one
/// `GET /actions` per interval, not ten.
pub(crate) struct Waiter {
    /// The facade's reqwest client.
    http: reqwest::Client,
    /// The API's base URL.
    base_url: String,
    /// The API token (never printed).
    token: ApiToken,
    /// Pacing and request count, shared with the facade.
    gate: Arc<RequestGate>,
    /// First poll interval.
    poll_interval: Duration,
    /// Largest poll interval.
    poll_max_interval: Duration,
    /// How long one wait may take.
    action_timeout: Duration,
    state: Mutex<WaitState>,
    notify: Notify,
}

impl fmt::Debug for Waiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter")
            .field("base_url", &self.base_url)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct WaitState {
    /// Waiters per id.
    interest: HashMap<ActionId, usize>,
    /// Results for ids someone still waits for.
    done: HashMap<ActionId, Finished>,
    /// A waiter is sleeping or polling on everyone's behalf.
    polling: bool,
}

impl Waiter {
    /// A waiter with nothing to wait for, polling `base_url` with `http` under `config`'s
    /// token and intervals.
    pub(crate) fn new(
        http: reqwest::Client,
        base_url: String,
        gate: Arc<RequestGate>,
        config: &HetznerConfig,
    ) -> Self {
        Waiter {
            http,
            base_url,
            token: config.token.clone(),
            gate,
            poll_interval: config.action_poll_interval,
            poll_max_interval: config
                .action_poll_max_interval
                .max(config.action_poll_interval),
            action_timeout: config.action_timeout,
            state: Mutex::default(),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, WaitState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes a caller's interest when its wait ends, also on cancellation.
struct InterestGuard<'a> {
    waiter: &'a Waiter,
    ids: Vec<ActionId>,
}

impl Drop for InterestGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.waiter.lock();
        for id in &self.ids {
            if let Some(n) = st.interest.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    st.interest.remove(id);
                    st.done.remove(id);
                }
            }
        }
    }
}

/// Hands the poller role back when the poll ends, also on cancellation.
struct PollerGuard<'a> {
    waiter: &'a Waiter,
}

impl Drop for PollerGuard<'_> {
    fn drop(&mut self) {
        self.waiter.lock().polling = false;
        self.waiter.notify.notify_waiters();
    }
}

impl Waiter {
    /// Waits until every action in `ids` has finished (the flow and errors are documented
    /// on `Hetzner::wait_actions`).
    pub(crate) async fn wait(&self, ids: &[ActionId]) -> Result<(), HetznerError> {
        let mine: BTreeSet<ActionId> = ids.iter().copied().collect();
        if mine.is_empty() {
            return Ok(());
        }
        let waiter = self;
        {
            let mut st = waiter.lock();
            for id in &mine {
                *st.interest.entry(*id).or_default() += 1;
            }
        }
        let _interest = InterestGuard {
            waiter,
            ids: mine.iter().copied().collect(),
        };
        let deadline = Instant::now() + self.action_timeout;
        let mut interval = self.poll_interval;
        loop {
            let notified = waiter.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let lead = {
                let mut st = waiter.lock();
                let mut pending = 0;
                for id in &mine {
                    match st.done.get(id) {
                        Some(Finished::Success) => {}
                        Some(Finished::Failed {
                            command,
                            code,
                            message,
                        }) => {
                            return Err(action_failed(
                                id.0,
                                command,
                                code.clone(),
                                message.clone(),
                            ));
                        }
                        Some(Finished::Missing) => {
                            return Err(HetznerError::new(
                                ErrorKind::Api,
                                "wait for actions",
                                format!("action {id} is missing from the reply"),
                            ));
                        }
                        None => pending += 1,
                    }
                }
                if pending == 0 {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    let left: BTreeSet<ActionId> = mine
                        .iter()
                        .filter(|id| !st.done.contains_key(id))
                        .copied()
                        .collect();
                    return Err(HetznerError::new(
                        ErrorKind::ActionTimeout,
                        "wait for actions",
                        format!(
                            "actions {} still running after {:?}",
                            join(&left),
                            self.action_timeout
                        ),
                    ));
                }
                if st.polling {
                    false
                } else {
                    st.polling = true;
                    true
                }
            };
            if lead {
                let _poller = PollerGuard { waiter };
                tokio::time::sleep(interval).await;
                self.poll_for_everyone().await?;
            } else {
                // The poller wakes everyone after its poll; the timeout covers a poller
                // whose caller went away between the check and the poll.
                let _ = tokio::time::timeout(interval * 3, notified).await;
            }
            interval = next_interval(interval, self.poll_max_interval);
        }
    }

    /// One round: polls every id some caller waits for and records what finished.
    async fn poll_for_everyone(&self) -> Result<(), HetznerError> {
        let waiter = self;
        let wanted: Vec<ActionId> = {
            let st = waiter.lock();
            let mut ids: Vec<ActionId> = st
                .interest
                .keys()
                .filter(|id| !st.done.contains_key(id))
                .copied()
                .collect();
            ids.sort();
            ids
        };
        for chunk in wanted.chunks(IDS_PER_POLL) {
            let actions = self.poll_actions(chunk).await?;
            let mut st = waiter.lock();
            for id in chunk {
                if !st.interest.contains_key(id) {
                    continue;
                }
                let finished = match actions.iter().find(|a| a.id == id.0) {
                    None => Some(Finished::Missing),
                    Some(a) => match a.status.as_str() {
                        "success" => Some(Finished::Success),
                        "error" => Some(Finished::Failed {
                            command: a.command.clone(),
                            code: a.error.as_ref().map(|e| e.code.clone()),
                            message: a
                                .error
                                .as_ref()
                                .map(|e| e.message.clone())
                                .unwrap_or_default(),
                        }),
                        _ => None,
                    },
                };
                if let Some(f) = finished {
                    st.done.insert(*id, f);
                }
            }
        }
        Ok(())
    }

    /// One poll. A `429` drains the pacer (every request of this process waits for the
    /// budget) and is returned as [`crate::ErrorClass::RateLimited`] until the next token, so
    /// the step whose wait led the poll journals the pause and resumes by itself; the other
    /// waiters go on polling behind the pacer.
    async fn poll_actions(&self, ids: &[ActionId]) -> Result<Vec<LenientAction>, HetznerError> {
        const OP: &str = "poll actions";
        let mut query: Vec<(&str, String)> =
            ids.iter().map(|id| ("id", id.0.to_string())).collect();
        query.push(("per_page", IDS_PER_POLL.to_string()));
        self.gate.admit().await;
        let resp = self
            .http
            .get(format!("{}/actions", self.base_url))
            .bearer_auth(self.token.expose())
            .query(&query)
            .send()
            .await
            .map_err(|e| HetznerError::from_reqwest(OP, e))?;
        let headers = RateLimitHeaders::from(resp.headers());
        self.gate
            .pacer
            .observe(headers.limit, headers.remaining, Instant::now());
        let status = resp.status().as_u16();
        let body = resp
            .text()
            .await
            .map_err(|e| HetznerError::from_reqwest(OP, e))?;
        if status == 429 {
            let wait = self.gate.pacer.drain(Instant::now());
            tracing::warn!(
                wait_ms = wait.as_millis() as u64,
                "the Hetzner API answered 429 to an action poll; pausing requests until the budget allows one"
            );
            let until = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
            return Err(HetznerError::from_response(
                OP,
                status,
                &body,
                headers.correlation_id,
                Some(until),
            ));
        }
        if !(200..300).contains(&status) {
            return Err(HetznerError::from_response(
                OP,
                status,
                &body,
                headers.correlation_id,
                headers.reset,
            ));
        }
        let reply: ActionsReply = serde_json::from_str(&body).map_err(|e| HetznerError {
            source: Some(Box::new(e)),
            correlation_id: headers.correlation_id.clone(),
            ..HetznerError::new(ErrorKind::Decode, OP, "the actions reply did not parse")
        })?;
        Ok(reply.actions)
    }
}

/// The rate-limit and diagnostics headers of a response.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct RateLimitHeaders {
    pub(crate) limit: Option<u64>,
    pub(crate) remaining: Option<u64>,
    pub(crate) reset: Option<DateTime<Utc>>,
    pub(crate) correlation_id: Option<String>,
}

impl From<&reqwest::header::HeaderMap> for RateLimitHeaders {
    fn from(h: &reqwest::header::HeaderMap) -> Self {
        let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        Self {
            limit: get("ratelimit-limit").and_then(|v| v.parse().ok()),
            remaining: get("ratelimit-remaining").and_then(|v| v.parse().ok()),
            reset: get("ratelimit-reset")
                .and_then(|v| v.parse::<i64>().ok())
                .and_then(|secs| Utc.timestamp_opt(secs, 0).single()),
            correlation_id: get("x-correlation-id").map(str::to_string),
        }
    }
}

/// The poll interval grows by half each round, up to `max`.
fn next_interval(current: Duration, max: Duration) -> Duration {
    current.mul_f64(1.5).min(max).max(current.min(max))
}

fn join(ids: &BTreeSet<ActionId>) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Hetzner;

    fn action(id: i64, status: models::action::Status) -> models::Action {
        models::Action {
            command: "create_server".into(),
            error: (status == models::action::Status::Error).then(|| {
                Box::new(models::Error {
                    code: "action_failed".into(),
                    message: "boom".into(),
                })
            }),
            finished: None,
            id,
            progress: 0,
            resources: vec![],
            started: "2026-01-01T00:00:00Z".into(),
            status,
        }
    }

    #[test]
    fn pending_skips_finished_and_fails_on_error() {
        use models::action::Status::*;
        let actions = [action(1, Success), action(2, Running), action(3, Running)];
        assert_eq!(
            pending_ids(&actions).unwrap(),
            vec![ActionId(2), ActionId(3)]
        );
        let actions = [action(1, Running), action(2, Error)];
        let err = pending_ids(&actions).unwrap_err();
        assert_eq!(err.kind, ErrorKind::ActionFailed);
        assert_eq!(err.code.as_deref(), Some("action_failed"));
        assert_eq!(err.message, "boom");
    }

    #[test]
    fn headers_are_read() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("RateLimit-Limit", "3600".parse().unwrap());
        h.insert("RateLimit-Remaining", "17".parse().unwrap());
        h.insert("RateLimit-Reset", "1767225600".parse().unwrap());
        h.insert("X-Correlation-Id", "c0ffee".parse().unwrap());
        let r = RateLimitHeaders::from(&h);
        assert_eq!(r.limit, Some(3600));
        assert_eq!(r.remaining, Some(17));
        assert_eq!(r.reset.unwrap().timestamp(), 1_767_225_600);
        assert_eq!(r.correlation_id.as_deref(), Some("c0ffee"));
        assert_eq!(
            RateLimitHeaders::from(&reqwest::header::HeaderMap::new()),
            RateLimitHeaders::default()
        );
    }

    #[test]
    fn lenient_reply_accepts_unknown_status_and_missing_fields() {
        let reply: ActionsReply = serde_json::from_str(
            r#"{"actions":[{"id":1,"status":"queued"},{"id":2,"status":"error","error":null}],"meta":{}}"#,
        )
        .unwrap();
        assert_eq!(reply.actions.len(), 2);
        assert_eq!(reply.actions[0].status, "queued");
    }

    /// A scripted `GET /actions` endpoint on loopback: it records every query and
    /// answers from a script of (status, body, headers) per call.
    mod scripted {
        use std::sync::{Arc, Mutex};

        use axum::extract::{RawQuery, State};
        use axum::http::{HeaderMap, StatusCode};
        use axum::routing::get;

        pub(super) type Reply = (u16, String, Vec<(&'static str, String)>);

        #[derive(Clone, Default)]
        pub(super) struct Script {
            pub(super) replies: Arc<Mutex<Vec<Reply>>>,
            pub(super) queries: Arc<Mutex<Vec<String>>>,
            pub(super) auth: Arc<Mutex<Vec<String>>>,
        }

        async fn actions(
            State(script): State<Script>,
            headers: HeaderMap,
            RawQuery(q): RawQuery,
        ) -> (StatusCode, HeaderMap, String) {
            script.queries.lock().unwrap().push(q.unwrap_or_default());
            if let Some(a) = headers.get("authorization") {
                script
                    .auth
                    .lock()
                    .unwrap()
                    .push(a.to_str().unwrap().to_string());
            }
            let (status, body, extra) = {
                let mut replies = script.replies.lock().unwrap();
                if replies.len() > 1 {
                    replies.remove(0)
                } else {
                    replies[0].clone()
                }
            };
            let mut out = HeaderMap::new();
            for (k, v) in extra {
                out.insert(k, v.parse().unwrap());
            }
            (StatusCode::from_u16(status).unwrap(), out, body)
        }

        pub(super) async fn serve(script: Script) -> String {
            let app = axum::Router::new()
                .route("/v1/actions", get(actions))
                .with_state(script);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            format!("http://{addr}/v1")
        }
    }

    fn body(actions: &[(i64, &str)]) -> String {
        let list: Vec<_> = actions
            .iter()
            .map(|(id, status)| {
                serde_json::json!({"id": id, "command": "create_server", "status": status,
                    "progress": 0, "started": "2026-01-01T00:00:00Z", "finished": null,
                    "resources": [], "error": if *status == "error" {
                        serde_json::json!({"code": "action_failed", "message": "disk exploded"})
                    } else { serde_json::Value::Null }})
            })
            .collect();
        serde_json::json!({"actions": list, "meta": {"pagination": {"page": 1, "per_page": 25,
            "previous_page": null, "next_page": null, "last_page": 1, "total_entries": list.len()}}})
        .to_string()
    }

    async fn client(script: scripted::Script) -> Hetzner {
        let url = scripted::serve(script).await;
        Hetzner::new(
            crate::HetznerConfig::new(crate::ApiToken::new("tok"))
                .with_endpoint(url)
                .with_pacing(crate::Pacing::UNLIMITED)
                .with_action_poll_interval(std::time::Duration::from_millis(5)),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn one_poll_per_interval_for_all_pending_ids_and_429_is_returned_until_the_next_token() {
        let script = scripted::Script::default();
        *script.replies.lock().unwrap() = vec![
            (
                200,
                body(&[(1, "success"), (2, "running"), (3, "running")]),
                vec![],
            ),
            (
                429,
                r#"{"error":{"code":"rate_limit_exceeded","message":"limit"}}"#.into(),
                vec![
                    ("ratelimit-remaining", "0".into()),
                    ("ratelimit-reset", "1767225600".into()),
                ],
            ),
            (
                200,
                body(&[(1, "success"), (2, "running"), (3, "success")]),
                vec![("ratelimit-remaining", "3000".into())],
            ),
            (200, body(&[(2, "success")]), vec![]),
        ];
        let hetzner = client(script.clone()).await;
        let ids = [ActionId(3), ActionId(1), ActionId(2)];
        let before = Utc::now();
        let err = hetzner.wait_actions(&ids).await.unwrap_err();
        match err.class() {
            crate::ErrorClass::RateLimited { until } => assert!(
                until >= before && until < before + chrono::Duration::seconds(60),
                "until the next token, not the full reset: {until}"
            ),
            other => panic!("{other:?}: {err}"),
        }
        // The caller (a step) journals the pause and waits again.
        hetzner.wait_actions(&ids).await.unwrap();
        let queries = script.queries.lock().unwrap().clone();
        assert_eq!(
            queries,
            [
                "id=1&id=2&id=3&per_page=50",
                "id=2&id=3&per_page=50",
                "id=1&id=2&id=3&per_page=50",
                "id=2&per_page=50"
            ],
            "finished ids leave the poll; the wait after the 429 polls again"
        );
        assert_eq!(hetzner.requests_sent(), 4);
        assert!(
            script
                .auth
                .lock()
                .unwrap()
                .iter()
                .all(|a| a == "Bearer tok")
        );
    }

    #[tokio::test]
    async fn ids_are_chunked_by_the_largest_page() {
        let script = scripted::Script::default();
        let all: Vec<(i64, &str)> = (1..=55).map(|i| (i, "success")).collect();
        *script.replies.lock().unwrap() = vec![(200, body(&all), vec![])];
        let hetzner = client(script.clone()).await;
        let ids: Vec<ActionId> = (1..=55).map(ActionId).collect();
        hetzner.wait_actions(&ids).await.unwrap();
        let queries = script.queries.lock().unwrap().clone();
        assert_eq!(queries.len(), 2);
        assert_eq!(queries[0].matches("&id=").count() + 1, 50);
        assert_eq!(queries[1].matches("&id=").count() + 1, 5);
        assert!(
            queries.iter().all(|q| q.ends_with("&per_page=50")),
            "{queries:?}"
        );
    }

    #[tokio::test]
    async fn failed_action_reports_its_code_and_message() {
        let script = scripted::Script::default();
        *script.replies.lock().unwrap() =
            vec![(200, body(&[(7, "error"), (8, "running")]), vec![])];
        let hetzner = client(script).await;
        let err = hetzner
            .wait_actions(&[ActionId(7), ActionId(8)])
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::ActionFailed);
        assert_eq!(err.code.as_deref(), Some("action_failed"));
        assert_eq!(err.message, "disk exploded");
        assert_eq!(err.class(), crate::ErrorClass::Permanent);
    }

    #[tokio::test]
    async fn missing_id_and_api_errors_fail() {
        let script = scripted::Script::default();
        *script.replies.lock().unwrap() = vec![(200, body(&[(1, "running")]), vec![])];
        let hetzner = client(script).await;
        let err = hetzner
            .wait_actions(&[ActionId(1), ActionId(2)])
            .await
            .unwrap_err();
        assert!(err.message.contains("action 2 is missing"), "{err}");

        let script = scripted::Script::default();
        *script.replies.lock().unwrap() = vec![(
            503,
            r#"{"error":{"code":"unavailable","message":"try later"}}"#.into(),
            vec![("x-correlation-id", "corr-1".into())],
        )];
        let hetzner = client(script).await;
        let err = hetzner.wait_actions(&[ActionId(1)]).await.unwrap_err();
        assert_eq!(err.code.as_deref(), Some("unavailable"));
        assert_eq!(err.status, Some(503));
        assert_eq!(err.correlation_id.as_deref(), Some("corr-1"));
        assert_eq!(err.class(), crate::ErrorClass::Retryable);
    }

    #[tokio::test]
    async fn nothing_to_wait_for_sends_nothing() {
        let script = scripted::Script::default();
        *script.replies.lock().unwrap() = vec![(500, String::new(), vec![])];
        let hetzner = client(script.clone()).await;
        hetzner.wait_actions(&[]).await.unwrap();
        assert!(script.queries.lock().unwrap().is_empty());
    }

    #[test]
    fn poll_interval_grows_to_the_cap() {
        let mut d = Duration::from_secs(1);
        let mut total = Duration::ZERO;
        let mut polls = 0;
        while total < Duration::from_secs(75) {
            total += d;
            polls += 1;
            d = next_interval(d, Duration::from_secs(10));
        }
        // A 75 s server create with the defaults (1 s, x1.5, 10 s cap).
        assert_eq!(polls, 12);
        assert_eq!(d, Duration::from_secs(10));
        assert_eq!(
            next_interval(Duration::from_secs(3), Duration::from_secs(2)),
            Duration::from_secs(2)
        );
    }

    #[tokio::test]
    async fn concurrent_waiters_share_one_poll() {
        let script = scripted::Script::default();
        *script.replies.lock().unwrap() = vec![
            (
                200,
                body(&[(1, "running"), (2, "running"), (3, "running")]),
                vec![],
            ),
            (
                200,
                body(&[(1, "success"), (2, "running"), (3, "success")]),
                vec![],
            ),
            (200, body(&[(2, "success")]), vec![]),
        ];
        let hetzner = client(script.clone()).await;
        let (a, b) = tokio::join!(
            hetzner.wait_actions(&[ActionId(1), ActionId(3)]),
            hetzner.wait_actions(&[ActionId(2)])
        );
        a.unwrap();
        b.unwrap();
        let queries = script.queries.lock().unwrap().clone();
        assert_eq!(
            queries,
            [
                "id=1&id=2&id=3&per_page=50",
                "id=1&id=2&id=3&per_page=50",
                "id=2&per_page=50"
            ]
        );
        // Nothing is left behind in the shared state.
        let st = hetzner.inner.waiter.lock();
        assert!(st.interest.is_empty() && st.done.is_empty() && !st.polling);
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaves_no_trace() {
        let script = scripted::Script::default();
        *script.replies.lock().unwrap() = vec![(200, body(&[(1, "running")]), vec![])];
        let hetzner = client(script).await;
        let waited = tokio::time::timeout(
            std::time::Duration::from_millis(30),
            hetzner.wait_actions(&[ActionId(1)]),
        )
        .await;
        assert!(waited.is_err(), "still running, so the timeout fires");
        let st = hetzner.inner.waiter.lock();
        assert!(st.interest.is_empty() && st.done.is_empty() && !st.polling);
    }
}
