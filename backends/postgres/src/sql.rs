//! Every fixed SQL statement of the backend, built once per table prefix when the storage is
//! created. Keeping the strings fixed lets sqlx prepare each statement once per connection and
//! reuse it; variable-length inputs are bound as arrays (`$1::uuid[]`), never spliced in.

use std::time::Duration;

use crate::row::columns;

/// The states a claim may take (once `run_at` has passed).
const PENDING: &str = "('scheduled', 'available', 'retrying')";
/// The states of a live job (one that holds its unique key).
pub(crate) const LIVE: &str = "('scheduled', 'available', 'running', 'retrying')";
/// The finished states.
const FINISHED: &str = "('completed', 'failed', 'cancelled', 'dropped')";

/// A CTE (to append after another one) that turns `synchronous_commit` off for the current
/// transaction only — here the implicit transaction of one statement. The commit then returns
/// before its WAL record is flushed to disk (it still is within `wal_writer_delay`), so the
/// worker's hot path is not bound by fsync latency. A database crash can forget such a commit
/// from the last few hundred milliseconds: a forgotten claim makes its job runnable again, a
/// forgotten completion leaves its job `running` until its lease expires and the rescuer runs it
/// again. Jobs may thus run again after a crash (delivery is at-least-once anyway) but are never
/// lost: enqueue, cancel and retry always commit durably. `set_config` is volatile, so the CTE
/// is never inlined away; it runs once when the statement reads it.
const SC: &str = ", sc AS (SELECT set_config('synchronous_commit', 'off', true))";

/// The statements for one table prefix.
#[derive(Debug)]
pub(crate) struct Statements {
    pub channel: String,
    pub enqueue: String,
    pub find_unique: String,
    pub get: String,
    pub list: String,
    pub claim_one_queue: String,
    pub claim_many_queues: String,
    pub claim_ids: String,
    pub heartbeat: String,
    pub complete: String,
    pub rescue: String,
    pub lock_state: String,
    pub cancel_pending: String,
    pub cancel_running: String,
    pub retry: String,
    pub counts: String,
    pub prune: String,
    pub try_lead: String,
    pub resign: String,
    pub due_for_dispatch: String,
    pub mark_dispatched: String,
    pub take_for_dispatch: String,
    pub notify: String,
}

