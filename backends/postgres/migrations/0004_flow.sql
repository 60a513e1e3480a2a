-- Flow control: the stored settings of each queue that has any (queues with defaults have no
-- row). Claims read the table at most every 500 ms per storage handle, skip paused queues and
-- claim limited queues' jobs with the limits checked in the same transaction.
CREATE TABLE IF NOT EXISTS {prefix}queue_flow (
    queue          TEXT PRIMARY KEY NOT NULL,
    paused         BOOLEAN NOT NULL DEFAULT false,
    -- Paused until this time (a handler's `JobError::rate_limited`), NULL: not.
    paused_until   TIMESTAMPTZ,
    -- Global concurrency limit (running jobs with a valid lease), NULL: none.
    concurrency    INTEGER,
    -- Global rate limit: rate_limit attempt starts per sliding rate_period_ms, NULL: none.
    rate_limit     INTEGER,
    rate_period_ms BIGINT,
    -- What the limits count per: 'none' (the whole queue) or 'kind'.
    partition      TEXT NOT NULL DEFAULT 'none',
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The attempt starts of rate-limited queues inside their window (older ones are deleted by
-- the next claim of the queue): one row per claimed attempt.
CREATE TABLE IF NOT EXISTS {prefix}queue_starts (
    queue TEXT        NOT NULL,
    part  TEXT        NOT NULL,
    at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS {prefix}queue_starts_window ON {prefix}queue_starts (queue, part, at);
