//! Flow control: the stored queue settings (`{prefix}queue_flow`), which claims read through
//! the storage handle's [`FlowCache`](switchyard_core::adapter::FlowCache).

use chrono::{DateTime, Utc};
use switchyard_core::{QueueFlow, Result};

use crate::connection::Db;
use crate::error::retrying;

/// `Storage::queue_flows`: every stored record, by queue name.
pub(crate) async fn load(db: &Db) -> Result<Vec<QueueFlow>> {
    let sql = format!(
        "SELECT queue, paused, updated_at FROM {}queue_flow ORDER BY queue",
        db.prefix
    );
    let (sql, pool) = (&sql, &db.pool);
    let rows: Vec<(String, bool, DateTime<Utc>)> = retrying("read queue settings", move || {
        sqlx::query_as(sql).fetch_all(pool)
    })
    .await?;
    Ok(rows
        .into_iter()
        .map(|(queue, paused, updated_at)| QueueFlow {
            queue,
            paused,
            updated_at: Some(updated_at),
        })
        .collect())
}

/// `Storage::set_queue_flow`: upserts the record, or deletes it when it holds only defaults;
/// a change wakes workers in every process (a resumed queue's jobs can be claimed again).
pub(crate) async fn store(db: &Db, flow: &QueueFlow) -> Result<()> {
    let pool = &db.pool;
    if flow.is_default() {
        let del = format!("DELETE FROM {}queue_flow WHERE queue = $1", db.prefix);
        let del = &del;
        retrying("store queue settings", move || {
            sqlx::query(del).bind(&flow.queue).execute(pool)
        })
        .await?;
    } else {
        let up = format!(
            "INSERT INTO {}queue_flow (queue, paused, updated_at) VALUES ($1, $2, now()) \
             ON CONFLICT (queue) DO UPDATE SET paused = excluded.paused, updated_at = now()",
            db.prefix
        );
        let up = &up;
        retrying("store queue settings", move || {
            sqlx::query(up)
                .bind(&flow.queue)
                .bind(flow.paused)
                .execute(pool)
        })
        .await?;
    }
    db.announce().await;
    Ok(())
}
