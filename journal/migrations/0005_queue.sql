-- Schema 5: the run queue. A run may be `queued` (waiting for a worker), carry a dedup key (two
-- triggers with the same key make one run), and count the claims it got without progress (a
-- worker gives up after five). At most one run per cluster is active (queued or running), and at
-- most one active run carries a given dedup key: both enforced by unique partial indexes, at run
-- creation and whenever a run becomes active again.
--
-- SQLite cannot change a CHECK constraint in place, so `runs` is rebuilt (the migration runs with
-- foreign keys off; steps and attempts keep referring to `runs` by name).
CREATE TABLE runs_new (
    id               TEXT    NOT NULL PRIMARY KEY,  -- UUID v7, hyphenated lowercase
    workflow         TEXT    NOT NULL,
    workflow_version INTEGER NOT NULL CHECK (workflow_version >= 0),
    cluster          TEXT    NOT NULL,
    input_json       TEXT    NOT NULL,
    status           TEXT    NOT NULL
        CHECK (status IN ('running', 'interrupted', 'failed', 'succeeded', 'cancelled', 'queued')),
    error            TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    owner_host       TEXT,
    owner_pid        INTEGER,
    owner_id         TEXT,
    lease_expires_at INTEGER,
    fence            INTEGER NOT NULL DEFAULT 0,   -- +1 on every lease acquisition
    resume_count     INTEGER NOT NULL DEFAULT 0,
    owner_machine    TEXT,
    dedup_key        TEXT,                         -- `--dedup KEY` of a queued run
    stalled_claims   INTEGER NOT NULL DEFAULT 0,   -- worker claims since the last completed step
    CHECK ((owner_id IS NULL) = (lease_expires_at IS NULL)),
    CHECK ((owner_id IS NULL) = (owner_host IS NULL) AND (owner_id IS NULL) = (owner_pid IS NULL))
);
INSERT INTO runs_new (id, workflow, workflow_version, cluster, input_json, status, error,
    created_at, updated_at, finished_at, owner_host, owner_pid, owner_id, lease_expires_at, fence,
    resume_count, owner_machine)
SELECT id, workflow, workflow_version, cluster, input_json, status, error, created_at, updated_at,
    finished_at, owner_host, owner_pid, owner_id, lease_expires_at, fence, resume_count,
    owner_machine FROM runs;
DROP TABLE runs;
ALTER TABLE runs_new RENAME TO runs;
CREATE INDEX runs_by_created  ON runs (created_at DESC, id DESC);
CREATE INDEX runs_by_cluster  ON runs (cluster, created_at DESC);
CREATE INDEX runs_by_workflow ON runs (workflow, created_at DESC);
CREATE INDEX runs_by_status   ON runs (status, created_at DESC);
-- Older journals may hold several running runs of one cluster (crashed processes): only the
-- newest stays active, the others become interrupted (resumable by hand).
UPDATE runs SET status = 'interrupted', owner_host = NULL, owner_pid = NULL, owner_id = NULL,
    owner_machine = NULL, lease_expires_at = NULL
WHERE status = 'running' AND EXISTS (
    SELECT 1 FROM runs newer WHERE newer.cluster = runs.cluster AND newer.status = 'running'
      AND (newer.created_at > runs.created_at
           OR (newer.created_at = runs.created_at AND newer.id > runs.id)));
CREATE UNIQUE INDEX runs_one_active ON runs (cluster) WHERE status IN ('queued', 'running');
CREATE UNIQUE INDEX runs_dedup ON runs (dedup_key)
    WHERE dedup_key IS NOT NULL AND status IN ('queued', 'running');
