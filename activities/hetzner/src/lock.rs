//! The cluster lock in the cloud: one placement group `hk8s-lock-<cluster>` per cluster whose
//! labels name its holder (host and run) and when it expires.
//!
//! Why a placement group: Hetzner makes names unique per project and a create atomic (the
//! loser of two concurrent `POST`s gets `uniqueness_error`); it is free, needs no key material
//! (an SSH key would need a unique public key per lock), is not tied to a location, and its
//! labels can be rewritten by id (`PUT`). It carries no `cluster=` label, so destroy-cluster's
//! label sweep and its "nothing is left" proof never see it.
//!
//! Protocol (see [`Hetzner::acquire_cluster_lock`]): absent → create; ours → renew; expired →
//! delete **by id**, then create (a concurrent taker deletes the same id, gets `not_found`,
//! and loses the create); held → [`LockAttempt::Held`]. While a run is active its holder renews
//! the expiry by id; a renewal answered `not_found` means the lock was taken over.

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use hcloud::apis::placement_groups_api;
use hcloud::models;
use serde::{Deserialize, Serialize};

use crate::client::Hetzner;
use crate::error::{ErrorKind, HetznerError};
use crate::labels::{self, LABEL_COMPONENT, LABEL_MANAGED_BY, MANAGED_BY_VALUE};

/// `component` label value of cluster locks.
pub const COMPONENT_CLUSTER_LOCK: &str = "cluster-lock";
/// Label naming the locked cluster (not `cluster`: the lock is no cluster resource).
pub const LABEL_LOCK_CLUSTER: &str = "hk8s-lock";
/// Label naming the holder's host.
pub const LABEL_LOCK_HOST: &str = "lock-host";
/// Label naming the holder's run.
pub const LABEL_LOCK_RUN: &str = "lock-run";
/// Label holding the expiry (Unix seconds).
pub const LABEL_LOCK_EXPIRES: &str = "lock-expires";
/// Label holding the holder's process id (a dead holder on the same host is taken over at once).
pub const LABEL_LOCK_PID: &str = "lock-pid";

/// Who holds (or wants) a lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockOwner {
    /// Host identity (a valid label value).
    pub host: String,
    /// Run id.
    pub run: String,
}

/// A cluster lock as found in the cloud.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterLock {
    /// Placement group id.
    pub id: i64,
    /// `hk8s-lock-<cluster>`.
    pub name: String,
    /// Holder.
    pub owner: LockOwner,
    /// The holder's process id, when labelled.
    #[serde(default)]
    pub pid: Option<u32>,
    /// Expiry (whole seconds).
    pub expires: DateTime<Utc>,
}

/// The outcome of [`Hetzner::acquire_cluster_lock`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockAttempt {
    /// The lock is ours until its expiry; `took_over` names the stale lock replaced.
    Acquired {
        /// The lock.
        lock: ClusterLock,
        /// The expired lock deleted to make room, if any.
        took_over: Option<ClusterLock>,
    },
    /// Another live holder has it.
    Held(ClusterLock),
}

/// `hk8s-lock-<cluster>`.
pub fn cluster_lock_name(cluster: &str) -> String {
    format!("hk8s-lock-{cluster}")
}

/// What to do about the lock found (`None`: none exists) for `owner` at `now`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockDecision {
    /// No lock: create one.
    Create,
    /// Ours already (a resumed run): renew it.
    Renew,
    /// Expired: delete it by id, then create.
    TakeOver,
    /// Someone else's, still valid.
    Held,
}

/// The lock protocol's decision (pure); `holder_dead` says whether the holder is known to be
/// gone (a dead process on this very host).
pub fn decide_lock(
    found: Option<&ClusterLock>,
    owner: &LockOwner,
    now: DateTime<Utc>,
    holder_dead: bool,
) -> LockDecision {
    match found {
        None => LockDecision::Create,
        Some(lock) if lock.owner == *owner => LockDecision::Renew,
        Some(lock) if lock.expires <= now || holder_dead => LockDecision::TakeOver,
        Some(_) => LockDecision::Held,
    }
}

