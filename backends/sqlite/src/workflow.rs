//! Workflows on SQLite: inserting a workflow and its edges in one write transaction, the
//! release trigger (dependents are released or cancelled by the very statement that finishes a
//! step: `complete`, `cancel`, `rescue_expired`), and the workflow-level operations.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use sqlx::{Row, SqliteConnection};
use switchyard_core::workflow::{initial_step_state, validate_steps, DEPENDENCY_FAILED};
use switchyard_core::{
    validate_new_job, DepFailure, Error, ErrorKind, JobId, JobState, NewJob, Result, StepOutputs,
    WorkflowCancelReport, WorkflowDef, WorkflowId, WorkflowRecord, WorkflowState, WorkflowStep,
    WorkflowStepInfo,
};
use uuid::Uuid;

use crate::connection::Db;
use crate::error::db_err;
use crate::row::{from_millis, millis};

/// Set once this process stored a workflow: completions then wake idle workers, so a released
/// step starts without waiting for a poll.
static IN_USE: AtomicBool = AtomicBool::new(false);

/// Whether completions should wake workers for released steps.
pub(crate) fn in_use() -> bool {
    IN_USE.load(Ordering::Relaxed)
}

const FINISHED: &str = "('completed', 'failed', 'cancelled', 'dropped')";

/// The release trigger, created (idempotently) by every `migrate` after the migration files.
/// It fires when a workflow step reaches a finished state (from an unfinished one) and its
/// workflow was not cancelled by a user: each blocked dependent that counts this dependency as
/// done loses one from `deps_left` and is released when that reaches zero; the others are
/// cancelled with a `dependency_failed` error naming this step, which fires the trigger again
/// for their own dependents (`recursive_triggers` is on for the storage's connections).
pub(crate) fn trigger_sql(p: &str) -> String {
    let satisfied = format!(
        "(NEW.state = 'completed' OR on_dep_failure = 'always' OR (on_dep_failure = 'ignore' \
         AND COALESCE(json_extract(NEW.errors, '$[#-1].kind'), '') <> '{DEPENDENCY_FAILED}'))"
    );
    let now =
        "COALESCE(NEW.finished_at, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))";
    format!(
        "CREATE TRIGGER IF NOT EXISTS {p}workflow_release AFTER UPDATE OF state ON {p}jobs \
         FOR EACH ROW WHEN NEW.workflow_id IS NOT NULL \
           AND NEW.state IN {FINISHED} AND OLD.state NOT IN {FINISHED} \
           AND NOT EXISTS (SELECT 1 FROM {p}workflows w WHERE w.id = NEW.workflow_id \
                           AND w.cancelled_at IS NOT NULL) \
         BEGIN \
           UPDATE {p}jobs SET deps_left = deps_left - 1, \
             state = CASE WHEN deps_left > 1 THEN 'blocked' \
                          WHEN run_at > {now} THEN 'scheduled' ELSE 'available' END \
           WHERE state = 'blocked' \
             AND id IN (SELECT job_id FROM {p}workflow_deps WHERE dep_id = NEW.id) \
             AND {satisfied}; \
           UPDATE {p}jobs SET state = 'cancelled', finished_at = {now}, \
             errors = json_insert(errors, '$[#]', json_object('attempt', attempt, \
               'at', strftime('%Y-%m-%dT%H:%M:%fZ', {now} / 1000.0, 'unixepoch'), \
               'kind', '{DEPENDENCY_FAILED}', \
               'message', 'upstream step `' || NEW.step_name || '` ended ' || NEW.state)) \
           WHERE state = 'blocked' \
             AND id IN (SELECT job_id FROM {p}workflow_deps WHERE dep_id = NEW.id) \
             AND NOT {satisfied}; \
         END"
    )
}

/// Creates the trigger on the migration's transaction.
pub(crate) async fn install(conn: &mut SqliteConnection, prefix: &str) -> Result<()> {
    sqlx::query(&trigger_sql(prefix))
        .execute(&mut *conn)
        .await
        .map_err(db_err("create the workflow trigger"))?;
    Ok(())
}

fn not_found(id: WorkflowId) -> Error {
    Error::not_found(format!("no workflow with id {id}"))
}

