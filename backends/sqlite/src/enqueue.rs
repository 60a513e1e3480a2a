//! Enqueue: jobs inserted in multi-row `INSERT OR IGNORE` statements ([`insert_jobs`]), in one
//! transaction with a look-up of the job holding each unique key when one may be taken
//! ([`enqueue`]).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Sqlite};
use switchyard_core::adapter::validate_all;
use switchyard_core::{EnqueueOutcome, JobState, NewJob, Result};
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
    let mut inserted = HashSet::with_capacity(jobs.len());
    let mut tx = db.writer.begin().await.map_err(db_err("begin enqueue"))?;
    for chunk in jobs.chunks(ENQUEUE_CHUNK) {
        inserted.extend(insert_jobs(&db.sql, chunk, now, &mut *tx).await?);
    }
    let mut out = Vec::with_capacity(jobs.len());
    for job in &jobs {
        if inserted.contains(&job.id) {
            out.push(EnqueueOutcome::Inserted(job.id));
            continue;
        }
        // Not inserted: a live job holds its unique key, or the id exists already.
        let existing: Option<Uuid> = match &job.unique_key {
            Some(key) => sqlx::query_scalar(&db.sql.find_unique)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("find unique job"))?,
            None => None,
        };
        out.push(EnqueueOutcome::Duplicate(existing.unwrap_or(job.id)));
    }
    tx.commit().await.map_err(db_err("commit enqueue"))?;
    db.wake.notify();
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

/// Inserts `jobs` (already validated) inside the caller's transaction, as `enqueue` does, and
/// returns one outcome per job; for the schedules' firing step.
pub(crate) async fn enqueue_in(
    db: &Db,
    conn: &mut sqlx::SqliteConnection,
    jobs: &[NewJob],
) -> Result<Vec<EnqueueOutcome>> {
    let now = db.now();
    let mut inserted = HashSet::with_capacity(jobs.len());
    for chunk in jobs.chunks(ENQUEUE_CHUNK) {
        inserted.extend(insert_jobs(&db.sql, chunk, now, &mut *conn).await?);
    }
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        if inserted.contains(&job.id) {
            out.push(EnqueueOutcome::Inserted(job.id));
            continue;
        }
        let existing: Option<Uuid> = match &job.unique_key {
            Some(key) => sqlx::query_scalar(&db.sql.find_unique)
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
