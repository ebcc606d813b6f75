//! Activities for building the Talos snapshot: a temporary SSH key and server, the
//! rescue system, power, the snapshot, and cleanup.
//!
//! Temporary resources carry `managed-by=hk8s`, `component=image-builder` and
//! `hk8s-run=<run id>`, so [`Hetzner::delete_by_labels`] with
//! [`builder_selector`] removes exactly one run's leftovers.

use hcloud::apis::{images_api, servers_api, ssh_keys_api};
use hcloud::models;
use serde::{Deserialize, Serialize};

use crate::client::{Hetzner, PER_PAGE};
use crate::destroy::ResourceSummary;
use crate::error::{ErrorKind, HetznerError};
use crate::image::{Arch, ImageInfo, talos_image_selector};
use crate::labels::{self, LABEL_COMPONENT, LABEL_MANAGED_BY, Labels, MANAGED_BY_VALUE};
use crate::outcome::{DeleteOutcome, EnsureOutcome};

/// Label key carrying the id of the run that made a temporary resource.
pub const LABEL_RUN: &str = "hk8s-run";
/// The `component` value of temporary image-build resources.
pub const COMPONENT_IMAGE_BUILDER: &str = "image-builder";

/// Label key of a Talos snapshot's image-factory schematic (its first
/// [`SCHEMATIC_LABEL_LEN`] hex characters: a full ID is 64, over Hetzner's 63-character limit).
pub const LABEL_SCHEMATIC: &str = "schematic";
/// How many hex characters of the schematic ID the `schematic` label carries.
pub const SCHEMATIC_LABEL_LEN: usize = 32;

/// The `schematic` label value of schematic `id`.
pub fn schematic_label_value(id: &str) -> String {
    id.chars().take(SCHEMATIC_LABEL_LEN).collect()
}

/// The labels of a temporary image-build resource of run `run_id`.
pub fn builder_labels(run_id: &str) -> Labels {
    let mut out = Labels::new();
    out.insert(LABEL_MANAGED_BY.into(), MANAGED_BY_VALUE.into());
    out.insert(LABEL_COMPONENT.into(), COMPONENT_IMAGE_BUILDER.into());
    out.insert(LABEL_RUN.into(), run_id.into());
    out
}

/// The selector of one run's temporary resources.
pub fn builder_selector(run_id: &str) -> String {
    format!(
        "{LABEL_MANAGED_BY}={MANAGED_BY_VALUE},{LABEL_COMPONENT}={COMPONENT_IMAGE_BUILDER},{LABEL_RUN}={run_id}"
    )
}

fn selector_of(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn require_builder_selector(selector: &str) -> Result<(), HetznerError> {
    let parts: Vec<&str> = selector.split(',').collect();
    let managed = format!("{LABEL_MANAGED_BY}={MANAGED_BY_VALUE}");
    let builder = format!("{LABEL_COMPONENT}={COMPONENT_IMAGE_BUILDER}");
    if parts.contains(&managed.as_str()) && parts.contains(&builder.as_str()) {
        Ok(())
    } else {
        Err(HetznerError::new(
            ErrorKind::Config,
            "list image-builder resources",
            format!("the selector {selector:?} must contain {managed} and {builder}"),
        ))
    }
}

fn require_managed(labels: &Labels, op: &str) -> Result<(), HetznerError> {
    if labels.get(LABEL_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_VALUE) {
        Ok(())
    } else {
        Err(HetznerError::new(
            ErrorKind::Config,
            op,
            "the labels must contain managed-by=hk8s",
        ))
    }
}

/// An SSH key to upload (the temporary key of an image build).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshKeySpec {
    /// Unique name.
    pub name: String,
    /// OpenSSH public key line.
    pub public_key: String,
    /// Labels; must contain `managed-by=hk8s`.
    pub labels: Labels,
}

/// The ensured SSH key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshKeyInfo {
    /// Hetzner id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// MD5 fingerprint as Hetzner shows it.
    pub fingerprint: String,
    /// Whether this call created it.
    pub outcome: EnsureOutcome,
}

