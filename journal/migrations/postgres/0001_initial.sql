-- hk8s journal on PostgreSQL, schema version 1: the SQLite journal's tables (schema 4) with the
-- same column names, in schema hk8s. Times are epoch milliseconds (UTC) as on SQLite, so the
-- journal's SQL is shared; lease expiry is compared with the database's clock_timestamp().
-- Never edit a released migration; add the next numbered file instead.

CREATE TABLE runs (
    id               TEXT    NOT NULL COLLATE "C" PRIMARY KEY,  -- UUID v7, hyphenated lowercase
    workflow         TEXT    NOT NULL,
    workflow_version BIGINT  NOT NULL CHECK (workflow_version >= 0),
    cluster          TEXT    NOT NULL,
    input_json       TEXT    NOT NULL,
    status           TEXT    NOT NULL
        CHECK (status IN ('running', 'interrupted', 'failed', 'succeeded', 'cancelled')),
    error            TEXT,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL,
    finished_at      BIGINT,
    owner_host       TEXT,
    owner_pid        BIGINT,
    owner_id         TEXT,
    lease_expires_at BIGINT,
    fence            BIGINT  NOT NULL DEFAULT 0,   -- +1 on every lease acquisition
    resume_count     BIGINT  NOT NULL DEFAULT 0,
    owner_machine    TEXT,                         -- boot id and PID namespace of the holder
    CHECK ((owner_id IS NULL) = (lease_expires_at IS NULL)),
    CHECK ((owner_id IS NULL) = (owner_host IS NULL) AND (owner_id IS NULL) = (owner_pid IS NULL))
);
CREATE INDEX runs_by_created  ON runs (created_at DESC, id DESC);
CREATE INDEX runs_by_cluster  ON runs (cluster, created_at DESC);
CREATE INDEX runs_by_workflow ON runs (workflow, created_at DESC);
CREATE INDEX runs_by_status   ON runs (status, created_at DESC);

CREATE TABLE steps (
    run_id          TEXT    NOT NULL COLLATE "C" REFERENCES runs (id) ON DELETE CASCADE,
    key             TEXT    NOT NULL COLLATE "C",
    seq             BIGINT  NOT NULL CHECK (seq >= 1),  -- order first reached
    activity        TEXT    NOT NULL,
    input_hash      TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    output_json     TEXT,
    error           TEXT,                               -- last error, cleared on success
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_retry_at   BIGINT,
    started_at      BIGINT  NOT NULL,
    finished_at     BIGINT,
    open_fence      BIGINT,                             -- fence of running attempt `attempts`
    open_started_at BIGINT,                             -- and when it started
    PRIMARY KEY (run_id, key)
);

CREATE TABLE attempts (
    run_id      TEXT    NOT NULL COLLATE "C",
    step_key    TEXT    NOT NULL COLLATE "C",
    attempt     BIGINT  NOT NULL CHECK (attempt >= 1),
    fence       BIGINT  NOT NULL,
    started_at  BIGINT  NOT NULL,
    ended_at    BIGINT,
    outcome     TEXT CHECK (outcome IN ('succeeded', 'failed')),
    error_class TEXT
        CHECK (error_class IN ('retryable', 'permanent', 'rate_limited', 'interrupted', 'lease_lost')),
    message     TEXT,
    retry_at    BIGINT,
    PRIMARY KEY (run_id, step_key, attempt),
    FOREIGN KEY (run_id, step_key) REFERENCES steps (run_id, key) ON DELETE CASCADE,
    CHECK (CASE WHEN outcome = 'failed' THEN error_class IS NOT NULL ELSE error_class IS NULL END)
);
