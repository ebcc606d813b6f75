//! The Talos half of `create-cluster`: secrets, machine configs, maintenance-mode apply,
//! bootstrap, etcd membership, talosconfig and kubeconfig.
//!
//! Secrets and machine configs never enter the journal: steps journal fingerprints (sha256) of
//! them and file paths, and the material itself lives in the cluster's state folder (0600).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use hk8s_runtime::{Ctx, RetryPolicy, StepError, WorkflowError};
use hk8s_talos::{ApplyMode, BootstrapOutcome, TalosClient, TalosCredentials};
use hk8s_talos_config::{
    Contract, MachineConfigInput, SecretsBundle, SecretsStore, Talosconfig, generate_machine_config,
};
/// The files in the cluster's state folder (secrets bundle, talosconfig), and the 0600 atomic
/// write they are made with.
pub use hk8s_talos_config::{SECRETS_FILE, TALOSCONFIG_FILE, write_private};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::activity::talos_error;
use crate::slot::Slot;
use crate::spec::{ClusterSpec, CniType, Role};

/// The Talos API port.
const TALOS_PORT: u16 = 50000;
/// The kubeconfig file in the cluster's state folder.
pub const KUBECONFIG_FILE: &str = "kubeconfig";

/// A node as the Talos steps see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TalosNode {
    /// Server name, also the Talos hostname.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Public IPv4: where the Talos API listens.
    pub public_ip: Ipv4Addr,
}

/// Files the Talos steps produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TalosFiles {
    /// `talosconfig` (0600).
    pub talosconfig: PathBuf,
    /// `kubeconfig` (0600).
    pub kubeconfig: PathBuf,
    /// The control plane that was bootstrapped.
    pub bootstrap_node: String,
}

