//! The facade: one client that paces, converts errors and pages through lists.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hcloud::apis::configuration::Configuration;
use hcloud::models;
use tokio::time::Instant;

use crate::actions::{ActionId, Waiter, pending_ids};
use crate::config::{DEFAULT_ENDPOINT, HetznerConfig};
use crate::error::{ErrorKind, HetznerError};
use crate::pacing::{Pacer, RequestGate};

/// The Hetzner Cloud facade every activity goes through.
///
/// Cheap to clone (one `Arc`); share one per process so that pacing covers every call.
#[derive(Clone)]
pub struct Hetzner {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The `hcloud` crate's configuration (holds the token; never printed).
    pub(crate) cfg: Configuration,
    /// The API's base URL (shown by `Debug`).
    pub(crate) base_url: String,
    /// Pacing and request count, shared with the waiter.
    pub(crate) gate: Arc<RequestGate>,
    /// The shared action waiter (it sends its own polls over the same reqwest client).
    pub(crate) waiter: Waiter,
}

impl fmt::Debug for Hetzner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hcloud Configuration derives Debug including the bearer token, so it is
        // deliberately left out.
        f.debug_struct("Hetzner")
            .field("base_url", &self.inner.base_url)
            .field("requests", &self.requests_sent())
            .finish_non_exhaustive()
    }
}

impl Hetzner {
    /// Builds the facade: a rustls reqwest client shared by the `hcloud` crate and the
    /// facade's own requests, the endpoint mapping and the pacing bucket.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] if the endpoint is not an `http(s)` URL or the HTTP client
    /// cannot be built.
    pub fn new(config: HetznerConfig) -> Result<Hetzner, HetznerError> {
        let base_url = config.base_url();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(HetznerError::new(
                ErrorKind::Config,
                "configure hetzner client",
                format!("endpoint {base_url:?} is not an http(s) url"),
            ));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("hk8s/", env!("CARGO_PKG_VERSION")))
            .timeout(config.request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| HetznerError::from_reqwest("build http client", e))?;
        let mut cfg = Configuration {
            client: http.clone(),
            bearer_access_token: Some(config.token.expose().to_string()),
            user_agent: Some(concat!("hk8s/", env!("CARGO_PKG_VERSION")).to_string()),
            ..Configuration::default()
        };
        cfg.base_path_mapping
            .insert(DEFAULT_ENDPOINT.to_string(), base_url.clone());
        let gate = Arc::new(RequestGate::new(Pacer::new(config.pacing, Instant::now())));
        let waiter = Waiter::new(http, base_url.clone(), gate.clone(), &config);
        Ok(Hetzner {
            inner: Arc::new(Inner {
                cfg,
                base_url,
                gate,
                waiter,
            }),
        })
    }

    /// How many HTTP requests this client has sent (for "API calls per node").
    pub fn requests_sent(&self) -> u64 {
        self.inner.gate.requests_sent()
    }

    /// Waits until every action in `ids` has finished.
    ///
    /// # Flow
    ///
    /// All concurrent callers share one poll: one of them sleeps one poll interval,
    /// then asks for **every** id any caller is waiting for in one
    /// `GET /actions?id=…&id=…` (25 ids per call), records the results and wakes the
    /// others; the rest wait for that. A caller returns once all its ids succeeded.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::ActionFailed`] with the action's error code and message as soon as
    ///   one of the caller's actions ends in `error`.
    /// - [`ErrorKind::ActionTimeout`] (retryable) after the configured action timeout.
    /// - An API error if an id is missing from the reply, or the poll itself fails (for
    ///   the caller that sent it; the others poll again).
    ///
    /// A 429 during polling drains the pacing bucket and keeps polling.
    pub async fn wait_actions(&self, ids: &[ActionId]) -> Result<(), HetznerError> {
        self.inner.waiter.wait(ids).await
    }

    /// Waits for the running ones of `actions` (as returned by a mutating call).
    pub(crate) async fn wait_models<'a>(
        &self,
        actions: impl IntoIterator<Item = &'a models::Action>,
    ) -> Result<(), HetznerError> {
        let ids = pending_ids(actions)?;
        self.wait_actions(&ids).await
    }

    pub(crate) fn cfg(&self) -> &Configuration {
        &self.inner.cfg
    }

    /// Takes a pacing token and counts the request.
    pub(crate) async fn before_request(&self) {
        self.inner.gate.admit().await;
    }

    /// Runs one `hcloud` call: paces it, then converts its error.
    ///
    /// The future is lazy, so the request is only sent after the pacing token is taken.
    pub(crate) async fn run<T, E>(
        &self,
        operation: impl Into<String>,
        call: impl Future<Output = Result<T, hcloud::apis::Error<E>>>,
    ) -> Result<T, HetznerError> {
        self.before_request().await;
        match call.await {
            Ok(v) => Ok(v),
            Err(e) => {
                let is_429 =
                    matches!(&e, hcloud::apis::Error::ResponseError(r) if r.status.as_u16() == 429);
                // The crate drops RateLimit-Reset; without it, retry when the next token
                // arrives (Hetzner refills one per second).
                let wait = if is_429 {
                    self.inner.gate.pacer.drain(Instant::now())
                } else {
                    Duration::ZERO
                };
                let retry_at = Utc::now()
                    + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::seconds(1));
                let err = HetznerError::from_hcloud(operation, e, retry_at);
                tracing::debug!(error = %err, "hetzner call failed");
                Err(err)
            }
        }
    }

    /// Fetches every page of a list call (`per_page` 50, the API maximum).
    ///
    /// `fetch(page)` returns the call for one page; `split` returns the page's items and
    /// `meta.pagination.next_page`.
    pub(crate) async fn list_all<R, T, E, Fut>(
        &self,
        operation: &str,
        mut fetch: impl FnMut(i64) -> Fut,
        split: impl Fn(R) -> (Vec<T>, Option<i64>),
    ) -> Result<Vec<T>, HetznerError>
    where
        Fut: Future<Output = Result<R, hcloud::apis::Error<E>>>,
    {
        let mut out = Vec::new();
        let mut page = 1;
        loop {
            let resp = self.run(operation, fetch(page)).await?;
            let (items, next) = split(resp);
            out.extend(items);
            match next {
                Some(next) if next > page => page = next,
                _ => return Ok(out),
            }
        }
    }
}

