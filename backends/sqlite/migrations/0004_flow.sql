-- Flow control: the stored settings of each queue that has any (queues with defaults have no
-- row). Claims read the table at most every 500 ms per storage handle and skip paused queues.
CREATE TABLE IF NOT EXISTS {prefix}queue_flow (
    queue      TEXT PRIMARY KEY NOT NULL,
    paused     INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
