//! Glue between the runtime and the activities: running an activity as a journaled step and
//! mapping its error class onto the runtime's.

use std::future::Future;

use hk8s_hetzner::HetznerError;
use hk8s_runtime::{Ctx, RetryPolicy, StepError, WorkflowError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::spec::{Arch, Role};

/// Runs a Hetzner activity as the journaled step `key` under `policy`.
pub async fn hetzner_step<I, T, F, Fut>(
    ctx: &Ctx,
    policy: &RetryPolicy,
    key: &str,
    input: &I,
    mut activity: F,
) -> Result<T, WorkflowError>
where
    I: Serialize + ?Sized,
    T: Serialize + DeserializeOwned,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, HetznerError>>,
{
    ctx.step(key, policy, input, |_attempt| {
        let fut = activity();
        async move { fut.await.map_err(hetzner_error) }
    })
    .await
}

/// Maps a Hetzner error onto the runtime's classes.
///
/// `CapacityUnavailable` is permanent for the step: Hetzner has no capacity for that server
/// type in that location, and only another type or location (a spec change) helps.
pub fn hetzner_error(e: HetznerError) -> StepError {
    let message = e.to_string();
    match e.class() {
        hk8s_hetzner::ErrorClass::Retryable => StepError::retryable(message),
        hk8s_hetzner::ErrorClass::Permanent => StepError::permanent(message),
        hk8s_hetzner::ErrorClass::RateLimited { until } => StepError::rate_limited(until, message),
        hk8s_hetzner::ErrorClass::CapacityUnavailable => StepError::permanent(format!(
            "{message} (Hetzner has no capacity for this server type here; choose another type or location)"
        )),
    }
}

/// The activities' name for a role.
pub fn hetzner_role(role: Role) -> hk8s_hetzner::Role {
    match role {
        Role::ControlPlane => hk8s_hetzner::Role::ControlPlane,
        Role::Worker => hk8s_hetzner::Role::Worker,
    }
}

/// The activities' name for an architecture.
pub fn talos_arch(arch: Arch) -> hk8s_hetzner::Arch {
    match arch {
        Arch::X86 => hk8s_hetzner::Arch::Amd64,
        Arch::Arm => hk8s_hetzner::Arch::Arm64,
    }
}
