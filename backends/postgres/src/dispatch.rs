//! The outbox: the pending jobs an external queue should be sent ([`due_for_dispatch`],
//! [`take_for_dispatch`]) and the stamp that records they were sent ([`mark_dispatched`]).

use chrono::{DateTime, Utc};
use switchyard_core::{DispatchItem, JobId, Result};
use uuid::Uuid;

use crate::connection::Db;
use crate::error::{db_err, retrying};

/// `Storage::due_for_dispatch`: read only, so retried on a lost connection.
pub(crate) async fn due_for_dispatch(
    db: &Db,
    horizon: DateTime<Utc>,
    stale_before: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<DispatchItem>> {
    let sql = &db.sql.due_for_dispatch;
    let args = (horizon, stale_before, limit);
    dispatch_items(db, "find jobs to dispatch", sql, args, true).await
}

/// `Storage::take_for_dispatch`: it stamps what it returns, so it is never run twice.
pub(crate) async fn take_for_dispatch(
    db: &Db,
    horizon: DateTime<Utc>,
    stale_before: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<DispatchItem>> {
    let sql = &db.sql.take_for_dispatch;
    let args = (horizon, stale_before, limit);
    dispatch_items(db, "take jobs to dispatch", sql, args, false).await
}

/// `Storage::mark_dispatched`.
pub(crate) async fn mark_dispatched(db: &Db, ids: &[JobId]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let (sql, pool) = (&db.sql, &db.pool);
    retrying("mark dispatched", move || {
        sqlx::query(&sql.mark_dispatched).bind(ids).execute(pool)
    })
    .await?;
    Ok(())
}

/// Runs a dispatch query (`$1` horizon, `$2` stale-before, `$3` limit) that returns
/// `(id, queue, priority, run_at)` rows; earliest `run_at` first. A query that changes
/// rows is not retried on a lost connection: its first run may have committed.
async fn dispatch_items(
    db: &Db,
    what: &'static str,
    sql: &str,
    (horizon, stale_before, limit): (DateTime<Utc>, DateTime<Utc>, usize),
    retry: bool,
) -> Result<Vec<DispatchItem>> {
    let pool = &db.pool;
    let limit = limit as i64;
    let run = move || {
        sqlx::query_as::<_, (Uuid, String, i16, DateTime<Utc>)>(sql)
            .bind(horizon)
            .bind(stale_before)
            .bind(limit)
            .fetch_all(pool)
    };
    let rows = if retry {
        retrying(what, run).await?
    } else {
        run().await.map_err(db_err(what))?
    };
    let mut items: Vec<DispatchItem> = rows
        .into_iter()
        .map(|(id, queue, priority, run_at)| DispatchItem {
            id,
            queue,
            priority,
            run_at,
        })
        .collect();
    items.sort_by(|a, b| a.run_at.cmp(&b.run_at).then(a.id.cmp(&b.id)));
    Ok(items)
}
