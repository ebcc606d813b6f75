//! `build-image`: Talos snapshots built by hk8s from the image factory, resumable mid-build.
//!
//! Per architecture, concurrently, the body reads top to bottom like its steps (`<a>` is
//! `amd64` or `arm64`, `<k>` the short id of the run's SSH key for that architecture):
//!
//! | step | what |
//! |---|---|
//! | `image/<a>` | a snapshot with the labels exists already? then nothing is built (unless `--force`) |
//! | `build/<a>/schematic` | a customized schematic: `POST /schematics` at the factory, the ID it answers checked |
//! | `build/<a>/ssh-key@<k>` | upload the public half of the in-memory ed25519 key |
//! | `build/<a>/server/<type>@<location>` | a stopped Debian server; `resource_unavailable` → the next type, then location (each choice journaled) |
//! | `build/<a>/rescue@<k>` | enable rescue with that key, power on |
//! | `build/<a>/ssh@<k>` | SSH as root with patient retries; the host key is learnt and journaled (pinned) |
//! | `build/<a>/write@<k>` | `wget \| xz -d \| dd … conv=fsync` with `pipefail`; exit status and byte count checked |
//! | `build/<a>/power-off` | power off, wait for `off` |
//! | `build/<a>/snapshot` | `create_image`; a crash meanwhile finds it again by `hk8s-run` + `arch` |
//! | `build/<a>/cleanup` | delete the temporary server and key (found by labels) |
//! | `build/<a>/check-server/<type>@<location>`, `build/<a>/check-power-on` | a server from the snapshot |
//! | `build/<a>/check` | it answers the Talos maintenance API on :50000 (`Disks`) |
//! | `build/<a>/check-cleanup` | delete the check server |
//! | `build/<a>/publish` | label the snapshot `os=talos` (it is found only from now on) |
//!
//! A snapshot that fails the check is deleted (`build/<a>/discard`) and the run fails with the
//! reason. Until `publish` the snapshot carries `component=image-builder`, like the temporary
//! server and key, so whatever a dead run left is found by labels: `image-builder/leftovers`
//! (first step of every build, and of destroy-cluster) deletes it.
//!
//! The ed25519 key is derived in memory from the API token and `<run id>/<a>`
//! ([`hk8s_ssh::BuilderKey::derive`]): never journaled or logged, and the same after a crash, so
//! a resumed run reaches the rescue system it booted. If the material changes (a new token), the
//! key's short id changes and the key-bound steps run again under new keys.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use futures::future::try_join_all;
use hk8s_hetzner::{
    BuilderResources, BuilderServerInfo, BuilderServerSpec, COMPONENT_IMAGE_BUILDER, ErrorClass,
    Hetzner, ImageInfo, LABEL_ARCH, LABEL_OS, LABEL_RUN, LABEL_SCHEMATIC, LABEL_VERSION, Labels,
    SnapshotInfo, SshKeyInfo, SshKeySpec, builder_labels, schematic_label_value,
};
use hk8s_runtime::{Ctx, Secret, Workflow, WorkflowError};
use hk8s_ssh::{BuilderKey, Endpoint, ImageWrite, Probe, WriteOptions};
use serde::{Deserialize, Serialize};

use crate::activity::{hetzner_error, hetzner_step, ssh_error, talos_arch_name, talos_error};
use crate::cloud::CloudTarget;
use crate::policies::Policies;
use crate::spec::{Arch, ClusterSpec};

/// Attempts at the boot check's Talos API before the snapshot is judged broken (with the wait
/// policy's delays, about nine minutes on Hetzner).
pub const BOOT_CHECK_ATTEMPTS: u32 = 40;

/// The SSH port of Hetzner's rescue system.
pub const DEFAULT_SSH_PORT: u16 = 22;

/// What to build: journaled with the run (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageBuild {
    /// Talos version, e.g. `v1.11.6`.
    pub talos_version: String,
    /// Image-factory schematic ID (64 hex).
    pub schematic_id: String,
    /// The schematic's canonical YAML when the spec gives a customization: registered at the
    /// factory before the image is downloaded (a ready ID or vanilla: `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customization: Option<String>,
    /// Architectures to build.
    pub arches: Vec<Arch>,
    /// Temporary server types per architecture, in fallback order.
    pub server_types: BTreeMap<Arch, Vec<String>>,
    /// Locations in fallback order.
    pub locations: Vec<String>,
    /// The image temporary servers are created from (e.g. `debian-12`).
    pub base_image: String,
    /// The image factory's base URL.
    pub factory: String,
    /// The rescue system's SSH port.
    pub ssh_port: u16,
    /// Build even when a snapshot with the labels exists.
    pub force: bool,
}

