//! Client configuration: endpoint, token, pacing and action polling.
//!
//! The crate never reads the environment; the CLI passes the values of
//! `HCLOUD_TOKEN` and `HCLOUD_ENDPOINT` in.

use std::fmt;
use std::time::Duration;

/// The public Hetzner Cloud API base URL, the one the `hcloud` crate has built in.
pub const DEFAULT_ENDPOINT: &str = "https://api.hetzner.cloud/v1";

/// A Hetzner Cloud API token.
///
/// It is neither `Serialize` nor shown by `Debug` or `Display`, so it cannot leak
/// into the journal, logs or error messages.
#[derive(Clone)]
pub struct ApiToken(String);

impl ApiToken {
    /// Wraps a token value (the content of `HCLOUD_TOKEN`).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw token, for the `Authorization` header only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

/// Client-side request pacing: a token bucket refilled at `per_hour / 3600` tokens per
/// second that holds at most `burst` tokens.
///
/// Hetzner's own bucket holds 3600 requests per project and refills one per second;
/// pacing below it keeps a big create from ever seeing a 429, and leaves `reserve`
/// requests of the project's bucket to the CCM and the CSI driver that share the token.
/// `burst` only applies until the first answer reports the real budget
/// (`RateLimit-Limit`, `RateLimit-Remaining`), which the bucket then follows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pacing {
    /// Sustained request rate, in requests per hour.
    pub per_hour: u32,
    /// How many requests may be sent back to back before the API reported its budget.
    pub burst: u32,
    /// Requests of the project's bucket never spent by this client (left for the CCM, the
    /// CSI driver and other users of the project).
    pub reserve: u32,
}

impl Pacing {
    /// The project default: 3600 requests per hour, a burst of 100 before the budget is
    /// known, a reserve of 300.
    pub const DEFAULT: Pacing = Pacing {
        per_hour: 3600,
        burst: 100,
        reserve: DEFAULT_RESERVE,
    };

    /// A pacing that effectively never waits (tests against the twin).
    pub const UNLIMITED: Pacing = Pacing {
        per_hour: u32::MAX,
        burst: u32::MAX,
        reserve: 0,
    };

    /// The default pacing with another reserve (`HK8S_API_RESERVE`).
    #[must_use]
    pub fn with_reserve(mut self, reserve: u32) -> Pacing {
        self.reserve = reserve;
        self
    }
}

/// Requests of the project's bucket left to the CCM and CSI driver by default: about five
/// minutes of their polling at 1 request per second, a twelfth of the default 3600.
pub const DEFAULT_RESERVE: u32 = 300;

impl Default for Pacing {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Everything [`crate::Hetzner::new`] needs.
#[derive(Clone, Debug)]
pub struct HetznerConfig {
    /// Base URL including `/v1` (`HCLOUD_ENDPOINT`, e.g. `http://127.0.0.1:PORT/v1`);
    /// `None` means [`DEFAULT_ENDPOINT`].
    pub endpoint: Option<String>,
    /// The API token (`HCLOUD_TOKEN`).
    pub token: ApiToken,
    /// Client-side request pacing.
    pub pacing: Pacing,
    /// Interval before the first `GET /actions?id=…` poll; it grows by half each poll.
    pub action_poll_interval: Duration,
    /// The longest interval between two polls (the growth stops here).
    pub action_poll_max_interval: Duration,
    /// How long [`crate::Hetzner::wait_actions`] waits before it gives up (retryable).
    pub action_timeout: Duration,
    /// Timeout of a single HTTP request.
    pub request_timeout: Duration,
}

impl HetznerConfig {
    /// A configuration with the project defaults: action polls start at 1 s (as
    /// hcloud-python) and grow by half up to 10 s, so a 60–90 s server create costs
    /// about 12 polls instead of 75; a 30 min action timeout (custom-image server
    /// creates can take >10 min); default pacing.
    pub fn new(token: ApiToken) -> Self {
        Self {
            endpoint: None,
            token,
            pacing: Pacing::DEFAULT,
            action_poll_interval: Duration::from_secs(1),
            action_poll_max_interval: Duration::from_secs(10),
            action_timeout: Duration::from_secs(30 * 60),
            request_timeout: Duration::from_secs(60),
        }
    }

    /// Sets the endpoint (`HCLOUD_ENDPOINT`).
    #[must_use]
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Sets the pacing.
    #[must_use]
    pub fn with_pacing(mut self, pacing: Pacing) -> Self {
        self.pacing = pacing;
        self
    }

    /// Sets the first action poll interval (the maximum is raised to it if lower).
    #[must_use]
    pub fn with_action_poll_interval(mut self, interval: Duration) -> Self {
        self.action_poll_interval = interval;
        self.action_poll_max_interval = self.action_poll_max_interval.max(interval);
        self
    }

    /// Sets the longest action poll interval.
    #[must_use]
    pub fn with_action_poll_max_interval(mut self, interval: Duration) -> Self {
        self.action_poll_max_interval = interval;
        self
    }

    /// The effective base URL without a trailing slash.
    pub fn base_url(&self) -> String {
        self.endpoint
            .as_deref()
            .unwrap_or(DEFAULT_ENDPOINT)
            .trim_end_matches('/')
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_never_shows_in_debug() {
        let config = HetznerConfig::new(ApiToken::new("s3cr3t-token"));
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cr3t-token"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn base_url_defaults_and_trims() {
        let config = HetznerConfig::new(ApiToken::new("t"));
        assert_eq!(config.base_url(), DEFAULT_ENDPOINT);
        let config = config.with_endpoint("http://127.0.0.1:8080/v1/");
        assert_eq!(config.base_url(), "http://127.0.0.1:8080/v1");
    }
}
