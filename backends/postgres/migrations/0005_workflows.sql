-- Workflows: jobs that wait for other jobs. A step is an ordinary job with a `workflow_id`,
-- its `step_name`, its dependency failure policy and the number of dependencies it still
-- waits for (`deps_left`); the edges live in `workflow_deps`. A new state, `blocked`, is a
-- step waiting for its dependencies. The release of dependents is the
-- `{prefix}workflow_release` trigger, created by the backend after this file (its plpgsql
-- body has semicolons, which the migration runner splits on).
ALTER TABLE {prefix}jobs DROP CONSTRAINT IF EXISTS {prefix}jobs_state_check;
ALTER TABLE {prefix}jobs ADD CONSTRAINT {prefix}jobs_state_check CHECK (state IN ('blocked',
    'scheduled', 'available', 'running', 'completed', 'retrying', 'failed', 'cancelled', 'dropped'));

ALTER TABLE {prefix}jobs ADD COLUMN IF NOT EXISTS workflow_id uuid;
ALTER TABLE {prefix}jobs ADD COLUMN IF NOT EXISTS step_name text;
ALTER TABLE {prefix}jobs ADD COLUMN IF NOT EXISTS on_dep_failure text;
ALTER TABLE {prefix}jobs ADD COLUMN IF NOT EXISTS deps_left integer NOT NULL DEFAULT 0;

CREATE INDEX IF NOT EXISTS {prefix}jobs_workflow
    ON {prefix}jobs (workflow_id)
    WHERE workflow_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS {prefix}workflows (
    id           uuid        PRIMARY KEY,
    name         text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    cancelled_at timestamptz
);

-- `job_id` waits for `dep_id`.
CREATE TABLE IF NOT EXISTS {prefix}workflow_deps (
    dep_id      uuid NOT NULL,
    job_id      uuid NOT NULL,
    workflow_id uuid NOT NULL,
    PRIMARY KEY (dep_id, job_id)
);

CREATE INDEX IF NOT EXISTS {prefix}workflow_deps_job ON {prefix}workflow_deps (job_id);
CREATE INDEX IF NOT EXISTS {prefix}workflow_deps_workflow ON {prefix}workflow_deps (workflow_id);
