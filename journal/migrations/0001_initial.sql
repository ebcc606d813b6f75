-- hk8s journal schema, version 1. Times are epoch milliseconds (UTC).
-- Never edit a released migration; add the next numbered file instead.

PRAGMA application_id = 1751857267; -- 0x686b3873, "hk8s"

CREATE TABLE runs (
    id               TEXT    NOT NULL PRIMARY KEY,  -- UUID v7, hyphenated lowercase
    workflow         TEXT    NOT NULL,
    workflow_version INTEGER NOT NULL CHECK (workflow_version >= 0),
    cluster          TEXT    NOT NULL,
    input_json       TEXT    NOT NULL,
    status           TEXT    NOT NULL
        CHECK (status IN ('running', 'interrupted', 'failed', 'succeeded', 'cancelled')),
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
    CHECK ((owner_id IS NULL) = (lease_expires_at IS NULL)),
    CHECK ((owner_id IS NULL) = (owner_host IS NULL) AND (owner_id IS NULL) = (owner_pid IS NULL))
);
CREATE INDEX runs_by_created  ON runs (created_at DESC, id DESC);
CREATE INDEX runs_by_cluster  ON runs (cluster, created_at DESC);
CREATE INDEX runs_by_workflow ON runs (workflow, created_at DESC);
CREATE INDEX runs_by_status   ON runs (status, created_at DESC);

CREATE TABLE steps (
    run_id        TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key           TEXT    NOT NULL,
    seq           INTEGER NOT NULL CHECK (seq >= 1),  -- order first reached
    activity      TEXT    NOT NULL,
    input_hash    TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    output_json   TEXT,
    error         TEXT,                               -- last error, cleared on success
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_retry_at INTEGER,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    PRIMARY KEY (run_id, key)
) WITHOUT ROWID;
CREATE UNIQUE INDEX steps_by_seq ON steps (run_id, seq);

CREATE TABLE attempts (
    run_id      TEXT    NOT NULL,
    step_key    TEXT    NOT NULL,
    attempt     INTEGER NOT NULL CHECK (attempt >= 1),
    fence       INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    outcome     TEXT CHECK (outcome IN ('succeeded', 'failed')),
    error_class TEXT
        CHECK (error_class IN ('retryable', 'permanent', 'rate_limited', 'interrupted', 'lease_lost')),
    message     TEXT,
    retry_at    INTEGER,
    PRIMARY KEY (run_id, step_key, attempt),
    FOREIGN KEY (run_id, step_key) REFERENCES steps (run_id, key) ON DELETE CASCADE,
    CHECK (CASE WHEN outcome = 'failed' THEN error_class IS NOT NULL ELSE error_class IS NULL END)
) WITHOUT ROWID;
