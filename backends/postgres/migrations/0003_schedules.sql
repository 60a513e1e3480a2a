-- Schedules (cron): one row per schedule id. `def` is the definition as JSON; `cursor_at`
-- settles every instant at or before it; `version` is the compare-and-set token every write
-- bumps. The firing step locks the row (`FOR UPDATE`), so concurrent schedulers serialise on it.
CREATE TABLE IF NOT EXISTS {prefix}schedules (
    id         text        PRIMARY KEY,
    def        jsonb       NOT NULL,
    paused     boolean     NOT NULL DEFAULT false,
    cursor_at  timestamptz NOT NULL,
    last_fired timestamptz,
    last_job   uuid,
    version    bigint      NOT NULL
);