impl Statements {
    /// `synchronous_commit`: when false, the worker's hot path (claim, heartbeat, complete,
    /// rescue) commits without waiting for the WAL flush (see [`SC`]).
    pub(crate) fn new(prefix: &str, synchronous_commit: bool) -> Self {
        // A CTE that relaxes durability for this statement's own transaction only, and the
        // FROM item that makes it run.
        let (sc, sc_from) = if synchronous_commit {
            ("", "")
        } else {
            (SC, ", sc")
        };
        let jobs = format!("{prefix}jobs");
        let leaders = format!("{prefix}leaders");
        let cols = columns("");
        let jcols = columns("j.");
        // The lease set by a claim: `$n` is the lease in milliseconds.
        let claim_set = |lease: &str, worker: &str| {
            format!(
                "UPDATE {jobs} j SET state = 'running', attempt = j.attempt + 1, \
                 lease_token = gen_random_uuid(), started_at = now(), \
                 lease_expires_at = now() + {lease}::float8 * interval '1 millisecond', \
                 worker_id = {worker}"
            )
        };
        Self {
            channel: format!("{prefix}jobs"),
            // One statement for any number of jobs: arrays in, ids of the inserted rows out, and
            // one pg_notify when anything was inserted. ON CONFLICT DO NOTHING skips a job whose
            // unique key a live job holds (or whose id exists); within one call the first of two
            // jobs with one key wins, as rows are inserted in input order.
            enqueue: format!(
                "WITH input AS ( \
                   SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], \
                     $5::int2[], $6::int4[], $7::timestamptz[], $8::text[], $9::int8[], \
                     $10::text[]) WITH ORDINALITY \
                     AS i(id, kind, queue, payload, priority, max_attempts, run_at, unique_key, \
                          timeout_ms, tags, ord) \
                 ), ins AS ( \
                   INSERT INTO {jobs} (id, kind, queue, payload, priority, state, max_attempts, \
                     run_at, created_at, unique_key, timeout_ms, tags) \
                   SELECT id, kind, queue, payload, priority, \
                     CASE WHEN run_at > now() THEN 'scheduled' ELSE 'available' END, \
                     max_attempts, COALESCE(run_at, now()), now(), unique_key, timeout_ms, \
                     tags::text[] \
                   FROM input ORDER BY ord \
                   ON CONFLICT DO NOTHING \
                   RETURNING id \
                 ) \
                 SELECT COALESCE(array_agg(id), '{{}}'::uuid[]) AS ids, \
                   (SELECT count(*) FROM (SELECT pg_notify($11, '') \
                      WHERE EXISTS (SELECT 1 FROM ins)) n) AS notified \
                 FROM ins"
            ),
            find_unique: format!(
                "SELECT unique_key, id FROM {jobs} WHERE unique_key = ANY($1::text[]) \
                 AND state IN {LIVE}"
            ),
            get: format!("SELECT {cols} FROM {jobs} WHERE id = $1"),
            // The fixed head of `list`; the filters are appended to it per call.
            list: format!("SELECT {cols} FROM {jobs} WHERE true"),
            // One queue: an ordered scan of the partial index, stopping after `limit` rows.
            claim_one_queue: format!(
                "WITH picked AS ( \
                   SELECT id FROM {jobs} \
                   WHERE queue = $1 AND state IN {PENDING} AND run_at <= now() \
                   ORDER BY priority DESC, run_at, id \
                   LIMIT $2 FOR UPDATE SKIP LOCKED \
                 ){sc} {set} FROM picked{sc_from} WHERE j.id = picked.id RETURNING {jcols}",
                set = claim_set("$3", "$4"),
            ),
            // Several queues: the best `limit` rows of each queue (an ordered index scan each),
            // then the best `limit` of those. Rows locked but not taken are released at commit.
            claim_many_queues: format!(
                "WITH picked AS ( \
                   SELECT c.id FROM unnest($1::text[]) AS q(name) \
                   CROSS JOIN LATERAL ( \
                     SELECT id, priority, run_at FROM {jobs} \
                     WHERE queue = q.name AND state IN {PENDING} AND run_at <= now() \
                     ORDER BY priority DESC, run_at, id \
                     LIMIT $2 FOR UPDATE SKIP LOCKED \
                   ) c \
                   ORDER BY c.priority DESC, c.run_at, c.id LIMIT $2 \
                 ){sc} {set} FROM picked{sc_from} WHERE j.id = picked.id RETURNING {jcols}",
                set = claim_set("$3", "$4"),
            ),
            // Driven by the given ids: one primary-key lookup each. The `OFFSET 0` fence keeps
            // the state/queue filters outside the lookup, so the planner can never answer with
            // a walk over the runnable index filtered by id (a generic plan built on stale
            // statistics chose exactly that, costing a scan of every pending job per claim).
            claim_ids: format!(
                "WITH picked AS ( \
                   SELECT p.id FROM unnest($5::uuid[]) AS u(id) \
                   CROSS JOIN LATERAL (SELECT * FROM {jobs} WHERE id = u.id OFFSET 0) p \
                   WHERE p.queue = ANY($1::text[]) \
                     AND p.state IN {PENDING} AND p.run_at <= now() \
                   ORDER BY p.priority DESC, p.run_at, p.id \
                   LIMIT $2 FOR UPDATE OF p SKIP LOCKED \
                 ){sc} {set} FROM picked{sc_from} WHERE j.id = picked.id RETURNING {jcols}",
                set = claim_set("$3", "$4"),
            ),
            // Fenced by the lease token alone: the schema guarantees that a job has a token if
            // and only if it is running. (A `state = 'running'` test here would let stale
            // statistics — taken when every job was still available — talk the planner into a
            // nested loop over all running rows; the id join must stay a primary-key lookup.)
            // The rows are locked first, in id order (see [`lock_in_id_order`]).
            heartbeat: format!(
                "WITH {locked}{sc} \
                 UPDATE {jobs} j SET lease_expires_at = now() + $3::float8 * interval '1 millisecond' \
                 FROM locked, unnest($1::uuid[], $2::uuid[]) AS l(id, token){sc_from} \
                 WHERE j.id = locked.id AND j.id = l.id AND j.lease_token = l.token \
                 RETURNING j.id, l.token, j.cancel_requested",
                locked = lock_in_id_order(&jobs, "$1"),
            ),
            // Every outcome in one statement, fenced by token like `heartbeat`. `outcome` is the
            // target state, `aborted` (available again when attempts are left, else dropped) or
            // `released` (available again with the claim's attempt undone: it never started).
            // The rows are locked first, in id order (see [`lock_in_id_order`]).
            complete: format!(
                "WITH {locked}{sc} UPDATE {jobs} j SET \
                   state = CASE WHEN c.outcome = 'released' THEN 'available' \
                                WHEN c.outcome = 'snoozed' THEN 'scheduled' \
                                WHEN c.outcome <> 'aborted' THEN c.outcome \
                                WHEN j.attempt < j.max_attempts THEN 'available' \
                                ELSE 'dropped' END, \
                   attempt = CASE WHEN c.outcome IN ('released', 'snoozed') \
                                  THEN greatest(j.attempt - 1, 0) \
                                  ELSE j.attempt END, \
                   result = CASE WHEN c.outcome = 'completed' THEN c.result ELSE j.result END, \
                   errors = CASE WHEN c.error IS NULL THEN j.errors \
                                 ELSE j.errors || jsonb_build_array(c.error) END, \
                   run_at = COALESCE(c.run_at, j.run_at), \
                   finished_at = CASE WHEN c.outcome IN ('completed', 'failed', 'cancelled') \
                                        OR (c.outcome = 'aborted' AND j.attempt >= j.max_attempts) \
                                      THEN now() ELSE NULL END, \
                   dispatched_at = CASE WHEN c.outcome IN ('retrying', 'aborted', 'released', \
                                                          'snoozed') \
                                        THEN NULL \
                                        ELSE j.dispatched_at END, \
                   lease_token = NULL, lease_expires_at = NULL, worker_id = NULL \
                 FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::jsonb[], \
                             $6::timestamptz[]) AS c(id, token, outcome, result, error, run_at), \
                      locked{sc_from} \
                 WHERE j.id = locked.id AND j.id = c.id AND j.lease_token = c.token \
                 RETURNING j.id, c.token",
                locked = lock_in_id_order(&jobs, "$1"),
            ),
            // Fenced twice: the CTE locks expired running rows with their token, and the update
            // re-checks state, token and expiry, so a job that completed (or was renewed) in the
            // meantime is never touched.
            rescue: format!(
                "WITH expired AS ( \
                   SELECT id, lease_token FROM {jobs} \
                   WHERE state = 'running' AND lease_expires_at < $1 \
                   ORDER BY lease_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED \
                 ){sc} \
                 UPDATE {jobs} j SET \
                   state = CASE WHEN j.attempt < j.max_attempts THEN 'available' ELSE 'dropped' END, \
                   finished_at = CASE WHEN j.attempt < j.max_attempts THEN NULL ELSE $1 END, \
                   errors = j.errors || jsonb_build_array(jsonb_build_object( \
                     'attempt', j.attempt, 'at', $3::text, 'kind', 'lease_expired', \
                     'message', 'lease expired: worker ' || COALESCE(j.worker_id, '?') || \
                       ' stopped renewing it (crashed or stalled)')), \
                   lease_token = NULL, lease_expires_at = NULL, worker_id = NULL, \
                   dispatched_at = NULL \
                 FROM expired{sc_from} \
                 WHERE j.id = expired.id AND j.lease_token = expired.lease_token \
                   AND j.state = 'running' AND j.lease_expires_at < $1 \
                 RETURNING j.id, j.state"
            ),
            lock_state: format!("SELECT state FROM {jobs} WHERE id = $1 FOR UPDATE"),
            cancel_pending: format!(
                "UPDATE {jobs} SET state = 'cancelled', finished_at = now() WHERE id = $1"
            ),
            cancel_running: format!("UPDATE {jobs} SET cancel_requested = true WHERE id = $1"),
            retry: format!(
                "UPDATE {jobs} SET state = 'available', run_at = now(), finished_at = NULL, \
                 cancel_requested = false, dispatched_at = NULL, \
                 max_attempts = GREATEST(max_attempts, attempt + 1) WHERE id = $1"
            ),
            counts: format!(
                "SELECT queue, state, count(*) FROM {jobs} GROUP BY queue, state ORDER BY queue"
            ),
            prune: format!(
                "WITH doomed AS ( \
                   SELECT id FROM {jobs} WHERE finished_at < $1 AND state IN {FINISHED} \
                     AND workflow_id IS NULL \
                   ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED \
                 ) DELETE FROM {jobs} j USING doomed WHERE j.id = doomed.id"
            ),
            try_lead: format!(
                "INSERT INTO {leaders} AS l (name, holder, expires_at) \
                 VALUES ($1, $2, now() + $3::float8 * interval '1 millisecond') \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                   expires_at = excluded.expires_at \
                 WHERE l.holder = excluded.holder OR l.expires_at < now() \
                 RETURNING holder"
            ),
            resign: format!("DELETE FROM {leaders} WHERE name = $1 AND holder = $2"),
            // Two index range scans (`jobs_undispatched`, `jobs_dispatched`): never published,
            // by due time; published long ago and still pending (a lost message).
            due_for_dispatch: format!(
                "(SELECT id, queue, priority, run_at FROM {jobs} \
                  WHERE state IN {PENDING} AND dispatched_at IS NULL AND run_at <= $1 \
                  ORDER BY run_at LIMIT $3) \
                 UNION ALL \
                 (SELECT id, queue, priority, run_at FROM {jobs} \
                  WHERE state IN {PENDING} AND dispatched_at IS NOT NULL \
                    AND dispatched_at < $2 AND run_at <= $1 \
                  ORDER BY dispatched_at LIMIT $3) \
                 ORDER BY run_at LIMIT $3"
            ),
            mark_dispatched: format!(
                "WITH {locked} UPDATE {jobs} j SET dispatched_at = now() FROM locked \
                 WHERE j.id = locked.id",
                locked = lock_in_id_order(&jobs, "$1"),
            ),
            // `due_for_dispatch` and `mark_dispatched` in one statement, choosing as
            // `due_for_dispatch` does: both index range scans lock what they find (skipping
            // rows a claim or another dispatcher holds), the earliest `$3` of the two by
            // `run_at` are taken (so lost messages are not starved by a stream of new jobs),
            // and the update stamps those rows. Rows locked and not taken are released at
            // commit. A lost mark (asynchronous commit) only means a duplicate publish, which
            // claims fence. RETURNING has no order: the caller sorts.
            take_for_dispatch: format!(
                "WITH fresh AS ( \
                   SELECT id, run_at FROM {jobs} \
                   WHERE state IN {PENDING} AND dispatched_at IS NULL AND run_at <= $1 \
                   ORDER BY run_at LIMIT $3 FOR UPDATE SKIP LOCKED \
                 ), lost AS ( \
                   SELECT id, run_at FROM {jobs} \
                   WHERE state IN {PENDING} AND dispatched_at IS NOT NULL \
                     AND dispatched_at < $2 AND run_at <= $1 \
                   ORDER BY dispatched_at LIMIT $3 FOR UPDATE SKIP LOCKED \
                 ), picked AS ( \
                   SELECT id FROM (SELECT * FROM fresh UNION ALL SELECT * FROM lost) c \
                   ORDER BY run_at, id LIMIT $3 \
                 ){sc} \
                 UPDATE {jobs} j SET dispatched_at = now() FROM picked{sc_from} \
                 WHERE j.id = picked.id \
                 RETURNING j.id, j.queue, j.priority, j.run_at"
            ),
            notify: "SELECT pg_notify($1, '')".to_string(),
        }
    }
}

/// A CTE named `locked` that locks the rows of `jobs` whose ids are in the array `ids`, in id
/// order, for a multi-row update that waits for row locks (no `SKIP LOCKED`): heartbeats and
/// completions of overlapping jobs run at once in every worker, and two statements that lock
/// the same rows in different orders (the order of their input arrays, or of the plan's join)
/// can each hold a row the other waits for — a deadlock, which PostgreSQL resolves after
/// `deadlock_timeout` (1 s) by failing one of them. Locking in one order (`ORDER BY id` below
/// `FOR UPDATE`, so rows are locked as the sorted scan yields them) leaves no cycle. The
/// update then joins `locked`, so it only touches rows this CTE locked. `MATERIALIZED` keeps
/// the planner from folding the CTE into the update.
fn lock_in_id_order(jobs: &str, ids: &str) -> String {
    format!(
        "locked AS MATERIALIZED ( \
           SELECT id FROM {jobs} WHERE id = ANY({ids}::uuid[]) ORDER BY id FOR UPDATE \
         )"
    )
}

/// A duration in milliseconds, as the `float8` the statements multiply by
/// `interval '1 millisecond'` (leases, leadership).
pub(crate) fn millis_f64(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
