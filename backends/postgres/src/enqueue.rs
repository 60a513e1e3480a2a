//! Enqueue: jobs encoded as one array per column ([`EnqueueArrays`]) and bound to the one
//! `INSERT … SELECT FROM unnest(…)` statement, unique-key duplicates resolved by look-up
//! ([`insert_jobs`]), on the pool ([`enqueue`]) or on the caller's connection ([`enqueue_in`]).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::PgConnection;
use switchyard_core::adapter::validate_all;
use switchyard_core::{EnqueueOutcome, NewJob, Result};
use uuid::Uuid;

use crate::connection::Db;
use crate::error::{db_err, retrying};
use crate::row::tags_literal;
use crate::sql::Statements;

/// The per-job columns of an enqueue, as arrays bound to one statement.
struct EnqueueArrays<'a> {
    ids: Vec<Uuid>,
    kinds: Vec<&'a str>,
    queues: Vec<&'a str>,
    payloads: Vec<Json<&'a serde_json::Value>>,
    priorities: Vec<i16>,
    max_attempts: Vec<i32>,
    run_ats: Vec<Option<DateTime<Utc>>>,
    unique_keys: Vec<Option<&'a str>>,
    timeouts: Vec<Option<i64>>,
    tags: Vec<String>,
}

impl<'a> EnqueueArrays<'a> {
    fn new<'j>(jobs: impl ExactSizeIterator<Item = &'j NewJob>) -> Self
    where
        'j: 'a,
    {
        let n = jobs.len();
        let mut a = Self {
            ids: Vec::with_capacity(n),
            kinds: Vec::with_capacity(n),
            queues: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            priorities: Vec::with_capacity(n),
            max_attempts: Vec::with_capacity(n),
            run_ats: Vec::with_capacity(n),
            unique_keys: Vec::with_capacity(n),
            timeouts: Vec::with_capacity(n),
            tags: Vec::with_capacity(n),
        };
        for job in jobs {
            a.ids.push(job.id);
            a.kinds.push(&job.kind);
            a.queues.push(&job.queue);
            a.payloads.push(Json(&job.payload));
            a.priorities.push(job.priority);
            a.max_attempts
                .push(i32::try_from(job.max_attempts).unwrap_or(i32::MAX));
            a.run_ats.push(job.run_at);
            a.unique_keys.push(job.unique_key.as_deref());
            a.timeouts
                .push(job.timeout_ms.map(|t| i64::try_from(t).unwrap_or(i64::MAX)));
            a.tags.push(tags_literal(&job.tags));
        }
        a
    }
}

/// `Storage::enqueue`: validates the batch, then inserts it in one statement, or in one
/// transaction when unique keys may need a look-up, retried on a lost connection.
pub(crate) async fn enqueue(db: &Db, jobs: Vec<NewJob>) -> Result<Vec<EnqueueOutcome>> {
    validate_all(&jobs, &db.caps)?;
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let (pool, sql) = (&db.pool, &db.sql);
    let jobs_ref = &jobs;
    let out = if jobs.iter().any(|j| j.unique_key.is_some()) {
        // Duplicates are resolved with a look-up (and possibly another insert): one
        // transaction keeps the whole call all-or-none.
        retrying("enqueue", move || async move {
            let mut tx = pool.begin().await?;
            let out = insert_jobs(sql, &mut tx, jobs_ref).await?;
            tx.commit().await?;
            Ok(out)
        })
        .await?
    } else {
        // One statement, committed on its own: one round trip.
        retrying("enqueue", move || async move {
            let mut conn = pool.acquire().await?;
            insert_jobs(sql, &mut conn, jobs_ref).await
        })
        .await?
    };
    if out.iter().any(|o| matches!(o, EnqueueOutcome::Inserted(_))) {
        db.wake.notify();
    }
    Ok(out)
}

/// `PostgresStorage::enqueue_in`: validates the batch and inserts it on the caller's
/// connection (no retry: the caller's transaction is not ours to run again).
pub(crate) async fn enqueue_in(
    db: &Db,
    conn: &mut PgConnection,
    jobs: Vec<NewJob>,
) -> Result<Vec<EnqueueOutcome>> {
    validate_all(&jobs, &db.caps)?;
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    insert_jobs(&db.sql, conn, &jobs)
        .await
        .map_err(db_err("enqueue"))
}

/// Inserts `jobs` on `conn` and resolves unique-key duplicates. When the live job holding a
/// key finishes between the insert and the look-up, the job is inserted again (a few
/// rounds at most).
async fn insert_jobs(
    sql: &Statements,
    conn: &mut PgConnection,
    jobs: &[NewJob],
) -> sqlx::Result<Vec<EnqueueOutcome>> {
    let mut outcomes: Vec<Option<EnqueueOutcome>> = vec![None; jobs.len()];
    let mut pending: Vec<usize> = (0..jobs.len()).collect();
    for _round in 0..4 {
        let a = EnqueueArrays::new(pending.iter().map(|&i| &jobs[i]));
        let (ids, _notified): (Vec<Uuid>, i64) = sqlx::query_as(&sql.enqueue)
            .bind(&a.ids)
            .bind(&a.kinds)
            .bind(&a.queues)
            .bind(&a.payloads)
            .bind(&a.priorities)
            .bind(&a.max_attempts)
            .bind(&a.run_ats)
            .bind(&a.unique_keys)
            .bind(&a.timeouts)
            .bind(&a.tags)
            .bind(&sql.channel)
            .fetch_one(&mut *conn)
            .await?;
        let inserted: HashSet<Uuid> = ids.into_iter().collect();
        let mut lookup = Vec::new();
        for &i in &pending {
            let job = &jobs[i];
            if inserted.contains(&job.id) {
                outcomes[i] = Some(EnqueueOutcome::Inserted(job.id));
            } else if job.unique_key.is_some() {
                lookup.push(i);
            } else {
                // The id exists already.
                outcomes[i] = Some(EnqueueOutcome::Duplicate(job.id));
            }
        }
        if lookup.is_empty() {
            break;
        }
        let keys: Vec<&str> = lookup
            .iter()
            .filter_map(|&i| jobs[i].unique_key.as_deref())
            .collect();
        let holders: HashMap<String, Uuid> = sqlx::query_as(&sql.find_unique)
            .bind(&keys)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
        pending.clear();
        for i in lookup {
            let key = jobs[i].unique_key.as_deref().unwrap_or_default();
            match holders.get(key) {
                Some(&id) => outcomes[i] = Some(EnqueueOutcome::Duplicate(id)),
                None => pending.push(i),
            }
        }
        if pending.is_empty() {
            break;
        }
    }
    Ok(outcomes
        .into_iter()
        .zip(jobs)
        .map(|(o, job)| o.unwrap_or(EnqueueOutcome::Duplicate(job.id)))
        .collect())
}
