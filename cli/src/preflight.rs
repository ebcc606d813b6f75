//! The preflight, before a run is journaled and before every resume: a handful of read-only
//! calls (`GET /locations`, `/server_types`, `/load_balancer_types`, and for create-cluster the
//! cluster's network) that prove the endpoint answers, the token is accepted and the spec can be
//! ordered, and that this machine holds the cluster's secrets bundle.
//!
//! It runs before the run exists so that a bad token, an unreachable endpoint or a type Hetzner
//! no longer sells leaves nothing behind, not even a failed run in the journal; a resume runs
//! it again because the token, the catalog or the cluster may have changed since.

use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use hk8s_hetzner::{ErrorKind, Hetzner, HetznerError};
use hk8s_workflows::ClusterSpec;
use hk8s_workflows::preflight::{self, Orders};

use crate::exit::{Failure, usage};

/// The exact sentence a rejected token gives.
pub const TOKEN_REJECTED: &str = "HCLOUD_TOKEN was rejected by the Hetzner API";

/// Parses `--api-timeout` / `HK8S_API_TIMEOUT`: seconds, optionally with an `s` suffix
/// (`30`, `2.5s`), more than 0 and at most one hour.
pub fn parse_api_timeout(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let number = t.strip_suffix('s').unwrap_or(t).trim();
    match number.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= 3600.0 => Ok(Duration::from_secs_f64(secs)),
        _ => Err(format!(
            "{text:?} is not a number of seconds between 0 and 3600 (e.g. 30 or 2.5s)"
        )),
    }
}

/// Reads the catalog (this proves reachability and the token) and, with `spec` and `orders`,
/// checks the spec against it: warnings are printed, problems are all reported in one error.
///
/// # Errors
/// 401 → [`TOKEN_REJECTED`] (exit 2); unreachable within `bound` → "cannot reach the Hetzner
/// API at URL: cause" (exit 1); spec problems → every field named (exit 2).
pub async fn check(
    hetzner: &Hetzner,
    spec: Option<&ClusterSpec>,
    orders: Option<Orders>,
    bound: Duration,
) -> Result<(), Failure> {
    let catalog = hetzner.read_catalog(bound).await.map_err(api_failure)?;
    let (Some(spec), Some(orders)) = (spec, orders) else {
        return Ok(());
    };
    let findings = preflight::check(spec, &catalog, chrono::Utc::now(), &orders);
    for w in &findings.warnings {
        eprintln!("warning: {w}");
    }
    if findings.errors.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = findings.errors.iter().map(|e| format!("  - {e}")).collect();
    Err(usage(anyhow!(
        "cluster {} cannot be ordered as specified ({} problem(s); nothing was created):\n{}",
        spec.cluster_name,
        findings.errors.len(),
        list.join("\n")
    )))
}

/// Stops a create-cluster run at once when the cluster's network names another secrets bundle
/// than the one this run would use (`--secrets FILE`, else the cluster's state folder), or
/// when this machine has none for an existing cluster.
///
/// # Errors
/// The "created with another secrets bundle" sentence (exit 2); API errors.
pub async fn check_secrets_identity(
    hetzner: &Hetzner,
    cluster: &str,
    cluster_dir: &Path,
    import: Option<&Path>,
) -> Result<(), Failure> {
    let Some(cloud) =
        hk8s_workflows::policies::retry_transient(|| hetzner.cluster_secrets_fingerprint(cluster))
            .await
            .map_err(api_failure)?
    else {
        return Ok(());
    };
    let local = hk8s_workflows::talos::local_secrets_fingerprint(cluster_dir, import)
        .map_err(|e| usage(anyhow!("--secrets: {e}")))?;
    match local {
        Some(local) if local == cloud => Ok(()),
        Some(_) => Err(usage(anyhow!(
            "{}",
            hk8s_workflows::talos::other_bundle_message(cluster, &cloud)
        ))),
        None => Err(usage(anyhow!(
            "{}",
            hk8s_workflows::talos::missing_bundle_message(cluster, &cloud)
        ))),
    }
}

/// A Hetzner error of a preflight call as the user should read it.
pub fn api_failure(e: HetznerError) -> Failure {
    if e.status == Some(401) {
        return usage(anyhow!(TOKEN_REJECTED));
    }
    if e.kind == ErrorKind::Transport {
        return Failure::Other(anyhow!("{e}"));
    }
    Failure::Other(
        anyhow::Error::new(e).context("the preflight check against the Hetzner API failed"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_timeouts_parse() {
        assert_eq!(parse_api_timeout("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_api_timeout(" 2.5s"), Ok(Duration::from_millis(2500)));
        for bad in ["0", "-1", "x", "", "7200"] {
            assert!(parse_api_timeout(bad).is_err(), "{bad}");
        }
    }
}
