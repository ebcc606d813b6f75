//! The retry policies a workflow's steps run under, shared by `create-cluster` and
//! `destroy-cluster`.

use std::time::Duration;

use hk8s_runtime::RetryPolicy;

/// The two policies of a workflow: one for cloud calls, one for steps that wait for machines.
#[derive(Debug, Clone, PartialEq)]
pub struct Policies {
    /// Steps that call an API and should succeed soon (the runtime's default policy).
    pub cloud: RetryPolicy,
    /// Steps that wait for machines or controllers (boot, install, etcd, addons).
    pub wait: RetryPolicy,
}

impl Default for Policies {
    fn default() -> Self {
        Policies {
            cloud: RetryPolicy::default(),
            wait: default_wait_policy(),
        }
    }
}

/// The policy of steps that wait for machines (boot, install, etcd, nodes and addons Ready):
/// a short fixed interval (1 s, no jitter: each step asks its own machine, so there is no herd
/// to spread) within a bounded budget of 30 minutes and no attempt limit. A machine that is
/// ready is noticed within a second instead of up to 15 s late, as exponential backoff did;
/// these polls go to the nodes' Talos and Kubernetes APIs, never to the Hetzner API budget.
pub fn default_wait_policy() -> RetryPolicy {
    RetryPolicy::default()
        .with_initial(WAIT_INTERVAL)
        .with_multiplier(1.0)
        .with_max_interval(WAIT_INTERVAL)
        .with_jitter(false)
        .with_max_attempts(None)
        .with_max_elapsed(Some(Duration::from_secs(30 * 60)))
}

/// The interval of [`default_wait_policy`].
pub const WAIT_INTERVAL: Duration = Duration::from_secs(1);

/// Runs a Hetzner call that is not a step (an observation, the cluster lock, a pre-run check)
/// and retries it while its error is transient (`429`, `5xx`, `locked`, connection errors):
/// exponential backoff from 1 s, at most 6 retries. A permanent error returns at once.
///
/// # Errors
/// The call's last error.
pub async fn retry_transient<T, F, Fut>(call: F) -> Result<T, hk8s_hetzner::HetznerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, hk8s_hetzner::HetznerError>>,
{
    use backon::Retryable as _;
    call.retry(backon::ExponentialBuilder::default().with_max_times(6))
        .when(|e| !matches!(e.class(), hk8s_hetzner::ErrorClass::Permanent))
        .await
}