impl ImageBuild {
    /// What `spec` asks for, for `arches`; `factory` overrides `imageBuilder.factory`.
    pub fn from_spec(
        spec: &ClusterSpec,
        arches: Vec<Arch>,
        factory: Option<String>,
        ssh_port: u16,
        force: bool,
    ) -> ImageBuild {
        let builder = &spec.image_builder;
        ImageBuild {
            talos_version: spec.talos.version.clone(),
            schematic_id: spec.talos.schematic_id(),
            customization: crate::factory::customization_yaml(&spec.talos)
                .ok()
                .flatten(),
            server_types: arches
                .iter()
                .map(|a| (*a, builder.server_types(*a).to_vec()))
                .collect(),
            arches,
            locations: builder.locations(&spec.hetzner.region, &spec.hetzner.network_zone),
            base_image: builder.image.clone(),
            factory: factory.unwrap_or_else(|| builder.factory.clone()),
            ssh_port,
            force,
        }
    }

    /// The factory's hcloud raw image: `<factory>/image/<schematic>/<version>/hcloud-<a>.raw.xz`.
    pub fn download_url(&self, arch: Arch) -> String {
        format!(
            "{}/image/{}/{}/hcloud-{}.raw.xz",
            self.factory.trim_end_matches('/'),
            self.schematic_id,
            self.talos_version,
            talos_arch_name(arch)
        )
    }
}

/// The journaled input of a `build-image` run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildImageInput {
    /// The cluster whose spec asked for the images (the run's name; images are not cluster
    /// resources).
    pub cluster: String,
    /// What to build.
    pub build: ImageBuild,
    /// Which Hetzner API the run talks to.
    pub cloud: CloudTarget,
}

/// What `build-image` produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltImages {
    /// One snapshot per architecture.
    pub images: BTreeMap<Arch, ImageInfo>,
    /// Leftovers of dead runs that were deleted first.
    pub leftovers: BuilderResources,
}

/// Tells which runs are dead, so their temporary resources may be deleted.
pub trait RunRegistry: Send + Sync {
    /// Whether run `run_id` will never continue (finished, or no live process holds it).
    /// Runs this registry does not know (another journal) must be reported alive.
    fn is_dead(&self, run_id: &str) -> bool;
}

/// A registry that knows no run: nothing is ever judged dead.
pub struct NoRuns;

impl RunRegistry for NoRuns {
    fn is_dead(&self, _run_id: &str) -> bool {
        false
    }
}

/// What the image steps need besides the context: the cloud, policies, key material and
/// which runs are dead. Shared by `build-image` and `create-cluster`.
#[derive(Clone)]
pub struct Builder {
    hetzner: Arc<Hetzner>,
    policies: Policies,
    key_material: Arc<Secret<Vec<u8>>>,
    runs: Arc<dyn RunRegistry>,
}

impl Builder {
    /// A builder over `hetzner`; `key_material` (the API token) seeds the SSH keys.
    pub fn new(hetzner: Arc<Hetzner>, key_material: Secret<Vec<u8>>) -> Builder {
        Builder {
            hetzner,
            policies: Policies::default(),
            key_material: Arc::new(key_material),
            runs: Arc::new(NoRuns),
        }
    }

    /// Replaces the retry policies.
    #[must_use]
    pub fn with_policies(mut self, policies: Policies) -> Self {
        self.policies = policies;
        self
    }

    /// Sets who decides which runs are dead (their leftovers are deleted).
    #[must_use]
    pub fn with_runs(mut self, runs: Arc<dyn RunRegistry>) -> Self {
        self.runs = runs;
        self
    }

    /// Step `image-builder/leftovers`: deletes the temporary resources of dead runs.
    pub async fn remove_leftovers(&self, ctx: &Ctx) -> Result<BuilderResources, WorkflowError> {
        let hetzner = &*self.hetzner;
        let this_run = ctx.run_id().to_string();
        let selector = builder_selector_all();
        hetzner_step(
            ctx,
            &self.policies.cloud,
            "image-builder/leftovers",
            &selector,
            || async {
                let mut found = hetzner.list_builder_resources(&selector).await?;
                found.retain(|r| {
                    r.labels
                        .get(LABEL_RUN)
                        .is_some_and(|run| *run != this_run && self.runs.is_dead(run))
                });
                hetzner.delete_builder_resources(&found).await?;
                Ok(found)
            },
        )
        .await
    }