/// `sha256:<hex>` of some bytes: what the journal keeps instead of secret material.
pub fn fingerprint(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Step output of `talos/secrets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SecretsRecord {
    fingerprint: String,
    created: bool,
}

/// The short fingerprint of a secrets bundle that the cluster's network carries as its
/// `secrets-fingerprint` label: the first 16 hex digits of the sha256 of its four CA
/// certificates (OS, Kubernetes, etcd, aggregator). Public material only, so it may be a label.
pub fn secrets_fingerprint(bundle: &SecretsBundle) -> String {
    let mut hash = Sha256::new();
    for ca in [
        bundle.os_ca(),
        bundle.kubernetes_ca(),
        bundle.etcd_ca(),
        bundle.aggregator_ca(),
    ] {
        hash.update(ca.cert_pem().as_bytes());
    }
    hex::encode(hash.finalize())[..16].to_string()
}

/// The fingerprint of the bundle a create-cluster run would use: `import`'s (`--secrets FILE`),
/// else the one in the cluster's state folder; `Ok(None)` when there is none yet.
///
/// # Errors
/// The file cannot be read or is not a valid bundle (the message names it).
pub fn local_secrets_fingerprint(
    dir: &Path,
    import: Option<&Path>,
) -> Result<Option<String>, String> {
    let bundle = match import {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read the secrets bundle {}: {e}", file.display()))?;
            Some(
                SecretsBundle::from_yaml(&text, &file.display().to_string())
                    .map_err(|e| e.to_string())?,
            )
        }
        None => SecretsStore::load(dir).map_err(|e| e.to_string())?,
    };
    Ok(bundle.as_ref().map(secrets_fingerprint))
}

/// The sentence a run without any bundle for an existing cluster stops with.
pub fn missing_bundle_message(cluster: &str, cloud_fingerprint: &str) -> String {
    format!(
        "cluster {cluster} exists (secrets fingerprint {cloud_fingerprint}) but this machine has no secrets bundle for it; import it with --secrets"
    )
}

/// The sentence a run holding another bundle than the cluster's stops with.
pub fn other_bundle_message(cluster: &str, cloud_fingerprint: &str) -> String {
    format!(
        "cluster {cluster} was created with another secrets bundle (fingerprint {cloud_fingerprint}); import it with --secrets"
    )
}

/// Step key of the secrets bundle, once it is stored.
const SECRETS_STEP: &str = "talos/secrets";

/// Step output of `talos/secrets-source`: whether this run generates the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SecretsSource {
    generate: bool,
}

/// The bundle a run will use, decided before any server exists: a bundle to generate has its
/// keys (an RSA-4096 among them) made on a blocking thread while the cloud is made, since no
/// server needs them before its configuration.
pub struct PendingSecrets {
    keygen: std::sync::Mutex<Option<tokio::task::JoinHandle<Result<SecretsBundle, String>>>>,
}

/// Step `talos/secrets-source`: imports `--secrets FILE`, finds the stored bundle, or decides to
/// generate one, once per cluster, before any server exists.
///
/// `cloud_fingerprint` reads the `secrets-fingerprint` label of the cluster's network (the
/// cluster's identity in Hetzner): a bundle with another fingerprint stops the run, and no
/// bundle is generated for a cluster that has one. `servers_exist` is asked only when no bundle
/// is there and the cloud names none: servers without their bundle are an error, never a
/// reason to generate a new one (they would reject every config made from it).
pub async fn plan_secrets<F, Fut, G, Gut>(
    ctx: &Ctx,
    policy: &RetryPolicy,
    spec: &ClusterSpec,
    dir: &Path,
    import: Option<&Path>,
    cloud_fingerprint: G,
    servers_exist: F,
) -> Result<PendingSecrets, WorkflowError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<bool, StepError>>,
    G: Fn() -> Gut,
    Gut: std::future::Future<Output = Result<Option<String>, StepError>>,
{
    let contract = Contract::from_talos_version(&spec.talos.version)
        .map_err(|e| WorkflowError::failed(format!("talos.version: {e}")))?;
    // Local paths stay out of the step input: a resume on another machine (its own state
    // folder) replays the step. Whether a bundle was imported is part of the intent.
    let input = (&spec.cluster_name, import.is_some());
    let source: SecretsSource = ctx
        .step("talos/secrets-source", policy, &input, |_| async {
            let cloud = cloud_fingerprint().await?;
            let other = |fp: &str| match &cloud {
                Some(c) if c != fp => Err(StepError::permanent(other_bundle_message(&spec.cluster_name, c))),
                _ => Ok(()),
            };
            let loaded = SecretsStore::load(dir).map_err(|e| StepError::permanent(e.to_string()))?;
            if let Some(file) = import {
                if let Some(fp) = local_secrets_fingerprint(dir, Some(file)).map_err(StepError::permanent)? {
                    other(&fp)?;
                }
                SecretsStore::import(dir, file).map_err(|e| StepError::permanent(e.to_string()))?;
                return Ok(SecretsSource { generate: false });
            }
            if let Some(bundle) = loaded {
                other(&secrets_fingerprint(&bundle))?;
                return Ok(SecretsSource { generate: false });
            }
            if let Some(c) = &cloud {
                return Err(StepError::permanent(missing_bundle_message(&spec.cluster_name, c)));
            }
            if servers_exist().await? {
                return Err(StepError::permanent(format!(
                    "servers of cluster {} exist but its secrets bundle {} is missing; restore the file \
                     or pass --secrets FILE (a new bundle would not match the nodes' configuration)",
                    spec.cluster_name,
                    SecretsStore::path(dir).display()
                )));
            }
            Ok(SecretsSource { generate: true })
        })
        .await?;
    let keygen = (source.generate && !ctx.finished_before(SECRETS_STEP)).then(|| {
        tokio::task::spawn_blocking(move || {
            SecretsBundle::generate(contract, SystemTime::now()).map_err(|e| e.to_string())
        })
    });
    Ok(PendingSecrets {
        keygen: std::sync::Mutex::new(keygen),
    })
}

/// Step `talos/secrets`: the bundle [`plan_secrets`] decided on, stored in the state folder
/// (a generated one written once, 0600, never overwritten). Returns it (kept in memory only).
///
/// Every execution reads the bundle from disk and checks it against the journaled
/// fingerprint; a resume also compares it with the network's `secrets-fingerprint` label
/// (another operator may have made the cluster with another bundle while the run was stopped;
/// on the first execution the labelling step that follows compares).
pub async fn ensure_secrets<G, Gut>(
    ctx: &Ctx,
    policy: &RetryPolicy,
    spec: &ClusterSpec,
    dir: &Path,
    import: Option<&Path>,
    pending: PendingSecrets,
    cloud_fingerprint: G,
) -> Result<SecretsBundle, WorkflowError>
where
    G: Fn() -> Gut,
    Gut: std::future::Future<Output = Result<Option<String>, StepError>>,
{
    let replayed = ctx.finished_before(SECRETS_STEP);
    let input = (&spec.cluster_name, import.is_some());
    let record: SecretsRecord = ctx
        .step(SECRETS_STEP, policy, &input, |_| async {
            let stored = SecretsStore::load(dir).map_err(|e| StepError::permanent(e.to_string()))?;
            let (bundle, created) = match stored {
                Some(bundle) => (bundle, false),
                None => {
                    let keygen = pending.keygen.lock().ok().and_then(|mut k| k.take());
                    let Some(keygen) = keygen else {
                        return Err(StepError::permanent(format!(
                            "the secrets bundle {} of cluster {} is gone; restore it or pass --secrets FILE",
                            SecretsStore::path(dir).display(),
                            spec.cluster_name
                        )));
                    };
                    let bundle = keygen
                        .await
                        .map_err(|e| StepError::permanent(format!("generating the secrets bundle: {e}")))?
                        .map_err(|e| StepError::permanent(format!("generating the secrets bundle: {e}")))?;
                    SecretsStore::save_new(dir, &bundle).map_err(|e| StepError::permanent(e.to_string()))?;
                    (bundle, true)
                }
            };
            let yaml = bundle.to_yaml().map_err(|e| StepError::permanent(e.to_string()))?;
            Ok(SecretsRecord { fingerprint: fingerprint(yaml.as_bytes()), created })
        })
        .await?;
    // Every execution reads the bundle from disk; the journal only knows its fingerprint.
    let bundle = SecretsStore::load(dir)
        .map_err(|e| WorkflowError::failed(e.to_string()))?
        .ok_or_else(|| {
            WorkflowError::failed(format!(
                "the secrets bundle {} of cluster {} is gone (journaled as {}); restore it or pass --secrets FILE",
                SecretsStore::path(dir).display(),
                spec.cluster_name,
                record.fingerprint
            ))
        })?;
    let yaml = bundle
        .to_yaml()
        .map_err(|e| WorkflowError::failed(e.to_string()))?;
    if fingerprint(yaml.as_bytes()) != record.fingerprint {
        return Err(WorkflowError::failed(format!(
            "the secrets bundle {} changed since this run journaled it ({}); resume with the original file or start a fresh run",
            SecretsStore::path(dir).display(),
            record.fingerprint
        )));
    }
    let fp = secrets_fingerprint(&bundle);
    if replayed
        && let Some(cloud) = cloud_fingerprint()
            .await
            .map_err(|e| WorkflowError::failed(e.message))?
        && cloud != fp
    {
        return Err(WorkflowError::failed(other_bundle_message(
            &spec.cluster_name,
            &cloud,
        )));
    }
    for secret in [
        bundle.bootstrap_token(),
        bundle.trustd_token(),
        bundle.cluster_secret(),
    ] {
        ctx.scrubber().register(secret.expose());
    }
    Ok(bundle)
}

/// Step `talos/talosconfig<pass>`: writes the talosconfig (endpoints = control-plane public IPs)
/// unless the file already holds one for this bundle and these endpoints. Returns the
/// credentials. `pass` is the suffix of the ensure pass that made the servers (`""` on the
/// first): servers made again have new addresses, so a new pass writes the file again.
pub async fn ensure_talosconfig(
    ctx: &Ctx,
    policy: &RetryPolicy,
    spec: &ClusterSpec,
    dir: &Path,
    bundle: &SecretsBundle,
    nodes: &[TalosNode],
    pass: &str,
) -> Result<(PathBuf, TalosCredentials), WorkflowError> {
    let path = dir.join(TALOSCONFIG_FILE);
    let endpoints: Vec<String> = nodes
        .iter()
        .filter(|n| n.role == Role::ControlPlane)
        .map(|n| n.public_ip.to_string())
        .collect();
    let all: Vec<String> = nodes.iter().map(|n| n.public_ip.to_string()).collect();
    // The file name, not its local path: a resume on another machine replays the step.
    let input = (
        TALOSCONFIG_FILE,
        &endpoints,
        &all,
        bundle.os_ca().cert_pem(),
    );
    let _: PathBuf = ctx
        .step(
            &format!("talos/talosconfig{pass}"),
            policy,
            &input,
            |_| async {
                if let Ok(text) = std::fs::read_to_string(&path)
                    && let Ok(existing) = Talosconfig::from_yaml(&text, &path.display().to_string())
                    && existing.ca_pem() == bundle.os_ca().cert_pem()
                    && existing.endpoints() == endpoints.as_slice()
                {
                    return Ok(path.clone());
                }
                let config = Talosconfig::new(
                    &spec.cluster_name,
                    endpoints.clone(),
                    all.clone(),
                    bundle,
                    SystemTime::now(),
                )
                .map_err(|e| StepError::permanent(e.to_string()))?;
                let yaml = config
                    .to_yaml()
                    .map_err(|e| StepError::permanent(e.to_string()))?;
                write_private(&path, yaml.as_bytes())
                    .map_err(|e| StepError::permanent(e.to_string()))?;
                Ok(path.clone())
            },
        )
        .await?;
    let text = std::fs::read_to_string(&path)
        .map_err(|e| WorkflowError::failed(format!("cannot read {}: {e}", path.display())))?;
    let config = Talosconfig::from_yaml(&text, &path.display().to_string())
        .map_err(|e| WorkflowError::failed(e.to_string()))?;
    let (cert_pem, key_pem) = config.client_identity_pem();
    let creds = TalosCredentials {
        ca_pem: config.ca_pem().to_string(),
        cert_pem,
        key_pem: key_pem.expose().to_string(),
    };
    Ok((path, creds))
}

/// The talosconfig credentials in the cluster's state folder.
///
/// # Errors
/// The file is missing or unreadable (the message names it).
pub fn load_credentials(dir: &Path) -> Result<TalosCredentials, String> {
    let path = dir.join(TALOSCONFIG_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let config =
        Talosconfig::from_yaml(&text, &path.display().to_string()).map_err(|e| e.to_string())?;
    let (cert_pem, key_pem) = config.client_identity_pem();
    Ok(TalosCredentials {
        ca_pem: config.ca_pem().to_string(),
        cert_pem,
        key_pem: key_pem.expose().to_string(),
    })
}

/// The machine config of one node, rendered (in memory only).
pub fn machine_config(
    spec: &ClusterSpec,
    bundle: &SecretsBundle,
    node: &TalosNode,
    endpoint_ip: Ipv4Addr,
) -> Result<Vec<u8>, WorkflowError> {
    machine_config_at(
        spec,
        bundle,
        node,
        endpoint_ip,
        &spec.talos.version,
        spec.kubernetes_version(),
        hk8s_talos_config::ComponentVersions::default(),
    )
}

/// The machine config of one node for a given Talos version (its installer image) and
/// Kubernetes versions (per component where they differ): what an upgrade applies.
pub fn machine_config_at(
    spec: &ClusterSpec,
    bundle: &SecretsBundle,
    node: &TalosNode,
    endpoint_ip: Ipv4Addr,
    talos_version: &str,
    kubernetes_version: &str,
    components: hk8s_talos_config::ComponentVersions,
) -> Result<Vec<u8>, WorkflowError> {
    let mut input = MachineConfigInput::hetzner(
        node.role.into(),
        &spec.cluster_name,
        endpoint_ip.to_string(),
        kubernetes_version,
        talos_version,
        Some(spec.talos.schematic_id().as_str()),
        spec.network.cidr.to_string(),
        &node.name,
    )
    .map_err(|e| WorkflowError::failed(format!("machine config of {}: {e}", node.name)))?;
    input.component_versions = components;
    input.pod_subnets = vec![spec.network.pod_cidr.to_string()];
    input.service_subnets = vec![spec.network.service_cidr.to_string()];
    input.cni = match spec.cni.cni_type {
        CniType::Cilium => hk8s_talos_config::Cni::Cilium,
        CniType::Flannel => hk8s_talos_config::Cni::Flannel,
    };
    let config = generate_machine_config(bundle, &input)
        .map_err(|e| WorkflowError::failed(format!("machine config of {}: {e}", node.name)))?;
    config
        .to_yaml()
        .map(String::into_bytes)
        .map_err(|e| WorkflowError::failed(format!("machine config of {}: {e}", node.name)))
}

fn addr(node: &TalosNode) -> SocketAddr {
    SocketAddr::from((node.public_ip, TALOS_PORT))
}

/// Step `talos/apply/<node>`: applies the node's config in maintenance mode. A node that already
/// left maintenance mode (it asks for a client certificate) and answers over mTLS with `creds`
/// counts as done; only then are the credentials awaited (the talosconfig is written once every
/// server exists).
pub async fn apply_config(
    ctx: &Ctx,
    policy: &RetryPolicy,
    node: &TalosNode,
    config: &[u8],
    creds: &Slot<TalosCredentials>,
) -> Result<(), WorkflowError> {
    let key = format!("talos/apply/{}", node.name);
    let input = (&node.name, node.public_ip, fingerprint(config));
    ctx.step(&key, policy, &input, |_| async {
        let client = TalosClient::maintenance(addr(node))
            .await
            .map_err(talos_error)?;
        match client.apply_configuration(config, ApplyMode::Auto).await {
            Ok(_) => Ok(()),
            Err(e) if e.needs_client_certificate() => {
                // Configured already (an earlier attempt applied it): prove it over mTLS.
                let secure = TalosClient::secure(addr(node), &creds.get().await)
                    .await
                    .map_err(talos_error)?;
                secure.version().await.map_err(talos_error)?;
                Ok(())
            }
            Err(e) => Err(talos_error(e)),
        }
    })
    .await
}

/// Step `talos/ready/<node>`: the node's secure API answers (installed, rebooted, configured).
pub async fn wait_secure(
    ctx: &Ctx,
    policy: &RetryPolicy,
    node: &TalosNode,
    creds: &TalosCredentials,
) -> Result<String, WorkflowError> {
    let key = format!("talos/ready/{}", node.name);
    ctx.step(&key, policy, &(&node.name, node.public_ip), |_| async {
        let client = TalosClient::secure(addr(node), creds)
            .await
            .map_err(talos_error)?;
        let version = client.version().await.map_err(|e| {
            // A node still in maintenance mode or rebooting answers with TLS errors: wait.
            StepError::retryable(format!("{} is not configured yet: {e}", node.name))
        })?;
        Ok(version.tag)
    })
    .await
}

/// Step `talos/bootstrap`: bootstraps etcd on `node` exactly once (`AlreadyExists` is success).
pub async fn bootstrap(
    ctx: &Ctx,
    policy: &RetryPolicy,
    node: &TalosNode,
    creds: &TalosCredentials,
) -> Result<String, WorkflowError> {
    ctx.step(
        "talos/bootstrap",
        policy,
        &(&node.name, node.public_ip),
        |_| async {
            let client = TalosClient::secure(addr(node), creds)
                .await
                .map_err(talos_error)?;
            match client.bootstrap().await.map_err(talos_error)? {
                BootstrapOutcome::Bootstrapped => Ok("bootstrapped".to_string()),
                BootstrapOutcome::AlreadyBootstrapped => Ok("already-bootstrapped".to_string()),
            }
        },
    )
    .await
}

/// Step `talos/etcd`: waits until etcd has one voting member per control plane.
pub async fn wait_etcd(
    ctx: &Ctx,
    policy: &RetryPolicy,
    node: &TalosNode,
    creds: &TalosCredentials,
    expected: usize,
) -> Result<Vec<String>, WorkflowError> {
    ctx.step("talos/etcd", policy, &(&node.name, expected), |_| async {
        let client = TalosClient::secure(addr(node), creds)
            .await
            .map_err(talos_error)?;
        let members = client.etcd_member_list().await.map_err(talos_error)?;
        let mut voting: Vec<String> = members
            .iter()
            .filter(|m| !m.is_learner)
            .map(|m| m.hostname.clone())
            .collect();
        voting.sort();
        if voting.len() < expected {
            return Err(StepError::retryable(format!(
                "etcd has {} of {expected} members ({})",
                voting.len(),
                voting.join(", ")
            )));
        }
        Ok(voting)
    })
    .await
}

/// Step `talos/kubeconfig`: fetches the admin kubeconfig from `node` and writes it (0600).
pub async fn fetch_kubeconfig(
    ctx: &Ctx,
    policy: &RetryPolicy,
    node: &TalosNode,
    creds: &TalosCredentials,
    dir: &Path,
) -> Result<PathBuf, WorkflowError> {
    let path = dir.join(KUBECONFIG_FILE);
    // The step's journaled output is the path where the writer put it; this machine's copy is
    // in its own state folder.
    let _: PathBuf = ctx
        .step(
            "talos/kubeconfig",
            policy,
            &(&node.name, KUBECONFIG_FILE),
            |_| async {
                let client = TalosClient::secure(addr(node), creds)
                    .await
                    .map_err(talos_error)?;
                let bytes = client.kubeconfig().await.map_err(talos_error)?;
                write_private(&path, &bytes).map_err(|e| StepError::permanent(e.to_string()))?;
                Ok(path.clone())
            },
        )
        .await?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_prefixed() {
        assert_eq!(
            fingerprint(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
