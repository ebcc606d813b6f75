//! Glue between the runtime and the activities: running an activity as a journaled step, mapping
//! each activity crate's error class onto the runtime's, and converting the spec's vocabulary
//! (`Role`, `Arch`) into the activities' (this is the only place those conversions live).

use std::future::Future;

use hk8s_hetzner::HetznerError;
use hk8s_kube::KubeError;
use hk8s_runtime::{Ctx, RetryPolicy, StepError, WorkflowError};
use hk8s_talos::TalosError;
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
    let mut message = e.to_string();
    if e.status == Some(403) && matches!(e.code.as_deref(), Some("token_readonly" | "forbidden")) {
        message.push_str(
            " (HCLOUD_TOKEN lacks the permission for this change: use an API token with \"Read & Write\" permission)",
        );
    }
    match e.class() {
        hk8s_hetzner::ErrorClass::Retryable => StepError::retryable(message),
        hk8s_hetzner::ErrorClass::Permanent => StepError::permanent(message),
        hk8s_hetzner::ErrorClass::RateLimited { until } => StepError::rate_limited(until, message),
        hk8s_hetzner::ErrorClass::CapacityUnavailable => StepError::permanent(format!(
            "{message} (Hetzner has no capacity for this server type here; choose another type or location)"
        )),
    }
}

/// Maps an SSH error onto the runtime's classes.
pub fn ssh_error(e: hk8s_ssh::SshError) -> StepError {
    match e.class() {
        hk8s_ssh::ErrorClass::Retryable => StepError::retryable(e.to_string()),
        hk8s_ssh::ErrorClass::Permanent => StepError::permanent(e.to_string()),
    }
}

/// Maps a Kubernetes error onto the runtime's classes.
pub fn kube_error(e: KubeError) -> StepError {
    match e.class() {
        hk8s_kube::ErrorClass::Retryable => StepError::retryable(e.to_string()),
        hk8s_kube::ErrorClass::Permanent => StepError::permanent(e.to_string()),
    }
}

/// Maps a Talos error onto the runtime's classes.
pub fn talos_error(e: TalosError) -> StepError {
    match e.class() {
        hk8s_talos::ErrorClass::Retryable => StepError::retryable(e.to_string()),
        hk8s_talos::ErrorClass::Permanent => StepError::permanent(e.to_string()),
    }
}

impl From<Role> for hk8s_hetzner::Role {
    fn from(role: Role) -> Self {
        match role {
            Role::ControlPlane => hk8s_hetzner::Role::ControlPlane,
            Role::Worker => hk8s_hetzner::Role::Worker,
        }
    }
}

impl From<hk8s_hetzner::Role> for Role {
    fn from(role: hk8s_hetzner::Role) -> Self {
        match role {
            hk8s_hetzner::Role::ControlPlane => Role::ControlPlane,
            hk8s_hetzner::Role::Worker => Role::Worker,
        }
    }
}

impl From<Role> for hk8s_talos_config::Role {
    fn from(role: Role) -> Self {
        match role {
            Role::ControlPlane => hk8s_talos_config::Role::ControlPlane,
            Role::Worker => hk8s_talos_config::Role::Worker,
        }
    }
}

impl From<Arch> for hk8s_hetzner::Arch {
    fn from(arch: Arch) -> Self {
        match arch {
            Arch::X86 => hk8s_hetzner::Arch::Amd64,
            Arch::Arm => hk8s_hetzner::Arch::Arm64,
        }
    }
}

/// The Talos name of an architecture (`amd64`, `arm64`): the `arch=` image label value.
pub fn talos_arch_name(arch: Arch) -> &'static str {
    hk8s_hetzner::Arch::from(arch).label_value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_conversions_round_trip() {
        for role in [Role::ControlPlane, Role::Worker] {
            assert_eq!(Role::from(hk8s_hetzner::Role::from(role)), role);
            assert_eq!(
                hk8s_hetzner::Role::from(role).to_string(),
                hk8s_hetzner::Role::from(role).label_value()
            );
        }
    }

    #[test]
    fn arch_conversions_keep_hetzner_names() {
        for arch in [Arch::X86, Arch::Arm] {
            assert_eq!(
                hk8s_hetzner::Arch::from(arch).hetzner_name(),
                arch.hetzner_name()
            );
        }
        assert_eq!(talos_arch_name(Arch::Arm), "arm64");
    }
}