    /// The snapshot per architecture of `build`: found by labels, or built.
    pub async fn ensure_images(
        &self,
        ctx: &Ctx,
        build: &ImageBuild,
    ) -> Result<BTreeMap<Arch, ImageInfo>, WorkflowError> {
        let images = try_join_all(build.arches.iter().map(|arch| async move {
            let image = self.ensure_image(ctx, build, *arch).await?;
            Ok::<_, WorkflowError>((*arch, image))
        }))
        .await?;
        Ok(images.into_iter().collect())
    }

    async fn ensure_image(
        &self,
        ctx: &Ctx,
        build: &ImageBuild,
        arch: Arch,
    ) -> Result<ImageInfo, WorkflowError> {
        let a = talos_arch_name(arch);
        if !build.force {
            let input = (arch, &build.talos_version, &build.schematic_id);
            let found: Option<ImageInfo> = hetzner_step(
                ctx,
                &self.policies.cloud,
                &format!("image/{a}"),
                &input,
                || {
                    self.hetzner.find_talos_snapshot(
                        arch.into(),
                        &build.talos_version,
                        &build.schematic_id,
                        hk8s_talos_config::VANILLA_SCHEMATIC,
                    )
                },
            )
            .await?;
            if let Some(image) = found {
                return Ok(image);
            }
        }
        self.build(ctx, build, arch).await
    }

