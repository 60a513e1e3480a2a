-- Switchyard schema for SQLite. `{prefix}` is replaced by the configured table prefix.
-- Times are Unix milliseconds (UTC); ids and lease tokens are 16-byte UUID blobs.
CREATE TABLE IF NOT EXISTS {prefix}jobs (
    id               BLOB PRIMARY KEY NOT NULL,
    kind             TEXT    NOT NULL,
    queue            TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    state            TEXT    NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    lease_expires_at INTEGER,
    lease_token      BLOB,
    worker_id        TEXT,
    errors           TEXT    NOT NULL DEFAULT '[]',
    result           TEXT,
    unique_key       TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    timeout_ms       INTEGER,
    tags             TEXT    NOT NULL DEFAULT '[]',
    dispatched_at    INTEGER
) WITHOUT ROWID;

-- The claim path: only pending rows are indexed, so finished jobs never slow a claim.
CREATE INDEX IF NOT EXISTS {prefix}jobs_runnable
    ON {prefix}jobs (queue, priority DESC, run_at, id)
    WHERE state IN ('scheduled', 'available', 'retrying');

-- The rescuer's path: running rows by lease expiry.
CREATE INDEX IF NOT EXISTS {prefix}jobs_leases
    ON {prefix}jobs (lease_expires_at)
    WHERE state = 'running';

-- One live job per unique key.
CREATE UNIQUE INDEX IF NOT EXISTS {prefix}jobs_unique_live
    ON {prefix}jobs (unique_key)
    WHERE unique_key IS NOT NULL
      AND state IN ('scheduled', 'available', 'running', 'retrying');

-- The pruner's path.
CREATE INDEX IF NOT EXISTS {prefix}jobs_finished
    ON {prefix}jobs (finished_at)
    WHERE finished_at IS NOT NULL;

-- Counts and filtered lists.
CREATE INDEX IF NOT EXISTS {prefix}jobs_queue_state ON {prefix}jobs (queue, state);

CREATE TABLE IF NOT EXISTS {prefix}leaders (
    name       TEXT PRIMARY KEY NOT NULL,
    holder     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);
