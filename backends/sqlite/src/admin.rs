//! Records on a user's request: reading one job ([`get`]) or a page of them ([`list`]),
//! counting them by queue and state ([`counts`]), cancelling ([`cancel`]) and retrying
//! ([`retry`]) one.

use sqlx::{QueryBuilder, Row, Sqlite};
use switchyard_core::{
    CancelOutcome, Error, ErrorKind, JobFilter, JobId, JobRecord, ListOrder, QueueCounts, Result,
    RetryOutcome,
};
use uuid::Uuid;

use crate::connection::Db;
use crate::error::db_err;
use crate::row::{decode, millis};

/// `Storage::get`, on a reader.
pub(crate) async fn get(db: &Db, id: JobId) -> Result<Option<JobRecord>> {
    let row = sqlx::query(&db.sql.get)
        .bind(id)
        .fetch_optional(&db.reader)
        .await
        .map_err(db_err("get job"))?;
    row.as_ref().map(decode).transpose()
}

/// `Storage::cancel`: a pending job cancelled, a running one flagged, in one write
/// transaction.
pub(crate) async fn cancel(db: &Db, id: JobId) -> Result<CancelOutcome> {
    let now = millis(db.now());
    let mut tx = db.writer.begin().await.map_err(db_err("begin cancel"))?;
    let done: Option<String> = sqlx::query_scalar(&db.sql.cancel)
        .bind(now)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err("cancel"))?;
    let outcome = match done.as_deref() {
        Some("running") => CancelOutcome::Requested,
        Some(_) => CancelOutcome::Cancelled,
        None => {
            let state: Option<String> = sqlx::query_scalar(&db.sql.state)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("cancel"))?;
            match state {
                Some(s) => CancelOutcome::AlreadyFinished(s.parse()?),
                None => CancelOutcome::NotFound,
            }
        }
    };
    tx.commit().await.map_err(db_err("commit cancel"))?;
    Ok(outcome)
}

/// `Storage::retry`: a finished job made available again, in one write transaction; refused
/// as a `Conflict` when another live job holds its unique key.
pub(crate) async fn retry(db: &Db, id: JobId) -> Result<RetryOutcome> {
    let mut tx = db.writer.begin().await.map_err(db_err("begin retry"))?;
    let done: Option<Uuid> = sqlx::query_scalar(&db.sql.retry)
        .bind(millis(db.now()))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| {
            // The unique index refuses a second live job with the same key.
            if e.as_database_error()
                .is_some_and(|d| d.message().contains("UNIQUE"))
            {
                Error::new(
                    ErrorKind::Conflict,
                    format!("job {id} cannot be retried: another live job holds its unique key"),
                )
                .set_retryable(false)
            } else {
                db_err("retry")(e)
            }
        })?;
    let outcome = match done {
        Some(_) => RetryOutcome::Requeued,
        None => {
            let state: Option<String> = sqlx::query_scalar(&db.sql.state)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("retry"))?;
            match state {
                Some(s) => RetryOutcome::NotFinished(s.parse()?),
                None => RetryOutcome::NotFound,
            }
        }
    };
    tx.commit().await.map_err(db_err("commit retry"))?;
    if outcome == RetryOutcome::Requeued {
        db.wake.notify();
    }
    Ok(outcome)
}

/// `Storage::list`, on a reader.
pub(crate) async fn list(db: &Db, filter: &JobFilter) -> Result<Vec<JobRecord>> {
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(&db.sql.list);
    if !filter.states.is_empty() {
        qb.push(" AND state IN (");
        let mut sep = qb.separated(", ");
        for s in &filter.states {
            sep.push_bind(s.as_str());
        }
        qb.push(")");
    }
    if let Some(q) = &filter.queue {
        qb.push(" AND queue = ").push_bind(q);
    }
    if let Some(k) = &filter.kind {
        qb.push(" AND kind = ").push_bind(k);
    }
    if let Some(t) = filter.created_after {
        qb.push(" AND created_at >= ").push_bind(millis(t));
    }
    if let Some(t) = filter.created_before {
        qb.push(" AND created_at < ").push_bind(millis(t));
    }
    let (cmp, dir) = match filter.order {
        ListOrder::Asc => (">", "ASC"),
        ListOrder::Desc => ("<", "DESC"),
    };
    if let Some(after) = filter.after {
        qb.push(format!(" AND id {cmp} ")).push_bind(after);
    }
    qb.push(format!(" ORDER BY id {dir} LIMIT "))
        .push_bind(filter.page_size() as i64);
    let rows = qb
        .build()
        .fetch_all(&db.reader)
        .await
        .map_err(db_err("list"))?;
    rows.iter().map(decode).collect()
}

/// `Storage::counts`, on a reader.
pub(crate) async fn counts(db: &Db) -> Result<Vec<QueueCounts>> {
    let rows = sqlx::query(&db.sql.counts)
        .fetch_all(&db.reader)
        .await
        .map_err(db_err("count"))?;
    let mut out: Vec<QueueCounts> = Vec::new();
    for r in rows {
        let queue: String = r.get(0);
        let state: String = r.get(1);
        let n: i64 = r.get(2);
        if out.last().map(|c| &c.queue) != Some(&queue) {
            out.push(QueueCounts {
                queue,
                ..Default::default()
            });
        }
        if let Some(last) = out.last_mut() {
            last.counts.insert(state.parse()?, n as u64);
        }
    }
    Ok(out)
}

/// `Storage::health_checks`: the journal mode. WAL lets readers work beside the one writer;
/// any other mode (a database another tool switched back) makes every read wait for writes.
pub(crate) async fn journal_check(db: &Db) -> switchyard_core::HealthCheck {
    use switchyard_core::HealthCheck;
    match sqlx::query_scalar::<_, String>("PRAGMA journal_mode")
        .fetch_one(&db.writer)
        .await
    {
        Ok(mode) if mode.eq_ignore_ascii_case("wal") || mode.eq_ignore_ascii_case("memory") => {
            HealthCheck::ok("sqlite journal", format!("journal_mode {mode}"))
        }
        Ok(mode) => HealthCheck::warn(
            "sqlite journal",
            format!("journal_mode {mode}: reads wait for writes; Switchyard expects wal"),
        ),
        Err(e) => HealthCheck::fail("sqlite journal", format!("cannot read journal_mode: {e}")),
    }
}
