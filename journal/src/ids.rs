//! Identities: run ids, lease owners and the lease itself.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Identifier of one workflow run: a UUID v7, so ids sort by creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(Uuid);

impl RunId {
    /// A fresh time-ordered id (UUID v7; reads the system clock and randomness).
    #[must_use]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Wraps an existing UUID (tests, imports).
    #[must_use]
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The underlying UUID.
    #[must_use]
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl FromStr for RunId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim()).map(Self)
    }
}

/// The process that holds (or held) a run's lease.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Owner {
    /// Host name of the machine the process runs on.
    pub host: String,
    /// Process id on that host.
    pub pid: u32,
    /// The machine identity ([`machine_id`]: boot id and PID namespace); empty when unknown.
    /// Only an equal, non-empty identity lets another process judge this pid dead.
    #[serde(default)]
    pub machine: String,
    /// Random id (UUID v4) unique to this process instance; the lease compares this.
    pub id: String,
}

impl Owner {
    /// The current process: host name, pid and a fresh random id.
    ///
    /// The host name comes from `/proc/sys/kernel/hostname`, else `localhost` (the journal reads
    /// no environment variable).
    #[must_use]
    pub fn current() -> Self {
        Self {
            host: current_host(),
            pid: std::process::id(),
            machine: machine_id(),
            id: Uuid::new_v4().to_string(),
        }
    }

    /// Whether `other` runs on the same machine and in the same PID namespace as this owner,
    /// so that its pid means the same process here (containers on two hosts may share a host
    /// name, and PID namespaces repeat pids).
    #[must_use]
    pub fn same_machine(&self, other: &Owner) -> bool {
        !self.machine.is_empty() && self.machine == other.machine && self.host == other.host
    }
}

/// This machine's identity for pids: the kernel's boot id and the PID namespace's inode
/// (`<boot id>/pidns:<inode>`); empty when `/proc` does not tell.
#[must_use]
pub fn machine_id() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let pidns = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    if boot.is_empty() || pidns.is_empty() {
        return String::new();
    }
    format!("{boot}/{pidns}")
}

fn current_host() -> String {
    let from_proc = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    from_proc.unwrap_or_else(|| "localhost".to_owned())
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} on {} (owner {})", self.pid, self.host, self.id)
    }
}

/// Proof of ownership of a run, returned by `acquire_lease` and passed to every write.
///
/// A write is accepted only while the run's stored owner id and fence still equal these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The leased run.
    pub run_id: RunId,
    /// The holder.
    pub owner: Owner,
    /// Fencing counter assigned at acquisition; a later acquisition by anyone increments it.
    pub fence: i64,
    /// Until when other processes must not take the run over (unless forced).
    pub expires_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_id_round_trips_through_text_and_json() {
        let id = RunId::new();
        let text = id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(text.parse::<RunId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<RunId>(&json).unwrap(), id);
        assert_eq!(id.as_uuid().get_version_num(), 7);
    }

    #[test]
    fn run_ids_sort_by_creation() {
        let a = RunId::new();
        let b = RunId::new();
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
    }

    #[test]
    fn bad_run_id_is_an_error() {
        assert!("not-a-uuid".parse::<RunId>().is_err());
    }

    #[test]
    fn current_owner_has_pid_host_and_random_id() {
        let a = Owner::current();
        let b = Owner::current();
        assert_eq!(a.pid, std::process::id());
        assert!(!a.host.is_empty());
        assert_ne!(a.id, b.id);
        assert!(Uuid::parse_str(&a.id).is_ok());
        assert!(a.to_string().contains(&format!("pid {}", a.pid)));
        assert!(a.machine.contains("pid:["), "{}", a.machine);
        assert!(a.same_machine(&b));
        let elsewhere = Owner {
            machine: "other-boot/pid:[1]".into(),
            ..b.clone()
        };
        assert!(
            !a.same_machine(&elsewhere),
            "same host name, another machine"
        );
        let unknown = Owner {
            machine: String::new(),
            ..a.clone()
        };
        assert!(!unknown.same_machine(&unknown));
    }
}
