-- Schema 2 on PostgreSQL (SQLite schema 5): the run queue. A run may be `queued`, carry a dedup
-- key, and count the worker claims it got without progress. At most one run per cluster is
-- active (queued or running) and at most one active run carries a given dedup key: unique
-- partial indexes, enforced at run creation, at claim and whenever a run becomes active again.
ALTER TABLE runs DROP CONSTRAINT IF EXISTS runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check
    CHECK (status IN ('running', 'interrupted', 'failed', 'succeeded', 'cancelled', 'queued'));
ALTER TABLE runs ADD COLUMN dedup_key TEXT;
ALTER TABLE runs ADD COLUMN stalled_claims BIGINT NOT NULL DEFAULT 0;
UPDATE runs SET status = 'interrupted', owner_host = NULL, owner_pid = NULL, owner_id = NULL,
    owner_machine = NULL, lease_expires_at = NULL
WHERE status = 'running' AND EXISTS (
    SELECT 1 FROM runs newer WHERE newer.cluster = runs.cluster AND newer.status = 'running'
      AND (newer.created_at > runs.created_at
           OR (newer.created_at = runs.created_at AND newer.id > runs.id)));
CREATE UNIQUE INDEX runs_one_active ON runs (cluster) WHERE status IN ('queued', 'running');
CREATE UNIQUE INDEX runs_dedup ON runs (dedup_key)
    WHERE dedup_key IS NOT NULL AND status IN ('queued', 'running');
-- Workers look for claimable runs by status.
CREATE INDEX runs_claimable ON runs (created_at) WHERE status IN ('queued', 'running');
