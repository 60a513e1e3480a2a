//! Enqueue: jobs inserted in multi-row `INSERT OR IGNORE` statements ([`insert_jobs`]), in one
//! transaction with a look-up of the job holding each unique key when one may be taken
//! ([`enqueue`]), or on the caller's own connection or transaction ([`enqueue_in`]).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use switchyard_core::adapter::validate_all;
use switchyard_core::{EnqueueOutcome, Error, ErrorKind, JobState, NewJob, Result};
use uuid::Uuid;

use crate::connection::Db;
use crate::error::db_err;
use crate::row::millis;
use crate::sql::Statements;

/// Rows per multi-row INSERT (12 parameters each; SQLite's bound-parameter limit is 32,766).
const ENQUEUE_CHUNK: usize = 2000;

/// `Storage::enqueue`: validates the batch; without unique keys one statement settles it,
/// otherwise one transaction inserts it in chunks and looks up the holder of each key.
pub(crate) async fn enqueue(db: &Db, jobs: Vec<NewJob>) -> Result<Vec<EnqueueOutcome>> {
    validate_all(&jobs, &db.caps)?;
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let now = db.now();
    // Without unique keys, a job that is not inserted can only be a repeat of its own id,
    // so one statement (no transaction) settles a whole batch.
    if jobs.len() <= ENQUEUE_CHUNK && jobs.iter().all(|j| j.unique_key.is_none()) {
        let inserted: HashSet<Uuid> = insert_jobs(&db.sql, &jobs, now, &db.writer)
            .await?
            .into_iter()
            .collect();
        db.wake.notify();
        return Ok(jobs
            .iter()
            .map(|j| {
                if inserted.contains(&j.id) {
                    EnqueueOutcome::Inserted(j.id)
                } else {
                    EnqueueOutcome::Duplicate(j.id)
                }
            })
            .collect());
    }
    let mut tx = db.writer.begin().await.map_err(db_err("begin enqueue"))?;
    let out = insert_resolving(&db.sql, &mut tx, &jobs, now).await?;
    tx.commit().await.map_err(db_err("commit enqueue"))?;
    db.wake.notify();
    Ok(out)
}

/// `SqliteStorage::enqueue_in`: validates the batch and inserts it on the caller's connection
/// (normally inside the caller's transaction), resolving unique keys as [`enqueue`] does. No
/// retry: the caller's transaction is not ours to run again.
///
/// Wakes this process's idle workers and dispatcher at once, before the caller commits: their
/// next claim or outbox scan is a write, so it waits for the caller's write transaction (the
/// storage's one writer connection, or the file's write lock taken by the insert) and then
/// sees the jobs if it committed and nothing if it rolled back.
pub(crate) async fn enqueue_in(
    db: &Db,
    conn: &mut SqliteConnection,
    jobs: Vec<NewJob>,
) -> Result<Vec<EnqueueOutcome>> {
    validate_all(&jobs, &db.caps)?;
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let out = insert_resolving(&db.sql, conn, &jobs, Utc::now())
        .await
        .map_err(locked_in_transaction)?;
    if out.iter().any(|o| matches!(o, EnqueueOutcome::Inserted(_))) {
        db.wake.notify();
    }
    Ok(out)
}

/// SQLITE_BUSY on the caller's connection (`database is locked`): inside a deferred
/// transaction that read before this write, SQLite cannot upgrade to a write once another
/// connection wrote (the busy timeout cannot help). Becomes a `Conflict` that says how to open
/// the transaction instead; other errors pass unchanged.
fn locked_in_transaction(e: Error) -> Error {
    let locked = std::error::Error::source(&e)
        .and_then(|s| s.downcast_ref::<sqlx::Error>())
        .is_some_and(|s| matches!(s, sqlx::Error::Database(d) if d.message().contains("locked")));
    if !locked {
        return e;
    }
    Error::new(
        ErrorKind::Conflict,
        format!(
            "{}: the database is locked by another connection's write; roll back and run the \
             transaction again, opened with `BEGIN IMMEDIATE` (`pool.begin_with(\"BEGIN \
             IMMEDIATE\")`) or on the storage's own pool (`SqliteStorage::pool`), so that it \
             takes the write lock up front",
            e.message()
        ),
    )
    .with_source(e)
}

/// Inserts `jobs` on `conn` in chunks and resolves each one not inserted: a live job holds
/// its unique key (its id), or its own id exists already. All or none when `conn` is in a
/// transaction.
async fn insert_resolving(
    sql: &Statements,
    conn: &mut SqliteConnection,
    jobs: &[NewJob],
    now: DateTime<Utc>,
) -> Result<Vec<EnqueueOutcome>> {
    let mut inserted = HashSet::with_capacity(jobs.len());
    for chunk in jobs.chunks(ENQUEUE_CHUNK) {
        inserted.extend(insert_jobs(sql, chunk, now, &mut *conn).await?);
    }
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        if inserted.contains(&job.id) {
            out.push(EnqueueOutcome::Inserted(job.id));
            continue;
        }
        // Not inserted: a live job holds its unique key, or the id exists already.
        let existing: Option<Uuid> = match &job.unique_key {
            Some(key) => sqlx::query_scalar(&sql.find_unique)
                .bind(key)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db_err("find unique job"))?,
            None => None,
        };
        out.push(EnqueueOutcome::Duplicate(existing.unwrap_or(job.id)));
    }
    Ok(out)
}

/// Inserts jobs in one multi-row statement, skipping ids and live unique keys that exist;
/// returns the ids inserted.
async fn insert_jobs<'e, E>(
    sql: &Statements,
    jobs: &[NewJob],
    now: DateTime<Utc>,
    executor: E,
) -> Result<Vec<Uuid>>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(&sql.enqueue);
    let mut encoded = Vec::with_capacity(jobs.len());
    for job in jobs {
        encoded.push((
            serde_json::to_string(&job.payload)?,
            serde_json::to_string(&job.tags)?,
        ));
    }
    qb.push_values(jobs.iter().zip(encoded), |mut b, (job, (payload, tags))| {
        let run_at = job.run_at.unwrap_or(now);
        let state = if run_at > now {
            JobState::Scheduled
        } else {
            JobState::Available
        };
        b.push_bind(job.id)
            .push_bind(job.kind.clone())
            .push_bind(job.queue.clone())
            .push_bind(payload)
            .push_bind(job.priority as i64)
            .push_bind(state.as_str())
            .push_bind(job.max_attempts as i64)
            .push_bind(millis(run_at))
            .push_bind(millis(now))
            .push_bind(job.unique_key.clone())
            .push_bind(job.timeout_ms.map(|t| t as i64))
            .push_bind(tags);
    });
    qb.push(" RETURNING id");
    qb.build_query_scalar()
        .fetch_all(executor)
        .await
        .map_err(db_err("enqueue"))
}

/// Inserts `jobs` (already validated) inside the caller's transaction with the storage's
/// clock, as `enqueue` does, and returns one outcome per job; for the schedules' firing step
/// (which wakes the workers after its commit).
pub(crate) async fn insert_in(
    db: &Db,
    conn: &mut SqliteConnection,
    jobs: &[NewJob],
) -> Result<Vec<EnqueueOutcome>> {
    insert_resolving(&db.sql, conn, jobs, db.now()).await
}
