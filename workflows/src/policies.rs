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

/// The policy of steps that wait for machines (boot, install, etcd): patient, no attempt limit.
pub fn default_wait_policy() -> RetryPolicy {
    RetryPolicy::default()
        .with_initial(Duration::from_secs(2))
        .with_multiplier(1.5)
        .with_max_interval(Duration::from_secs(15))
        .with_max_attempts(None)
        .with_max_elapsed(Some(Duration::from_secs(30 * 60)))
}