    /// Builds one architecture's snapshot, step by step as the module docs list them.
    async fn build(
        &self,
        ctx: &Ctx,
        build: &ImageBuild,
        arch: Arch,
    ) -> Result<ImageInfo, WorkflowError> {
        let hetzner = &*self.hetzner;
        let Policies { cloud, wait } = &self.policies;
        let a = talos_arch_name(arch);
        let run = ctx.run_id().to_string();
        let key = BuilderKey::derive(self.key_material.expose(), &format!("{run}/{a}"));
        let k = key.short_id();
        let labels = arch_labels(&run, a);

        // 0. A customized schematic exists at the factory only once registered: before any
        //    server is paid for.
        if let Some(yaml) = &build.customization {
            ctx.step(
                &format!("build/{a}/schematic"),
                cloud,
                &(&build.factory, &build.schematic_id),
                |_| crate::factory::register(&build.factory, yaml, &build.schematic_id),
            )
            .await?;
        }

        // 1. The temporary SSH key.
        let key_spec = SshKeySpec {
            name: format!("hk8s-build-{run}-{a}-{k}"),
            public_key: key
                .public_openssh()
                .map_err(|e| WorkflowError::from(ssh_error(e)))?,
            labels: labels.clone(),
        };
        let ssh_key: SshKeyInfo = hetzner_step(
            ctx,
            cloud,
            &format!("build/{a}/ssh-key@{k}"),
            &key_spec,
            || hetzner.ensure_ssh_key(&key_spec),
        )
        .await?;

        // 2. The temporary server: stopped, Debian, first orderable type and location.
        let server = self
            .temp_server(
                ctx,
                build,
                arch,
                &format!("build/{a}/server"),
                &format!("hk8s-build-{a}-{run}"),
                &build.base_image,
                &[ssh_key.id],
                &labels,
            )
            .await?;
        let server_step_done = ctx.finished_before(&server.step);
        if server_step_done && !ctx.finished_before(&format!("build/{a}/snapshot")) {
            // Labels are the truth: a server journaled earlier may have been removed meanwhile.
            // (Once the snapshot is made the server is not needed, and cleanup deletes it.)
            let exists = hetzner
                .server_exists(server.info.id)
                .await
                .map_err(|e| WorkflowError::failed(e.to_string()))?;
            if !exists {
                return Err(WorkflowError::failed(format!(
                    "the temporary server {} ({}) of this run is gone (deleted while the run was \
                     stopped, e.g. as a dead run's leftover); start a new build: hk8s run build-image",
                    server.info.name, server.info.id
                )));
            }
        }
        let ip = server.info.public_ipv4.ok_or_else(|| {
            WorkflowError::failed(format!("server {} has no public IPv4", server.info.name))
        })?;
        let endpoint = Endpoint {
            ip: IpAddr::V4(ip),
            port: build.ssh_port,
        };

        // 3. Rescue with the key, power on.
        let server_id = server.info.id;
        let rescue_keys = [ssh_key.id];
        hetzner_step(
            ctx,
            cloud,
            &format!("build/{a}/rescue@{k}"),
            &(server_id, ssh_key.id),
            || hetzner.boot_rescue(server_id, &rescue_keys),
        )
        .await?;

        // 4. SSH with patient retries; the host key is pinned from here on.
        let probe: Probe = ctx
            .step(&format!("build/{a}/ssh@{k}"), wait, &endpoint, |_| {
                let key = key.clone();
                async move { hk8s_ssh::probe(endpoint, &key).await.map_err(ssh_error) }
            })
            .await?;
        let machine = match arch {
            Arch::X86 => "x86_64",
            Arch::Arm => "aarch64",
        };
        if probe.machine != machine {
            return Err(WorkflowError::failed(format!(
                "the rescue system of {} reports {} (uname -m), not {machine}: the server type is not {arch}",
                server.info.name, probe.machine
            )));
        }

        // 5. Write the image.
        let url = build.download_url(arch);
        let write_input = (&url, &probe.host_key);
        let written: ImageWrite = ctx
            .step(&format!("build/{a}/write@{k}"), cloud, &write_input, |_| {
                let key = key.clone();
                let url = url.clone();
                let host_key = probe.host_key.clone();
                async move {
                    hk8s_ssh::write_image(endpoint, &key, &host_key, &url, &WriteOptions::default())
                        .await
                        .map_err(ssh_error)
                }
            })
            .await?;
        tracing::info!(arch = a, bytes = written.bytes, "image written");

        // 6. Power off and wait for `off`.
        hetzner_step(
            ctx,
            cloud,
            &format!("build/{a}/power-off"),
            &server_id,
            || hetzner.power_off(server_id),
        )
        .await?;

        // 7. The snapshot, labelled as unpublished until the boot check passed.
        let description = format!(
            "Talos {} {a} (schematic {}) built by hk8s run {run}",
            build.talos_version, build.schematic_id
        );
        let pending = snapshot_labels(build, &run, a, false);
        let snapshot: SnapshotInfo = hetzner_step(
            ctx,
            wait,
            &format!("build/{a}/snapshot"),
            &(server_id, &description, &pending),
            || hetzner.ensure_snapshot(server_id, &description, &pending),
        )
        .await?;

        // 8. The temporary server and key go.
        self.delete_temporaries(ctx, &format!("build/{a}/cleanup"), &run, a)
            .await?;

        // 9. Boot check: a server from the snapshot answers the Talos maintenance API.
        let check = self
            .temp_server(
                ctx,
                build,
                arch,
                &format!("build/{a}/check-server"),
                &format!("hk8s-check-{a}-{run}"),
                &snapshot.id.to_string(),
                &[],
                &labels,
            )
            .await?;
        let check_id = check.info.id;
        hetzner_step(
            ctx,
            cloud,
            &format!("build/{a}/check-power-on"),
            &check_id,
            || hetzner.power_on(check_id),
        )
        .await?;
        let check_ip = check.info.public_ipv4.ok_or_else(|| {
            WorkflowError::failed(format!("server {} has no public IPv4", check.info.name))
        })?;
        let verdict = self
            .boot_check(ctx, &format!("build/{a}/check"), check_ip)
            .await?;
        self.delete_temporaries(ctx, &format!("build/{a}/check-cleanup"), &run, a)
            .await?;
        if let BootCheck::Failed { reason } = verdict {
            hetzner_step(
                ctx,
                cloud,
                &format!("build/{a}/discard"),
                &snapshot.id,
                || hetzner.delete_image(snapshot.id),
            )
            .await?;
            return Err(WorkflowError::failed(format!(
                "the Talos {} {a} snapshot {} failed its boot check and was deleted: {reason}",
                build.talos_version, snapshot.id
            )));
        }

        // 10. Publish: from now on `os=talos,arch,version,schematic` finds it.
        let published = snapshot_labels(build, &run, a, true);
        hetzner_step(
            ctx,
            cloud,
            &format!("build/{a}/publish"),
            &(snapshot.id, &published),
            || hetzner.set_image_labels(snapshot.id, &published),
        )
        .await?;
        Ok(ImageInfo {
            id: snapshot.id,
            description: snapshot.description,
            arch: arch.into(),
            version: build.talos_version.clone(),
            created: String::new(),
        })
    }