/// A temporary server for writing the Talos image from the rescue system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuilderServerSpec {
    /// Unique name, e.g. `hk8s-build-amd64-<run>`.
    pub name: String,
    /// Server type of the right architecture, e.g. `cx23` or `cax11`.
    pub server_type: String,
    /// Location.
    pub location: String,
    /// Any bootable image (the disk is overwritten), e.g. `debian-12`.
    pub image: String,
    /// SSH keys for the rescue system.
    pub ssh_key_ids: Vec<i64>,
    /// Labels; must contain `managed-by=hk8s` (use [`builder_labels`]).
    pub labels: Labels,
}

/// A temporary server's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuilderServerInfo {
    /// Hetzner id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Public IPv4 (SSH target).
    pub public_ipv4: Option<std::net::Ipv4Addr>,
    /// Whether this call created it.
    pub outcome: EnsureOutcome,
}

/// A snapshot made from a server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Hetzner image id.
    pub id: i64,
    /// Description.
    pub description: String,
    /// Whether this call created it.
    pub outcome: EnsureOutcome,
}

/// Temporary image-build resources found by labels.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuilderResources {
    /// Temporary servers.
    pub servers: Vec<ResourceSummary>,
    /// Snapshots not yet published (still labelled `component=image-builder`).
    pub images: Vec<ResourceSummary>,
    /// Temporary SSH keys.
    pub ssh_keys: Vec<ResourceSummary>,
}

impl BuilderResources {
    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.images.is_empty() && self.ssh_keys.is_empty()
    }

    /// Every resource, for filtering by run.
    pub fn retain(&mut self, mut keep: impl FnMut(&ResourceSummary) -> bool) {
        self.servers.retain(&mut keep);
        self.images.retain(&mut keep);
        self.ssh_keys.retain(&mut keep);
    }

    /// How many resources there are.
    pub fn count(&self) -> usize {
        self.servers.len() + self.images.len() + self.ssh_keys.len()
    }
}

impl Hetzner {
    /// Finds the newest available Talos snapshot for `arch`, `version` and image-factory
    /// schematic `schematic_id`.
    ///
    /// A snapshot without a `schematic` label counts as the vanilla schematic `vanilla_id`
    /// (snapshots uploaded before schematics were labelled, or by other tools).
    pub async fn find_talos_snapshot(
        &self,
        arch: Arch,
        version: &str,
        schematic_id: &str,
        vanilla_id: &str,
    ) -> Result<Option<ImageInfo>, HetznerError> {
        labels::validate_label_value(version)?;
        let want = schematic_label_value(schematic_id);
        let selector = talos_image_selector(arch, version);
        let images = self.list_images(&selector).await?;
        let matching: Vec<models::Image> = images
            .into_iter()
            .filter(|i| match i.labels.get(LABEL_SCHEMATIC) {
                Some(label) => *label == want,
                None => schematic_id == vanilla_id,
            })
            .collect();
        Ok(crate::image::newest(matching, arch).map(|image| ImageInfo {
            id: image.id,
            description: image.description,
            arch,
            version: version.to_string(),
            created: image.created,
        }))
    }

    /// Every snapshot matching `selector` (any status).
    async fn list_images(&self, selector: &str) -> Result<Vec<models::Image>, HetznerError> {
        let cfg = self.cfg();
        self.list_all(
            "list snapshots",
            |page| {
                images_api::list_images(
                    cfg,
                    images_api::ListImagesParams {
                        r#type: Some(vec!["snapshot".into()]),
                        label_selector: Some(selector.to_string()),
                        page: Some(page),
                        per_page: Some(PER_PAGE),
                        ..Default::default()
                    },
                )
            },
            |r| (r.images, r.meta.pagination.next_page),
        )
        .await
    }

