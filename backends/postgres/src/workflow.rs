//! Workflows on PostgreSQL: inserting a workflow and its edges in one transaction, the release
//! trigger (dependents are released or cancelled by the very statement that finishes a step:
//! `complete`, `cancel`, `rescue_expired`; two dependencies finishing at once serialise on the
//! dependent's row lock, so its counter reaches zero exactly once), and the workflow-level
//! operations, which lock the rows they read (`FOR UPDATE`) so a concurrent completion waits
//! for them and then sees their edges.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use switchyard_core::workflow::{initial_step_state, validate_steps, DEPENDENCY_FAILED};
use switchyard_core::{
    validate_new_job, DepFailure, Error, ErrorKind, JobId, JobState, NewJob, Result, StepOutputs,
    WorkflowCancelReport, WorkflowDef, WorkflowId, WorkflowRecord, WorkflowState, WorkflowStep,
    WorkflowStepInfo,
};
use uuid::Uuid;

use crate::connection::Db;
use crate::error::db_err;

const FINISHED: &str = "('completed', 'failed', 'cancelled', 'dropped')";

/// The release trigger and its function, created (idempotently) by every `migrate` after the
/// migration files. It fires when a workflow step reaches a finished state (from an unfinished
/// one) in a statement that is not itself run by a trigger, and its workflow was not cancelled
/// by a user. It works level by level, without recursion (so a cascade down a chain of any
/// length stays within the server's stack): the blocked dependents of the steps that finished
/// that do not count one of them as done are cancelled with a `dependency_failed` error naming
/// it, and become the next level; the others lose one from `deps_left` per finished dependency
/// and are released at zero, with one `pg_notify` on the instance's channel so idle workers
/// claim them at once.
pub(crate) fn trigger_sql(p: &str) -> [String; 2] {
    let satisfied = format!(
        "(d.state = 'completed' OR c.on_dep_failure = 'always' OR (c.on_dep_failure = 'ignore' \
         AND COALESCE(d.errors -> -1 ->> 'kind', '') <> '{DEPENDENCY_FAILED}'))"
    );
    let function = format!(
        "CREATE OR REPLACE FUNCTION {p}workflow_release() RETURNS trigger LANGUAGE plpgsql AS $fn$ \
         DECLARE t timestamptz := COALESCE(NEW.finished_at, now()); \
           cur uuid[] := ARRAY[NEW.id]; nxt uuid[]; released integer := 0; n integer; \
         BEGIN \
           IF EXISTS (SELECT 1 FROM {p}workflows w WHERE w.id = NEW.workflow_id \
                      AND w.cancelled_at IS NOT NULL) THEN RETURN NULL; END IF; \
           LOOP \
             WITH x AS ( \
               SELECT DISTINCT ON (e.job_id) e.job_id, d.step_name, d.state \
               FROM {p}workflow_deps e JOIN {p}jobs d ON d.id = e.dep_id \
               JOIN {p}jobs c ON c.id = e.job_id \
               WHERE e.dep_id = ANY(cur) AND c.state = 'blocked' AND NOT {satisfied} \
               ORDER BY e.job_id, d.id \
             ), upd AS ( \
               UPDATE {p}jobs j SET state = 'cancelled', finished_at = t, \
                 errors = j.errors || jsonb_build_array(jsonb_build_object('attempt', j.attempt, \
                   'at', to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), \
                   'kind', '{DEPENDENCY_FAILED}', \
                   'message', 'upstream step `' || x.step_name || '` ended ' || x.state)) \
               FROM x WHERE j.id = x.job_id AND j.state = 'blocked' RETURNING j.id \
             ) SELECT array_agg(id) INTO nxt FROM upd; \
             WITH s AS ( \
               SELECT e.job_id, count(*) AS cnt \
               FROM {p}workflow_deps e JOIN {p}jobs d ON d.id = e.dep_id \
               JOIN {p}jobs c ON c.id = e.job_id \
               WHERE e.dep_id = ANY(cur) AND c.state = 'blocked' AND {satisfied} \
               GROUP BY e.job_id \
             ), dec AS ( \
               UPDATE {p}jobs j SET deps_left = j.deps_left - s.cnt, \
                 state = CASE WHEN j.deps_left - s.cnt > 0 THEN 'blocked' \
                              WHEN j.run_at > t THEN 'scheduled' ELSE 'available' END \
               FROM s WHERE j.id = s.job_id AND j.state = 'blocked' RETURNING j.state \
             ) SELECT count(*) INTO n FROM dec WHERE state <> 'blocked'; \
             released := released + n; \
             EXIT WHEN nxt IS NULL; \
             cur := nxt; \
           END LOOP; \
           IF released > 0 THEN PERFORM pg_notify('{p}jobs', ''); END IF; \
           RETURN NULL; \
         END $fn$"
    );
    let trigger = format!(
        "CREATE OR REPLACE TRIGGER {p}workflow_release AFTER UPDATE OF state ON {p}jobs \
         FOR EACH ROW WHEN (NEW.workflow_id IS NOT NULL \
           AND NEW.state IN {FINISHED} AND OLD.state NOT IN {FINISHED} \
           AND pg_trigger_depth() < 1) \
         EXECUTE FUNCTION {p}workflow_release()"
    );
    [function, trigger]
}

