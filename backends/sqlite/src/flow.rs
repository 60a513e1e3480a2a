//! Flow control: the stored queue settings (`{prefix}queue_flow`), which claims read through
//! the storage handle's [`FlowCache`](switchyard_core::adapter::FlowCache).

use chrono::DateTime;
use sqlx::Row;
use switchyard_core::{QueueFlow, Result};

use crate::connection::Db;
use crate::error::db_err;
use crate::row::millis;

/// `Storage::queue_flows`: every stored record, by queue name.
pub(crate) async fn load(db: &Db) -> Result<Vec<QueueFlow>> {
    let rows = sqlx::query(&format!(
        "SELECT queue, paused, updated_at FROM {}queue_flow ORDER BY queue",
        db.prefix
    ))
    .fetch_all(&db.reader)
    .await
    .map_err(db_err("read queue settings"))?;
    Ok(rows
        .iter()
        .map(|r| QueueFlow {
            queue: r.get(0),
            paused: r.get::<i64, _>(1) != 0,
            updated_at: DateTime::from_timestamp_millis(r.get(2)),
        })
        .collect())
}

/// `Storage::set_queue_flow`: upserts the record, or deletes it when it holds only defaults.
pub(crate) async fn store(db: &Db, flow: &QueueFlow) -> Result<()> {
    let sql = if flow.is_default() {
        format!("DELETE FROM {}queue_flow WHERE queue = ?", db.prefix)
    } else {
        format!(
            "INSERT INTO {}queue_flow (queue, paused, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT (queue) DO UPDATE SET paused = excluded.paused, \
             updated_at = excluded.updated_at",
            db.prefix
        )
    };
    let mut q = sqlx::query(&sql).bind(&flow.queue);
    if !flow.is_default() {
        q = q.bind(flow.paused as i64).bind(millis(db.now()));
    }
    q.execute(&db.writer)
        .await
        .map_err(db_err("store queue settings"))?;
    // A resumed queue's jobs can be claimed again.
    db.wake.notify();
    Ok(())
}
