-- Schedules (cron): one row per schedule id. `def` is the definition as JSON; `cursor_at`
-- settles every instant at or before it (Unix milliseconds); `version` is the
-- compare-and-set token every write bumps.
CREATE TABLE IF NOT EXISTS {prefix}schedules (
    id         TEXT PRIMARY KEY NOT NULL,
    def        TEXT    NOT NULL,
    paused     INTEGER NOT NULL DEFAULT 0,
    cursor_at  INTEGER NOT NULL,
    last_fired INTEGER,
    last_job   BLOB,
    version    INTEGER NOT NULL
) WITHOUT ROWID;
