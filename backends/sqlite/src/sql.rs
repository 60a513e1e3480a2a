//! Every fixed SQL statement of the backend, built once per table prefix when the storage is
//! opened, as the PostgreSQL backend's `sql.rs` does: a fixed string lets sqlx prepare it once
//! per connection and reuse it. The statements whose shape depends on a call (a list of ids,
//! queues or leases, the filters of `list`) are built with a `QueryBuilder` where they run,
//! from the fixed fragments here.

use crate::row::COLUMNS;

/// Largest number of rows in one multi-row statement (SQLite's bound-parameter limit is 32,766;
/// enqueue binds 12 per row).
pub(crate) const CHUNK: usize = 500;

/// The states a claim may take (once `run_at` has passed).
const PENDING: &str = "('scheduled', 'available', 'retrying')";
/// The states of a live job (one that holds its unique key).
const LIVE: &str = "('scheduled', 'available', 'running', 'retrying')";
/// The finished states.
const FINISHED: &str = "('completed', 'failed', 'cancelled', 'dropped')";

/// The statements (and statement fragments) for one table prefix.
#[derive(Debug)]
pub(crate) struct Statements {
    /// Fragment: the multi-row insert up to its `VALUES`.
    pub enqueue: String,
    pub find_unique: String,
    pub get: String,
    /// Fragment: the claim's `SET` up to the bound `started_at`.
    pub claim_set: String,
    /// Fragment: the claim's pick up to the bound `run_at` horizon.
    pub claim_pick: String,
    /// Fragment: the end of the claim, after its `LIMIT`.
    pub claim_returning: String,
    /// Fragment: the heartbeat up to the bound new expiry.
    pub heartbeat: String,
    pub complete_successes: String,
    pub complete_retry: String,
    pub complete_failed: String,
    pub complete_cancelled: String,
    pub complete_aborted: String,
    pub complete_released: String,
    pub complete_snoozed: String,
    pub rescue: String,
    pub cancel: String,
    pub state: String,
    pub retry: String,
    /// Fragment: the head of `list`; the filters are appended per call.
    pub list: String,
    pub counts: String,
    pub prune: String,
    pub try_lead: String,
    pub resign: String,
    pub due_for_dispatch: String,
    /// Fragment: the stamp up to the bound time.
    pub mark_dispatched: String,
}