impl Hetzner {
    /// The one "get or create" flow behind every `ensure_*` (in the spirit of
    /// kube-client's `Api::entry`).
    ///
    /// # Flow
    ///
    /// 1. `find()`; a found resource goes to `adopt` (which checks ownership and fixes
    ///    drift).
    /// 2. Missing: `create()` (the `POST` alone); its reply goes to `created`.
    /// 3. The create answered `uniqueness_error`/`conflict` (another caller, or an
    ///    earlier attempt, won the race): `find()` again and `adopt` what it finds; if
    ///    it still finds nothing, the create's error is returned.
    ///
    /// Errors of `created` and `adopt` are returned as they are (never "look again").
    pub(crate) async fn ensure<Found, Reply, T, FindFut, CreateFut, CreatedFut, AdoptFut>(
        &self,
        what: &str,
        find: impl Fn() -> FindFut,
        create: impl FnOnce() -> CreateFut,
        created: impl FnOnce(Reply) -> CreatedFut,
        adopt: impl Fn(Found) -> AdoptFut,
    ) -> Result<T, HetznerError>
    where
        FindFut: Future<Output = Result<Option<Found>, HetznerError>>,
        CreateFut: Future<Output = Result<Reply, HetznerError>>,
        CreatedFut: Future<Output = Result<T, HetznerError>>,
        AdoptFut: Future<Output = Result<T, HetznerError>>,
    {
        if let Some(found) = find().await? {
            return adopt(found).await;
        }
        match create().await {
            Ok(reply) => created(reply).await,
            Err(e) if e.is_uniqueness_or_conflict() => {
                tracing::debug!(what, error = %e, "create lost a race; looking again");
                match find().await? {
                    Some(found) => adopt(found).await,
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }
}

/// Items per page for list calls.
pub(crate) const PER_PAGE: i64 = 50;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiToken;

    #[test]
    fn debug_hides_the_token() {
        let config = HetznerConfig::new(ApiToken::new("tok-very-secret"))
            .with_endpoint("http://127.0.0.1:9/v1");
        let client = Hetzner::new(config).unwrap();
        let shown = format!("{client:?}");
        assert!(!shown.contains("tok-very-secret"), "{shown}");
        assert!(shown.contains("127.0.0.1:9"));
    }

    #[test]
    fn endpoint_is_mapped() {
        let config = HetznerConfig::new(ApiToken::new("t")).with_endpoint("http://127.0.0.1:9/v1/");
        let client = Hetzner::new(config).unwrap();
        assert_eq!(
            client.cfg().get_default_base_path(),
            "http://127.0.0.1:9/v1"
        );
    }

    #[test]
    fn bad_endpoint_is_a_config_error() {
        let config = HetznerConfig::new(ApiToken::new("t")).with_endpoint("127.0.0.1:9");
        let err = Hetzner::new(config).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Config);
    }

    #[tokio::test]
    async fn connection_refused_is_retryable_and_token_free() {
        // A port that was just free: bind, remember, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = HetznerConfig::new(ApiToken::new("tok-very-secret"))
            .with_endpoint(format!("http://127.0.0.1:{port}/v1"));
        let client = Hetzner::new(config).unwrap();
        let err = client
            .run(
                "list servers",
                hcloud::apis::servers_api::list_servers(client.cfg(), Default::default()),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Transport);
        assert_eq!(err.class(), crate::ErrorClass::Retryable);
        let mut chain = format!("{err} {err:?}");
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            chain.push_str(&s.to_string());
            source = s.source();
        }
        assert!(!chain.contains("tok-very-secret"), "{chain}");
        assert_eq!(client.requests_sent(), 1);
    }
}