    /// The temporary server: one step per (type, location) candidate until one has capacity.
    #[allow(clippy::too_many_arguments)]
    async fn temp_server(
        &self,
        ctx: &Ctx,
        build: &ImageBuild,
        arch: Arch,
        key_prefix: &str,
        name: &str,
        image: &str,
        ssh_key_ids: &[i64],
        labels: &Labels,
    ) -> Result<TempServer, WorkflowError> {
        let hetzner = &*self.hetzner;
        let types = build
            .server_types
            .get(&arch)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for location in &build.locations {
            for server_type in types {
                let spec = BuilderServerSpec {
                    name: name.to_string(),
                    server_type: server_type.clone(),
                    location: location.clone(),
                    image: image.to_string(),
                    ssh_key_ids: ssh_key_ids.to_vec(),
                    labels: labels.clone(),
                };
                // The key ids are left out of the input: they change with the key material.
                let input = (name, server_type, location, image, labels);
                let step = format!("{key_prefix}/{server_type}@{location}");
                let got: Option<BuilderServerInfo> = ctx
                    .step(&step, &self.policies.cloud, &input, |_| async {
                        match hetzner.ensure_builder_server(&spec).await {
                            Ok(info) => Ok(Some(info)),
                            Err(e) if e.class() == ErrorClass::CapacityUnavailable => {
                                tracing::warn!(%server_type, %location, error = %e, "no capacity; trying the next candidate");
                                Ok(None)
                            }
                            Err(e) => Err(hetzner_error(e)),
                        }
                    })
                    .await?;
                if let Some(info) = got {
                    return Ok(TempServer { info, step });
                }
            }
        }
        Err(WorkflowError::failed(format!(
            "no capacity for a temporary {arch} server: tried {} in {} (set imageBuilder.{arch} and imageBuilder.locations)",
            types.join(", "),
            build.locations.join(", ")
        )))
    }

    /// Deletes this run's temporary servers and SSH keys of architecture `a` (found by labels).
    async fn delete_temporaries(
        &self,
        ctx: &Ctx,
        key: &str,
        run: &str,
        a: &str,
    ) -> Result<(), WorkflowError> {
        let hetzner = &*self.hetzner;
        let selector = format!("{},{LABEL_ARCH}={a}", hk8s_hetzner::builder_selector(run));
        hetzner_step(ctx, &self.policies.cloud, key, &selector, || async {
            let mut found = hetzner.list_builder_resources(&selector).await?;
            found.images.clear();
            hetzner.delete_builder_resources(&found).await
        })
        .await
    }

    /// The boot check: up to [`BOOT_CHECK_ATTEMPTS`] attempts at `Disks` in maintenance mode.
    async fn boot_check(
        &self,
        ctx: &Ctx,
        key: &str,
        ip: std::net::Ipv4Addr,
    ) -> Result<BootCheck, WorkflowError> {
        let addr = SocketAddr::new(IpAddr::V4(ip), hk8s_talos::TALOS_API_PORT);
        ctx.step(key, &self.policies.wait, &addr, |attempt| async move {
            let result = async {
                let client = hk8s_talos::TalosClient::maintenance(addr).await?;
                client.disks().await
            }
            .await;
            match result {
                Ok(disks) if !disks.is_empty() => Ok(BootCheck::Passed { disks: disks.len() }),
                Ok(_) => Ok(BootCheck::Failed {
                    reason: format!("Talos on {addr} reports no disks"),
                }),
                Err(e) if attempt.number >= BOOT_CHECK_ATTEMPTS => Ok(BootCheck::Failed {
                    reason: format!(
                        "no Talos maintenance API on {addr} after {} attempts: {e}",
                        attempt.number
                    ),
                }),
                Err(e) => Err(talos_error(e)),
            }
        })
        .await
    }
}

/// A temporary server and the step that made it.
struct TempServer {
    info: BuilderServerInfo,
    step: String,
}