/// Creates the trigger on the migration's transaction.
pub(crate) async fn install(conn: &mut PgConnection, prefix: &str) -> Result<()> {
    for statement in trigger_sql(prefix) {
        sqlx::query(&statement)
            .persistent(false)
            .execute(&mut *conn)
            .await
            .map_err(db_err("create the workflow trigger"))?;
    }
    Ok(())
}

fn not_found(id: WorkflowId) -> Error {
    Error::not_found(format!("no workflow with id {id}"))
}

/// Inserts one step's job.
#[allow(clippy::too_many_arguments)]
async fn insert_step(
    db: &Db,
    conn: &mut PgConnection,
    wf: WorkflowId,
    step: &WorkflowStep,
    state: JobState,
    deps_left: u32,
    cancelled_by: Option<(String, JobState)>,
    now: DateTime<Utc>,
) -> Result<()> {
    let p = &db.prefix;
    let job: &NewJob = &step.job;
    let errors = match &cancelled_by {
        Some((dep, st)) => serde_json::json!([{
            "attempt": 0, "at": now, "kind": DEPENDENCY_FAILED,
            "message": format!("upstream step `{dep}` ended {st}"),
        }]),
        None => serde_json::json!([]),
    };
    let finished = cancelled_by.as_ref().map(|_| now);
    sqlx::query(&format!(
        "INSERT INTO {p}jobs (id, kind, queue, payload, priority, state, max_attempts, run_at, \
         created_at, timeout_ms, tags, errors, finished_at, workflow_id, step_name, \
         on_dep_failure, deps_left) VALUES ($1, $2, $3, $4, $5, $6, $7, COALESCE($8, now()), \
         now(), $9, $10, $11, $12, $13, $14, $15, $16)"
    ))
    .bind(job.id)
    .bind(&job.kind)
    .bind(&job.queue)
    .bind(sqlx::types::Json(&job.payload))
    .bind(job.priority)
    .bind(state.as_str())
    .bind(job.max_attempts as i32)
    .bind(job.run_at)
    .bind(job.timeout_ms.map(|t| t as i64))
    .bind(&job.tags)
    .bind(sqlx::types::Json(errors))
    .bind(finished)
    .bind(wf)
    .bind(&step.name)
    .bind(step.on_dep_failure.as_str())
    .bind(deps_left as i32)
    .execute(&mut *conn)
    .await
    .map_err(db_err("insert workflow step"))?;
    Ok(())
}

async fn insert_edges(
    db: &Db,
    conn: &mut PgConnection,
    wf: WorkflowId,
    job: JobId,
    deps: &[JobId],
) -> Result<()> {
    if deps.is_empty() {
        return Ok(());
    }
    sqlx::query(&format!(
        "INSERT INTO {}workflow_deps (dep_id, job_id, workflow_id) \
         SELECT d, $2, $3 FROM unnest($1::uuid[]) AS d",
        db.prefix
    ))
    .bind(deps)
    .bind(job)
    .bind(wf)
    .execute(&mut *conn)
    .await
    .map_err(db_err("insert workflow edges"))?;
    Ok(())
}

fn runnable(job: &NewJob, now: DateTime<Utc>) -> JobState {
    match job.run_at {
        Some(t) if t > now => JobState::Scheduled,
        _ => JobState::Available,
    }
}

