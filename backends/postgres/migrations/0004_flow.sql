-- Flow control: the stored settings of each queue that has any (queues with defaults have no
-- row). Claims read the table at most every 500 ms per storage handle, skip paused queues and
-- claim limited queues' jobs with the limit checked in the same statement.
CREATE TABLE IF NOT EXISTS {prefix}queue_flow (
    queue      TEXT PRIMARY KEY NOT NULL,
    paused     BOOLEAN NOT NULL DEFAULT false,
    -- Global concurrency limit (running jobs with a valid lease), NULL: none.
    concurrency INTEGER,
    -- What the limit counts per: 'none' (the whole queue) or 'kind'.
    partition  TEXT NOT NULL DEFAULT 'none',
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
