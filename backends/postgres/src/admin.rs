//! Records on a user's request: reading one job ([`get`]) or a page of them ([`list`]),
//! counting them by queue and state ([`counts`]), cancelling ([`cancel`]) and retrying
//! ([`retry`]) one.

use sqlx::{Postgres, QueryBuilder};
use switchyard_core::{
    CancelOutcome, Error, ErrorKind, JobFilter, JobId, JobRecord, JobState, ListOrder, QueueCounts,
    Result, RetryOutcome,
};

use crate::connection::Db;
use crate::error::{db_err, is_connection_lost, retrying, RECONNECT_ATTEMPTS};
use crate::row::decode;

/// `Storage::get`.
pub(crate) async fn get(db: &Db, id: JobId) -> Result<Option<JobRecord>> {
    let (sql, pool) = (&db.sql, &db.pool);
    let row = retrying("get job", move || {
        sqlx::query(&sql.get).bind(id).fetch_optional(pool)
    })
    .await?;
    row.as_ref().map(decode).transpose()
}

/// `Storage::cancel`: the job's row locked, then cancelled when pending or flagged when
/// running, in one transaction.
pub(crate) async fn cancel(db: &Db, id: JobId) -> Result<CancelOutcome> {
    let (sql, pool) = (&db.sql, &db.pool);
    let state: Option<String> = retrying("cancel", move || async move {
        let mut tx = pool.begin().await?;
        let state: Option<String> = sqlx::query_scalar(&sql.lock_state)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        match state.as_deref() {
            Some("blocked" | "scheduled" | "available" | "retrying") => {
                sqlx::query(&sql.cancel_pending)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            Some("running") => {
                sqlx::query(&sql.cancel_running)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            _ => {}
        }
        tx.commit().await?;
        Ok(state)
    })
    .await?;
    Ok(match state {
        None => CancelOutcome::NotFound,
        Some(s) => match s.parse::<JobState>()? {
            st if st.is_pending() || st == JobState::Blocked => CancelOutcome::Cancelled,
            JobState::Running => CancelOutcome::Requested,
            st => CancelOutcome::AlreadyFinished(st),
        },
    })
}

/// `Storage::retry`: a finished job made available again, in one transaction; refused as a
/// `Conflict` when another live job holds its unique key.
pub(crate) async fn retry(db: &Db, id: JobId) -> Result<RetryOutcome> {
    let (sql, pool) = (&db.sql, &db.pool);
    let res = retrying("retry", move || async move {
        let mut tx = pool.begin().await?;
        let state: Option<String> = sqlx::query_scalar(&sql.lock_state)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some("completed" | "failed" | "cancelled" | "dropped") = state.as_deref() {
            sqlx::query(&sql.retry).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(state)
    })
    .await;
    let state = match res {
        Ok(state) => state,
        Err(e)
            if std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<sqlx::Error>())
                .and_then(|s| s.as_database_error())
                .is_some_and(|d| d.is_unique_violation()) =>
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("job {id} cannot be retried: another live job holds its unique key"),
            )
            .set_retryable(false));
        }
        Err(e) => return Err(e),
    };
    let outcome = match state {
        None => RetryOutcome::NotFound,
        Some(s) => match s.parse::<JobState>()? {
            st if st.is_finished() => RetryOutcome::Requeued,
            st => RetryOutcome::NotFinished(st),
        },
    };
    if outcome == RetryOutcome::Requeued {
        db.announce().await;
    }
    Ok(outcome)
}

/// `Storage::list`.
pub(crate) async fn list(db: &Db, filter: &JobFilter) -> Result<Vec<JobRecord>> {
    // A QueryBuilder cannot be re-run after `build`, so a lost connection rebuilds it; at
    // most RECONNECT_ATTEMPTS times, as `retrying` does, then the error is reported.
    let mut attempt = 0;
    let rows = loop {
        match list_query(db, filter).build().fetch_all(&db.pool).await {
            Ok(rows) => break rows,
            Err(e) if attempt < RECONNECT_ATTEMPTS && is_connection_lost(&e) => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "postgres connection lost; retrying list");
            }
            Err(e) => return Err(db_err("list")(e)),
        }
    };
    rows.iter().map(decode).collect()
}

/// `Storage::counts`.
pub(crate) async fn counts(db: &Db) -> Result<Vec<QueueCounts>> {
    let (sql, pool) = (&db.sql, &db.pool);
    let rows: Vec<(String, String, i64)> =
        retrying("count", move || sqlx::query_as(&sql.counts).fetch_all(pool)).await?;
    let mut out: Vec<QueueCounts> = Vec::new();
    for (queue, state, n) in rows {
        if out.last().map(|c| &c.queue) != Some(&queue) {
            out.push(QueueCounts {
                queue,
                ..Default::default()
            });
        }
        if let Some(last) = out.last_mut() {
            last.counts.insert(state.parse()?, n.max(0) as u64);
        }
    }
    Ok(out)
}

/// The `list` query for `filter`.
fn list_query<'a>(db: &Db, filter: &'a JobFilter) -> QueryBuilder<'a, Postgres> {
    let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(&db.sql.list);
    if !filter.states.is_empty() {
        let states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
        qb.push(" AND state = ANY(").push_bind(states).push(")");
    }
    if let Some(q) = &filter.queue {
        qb.push(" AND queue = ").push_bind(q);
    }
    if let Some(k) = &filter.kind {
        qb.push(" AND kind = ").push_bind(k);
    }
    if let Some(t) = filter.created_after {
        qb.push(" AND created_at >= ").push_bind(t);
    }
    if let Some(t) = filter.created_before {
        qb.push(" AND created_at < ").push_bind(t);
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
    qb
}