/// `Storage::enqueue_workflow`: one transaction; its commit notifies idle workers.
pub(crate) async fn enqueue_workflow(db: &Db, wf: WorkflowDef) -> Result<WorkflowId> {
    let order = wf.validate()?;
    for s in &wf.steps {
        validate_new_job(&s.job, &db.caps)?;
    }
    let now = Utc::now();
    let ids: HashMap<&str, JobId> = wf
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.job.id))
        .collect();
    let p = &db.prefix;
    let mut tx = db.pool.begin().await.map_err(db_err("begin workflow"))?;
    let inserted = sqlx::query(&format!(
        "INSERT INTO {p}workflows (id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING"
    ))
    .bind(wf.id)
    .bind(&wf.name)
    .execute(&mut *tx)
    .await
    .map_err(db_err("insert workflow"))?;
    if inserted.rows_affected() == 0 {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!("a workflow with id {} exists already", wf.id),
        ));
    }
    for i in order {
        let s = &wf.steps[i];
        let (state, left) = if s.deps.is_empty() {
            (runnable(&s.job, now), 0)
        } else {
            (JobState::Blocked, s.deps.len() as u32)
        };
        insert_step(db, &mut tx, wf.id, s, state, left, None, now).await?;
        let deps: Vec<JobId> = s.deps.iter().map(|d| ids[d.as_str()]).collect();
        insert_edges(db, &mut tx, wf.id, s.job.id, &deps).await?;
    }
    notify(db, &mut tx).await?;
    tx.commit().await.map_err(db_err("commit workflow"))?;
    db.wake.notify();
    Ok(wf.id)
}

async fn notify(db: &Db, conn: &mut PgConnection) -> Result<()> {
    sqlx::query(&db.sql.notify)
        .bind(&db.sql.channel)
        .execute(&mut *conn)
        .await
        .map_err(db_err("notify"))?;
    Ok(())
}

/// One step as loaded for the workflow operations.
struct Loaded {
    id: JobId,
    name: String,
    kind: String,
    state: JobState,
    policy: DepFailure,
    cascaded: bool,
}

type Loaded3 = (WorkflowRecord, Vec<Loaded>, HashMap<JobId, Vec<JobId>>);

/// The workflow and its steps; `lock`: lock the workflow's and its steps' rows.
async fn load(
    db: &Db,
    conn: &mut PgConnection,
    wf: WorkflowId,
    lock: bool,
) -> Result<Option<Loaded3>> {
    let p = &db.prefix;
    let for_update = if lock { " FOR UPDATE" } else { "" };
    let head = sqlx::query(&format!(
        "SELECT name, created_at, cancelled_at FROM {p}workflows WHERE id = $1{for_update}"
    ))
    .bind(wf)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err("get workflow"))?;
    let Some(head) = head else { return Ok(None) };
    let rows = sqlx::query(&format!(
        "SELECT id, kind, state, step_name, on_dep_failure, \
           COALESCE(errors -> -1 ->> 'kind', '') = '{DEPENDENCY_FAILED}' \
         FROM {p}jobs WHERE workflow_id = $1 ORDER BY id{for_update}"
    ))
    .bind(wf)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err("get workflow steps"))?;
    let mut steps = Vec::with_capacity(rows.len());
    for r in rows {
        let state: String = r.get(2);
        let policy: String = r.get(4);
        steps.push(Loaded {
            id: r.get(0),
            kind: r.get(1),
            state: state.parse()?,
            name: r.get(3),
            policy: policy.parse()?,
            cascaded: r.get(5),
        });
    }
    let edges = sqlx::query(&format!(
        "SELECT job_id, dep_id FROM {p}workflow_deps WHERE workflow_id = $1"
    ))
    .bind(wf)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err("get workflow edges"))?;
    let mut deps: HashMap<JobId, Vec<JobId>> = HashMap::new();
    for e in edges {
        deps.entry(e.get(0)).or_default().push(e.get(1));
    }
    let names: HashMap<JobId, &str> = steps.iter().map(|s| (s.id, s.name.as_str())).collect();
    let cancelled_at: Option<DateTime<Utc>> = head.get(2);
    let rec = WorkflowRecord {
        id: wf,
        name: head.get(0),
        created_at: head.get(1),
        state: WorkflowState::derive(steps.iter().map(|s| s.state), cancelled_at.is_some()),
        cancelled: cancelled_at.is_some(),
        steps: steps
            .iter()
            .map(|s| {
                let mut d: Vec<String> = deps
                    .get(&s.id)
                    .map(|v| v.iter().map(|i| names[i].to_string()).collect())
                    .unwrap_or_default();
                d.sort();
                WorkflowStepInfo {
                    name: s.name.clone(),
                    job_id: s.id,
                    kind: s.kind.clone(),
                    state: s.state,
                    deps: d,
                    on_dep_failure: s.policy,
                }
            })
            .collect(),
    };
    Ok(Some((rec, steps, deps)))
}

/// `Storage::get_workflow`: read in one repeatable-read snapshot.
pub(crate) async fn get_workflow(db: &Db, id: WorkflowId) -> Result<Option<WorkflowRecord>> {
    let mut tx = db
        .pool
        .begin()
        .await
        .map_err(db_err("begin get workflow"))?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(db_err("get workflow"))?;
    let out = load(db, &mut tx, id, false).await?.map(|(r, _, _)| r);
    tx.commit().await.map_err(db_err("get workflow"))?;
    Ok(out)
}