/// Inserts one step's job.
#[allow(clippy::too_many_arguments)]
async fn insert_step(
    db: &Db,
    conn: &mut SqliteConnection,
    wf: WorkflowId,
    step: &WorkflowStep,
    state: JobState,
    deps_left: u32,
    cancelled_by: Option<(String, JobState)>,
    now: DateTime<Utc>,
) -> Result<()> {
    let p = &db.prefix;
    let job: &NewJob = &step.job;
    let run_at = job.run_at.unwrap_or(now);
    let errors = match &cancelled_by {
        Some((dep, st)) => serde_json::json!([{
            "attempt": 0, "at": now, "kind": DEPENDENCY_FAILED,
            "message": format!("upstream step `{dep}` ended {st}"),
        }])
        .to_string(),
        None => "[]".to_string(),
    };
    let finished = cancelled_by.as_ref().map(|_| millis(now));
    sqlx::query(&format!(
        "INSERT INTO {p}jobs (id, kind, queue, payload, priority, state, max_attempts, run_at, \
         created_at, timeout_ms, tags, errors, finished_at, workflow_id, step_name, \
         on_dep_failure, deps_left) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))
    .bind(job.id)
    .bind(&job.kind)
    .bind(&job.queue)
    .bind(serde_json::to_string(&job.payload)?)
    .bind(job.priority as i64)
    .bind(state.as_str())
    .bind(job.max_attempts as i64)
    .bind(millis(run_at))
    .bind(millis(now))
    .bind(job.timeout_ms.map(|t| t as i64))
    .bind(serde_json::to_string(&job.tags)?)
    .bind(errors)
    .bind(finished)
    .bind(wf)
    .bind(&step.name)
    .bind(step.on_dep_failure.as_str())
    .bind(deps_left as i64)
    .execute(&mut *conn)
    .await
    .map_err(db_err("insert workflow step"))?;
    Ok(())
}

async fn insert_edges(
    db: &Db,
    conn: &mut SqliteConnection,
    wf: WorkflowId,
    job: JobId,
    deps: &[JobId],
) -> Result<()> {
    let p = &db.prefix;
    for d in deps {
        sqlx::query(&format!(
            "INSERT INTO {p}workflow_deps (dep_id, job_id, workflow_id) VALUES (?, ?, ?)"
        ))
        .bind(d)
        .bind(job)
        .bind(wf)
        .execute(&mut *conn)
        .await
        .map_err(db_err("insert workflow edge"))?;
    }
    Ok(())
}

fn runnable(job: &NewJob, now: DateTime<Utc>) -> JobState {
    match job.run_at {
        Some(t) if t > now => JobState::Scheduled,
        _ => JobState::Available,
    }
}

/// `Storage::enqueue_workflow`.
pub(crate) async fn enqueue_workflow(db: &Db, wf: WorkflowDef) -> Result<WorkflowId> {
    let order = wf.validate()?;
    for s in &wf.steps {
        validate_new_job(&s.job, &db.caps)?;
    }
    let now = db.now();
    let ids: HashMap<&str, JobId> = wf
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.job.id))
        .collect();
    let p = &db.prefix;
    let mut tx = db.writer.begin().await.map_err(db_err("begin workflow"))?;
    let inserted = sqlx::query(&format!(
        "INSERT OR IGNORE INTO {p}workflows (id, name, created_at) VALUES (?, ?, ?)"
    ))
    .bind(wf.id)
    .bind(&wf.name)
    .bind(millis(now))
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
    tx.commit().await.map_err(db_err("commit workflow"))?;
    IN_USE.store(true, Ordering::Relaxed);
    db.wake.notify();
    Ok(wf.id)
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

async fn load(
    db: &Db,
    conn: &mut SqliteConnection,
    wf: WorkflowId,
) -> Result<Option<(WorkflowRecord, Vec<Loaded>, HashMap<JobId, Vec<JobId>>)>> {
    let p = &db.prefix;
    let head = sqlx::query(&format!(
        "SELECT name, created_at, cancelled_at FROM {p}workflows WHERE id = ?"
    ))
    .bind(wf)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err("get workflow"))?;
    let Some(head) = head else { return Ok(None) };
    let rows = sqlx::query(&format!(
        "SELECT id, kind, state, step_name, on_dep_failure, \
           COALESCE(json_extract(errors, '$[#-1].kind'), '') = '{DEPENDENCY_FAILED}' \
         FROM {p}jobs WHERE workflow_id = ? ORDER BY id"
    ))
    .bind(wf)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err("get workflow steps"))?;
    let mut steps = Vec::with_capacity(rows.len());
    for r in rows {
        let state: String = r.get(2);
        let policy: String = r.get(4);
        let cascaded: bool = r.get(5);
        steps.push(Loaded {
            id: r.get(0),
            kind: r.get(1),
            state: state.parse()?,
            name: r.get(3),
            policy: policy.parse()?,
            cascaded,
        });
    }
    let edges = sqlx::query(&format!(
        "SELECT job_id, dep_id FROM {p}workflow_deps WHERE workflow_id = ?"
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
    let cancelled_at: Option<i64> = head.get(2);
    let rec = WorkflowRecord {
        id: wf,
        name: head.get(0),
        created_at: from_millis(head.get(1)),
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

/// `Storage::get_workflow`.
pub(crate) async fn get_workflow(db: &Db, id: WorkflowId) -> Result<Option<WorkflowRecord>> {
    let mut conn = db.reader.acquire().await.map_err(db_err("acquire"))?;
    Ok(load(db, &mut conn, id).await?.map(|(r, _, _)| r))
}

/// `Storage::list_workflows`: newest first.
pub(crate) async fn list_workflows(db: &Db, limit: usize) -> Result<Vec<WorkflowRecord>> {
    let limit = match limit {
        0 => 100,
        n => n.min(1000),
    };
    let mut conn = db.reader.acquire().await.map_err(db_err("acquire"))?;
    let ids: Vec<Uuid> = sqlx::query_scalar(&format!(
        "SELECT id FROM {}workflows ORDER BY id DESC LIMIT ?",
        db.prefix
    ))
    .bind(limit as i64)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err("list workflows"))?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some((r, _, _)) = load(db, &mut conn, id).await? {
            out.push(r);
        }
    }
    Ok(out)
}

/// `Storage::cancel_workflow`.
pub(crate) async fn cancel_workflow(db: &Db, id: WorkflowId) -> Result<WorkflowCancelReport> {
    let p = &db.prefix;
    let now = millis(db.now());
    let mut tx = db
        .writer
        .begin()
        .await
        .map_err(db_err("begin cancel workflow"))?;
    let found = sqlx::query(&format!(
        "UPDATE {p}workflows SET cancelled_at = COALESCE(cancelled_at, ?) WHERE id = ?"
    ))
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(db_err("cancel workflow"))?;
    if found.rows_affected() == 0 {
        return Err(not_found(id));
    }
    let cancelled = sqlx::query(&format!(
        "UPDATE {p}jobs SET state = 'cancelled', finished_at = ? WHERE workflow_id = ? \
         AND state IN ('blocked', 'scheduled', 'available', 'retrying')"
    ))
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(db_err("cancel workflow steps"))?
    .rows_affected();
    let requested = sqlx::query(&format!(
        "UPDATE {p}jobs SET cancel_requested = 1 WHERE workflow_id = ? AND state = 'running'"
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

/// `Storage::retry_workflow`.
pub(crate) async fn retry_workflow(db: &Db, id: WorkflowId) -> Result<u64> {
    let p = &db.prefix;
    let now = millis(db.now());
    let mut tx = db
        .writer
        .begin()
        .await
        .map_err(db_err("begin retry workflow"))?;
    let (_, steps, deps) = load(db, &mut tx, id).await?.ok_or_else(|| not_found(id))?;
    sqlx::query(&format!(
        "UPDATE {p}workflows SET cancelled_at = NULL WHERE id = ?"
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
            .unwrap_or(0) as i64;
        if reset.contains(&s.id) {
            let state = if waiting > 0 { "blocked" } else { "available" };
            sqlx::query(&format!(
                "UPDATE {p}jobs SET state = ?, deps_left = ?, run_at = ?, finished_at = NULL, \
                 cancel_requested = 0, dispatched_at = NULL, \
                 max_attempts = MAX(max_attempts, attempt + 1) WHERE id = ?"
            ))
            .bind(state)
            .bind(waiting)
            .bind(now)
            .bind(s.id)
            .execute(&mut *tx)
            .await
            .map_err(db_err("retry workflow step"))?;
        } else if s.state == JobState::Blocked {
            sqlx::query(&format!("UPDATE {p}jobs SET deps_left = ? WHERE id = ?"))
                .bind(waiting)
                .bind(s.id)
                .execute(&mut *tx)
                .await
                .map_err(db_err("retry workflow step"))?;
        }
    }
    tx.commit().await.map_err(db_err("commit retry workflow"))?;
    IN_USE.store(true, Ordering::Relaxed);
    db.wake.notify();
    Ok(reset.len() as u64)
}

/// `Storage::append_steps`.
pub(crate) async fn append_steps(
    db: &Db,
    id: WorkflowId,
    new: Vec<WorkflowStep>,
) -> Result<Vec<JobId>> {
    for s in &new {
        validate_new_job(&s.job, &db.caps)?;
    }
    let now = db.now();
    let mut tx = db
        .writer
        .begin()
        .await
        .map_err(db_err("begin append steps"))?;
    let (rec, steps, _) = load(db, &mut tx, id).await?.ok_or_else(|| not_found(id))?;
    if rec.cancelled {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!("workflow {id} is cancelled; retry it before appending steps"),
        ));
    }
    let existing: Vec<String> = steps.iter().map(|s| s.name.clone()).collect();
    let order = validate_steps(&existing, &new)?;
    // name -> (job id, state, cancelled by the cascade); new steps join as they are inserted.
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
    tx.commit().await.map_err(db_err("commit append steps"))?;
    db.wake.notify();
    Ok(new.iter().map(|s| s.job.id).collect())
}

/// `Storage::step_outputs`.
pub(crate) async fn step_outputs(db: &Db, job: JobId) -> Result<StepOutputs> {
    let p = &db.prefix;
    let rows = sqlx::query(&format!(
        "SELECT j.step_name, CASE WHEN j.state = 'completed' THEN j.result END \
         FROM {p}workflow_deps d JOIN {p}jobs j ON j.id = d.dep_id WHERE d.job_id = ?"
    ))
    .bind(job)
    .fetch_all(&db.reader)
    .await
    .map_err(db_err("step outputs"))?;
    let mut out = StepOutputs::new();
    for r in rows {
        let name: String = r.get(0);
        let result: Option<String> = r.get(1);
        let value = result
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| Error::corrupt(format!("step `{name}` has a bad stored output: {e}")))?;
        out.insert(name, value);
    }
    Ok(out)
}

/// The pruner's share for workflows: deletes up to `limit` jobs of workflows whose every step
/// finished before `before`, whole workflows at a time (a workflow larger than the remaining
/// limit still goes as a unit). Returns the jobs deleted.
pub(crate) async fn prune(db: &Db, before: DateTime<Utc>, limit: usize) -> Result<u64> {
    if limit == 0 {
        return Ok(0);
    }
    let p = &db.prefix;
    let mut tx = db
        .writer
        .begin()
        .await
        .map_err(db_err("begin prune workflows"))?;
    let ids: Vec<Uuid> = sqlx::query_scalar(&format!(
        "SELECT w.id FROM {p}workflows w WHERE NOT EXISTS (SELECT 1 FROM {p}jobs j \
           WHERE j.workflow_id = w.id AND (j.state NOT IN {FINISHED} OR j.finished_at IS NULL \
           OR j.finished_at >= ?)) ORDER BY w.id LIMIT ?"
    ))
    .bind(millis(before))
    .bind(limit as i64)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err("find finished workflows"))?;
    let mut deleted = 0u64;
    for id in ids {
        if deleted >= limit as u64 {
            break;
        }
        deleted += sqlx::query(&format!("DELETE FROM {p}jobs WHERE workflow_id = ?"))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err("prune workflow"))?
            .rows_affected();
        for t in ["workflow_deps WHERE workflow_id", "workflows WHERE id"] {
            sqlx::query(&format!("DELETE FROM {p}{t} = ?"))
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