    /// Replaces the labels of snapshot `id` (publishing a checked snapshot drops
    /// `component=image-builder` and adds `os=talos`); `labels` must contain `managed-by=hk8s`.
    pub async fn set_image_labels(&self, id: i64, labels: &Labels) -> Result<(), HetznerError> {
        let op = format!("label snapshot {id}");
        require_managed(labels, &op)?;
        self.run(
            op,
            images_api::replace_image(
                self.cfg(),
                images_api::ReplaceImageParams {
                    id,
                    replace_image_request: models::ReplaceImageRequest {
                        description: None,
                        labels: Some(labels::to_hash_map(labels)),
                        r#type: None,
                    },
                },
            ),
        )
        .await?;
        Ok(())
    }

    /// Powers server `id` on (if it is off) and waits for the action.
    pub async fn power_on(&self, id: i64) -> Result<(), HetznerError> {
        self.wait_running_server_actions(id, &id.to_string())
            .await?;
        let server = self.get_server(id, &id.to_string()).await?;
        if server.status == models::server::Status::Running {
            return Ok(());
        }
        let resp = self
            .run(
                format!("power on server {}", server.name),
                servers_api::power_on_server(self.cfg(), servers_api::PowerOnServerParams { id }),
            )
            .await?;
        self.wait_models([resp.action.as_ref()]).await
    }

