//! The outbox: the pending jobs an external queue should be sent ([`due_for_dispatch`]) and
//! the stamp that records they were sent ([`mark_dispatched`]). `take_for_dispatch` is the
//! trait's default: the two in a row.

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row, Sqlite};
use switchyard_core::{DispatchItem, JobId, Result};

use crate::connection::Db;
use crate::error::db_err;
use crate::row::{from_millis, millis};
use crate::sql::CHUNK;

/// `Storage::due_for_dispatch`: never published, or published before `stale_before` and
/// still pending, by due time.
pub(crate) async fn due_for_dispatch(
    db: &Db,
    horizon: DateTime<Utc>,
    stale_before: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<DispatchItem>> {
    let rows = sqlx::query(&db.sql.due_for_dispatch)
        .bind(millis(horizon))
        .bind(millis(stale_before))
        .bind(limit as i64)
        .fetch_all(&db.writer)
        .await
        .map_err(db_err("find jobs to dispatch"))?;
    Ok(rows
        .iter()
        .map(|r| DispatchItem {
            id: r.get(0),
            queue: r.get(1),
            priority: r.get::<i64, _>(2) as i16,
            run_at: from_millis(r.get(3)),
        })
        .collect())
}

/// `Storage::mark_dispatched`: one statement per [`CHUNK`] ids.
pub(crate) async fn mark_dispatched(db: &Db, ids: &[JobId]) -> Result<()> {
    let now = millis(db.now());
    for chunk in ids.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(&db.sql.mark_dispatched);
        qb.push_bind(now).push(" WHERE id IN (");
        let mut sep = qb.separated(", ");
        for id in chunk {
            sep.push_bind(*id);
        }
        qb.push(")");
        qb.build()
            .execute(&db.writer)
            .await
            .map_err(db_err("mark dispatched"))?;
    }
    Ok(())
}
