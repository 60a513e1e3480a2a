-- Switchyard schema for PostgreSQL. `{prefix}` is replaced by the configured table prefix, so
-- several independent instances can share one database. The runner applies this file in one
-- transaction, serialised across processes by a transaction-scoped advisory lock.

CREATE TABLE IF NOT EXISTS {prefix}jobs (
    id               uuid        PRIMARY KEY,
    kind             text        NOT NULL,
    queue            text        NOT NULL,
    payload          jsonb       NOT NULL,
    priority         smallint    NOT NULL DEFAULT 0,
    state            text        NOT NULL CHECK (state IN ('scheduled', 'available', 'running',
                                     'completed', 'retrying', 'failed', 'cancelled', 'dropped')),
    attempt          integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL CHECK (max_attempts >= 1),
    run_at           timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    lease_expires_at timestamptz,
    lease_token      uuid,
    worker_id        text,
    errors           jsonb       NOT NULL DEFAULT '[]'::jsonb,
    result           jsonb,
    unique_key       text,
    cancel_requested boolean     NOT NULL DEFAULT false,
    timeout_ms       bigint,
    tags             text[]      NOT NULL DEFAULT '{}',
    dispatched_at    timestamptz,
    -- A job holds a lease token if and only if it is running: completions and heartbeats are
    -- fenced by the token alone, which keeps their plans primary-key lookups.
    CONSTRAINT {prefix}jobs_token_iff_running CHECK ((state = 'running') = (lease_token IS NOT NULL))
);

-- The hot table is updated several times per job: leave room on each page for updated row
-- versions, and vacuum/analyze it far more eagerly than the defaults (which wait for 20% of
-- the table to be dead).
ALTER TABLE {prefix}jobs SET (
    fillfactor = 85,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 500,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);

-- The claim path: only pending rows are indexed, so running and finished jobs never slow a claim
-- (and a job leaves this index as soon as it is claimed).
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

-- Leadership leases (no session advisory locks: this works behind PgBouncer in transaction
-- mode, and a lock whose holder died is free once it expires).
CREATE TABLE IF NOT EXISTS {prefix}leaders (
    name       text        PRIMARY KEY,
    holder     text        NOT NULL,
    expires_at timestamptz NOT NULL
);
