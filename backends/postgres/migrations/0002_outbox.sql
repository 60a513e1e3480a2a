-- The dispatcher's path (external queues): pending jobs not yet published, by due time, and
-- published ones by publication time (to find lost messages). Both partial, so jobs that are
-- running or finished never weigh on them.
CREATE INDEX IF NOT EXISTS {prefix}jobs_undispatched
    ON {prefix}jobs (run_at)
    WHERE state IN ('scheduled', 'available', 'retrying') AND dispatched_at IS NULL;

CREATE INDEX IF NOT EXISTS {prefix}jobs_dispatched
    ON {prefix}jobs (dispatched_at)
    WHERE state IN ('scheduled', 'available', 'retrying') AND dispatched_at IS NOT NULL;