    /// Whether server `id` still exists (`GET /servers/{id}`).
    pub async fn server_exists(&self, id: i64) -> Result<bool, HetznerError> {
        match self.get_server(id, &id.to_string()).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The temporary image-build resources matching `selector` (which must contain
    /// `managed-by=hk8s` and `component=image-builder`): servers, unpublished snapshots, keys.
    pub async fn list_builder_resources(
        &self,
        selector: &str,
    ) -> Result<BuilderResources, HetznerError> {
        require_builder_selector(selector)?;
        let summary = |id: i64, name: &str, labels: &std::collections::HashMap<String, String>| {
            ResourceSummary::new(id, name, labels)
        };
        Ok(BuilderResources {
            servers: self
                .list_servers(selector)
                .await?
                .iter()
                .map(|s| summary(s.id, &s.name, &s.labels))
                .collect(),
            images: self
                .list_images(selector)
                .await?
                .iter()
                .map(|i| summary(i.id, &i.description, &i.labels))
                .collect(),
            ssh_keys: self
                .list_ssh_keys(selector)
                .await?
                .iter()
                .map(|k| summary(k.id, &k.name, &k.labels))
                .collect(),
        })
    }

    /// Deletes `resources`: servers first (one wait for all), then snapshots, then keys;
    /// `not_found` is success, so a repeat after a crash finishes the job.
    pub async fn delete_builder_resources(
        &self,
        resources: &BuilderResources,
    ) -> Result<(), HetznerError> {
        let started = futures::future::join_all(
            resources
                .servers
                .iter()
                .map(|s| self.start_delete_server(s.id, &s.name)),
        )
        .await;
        let mut pending = Vec::new();
        for result in started {
            pending.extend(result?);
        }
        self.wait_actions(&pending).await?;
        for image in &resources.images {
            self.delete_image(image.id).await?;
        }
        for key in &resources.ssh_keys {
            self.delete_ssh_key(key.id).await?;
        }
        Ok(())
    }

    /// Ensures an SSH key with `spec.name` exists; an existing key with that name is
    /// adopted only if it carries `managed-by=hk8s` and the same public key.
    pub async fn ensure_ssh_key(&self, spec: &SshKeySpec) -> Result<SshKeyInfo, HetznerError> {
        let op = format!("ensure ssh key {}", spec.name);
        require_managed(&spec.labels, &op)?;
        let op = op.as_str();
        self.ensure(
            op,
            || self.find_ssh_key(&spec.name),
            || {
                self.run(
                    format!("create ssh key {}", spec.name),
                    ssh_keys_api::create_ssh_key(
                        self.cfg(),
                        ssh_keys_api::CreateSshKeyParams {
                            create_ssh_key_request: models::CreateSshKeyRequest {
                                labels: Some(labels::to_hash_map(&spec.labels)),
                                name: spec.name.clone(),
                                public_key: spec.public_key.clone(),
                            },
                        },
                    ),
                )
            },
            |resp| async move {
                Ok(SshKeyInfo {
                    id: resp.ssh_key.id,
                    name: resp.ssh_key.name,
                    fingerprint: resp.ssh_key.fingerprint,
                    outcome: EnsureOutcome::Created,
                })
            },
            // Not found again after a uniqueness error: the same public key is there under
            // another name (Hetzner refuses duplicates), and that error is returned.
            |key| std::future::ready(adopt_key(key, spec, op)),
        )
        .await
    }

    async fn find_ssh_key(&self, name: &str) -> Result<Option<models::SshKey>, HetznerError> {
        let resp = self
            .run(
                format!("look up ssh key {name}"),
                ssh_keys_api::list_ssh_keys(
                    self.cfg(),
                    ssh_keys_api::ListSshKeysParams {
                        name: Some(name.to_string()),
                        ..Default::default()
                    },
                ),
            )
            .await?;
        Ok(resp.ssh_keys.into_iter().find(|k| k.name == name))
    }

    /// Every SSH key matching `selector`.
    pub(crate) async fn list_ssh_keys(
        &self,
        selector: &str,
    ) -> Result<Vec<models::SshKey>, HetznerError> {
        let cfg = self.cfg();
        self.list_all(
            "list ssh keys",
            |page| {
                ssh_keys_api::list_ssh_keys(
                    cfg,
                    ssh_keys_api::ListSshKeysParams {
                        label_selector: Some(selector.to_string()),
                        page: Some(page),
                        per_page: Some(PER_PAGE),
                        ..Default::default()
                    },
                )
            },
            |r| (r.ssh_keys, r.meta.pagination.next_page),
        )
        .await
    }

    /// Deletes an SSH key by id; `not_found` is [`DeleteOutcome::AlreadyGone`].
    pub async fn delete_ssh_key(&self, id: i64) -> Result<DeleteOutcome, HetznerError> {
        let result = self
            .run(
                format!("delete ssh key {id}"),
                ssh_keys_api::delete_ssh_key(self.cfg(), ssh_keys_api::DeleteSshKeyParams { id }),
            )
            .await;
        match result {
            Ok(()) => Ok(DeleteOutcome::Deleted),
            Err(e) if e.is_not_found() => Ok(DeleteOutcome::AlreadyGone),
            Err(e) => Err(e),
        }
    }

    /// Ensures a temporary build server exists (created stopped, without network).
    ///
    /// A crash after the create adopts the server found by name, if its labels match
    /// `spec.labels` (so another run's server is never adopted).
    pub async fn ensure_builder_server(
        &self,
        spec: &BuilderServerSpec,
    ) -> Result<BuilderServerInfo, HetznerError> {
        let op = format!("ensure builder server {}", spec.name);
        require_managed(&spec.labels, &op)?;
        let op = op.as_str();
        self.ensure(
            op,
            || self.find_server(&spec.name),
            || {
                self.run(
                    format!("create builder server {}", spec.name),
                    servers_api::create_server(
                        self.cfg(),
                        servers_api::CreateServerParams {
                            create_server_request: models::CreateServerRequest {
                                automount: None,
                                firewalls: None,
                                image: spec.image.clone(),
                                labels: Some(labels::to_hash_map(&spec.labels)),
                                location: Some(spec.location.clone()),
                                name: spec.name.clone(),
                                networks: None,
                                placement_group: None,
                                public_net: None,
                                server_type: spec.server_type.clone(),
                                ssh_keys: Some(
                                    spec.ssh_key_ids.iter().map(ToString::to_string).collect(),
                                ),
                                start_after_create: Some(false),
                                user_data: None,
                                volumes: None,
                            },
                        },
                    ),
                )
            },
            |resp| async move {
                self.wait_models(
                    std::iter::once(resp.action.as_ref()).chain(resp.next_actions.iter()),
                )
                .await?;
                Ok(BuilderServerInfo {
                    id: resp.server.id,
                    name: resp.server.name.clone(),
                    public_ipv4: resp
                        .server
                        .public_net
                        .ipv4
                        .as_ref()
                        .and_then(|v| v.ip.parse().ok()),
                    outcome: EnsureOutcome::Created,
                })
            },
            |server| self.adopt_builder(server, spec, op),
        )
        .await
    }

    async fn adopt_builder(
        &self,
        server: models::Server,
        spec: &BuilderServerSpec,
        op: &str,
    ) -> Result<BuilderServerInfo, HetznerError> {
        if !labels::contains_all(&server.labels, &spec.labels) {
            return Err(HetznerError::new(
                ErrorKind::NotManaged,
                op,
                "a server with this name exists without this run's labels; it is never adopted",
            ));
        }
        self.wait_running_server_actions(server.id, &server.name)
            .await?;
        Ok(BuilderServerInfo {
            id: server.id,
            name: server.name.clone(),
            public_ipv4: server
                .public_net
                .ipv4
                .as_ref()
                .and_then(|v| v.ip.parse().ok()),
            outcome: EnsureOutcome::Unchanged,
        })
    }

    /// Boots server `id` into the Linux rescue system with `ssh_key_ids`: enables rescue,
    /// then powers on (if off) or resets (if running), and waits for both actions.
    ///
    /// Safe to repeat: rescue is enabled again if the previous boot consumed it.
    pub async fn boot_rescue(&self, id: i64, ssh_key_ids: &[i64]) -> Result<(), HetznerError> {
        // Status is read after the running actions (e.g. the create) have finished.
        self.wait_running_server_actions(id, &id.to_string())
            .await?;
        let server = self.get_server(id, &id.to_string()).await?;
        let resp = self
            .run(
                format!("enable rescue on server {}", server.name),
                servers_api::enable_rescue_mode_for_server(
                    self.cfg(),
                    servers_api::EnableRescueModeForServerParams {
                        id,
                        enable_rescue_mode_for_server_request:
                            models::EnableRescueModeForServerRequest {
                                ssh_keys: Some(ssh_key_ids.to_vec()),
                                r#type: Some(
                                    models::enable_rescue_mode_for_server_request::Type::Linux64,
                                ),
                            },
                    },
                ),
            )
            .await?;
        self.wait_models(resp.action.iter().map(AsRef::as_ref))
            .await?;
        let action = if server.status == models::server::Status::Off {
            self.run(
                format!("power on server {}", server.name),
                servers_api::power_on_server(self.cfg(), servers_api::PowerOnServerParams { id }),
            )
            .await?
            .action
        } else {
            self.run(
                format!("reset server {}", server.name),
                servers_api::reset_server(self.cfg(), servers_api::ResetServerParams { id }),
            )
            .await?
            .action
        };
        self.wait_models([action.as_ref()]).await
    }

    /// Powers server `id` off (hard) and waits; a server that is already off is left alone.
    pub async fn power_off(&self, id: i64) -> Result<(), HetznerError> {
        self.wait_running_server_actions(id, &id.to_string())
            .await?;
        let server = self.get_server(id, &id.to_string()).await?;
        if server.status == models::server::Status::Off {
            return Ok(());
        }
        let resp = self
            .run(
                format!("power off server {}", server.name),
                servers_api::power_off_server(self.cfg(), servers_api::PowerOffServerParams { id }),
            )
            .await?;
        self.wait_models([resp.action.as_ref()]).await?;
        let server = self.get_server(id, &id.to_string()).await?;
        if server.status == models::server::Status::Off {
            Ok(())
        } else {
            Err(HetznerError::new(
                ErrorKind::ActionTimeout,
                format!("power off server {}", server.name),
                format!(
                    "the power-off finished but the server is {:?}",
                    server.status
                ),
            ))
        }
    }

    /// Ensures a snapshot of server `id` labelled `labels` exists and is available.
    ///
    /// # Flow
    ///
    /// `GET /images?type=snapshot&label_selector=<labels>` first: an available one is
    /// returned; one still `creating` is waited for through the server's running
    /// actions. Otherwise `create_image` (type snapshot) and a wait for its action.
    /// `labels` must make the snapshot unique (e.g. [`crate::talos_image_labels`] plus
    /// `hk8s-run`) and contain `managed-by=hk8s`.
    pub async fn ensure_snapshot(
        &self,
        id: i64,
        description: &str,
        labels: &Labels,
    ) -> Result<SnapshotInfo, HetznerError> {
        let op = format!("snapshot server {id}");
        require_managed(labels, &op)?;
        let selector = selector_of(labels);
        if let Some(found) = self.find_snapshot(&selector).await? {
            if found.status == models::image::Status::Creating {
                self.wait_running_server_actions(id, &id.to_string())
                    .await?;
            }
            return Ok(SnapshotInfo {
                id: found.id,
                description: found.description,
                outcome: EnsureOutcome::Unchanged,
            });
        }
        let resp = self
            .run(
                op.clone(),
                servers_api::create_image_from_server(
                    self.cfg(),
                    servers_api::CreateImageFromServerParams {
                        id,
                        create_image_from_server_request: models::CreateImageFromServerRequest {
                            description: Some(description.to_string()),
                            labels: Some(labels::to_hash_map(labels)),
                            r#type: Some(models::create_image_from_server_request::Type::Snapshot),
                        },
                    },
                ),
            )
            .await?;
        self.wait_models(resp.action.iter().map(AsRef::as_ref))
            .await?;
        let image = resp.image.ok_or_else(|| {
            HetznerError::new(ErrorKind::Decode, op.as_str(), "the reply holds no image")
        })?;
        Ok(SnapshotInfo {
            id: image.id,
            description: image.description,
            outcome: EnsureOutcome::Created,
        })
    }

    async fn find_snapshot(&self, selector: &str) -> Result<Option<models::Image>, HetznerError> {
        let resp = self
            .run(
                "look up snapshot",
                images_api::list_images(
                    self.cfg(),
                    images_api::ListImagesParams {
                        r#type: Some(vec!["snapshot".into()]),
                        label_selector: Some(selector.to_string()),
                        ..Default::default()
                    },
                ),
            )
            .await?;
        Ok(resp
            .images
            .into_iter()
            .filter(|i| i.status != models::image::Status::Unavailable)
            .max_by_key(|i| i.id))
    }

    /// Deletes an image (snapshot) by id; `not_found` is [`DeleteOutcome::AlreadyGone`].
    pub async fn delete_image(&self, id: i64) -> Result<DeleteOutcome, HetznerError> {
        let result = self
            .run(
                format!("delete image {id}"),
                images_api::delete_image(self.cfg(), images_api::DeleteImageParams { id }),
            )
            .await;
        match result {
            Ok(()) => Ok(DeleteOutcome::Deleted),
            Err(e) if e.is_not_found() => Ok(DeleteOutcome::AlreadyGone),
            Err(e) => Err(e),
        }
    }
}

fn adopt_key(key: models::SshKey, spec: &SshKeySpec, op: &str) -> Result<SshKeyInfo, HetznerError> {
    let same_key = key
        .public_key
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        == spec
            .public_key
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>();
    if !labels::contains_all(&key.labels, &spec.labels) || !same_key {
        return Err(HetznerError::new(
            ErrorKind::NotManaged,
            op,
            "an ssh key with this name exists with other labels or another public key",
        ));
    }
    Ok(SshKeyInfo {
        id: key.id,
        name: key.name,
        fingerprint: key.fingerprint,
        outcome: EnsureOutcome::Unchanged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_labels_and_selector_agree() {
        let labels = builder_labels("0190-run");
        assert_eq!(
            selector_of(&labels),
            "component=image-builder,hk8s-run=0190-run,managed-by=hk8s"
        );
        assert_eq!(
            builder_selector("0190-run"),
            "managed-by=hk8s,component=image-builder,hk8s-run=0190-run"
        );
        assert!(require_managed(&labels, "x").is_ok());
        assert!(require_managed(&Labels::new(), "x").is_err());
    }
}