/// `Storage::list_workflows`: newest first.
pub(crate) async fn list_workflows(db: &Db, limit: usize) -> Result<Vec<WorkflowRecord>> {
    let limit = match limit {
        0 => 100,
        n => n.min(1000),
    };
    let mut conn = db.pool.acquire().await.map_err(db_err("acquire"))?;
    let ids: Vec<Uuid> = sqlx::query_scalar(&format!(
        "SELECT id FROM {}workflows ORDER BY id DESC LIMIT $1",
        db.prefix
    ))
    .bind(limit as i64)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err("list workflows"))?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some((r, _, _)) = load(db, &mut conn, id, false).await? {
            out.push(r);
        }
    }
    Ok(out)
}

/// `Storage::cancel_workflow`.
pub(crate) async fn cancel_workflow(db: &Db, id: WorkflowId) -> Result<WorkflowCancelReport> {
    let p = &db.prefix;
    let mut tx = db
        .pool
        .begin()
        .await
        .map_err(db_err("begin cancel workflow"))?;
    let found = sqlx::query(&format!(
        "UPDATE {p}workflows SET cancelled_at = COALESCE(cancelled_at, now()) WHERE id = $1"
    ))
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(db_err("cancel workflow"))?;
    if found.rows_affected() == 0 {
        return Err(not_found(id));
    }
    let cancelled = sqlx::query(&format!(
        "UPDATE {p}jobs SET state = 'cancelled', finished_at = now() WHERE workflow_id = $1 \
         AND state IN ('blocked', 'scheduled', 'available', 'retrying')"
    ))
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(db_err("cancel workflow steps"))?
    .rows_affected();
    let requested = sqlx::query(&format!(
        "UPDATE {p}jobs SET cancel_requested = true WHERE workflow_id = $1 AND state = 'running'"
    ))
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(db_err("cancel running workflow steps"))?
    .rows_affected();
    tx.commit()
        .await
        .map_err(db_err("commit cancel workflow"))?;
    Ok(WorkflowCancelReport {
        cancelled,
        requested,
    })
}

/// `Storage::retry_workflow`: the workflow's rows are locked first, so a step completing
/// meanwhile waits and then counts against the reset counters.
pub(crate) async fn retry_workflow(db: &Db, id: WorkflowId) -> Result<u64> {
    let p = &db.prefix;
    let mut tx = db
        .pool
        .begin()
        .await
        .map_err(db_err("begin retry workflow"))?;
    let (_, steps, deps) = load(db, &mut tx, id, true)
        .await?
        .ok_or_else(|| not_found(id))?;
    sqlx::query(&format!(
        "UPDATE {p}workflows SET cancelled_at = NULL WHERE id = $1"
    ))
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(db_err("retry workflow"))?;
    let reset: HashSet<JobId> = steps
        .iter()
        .filter(|s| s.state.is_finished() && s.state != JobState::Completed)
        .map(|s| s.id)
        .collect();
    let completed: HashSet<JobId> = steps
        .iter()
        .filter(|s| s.state == JobState::Completed)
        .map(|s| s.id)
        .collect();
    for s in &steps {
        let waiting = deps
            .get(&s.id)
            .map(|d| d.iter().filter(|x| !completed.contains(x)).count())
            .unwrap_or(0) as i32;
        if reset.contains(&s.id) {
            let state = if waiting > 0 { "blocked" } else { "available" };
            sqlx::query(&format!(
                "UPDATE {p}jobs SET state = $1, deps_left = $2, run_at = now(), finished_at = NULL, \
                 cancel_requested = false, dispatched_at = NULL, \
                 max_attempts = GREATEST(max_attempts, attempt + 1) WHERE id = $3"
            ))
            .bind(state)
            .bind(waiting)
            .bind(s.id)
            .execute(&mut *tx)
            .await
            .map_err(db_err("retry workflow step"))?;
        } else if s.state == JobState::Blocked {
            sqlx::query(&format!("UPDATE {p}jobs SET deps_left = $1 WHERE id = $2"))
                .bind(waiting)
                .bind(s.id)
                .execute(&mut *tx)
                .await
                .map_err(db_err("retry workflow step"))?;
        }
    }
    notify(db, &mut tx).await?;
    tx.commit().await.map_err(db_err("commit retry workflow"))?;
    db.wake.notify();
    Ok(reset.len() as u64)
}

