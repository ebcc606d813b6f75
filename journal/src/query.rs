//! Reads: one run with everything a resume needs, run lists, id prefixes.

use crate::codec::{
    ATTEMPT_COLUMNS, RUN_COLUMNS, STEP_COLUMNS, attempt_from_row, run_from_row, running_attempt,
    step_from_row,
};
use crate::error::JournalError;
use crate::ids::RunId;
use crate::journal::Journal;
use crate::model::{RunFilter, RunRecord, RunState};
use crate::runs::not_found;
use crate::sql::{Value, vals};

/// How many candidates [`JournalError::AmbiguousRun`] lists at most.
const MAX_CANDIDATES: usize = 10;

impl Journal {
    /// The run, its steps (by `seq`) and every attempt: one indexed SELECT per table, in one
    /// read transaction (a consistent snapshot). This is also the step timeline for `show`.
    ///
    /// # Errors
    /// [`JournalError::RunNotFound`]; storage errors.
    pub fn load_run(&self, run: &RunId) -> Result<RunState, JournalError> {
        let id = run.to_string();
        self.read("load run", |tx| {
            let record = tx
                .query_opt(
                    &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
                    vals![&id],
                )?
                .map(|r| run_from_row(&r))
                .transpose()?;
            let Some(record) = record else {
                return Err(not_found(run).into());
            };
            let (steps, running): (Vec<_>, Vec<_>) = tx
                .query(
                    &format!("SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ?1 ORDER BY seq"),
                    vals![&id],
                )?
                .iter()
                .map(|row| Ok((step_from_row(row)?, running_attempt(row)?)))
                .collect::<Result<Vec<_>, crate::sql::TxError>>()?
                .into_iter()
                .unzip();
            let mut attempts = tx
                .query(
                    &format!(
                        "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE run_id = ?1 \
                         ORDER BY step_key, attempt"
                    ),
                    vals![&id],
                )?
                .iter()
                .map(attempt_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            // Running attempts live on their step rows until they end.
            attempts.extend(running.into_iter().flatten());
            attempts.sort_by(|a, b| (&a.step_key, a.attempt).cmp(&(&b.step_key, b.attempt)));
            Ok(RunState {
                run: record,
                steps,
                attempts,
            })
        })
    }

    /// Runs matching `filter`, newest first.
    ///
    /// # Errors
    /// Storage errors.
    pub fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, JournalError> {
        let mut conditions = Vec::new();
        let mut values = Vec::new();
        if let Some(cluster) = &filter.cluster {
            values.push(Value::Text(cluster.clone()));
            conditions.push(format!("cluster = ?{}", values.len()));
        }
        if let Some(workflow) = &filter.workflow {
            values.push(Value::Text(workflow.clone()));
            conditions.push(format!("workflow = ?{}", values.len()));
        }
        if let Some(status) = filter.status {
            values.push(Value::Text(status.as_str().to_owned()));
            conditions.push(format!("status = ?{}", values.len()));
        }
        let mut sql = format!("SELECT {RUN_COLUMNS} FROM runs");
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(" ORDER BY created_at DESC, id DESC");
        if let Some(limit) = filter.limit {
            values.push(Value::Int(i64::from(limit)));
            sql.push_str(&format!(" LIMIT ?{}", values.len()));
        }
        self.read("list runs", |tx| {
            tx.query(&sql, &values)?.iter().map(run_from_row).collect()
        })
    }

    /// The run whose id is `id_or_prefix` or starts with it (case-insensitive).
    ///
    /// # Errors
    /// [`JournalError::RunNotFound`], [`JournalError::AmbiguousRun`] listing candidates;
    /// storage errors.
    pub fn resolve_run(&self, id_or_prefix: &str) -> Result<RunId, JournalError> {
        let prefix = id_or_prefix.trim().to_ascii_lowercase();
        let not_found = || JournalError::RunNotFound {
            run: id_or_prefix.to_owned(),
        };
        if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(not_found());
        }
        let ids: Vec<String> = self.read("resolve run", |tx| {
            tx.query(
                "SELECT id FROM runs WHERE substr(id, 1, length(?1)) = ?1 \
                 ORDER BY id DESC LIMIT ?2",
                vals![&prefix, MAX_CANDIDATES as i64 + 1],
            )?
            .iter()
            .map(|r| r.text(0))
            .collect()
        })?;
        let mut candidates = ids
            .iter()
            .filter_map(|id| id.parse::<RunId>().ok())
            .collect::<Vec<_>>();
        match candidates.len() {
            0 => Err(not_found()),
            1 => Ok(candidates.remove(0)),
            _ => {
                candidates.truncate(MAX_CANDIDATES);
                Err(JournalError::AmbiguousRun {
                    prefix: id_or_prefix.trim().to_owned(),
                    candidates,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RunStatus;
    use crate::testutil::{TTL, each_backend, new_run, open_temp, owner, t};
    use crate::{NewRun, Takeover};

    /// Creates runs (workflow, cluster, created at) and returns their ids in creation order; a
    /// cluster's active run is interrupted before the next run of that cluster is created (one
    /// active run per cluster).
    fn seed(journal: &Journal, runs: &[(&str, &str, i64)]) -> Vec<RunId> {
        runs.iter()
            .map(|(workflow, cluster, at)| {
                if let Some(active) = journal.active_run(cluster).unwrap() {
                    let lease = journal
                        .acquire_lease(&active.id, &owner("s"), t(*at), TTL, Takeover::IfFree)
                        .unwrap();
                    journal
                        .finish_run(&lease, RunStatus::Interrupted, None, t(*at))
                        .unwrap();
                }
                let run = new_run(workflow, cluster);
                journal.create_run(&run, t(*at)).unwrap();
                run.id
            })
            .collect()
    }

    fn ids(runs: &[RunRecord]) -> Vec<RunId> {
        runs.iter().map(|r| r.id).collect()
    }

    #[test]
    fn list_runs_filters_by_cluster_workflow_status_and_limit_newest_first() {
        each_backend(|journal| {
            let mut id = seed(
                journal,
                &[
                    ("cluster.create", "alpha", 1),
                    ("cluster.create", "beta", 2),
                    ("cluster.upgrade", "alpha", 3),
                ],
            );
            let lease = journal
                .acquire_lease(&id[2], &owner("a"), t(5), TTL, Takeover::IfFree)
                .unwrap();
            journal
                .finish_run(&lease, RunStatus::Succeeded, None, t(6))
                .unwrap();
            id.extend(seed(journal, &[("cluster.destroy", "alpha", 4)]));

            let all = journal.list_runs(&RunFilter::default()).unwrap();
            assert_eq!(ids(&all), [id[3], id[2], id[1], id[0]]);
            let alpha = RunFilter {
                cluster: Some("alpha".into()),
                ..RunFilter::default()
            };
            assert_eq!(
                ids(&journal.list_runs(&alpha).unwrap()),
                [id[3], id[2], id[0]]
            );
            let creates = RunFilter {
                workflow: Some("cluster.create".into()),
                ..RunFilter::default()
            };
            assert_eq!(ids(&journal.list_runs(&creates).unwrap()), [id[1], id[0]]);
            let done = RunFilter {
                status: Some(RunStatus::Succeeded),
                ..RunFilter::default()
            };
            assert_eq!(ids(&journal.list_runs(&done).unwrap()), [id[2]]);
            let limited = RunFilter {
                limit: Some(2),
                ..RunFilter::default()
            };
            assert_eq!(ids(&journal.list_runs(&limited).unwrap()), [id[3], id[2]]);
            let combined = RunFilter {
                cluster: Some("alpha".into()),
                workflow: Some("cluster.create".into()),
                status: Some(RunStatus::Interrupted),
                limit: Some(10),
            };
            assert_eq!(ids(&journal.list_runs(&combined).unwrap()), [id[0]]);
            let none = RunFilter {
                cluster: Some("gamma".into()),
                ..RunFilter::default()
            };
            assert!(journal.list_runs(&none).unwrap().is_empty());
            // Records are complete, not just ids.
            assert_eq!(all[1].status, RunStatus::Succeeded);
            assert_eq!(all[1].finished_at, Some(t(6)));
        });
    }

    #[test]
    fn list_runs_uses_the_indexes() {
        let (_dir, journal) = open_temp();
        let conn = journal.lock();
        for (filter, index) in [
            ("cluster = 'a'", "runs_by_cluster"),
            ("workflow = 'a'", "runs_by_workflow"),
            ("status = 'running'", "runs_by_status"),
        ] {
            let plan: String = conn
                .query_row(
                    &format!(
                        "EXPLAIN QUERY PLAN SELECT id FROM runs WHERE {filter} \
                         ORDER BY created_at DESC, id DESC"
                    ),
                    [],
                    |r| r.get(3),
                )
                .unwrap();
            assert!(plan.contains(index), "{filter}: {plan}");
        }
    }

    fn fixed(id: &str) -> NewRun {
        NewRun {
            id: id.parse().unwrap(),
            ..new_run("cluster.create", id)
        }
    }

    #[test]
    fn resolve_run_by_full_id_and_unique_prefix() {
        each_backend(|journal| {
            for id in [
                "0190aaaa-0000-7000-8000-000000000001",
                "0190aaaa-0000-7000-8000-000000000002",
                "0190bbbb-0000-7000-8000-000000000003",
            ] {
                journal.create_run(&fixed(id), t(0)).unwrap();
            }
            let third: RunId = "0190bbbb-0000-7000-8000-000000000003".parse().unwrap();
            assert_eq!(
                journal
                    .resolve_run("0190bbbb-0000-7000-8000-000000000003")
                    .unwrap(),
                third
            );
            assert_eq!(journal.resolve_run("0190b").unwrap(), third);
            assert_eq!(journal.resolve_run(" 0190BB ").unwrap(), third);
            let first: RunId = "0190aaaa-0000-7000-8000-000000000001".parse().unwrap();
            assert_eq!(
                journal
                    .resolve_run("0190aaaa-0000-7000-8000-000000000001")
                    .unwrap(),
                first
            );
        });
    }

    #[test]
    fn an_ambiguous_prefix_lists_the_candidates() {
        each_backend(|journal| {
            for id in [
                "0190aaaa-0000-7000-8000-000000000001",
                "0190aaaa-0000-7000-8000-000000000002",
                "0190bbbb-0000-7000-8000-000000000003",
            ] {
                journal.create_run(&fixed(id), t(0)).unwrap();
            }
            let err = journal.resolve_run("0190a").unwrap_err();
            assert_eq!(
                err.to_string(),
                "run id prefix \"0190a\" is ambiguous: it matches \
             0190aaaa-0000-7000-8000-000000000002, 0190aaaa-0000-7000-8000-000000000001"
            );
            let err = journal.resolve_run("0190").unwrap_err();
            assert!(
                matches!(&err, JournalError::AmbiguousRun { candidates, .. } if candidates.len() == 3)
            );
        });
    }

    #[test]
    fn ambiguity_lists_at_most_ten_candidates() {
        each_backend(|journal| {
            for i in 0..12 {
                journal
                    .create_run(
                        &fixed(&format!("0190aaaa-0000-7000-8000-0000000000{i:02}")),
                        t(i),
                    )
                    .unwrap();
            }
            let err = journal.resolve_run("0190").unwrap_err();
            assert!(
                matches!(&err, JournalError::AmbiguousRun { candidates, .. } if candidates.len() == 10)
            );
        });
    }

    #[test]
    fn unknown_ids_and_prefixes_are_not_found() {
        each_backend(|journal| {
            journal
                .create_run(&fixed("0190aaaa-0000-7000-8000-000000000001"), t(0))
                .unwrap();
            for query in [
                "0190b",
                "",
                "zzz",
                "0190aaaa%",
                "0190aaaa-0000-7000-8000-000000000009",
            ] {
                let err = journal.resolve_run(query).unwrap_err();
                assert_eq!(err.to_string(), format!("no run matches {query:?}"));
            }
            let missing = RunId::new();
            let err = journal.load_run(&missing).unwrap_err();
            assert_eq!(err.to_string(), format!("no run matches \"{missing}\""));
        });
    }

    #[test]
    fn load_run_reads_one_run_only() {
        each_backend(|journal| {
            let a = crate::testutil::leased_run(journal, 0);
            let other = new_run("cluster.create", "other");
            journal.create_run(&other, t(1)).unwrap();
            let b = journal
                .acquire_lease(&other.id, &owner("a"), t(1), TTL, Takeover::IfFree)
                .unwrap();
            journal
                .start_attempt(&a, &crate::testutil::start("network", 1, 2))
                .unwrap();
            journal
                .start_attempt(&b, &crate::testutil::start("other", 1, 3))
                .unwrap();
            let state = journal.load_run(&a.run_id).unwrap();
            assert_eq!(state.steps.len(), 1);
            assert_eq!(state.attempts.len(), 1);
            assert_eq!(state.steps[0].key, "network");
            assert!(state.step("other").is_none());
        });
    }
}