impl Statements {
    pub(crate) fn new(prefix: &str) -> Self {
        let jobs = format!("{prefix}jobs");
        let leaders = format!("{prefix}leaders");
        // Every outcome but success, one row each: `state` is the target state (an SQL
        // expression), `attempt` what becomes of the claim's attempt.
        let finish = |state_sql: &str, attempt_sql: &str| {
            format!(
                "UPDATE {jobs} SET state = {state_sql}, attempt = {attempt_sql}, \
                 errors = CASE WHEN ?1 IS NULL THEN errors ELSE json_insert(errors, '$[#]', json(?1)) END, \
                 run_at = COALESCE(?2, run_at), \
                 finished_at = CASE WHEN {state_sql} IN ('failed', 'cancelled', 'dropped') THEN ?3 ELSE NULL END, \
                 dispatched_at = NULL, lease_token = NULL, lease_expires_at = NULL, worker_id = NULL \
                 WHERE id = ?4 AND lease_token = ?5 AND state = 'running' RETURNING id"
            )
        };
        Self {
            enqueue: format!(
                "INSERT OR IGNORE INTO {jobs} (id, kind, queue, payload, priority, state, \
                 max_attempts, run_at, created_at, unique_key, timeout_ms, tags) "
            ),
            find_unique: format!("SELECT id FROM {jobs} WHERE unique_key = ? AND state IN {LIVE}"),
            get: format!("SELECT {COLUMNS} FROM {jobs} WHERE id = ?"),
            claim_set: format!(
                "UPDATE {jobs} SET state = 'running', attempt = attempt + 1, lease_token = \
                 randomblob(16), started_at = "
            ),
            claim_pick: format!(
                " WHERE id IN (SELECT id FROM {jobs} WHERE state IN {PENDING} AND run_at <= "
            ),
            claim_returning: format!(") RETURNING {COLUMNS}"),
            heartbeat: format!("UPDATE {jobs} SET lease_expires_at = "),
            // The batch travels as one JSON array of `{i: id hex, t: token hex, r: result}`.
            complete_successes: format!(
                "UPDATE {jobs} SET state = 'completed', result = c.r, finished_at = ?1, \
                   lease_token = NULL, lease_expires_at = NULL, worker_id = NULL \
                 FROM (SELECT unhex(value ->> 'i') AS i, unhex(value ->> 't') AS t, value ->> 'r' AS r \
                       FROM json_each(?2)) AS c \
                 WHERE {jobs}.id = c.i AND {jobs}.lease_token = c.t AND {jobs}.state = 'running' \
                 RETURNING {jobs}.id"
            ),
            complete_retry: finish("'retrying'", "attempt"),
            complete_failed: finish("'failed'", "attempt"),
            complete_cancelled: finish("'cancelled'", "attempt"),
            complete_aborted: finish(
                "CASE WHEN attempt < max_attempts THEN 'available' ELSE 'dropped' END",
                "attempt",
            ),
            // A released job never started: the claim's attempt is undone.
            complete_released: finish("'available'", "MAX(attempt - 1, 0)"),
            // A snoozed job waits for its `run_at`, its attempt undone like a release's.
            complete_snoozed: finish("'scheduled'", "MAX(attempt - 1, 0)"),
            rescue: format!(
                "UPDATE {jobs} SET \
                   state = CASE WHEN attempt < max_attempts THEN 'available' ELSE 'dropped' END, \
                   finished_at = CASE WHEN attempt < max_attempts THEN NULL ELSE ?1 END, \
                   errors = json_insert(errors, '$[#]', json_object('attempt', attempt, 'at', ?2, \
                     'kind', 'lease_expired', 'message', 'lease expired: worker ' || \
                     COALESCE(worker_id, '?') || ' stopped renewing it (crashed or stalled)')), \
                   lease_token = NULL, lease_expires_at = NULL, worker_id = NULL, dispatched_at = NULL \
                 WHERE id IN (SELECT id FROM {jobs} WHERE state = 'running' AND lease_expires_at < ?1 \
                   LIMIT ?3) \
                 RETURNING id, state"
            ),
            cancel: format!(
                "UPDATE {jobs} SET \
                   state = CASE WHEN state = 'running' THEN state ELSE 'cancelled' END, \
                   cancel_requested = CASE WHEN state = 'running' THEN 1 ELSE cancel_requested END, \
                   finished_at = CASE WHEN state = 'running' THEN finished_at ELSE ?1 END \
                 WHERE id = ?2 AND state IN ('blocked', 'scheduled', 'available', 'retrying', 'running') \
                 RETURNING state"
            ),
            state: format!("SELECT state FROM {jobs} WHERE id = ?"),
            retry: format!(
                "UPDATE {jobs} SET state = 'available', run_at = ?1, finished_at = NULL, \
                   cancel_requested = 0, dispatched_at = NULL, \
                   max_attempts = MAX(max_attempts, attempt + 1) \
                 WHERE id = ?2 AND state IN {FINISHED} \
                 RETURNING id"
            ),
            list: format!("SELECT {COLUMNS} FROM {jobs} WHERE 1 = 1"),
            counts: format!(
                "SELECT queue, state, COUNT(*) FROM {jobs} GROUP BY queue, state ORDER BY queue"
            ),
            prune: format!(
                "DELETE FROM {jobs} WHERE id IN (SELECT id FROM {jobs} WHERE finished_at IS NOT NULL \
                 AND finished_at < ? AND state IN {FINISHED} AND workflow_id IS NULL \
                 LIMIT ?)"
            ),
            try_lead: format!(
                "INSERT INTO {t} (name, holder, expires_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
                 WHERE {t}.holder = excluded.holder OR {t}.expires_at < ?4 \
                 RETURNING holder",
                t = leaders
            ),
            resign: format!("DELETE FROM {leaders} WHERE name = ? AND holder = ?"),
            due_for_dispatch: format!(
                "SELECT id, queue, priority, run_at FROM {jobs} \
                 WHERE state IN {PENDING} AND run_at <= ? \
                   AND (dispatched_at IS NULL OR dispatched_at < ?) \
                 ORDER BY run_at LIMIT ?"
            ),
            mark_dispatched: format!("UPDATE {jobs} SET dispatched_at = "),
        }
    }
}