/// `Storage::append_steps`: the workflow's rows are locked first, so a dependency completing
/// meanwhile waits for the new edges and then releases through them.
pub(crate) async fn append_steps(
    db: &Db,
    id: WorkflowId,
    new: Vec<WorkflowStep>,
) -> Result<Vec<JobId>> {
    for s in &new {
        validate_new_job(&s.job, &db.caps)?;
    }
    let now = Utc::now();
    let mut tx = db
        .pool
        .begin()
        .await
        .map_err(db_err("begin append steps"))?;
    let (rec, steps, _) = load(db, &mut tx, id, true)
        .await?
        .ok_or_else(|| not_found(id))?;
    if rec.cancelled {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!("workflow {id} is cancelled; retry it before appending steps"),
        ));
    }
    let existing: Vec<String> = steps.iter().map(|s| s.name.clone()).collect();
    let order = validate_steps(&existing, &new)?;
    let mut known: HashMap<String, (JobId, Option<JobState>, bool)> = steps
        .iter()
        .map(|s| (s.name.clone(), (s.id, Some(s.state), s.cascaded)))
        .collect();
    for i in order {
        let s = &new[i];
        let dep_states: Vec<(String, Option<JobState>, bool)> = s
            .deps
            .iter()
            .map(|d| {
                let (_, st, c) = known[d.as_str()];
                (d.clone(), st, c)
            })
            .collect();
        let (state, left, why) =
            initial_step_state(runnable(&s.job, now), s.on_dep_failure, &dep_states);
        let cascaded = why.is_some();
        insert_step(db, &mut tx, id, s, state, left, why, now).await?;
        let dep_ids: Vec<JobId> = s.deps.iter().map(|d| known[d.as_str()].0).collect();
        insert_edges(db, &mut tx, id, s.job.id, &dep_ids).await?;
        let st = if state == JobState::Cancelled {
            Some(state)
        } else {
            None
        };
        known.insert(s.name.clone(), (s.job.id, st, cascaded));
    }
    notify(db, &mut tx).await?;
    tx.commit().await.map_err(db_err("commit append steps"))?;
    db.wake.notify();
    Ok(new.iter().map(|s| s.job.id).collect())
}

/// `Storage::step_outputs`.
pub(crate) async fn step_outputs(db: &Db, job: JobId) -> Result<StepOutputs> {
    let p = &db.prefix;
    let rows = sqlx::query(&format!(
        "SELECT j.step_name, CASE WHEN j.state = 'completed' THEN j.result END \
         FROM {p}workflow_deps d JOIN {p}jobs j ON j.id = d.dep_id WHERE d.job_id = $1"
    ))
    .bind(job)
    .fetch_all(&db.pool)
    .await
    .map_err(db_err("step outputs"))?;
    let mut out = StepOutputs::new();
    for r in rows {
        let name: String = r.get(0);
        let result: Option<serde_json::Value> = r.get(1);
        out.insert(name, result);
    }
    Ok(out)
}

/// The pruner's share for workflows: deletes whole workflows whose every step finished before
/// `before`, until about `limit` jobs are deleted (a workflow still goes as a unit). Returns
/// the jobs deleted.
pub(crate) async fn prune(db: &Db, before: DateTime<Utc>, limit: usize) -> Result<u64> {
    if limit == 0 {
        return Ok(0);
    }
    let p = &db.prefix;
    let mut tx = db
        .pool
        .begin()
        .await
        .map_err(db_err("begin prune workflows"))?;
    let ids: Vec<Uuid> = sqlx::query_scalar(&format!(
        "SELECT w.id FROM {p}workflows w WHERE NOT EXISTS (SELECT 1 FROM {p}jobs j \
           WHERE j.workflow_id = w.id AND (j.state NOT IN {FINISHED} OR j.finished_at IS NULL \
           OR j.finished_at >= $1)) ORDER BY w.id LIMIT $2 FOR UPDATE SKIP LOCKED"
    ))
    .bind(before)
    .bind(limit as i64)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err("find finished workflows"))?;
    let mut deleted = 0u64;
    for id in ids {
        if deleted >= limit as u64 {
            break;
        }
        deleted += sqlx::query(&format!("DELETE FROM {p}jobs WHERE workflow_id = $1"))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err("prune workflow"))?
            .rows_affected();
        for t in ["workflow_deps WHERE workflow_id", "workflows WHERE id"] {
            sqlx::query(&format!("DELETE FROM {p}{t} = $1"))
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_err("prune workflow"))?;
        }
    }
    tx.commit()
        .await
        .map_err(db_err("commit prune workflows"))?;
    Ok(deleted)
}