impl Hetzner {
    /// Takes the lock of `cluster` for `owner` (process `pid`) until `expires` (see the module
    /// doc); `holder_dead` judges a lock held by someone else.
    ///
    /// # Errors
    /// API errors as they are: a read-only token gets 403 (`token_readonly` or `forbidden`) on
    /// the create, which is then the first mutation of a run.
    pub async fn acquire_cluster_lock(
        &self,
        cluster: &str,
        owner: &LockOwner,
        pid: u32,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
        holder_dead: &(dyn Fn(&ClusterLock) -> bool + Send + Sync),
    ) -> Result<LockAttempt, HetznerError> {
        labels::validate_cluster_name(cluster)?;
        labels::validate_label_value(&owner.host)?;
        labels::validate_label_value(&owner.run)?;
        let found = self.find_cluster_lock(cluster).await?;
        let mut took_over = None;
        let dead = found.as_ref().is_some_and(holder_dead);
        match decide_lock(found.as_ref(), owner, now, dead) {
            LockDecision::Held => {
                return Ok(LockAttempt::Held(found.ok_or_else(|| {
                    HetznerError::new(ErrorKind::Decode, "lock", "held lock vanished")
                })?));
            }
            LockDecision::Renew => {
                if let Some(lock) = found {
                    match self.renew_cluster_lock(&lock, pid, expires).await {
                        Ok(lock) => {
                            return Ok(LockAttempt::Acquired {
                                lock,
                                took_over: None,
                            });
                        }
                        // Taken over between our look and the renewal: start over once.
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            LockDecision::TakeOver => {
                if let Some(stale) = found {
                    self.delete_cluster_lock(stale.id).await?;
                    took_over = Some(stale);
                }
            }
            LockDecision::Create => {}
        }
        match self.create_cluster_lock(cluster, owner, pid, expires).await {
            Ok(lock) => Ok(LockAttempt::Acquired { lock, took_over }),
            Err(e) if e.is_uniqueness_or_conflict() => match self.find_cluster_lock(cluster).await?
            {
                Some(lock) if lock.owner == *owner => Ok(LockAttempt::Acquired { lock, took_over }),
                Some(lock) => Ok(LockAttempt::Held(lock)),
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// The lock of `cluster`, if one exists.
    ///
    /// # Errors
    /// API errors; [`ErrorKind::NotManaged`] when a placement group with the lock's name is not
    /// an hk8s lock for this cluster.
    pub async fn find_cluster_lock(
        &self,
        cluster: &str,
    ) -> Result<Option<ClusterLock>, HetznerError> {
        let name = cluster_lock_name(cluster);
        let Some(group) = self.find_placement_group(&name).await? else {
            return Ok(None);
        };
        lock_from(&group.labels, group.id, &group.name, cluster).map(Some)
    }

    /// Sets the expiry of our lock (by id).
    ///
    /// # Errors
    /// `not_found` when the lock is gone (taken over after it expired); other API errors.
    pub async fn renew_cluster_lock(
        &self,
        lock: &ClusterLock,
        pid: u32,
        expires: DateTime<Utc>,
    ) -> Result<ClusterLock, HetznerError> {
        let cluster = lock.name.strip_prefix("hk8s-lock-").unwrap_or(&lock.name);
        let labels = lock_labels(cluster, &lock.owner, pid, expires);
        let resp = self
            .run(
                format!("renew cluster lock {}", lock.name),
                placement_groups_api::replace_placementgroup(
                    self.cfg(),
                    placement_groups_api::ReplacePlacementgroupParams {
                        id: lock.id,
                        replace_placementgroup_request: models::ReplacePlacementgroupRequest {
                            labels: Some(labels),
                            name: None,
                        },
                    },
                ),
            )
            .await?;
        let group = resp.placement_group;
        lock_from(&group.labels, group.id, &group.name, cluster)
    }

    /// Deletes a lock by id; `not_found` is success.
    ///
    /// # Errors
    /// Other API errors.
    pub async fn delete_cluster_lock(&self, id: i64) -> Result<(), HetznerError> {
        match self
            .run(
                format!("delete cluster lock {id}"),
                placement_groups_api::delete_placementgroup(
                    self.cfg(),
                    placement_groups_api::DeletePlacementgroupParams { id },
                ),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn create_cluster_lock(
        &self,
        cluster: &str,
        owner: &LockOwner,
        pid: u32,
        expires: DateTime<Utc>,
    ) -> Result<ClusterLock, HetznerError> {
        let name = cluster_lock_name(cluster);
        let resp = self
            .run(
                format!("create cluster lock {name}"),
                placement_groups_api::create_placementgroup(
                    self.cfg(),
                    placement_groups_api::CreatePlacementgroupParams {
                        create_placementgroup_request: models::CreatePlacementgroupRequest {
                            labels: Some(lock_labels(cluster, owner, pid, expires)),
                            name: name.clone(),
                            r#type: models::create_placementgroup_request::Type::Spread,
                        },
                    },
                ),
            )
            .await?;
        let group = resp.placement_group;
        lock_from(&group.labels, group.id, &group.name, cluster)
    }
}

fn lock_labels(
    cluster: &str,
    owner: &LockOwner,
    pid: u32,
    expires: DateTime<Utc>,
) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string()),
        (
            LABEL_COMPONENT.to_string(),
            COMPONENT_CLUSTER_LOCK.to_string(),
        ),
        (LABEL_LOCK_CLUSTER.to_string(), cluster.to_string()),
        (LABEL_LOCK_HOST.to_string(), owner.host.clone()),
        (LABEL_LOCK_RUN.to_string(), owner.run.clone()),
        (
            LABEL_LOCK_EXPIRES.to_string(),
            expires.timestamp().to_string(),
        ),
        (LABEL_LOCK_PID.to_string(), pid.to_string()),
    ])
}

fn lock_from(
    labels: &HashMap<String, String>,
    id: i64,
    name: &str,
    cluster: &str,
) -> Result<ClusterLock, HetznerError> {
    let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
    if get(LABEL_MANAGED_BY) != MANAGED_BY_VALUE
        || get(LABEL_COMPONENT) != COMPONENT_CLUSTER_LOCK
        || get(LABEL_LOCK_CLUSTER) != cluster
    {
        return Err(HetznerError::new(
            ErrorKind::NotManaged,
            format!("read cluster lock {name}"),
            "a placement group with the lock's name exists but is not an hk8s cluster lock; delete or rename it",
        ));
    }
    // A lock without a readable expiry is treated as expired (it can be taken over).
    let expires = get(LABEL_LOCK_EXPIRES)
        .parse::<i64>()
        .ok()
        .and_then(|s| Utc.timestamp_opt(s, 0).single())
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    Ok(ClusterLock {
        id,
        name: name.to_string(),
        owner: LockOwner {
            host: get(LABEL_LOCK_HOST),
            run: get(LABEL_LOCK_RUN),
        },
        pid: get(LABEL_LOCK_PID).parse().ok(),
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(run: &str) -> LockOwner {
        LockOwner {
            host: "h1".into(),
            run: run.into(),
        }
    }

    #[test]
    fn decisions() {
        let now = Utc.timestamp_opt(1_000, 0).unwrap();
        let lock = |run: &str, expires: i64| ClusterLock {
            id: 1,
            name: "hk8s-lock-demo".into(),
            owner: owner(run),
            pid: Some(4),
            expires: Utc.timestamp_opt(expires, 0).unwrap(),
        };
        assert_eq!(
            decide_lock(Some(&lock("b", 2_000)), &owner("a"), now, true),
            LockDecision::TakeOver
        );
        assert_eq!(
            decide_lock(None, &owner("a"), now, false),
            LockDecision::Create
        );
        assert_eq!(
            decide_lock(Some(&lock("a", 2_000)), &owner("a"), now, false),
            LockDecision::Renew
        );
        assert_eq!(
            decide_lock(Some(&lock("a", 10)), &owner("a"), now, false),
            LockDecision::Renew
        );
        assert_eq!(
            decide_lock(Some(&lock("b", 2_000)), &owner("a"), now, false),
            LockDecision::Held
        );
        assert_eq!(
            decide_lock(Some(&lock("b", 1_000)), &owner("a"), now, false),
            LockDecision::TakeOver
        );
    }

    #[test]
    fn labels_round_trip_and_foreign_groups_are_refused() {
        let expires = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let labels = lock_labels("demo", &owner("r1"), 42, expires);
        let lock = lock_from(&labels, 7, "hk8s-lock-demo", "demo").unwrap();
        assert_eq!(lock.owner, owner("r1"));
        assert_eq!(lock.expires, expires);
        assert!(lock_from(&labels, 7, "hk8s-lock-demo", "other").is_err());
        assert!(lock_from(&HashMap::new(), 7, "hk8s-lock-demo", "demo").is_err());
        for v in labels.values() {
            labels::validate_label_value(v).unwrap();
        }
    }
}