/// The boot check's verdict, journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "verdict")]
enum BootCheck {
    /// Talos answered in maintenance mode.
    Passed {
        /// Disks it reported.
        disks: usize,
    },
    /// It did not; the snapshot is deleted.
    Failed {
        /// Why.
        reason: String,
    },
}

/// `managed-by=hk8s,component=image-builder`: every run's temporary resources.
fn builder_selector_all() -> String {
    format!(
        "{}={},{}={COMPONENT_IMAGE_BUILDER}",
        hk8s_hetzner::labels::LABEL_MANAGED_BY,
        hk8s_hetzner::labels::MANAGED_BY_VALUE,
        hk8s_hetzner::labels::LABEL_COMPONENT
    )
}

/// The temporary resources' labels: the builder labels plus `arch=<a>`.
fn arch_labels(run: &str, a: &str) -> Labels {
    let mut labels = builder_labels(run);
    labels.insert(LABEL_ARCH.into(), a.into());
    labels
}

/// The snapshot's labels: `arch, version, schematic, managed-by, hk8s-run`, plus
/// `os=talos` once published or `component=image-builder` before.
fn snapshot_labels(build: &ImageBuild, run: &str, a: &str, published: bool) -> Labels {
    let mut labels = Labels::new();
    labels.insert(LABEL_ARCH.into(), a.into());
    labels.insert(LABEL_VERSION.into(), build.talos_version.clone());
    labels.insert(
        LABEL_SCHEMATIC.into(),
        schematic_label_value(&build.schematic_id),
    );
    labels.insert(
        hk8s_hetzner::labels::LABEL_MANAGED_BY.into(),
        hk8s_hetzner::labels::MANAGED_BY_VALUE.into(),
    );
    labels.insert(LABEL_RUN.into(), run.into());
    if published {
        labels.insert(LABEL_OS.into(), "talos".into());
    } else {
        labels.insert(
            hk8s_hetzner::labels::LABEL_COMPONENT.into(),
            COMPONENT_IMAGE_BUILDER.into(),
        );
    }
    labels
}

/// The `build-image` workflow.
pub struct BuildImage {
    builder: Builder,
}

impl BuildImage {
    /// The workflow over `builder`.
    pub fn new(builder: Builder) -> Self {
        BuildImage { builder }
    }
}

impl Workflow for BuildImage {
    const NAME: &'static str = "build-image";
    const VERSION: u32 = 2;
    type Input = BuildImageInput;
    type Output = BuiltImages;

    async fn run(&self, ctx: &Ctx, input: BuildImageInput) -> Result<BuiltImages, WorkflowError> {
        // 1. What dead runs left behind.
        let leftovers = self.builder.remove_leftovers(ctx).await?;
        // 2. Every architecture, concurrently.
        let images = self.builder.ensure_images(ctx, &input.build).await?;
        Ok(BuiltImages { images, leftovers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::EXAMPLE_YAML;

    #[test]
    fn download_url_follows_the_factory_layout() {
        let spec = ClusterSpec::from_yaml(EXAMPLE_YAML, "example").unwrap();
        let build = ImageBuild::from_spec(
            &spec,
            vec![Arch::X86, Arch::Arm],
            Some("http://127.0.0.1:9/".into()),
            22,
            false,
        );
        assert_eq!(
            build.download_url(Arch::Arm),
            format!(
                "http://127.0.0.1:9/image/{}/v1.11.6/hcloud-arm64.raw.xz",
                hk8s_talos_config::VANILLA_SCHEMATIC
            )
        );
        assert_eq!(build.locations, ["fsn1", "nbg1", "hel1"]);
        assert_eq!(build.server_types[&Arch::Arm][0], "cax11");
    }

    #[test]
    fn snapshot_labels_are_valid_and_publish_swaps_the_marker() {
        let spec = ClusterSpec::from_yaml(EXAMPLE_YAML, "example").unwrap();
        let build = ImageBuild::from_spec(&spec, vec![Arch::X86], None, 22, false);
        let pending = snapshot_labels(&build, "run-1", "amd64", false);
        let published = snapshot_labels(&build, "run-1", "amd64", true);
        assert_eq!(
            pending.get("component").map(String::as_str),
            Some("image-builder")
        );
        assert!(!pending.contains_key("os"));
        assert_eq!(published.get("os").map(String::as_str), Some("talos"));
        assert!(!published.contains_key("component"));
        assert!(published.values().all(|v| v.len() <= 63));
    }
}
