-- Workflows: jobs that wait for other jobs. A step is an ordinary job with a `workflow_id`,
-- its `step_name`, its dependency failure policy and the number of dependencies it still
-- waits for (`deps_left`). The edges live in `workflow_deps`. The release of dependents is
-- the `{prefix}workflow_release` trigger, created by the backend after this file (its body
-- has semicolons, which the migration runner splits on).
ALTER TABLE {prefix}jobs ADD COLUMN workflow_id BLOB;
ALTER TABLE {prefix}jobs ADD COLUMN step_name TEXT;
ALTER TABLE {prefix}jobs ADD COLUMN on_dep_failure TEXT;
ALTER TABLE {prefix}jobs ADD COLUMN deps_left INTEGER NOT NULL DEFAULT 0;

CREATE INDEX IF NOT EXISTS {prefix}jobs_workflow
    ON {prefix}jobs (workflow_id)
    WHERE workflow_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS {prefix}workflows (
    id           BLOB PRIMARY KEY NOT NULL,
    name         TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    cancelled_at INTEGER
) WITHOUT ROWID;

-- `job_id` waits for `dep_id`.
CREATE TABLE IF NOT EXISTS {prefix}workflow_deps (
    dep_id      BLOB NOT NULL,
    job_id      BLOB NOT NULL,
    workflow_id BLOB NOT NULL,
    PRIMARY KEY (dep_id, job_id)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS {prefix}workflow_deps_job ON {prefix}workflow_deps (job_id);
CREATE INDEX IF NOT EXISTS {prefix}workflow_deps_workflow ON {prefix}workflow_deps (workflow_id);
