//! Cluster files every runner of a journal can reach: opaque sealed blobs per cluster and file
//! name. The journal never sees a plaintext: the CLI seals and opens them with the operator's
//! key, so a dump of the journal holds no secret.

use chrono::{DateTime, Utc};

use crate::codec::to_ms;
use crate::error::JournalError;
use crate::journal::Journal;
use crate::options::Durability;
use crate::sql::vals;

/// One stored cluster file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterFile {
    /// File name in the cluster's state folder (`secrets.yaml`, `talosconfig`, `kubeconfig`).
    pub name: String,
    /// The sealed content (base64 text, as the CLI wrote it).
    pub sealed: String,
    /// When it was last written.
    pub updated_at: DateTime<Utc>,
}

impl Journal {
    /// Stores (or replaces) the sealed file `name` of `cluster`; one durable commit.
    ///
    /// # Errors
    /// Storage errors.
    pub fn put_cluster_file(
        &self,
        cluster: &str,
        name: &str,
        sealed: &str,
        now: DateTime<Utc>,
    ) -> Result<(), JournalError> {
        self.write("store a cluster file", Durability::Full, |tx| {
            tx.execute(
                "INSERT INTO cluster_files (cluster, name, sealed, updated_at) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (cluster, name) DO UPDATE \
                 SET sealed = excluded.sealed, updated_at = excluded.updated_at",
                vals![cluster, name, sealed, to_ms(now)],
            )?;
            Ok(())
        })
    }

    /// The stored files of `cluster`, by name.
    ///
    /// # Errors
    /// Storage errors.
    pub fn cluster_files(&self, cluster: &str) -> Result<Vec<ClusterFile>, JournalError> {
        self.read("read cluster files", |tx| {
            tx.query(
                "SELECT name, sealed, updated_at FROM cluster_files WHERE cluster = ?1 \
                 ORDER BY name",
                vals![cluster],
            )?
            .iter()
            .map(|row| {
                let ms = row.int(2)?;
                Ok(ClusterFile {
                    name: row.text(0)?,
                    sealed: row.text(1)?,
                    updated_at: DateTime::from_timestamp_millis(ms)
                        .ok_or_else(|| row.unparsable(2, "a time in range"))?,
                })
            })
            .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{each_backend, t};

    #[test]
    fn cluster_files_are_stored_replaced_and_read_per_cluster() {
        each_backend(|journal| {
            assert!(journal.cluster_files("demo").unwrap().is_empty());
            journal
                .put_cluster_file("demo", "talosconfig", "c2VhbGVk", t(1))
                .unwrap();
            journal
                .put_cluster_file("demo", "kubeconfig", "b25l", t(2))
                .unwrap();
            journal
                .put_cluster_file("other", "kubeconfig", "b3RoZXI=", t(3))
                .unwrap();
            journal
                .put_cluster_file("demo", "kubeconfig", "dHdv", t(4))
                .unwrap();
            let files = journal.cluster_files("demo").unwrap();
            let got: Vec<_> = files
                .iter()
                .map(|f| (f.name.as_str(), f.sealed.as_str(), f.updated_at))
                .collect();
            assert_eq!(
                got,
                [
                    ("kubeconfig", "dHdv", t(4)),
                    ("talosconfig", "c2VhbGVk", t(1))
                ]
            );
        });
    }
}
