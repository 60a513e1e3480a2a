//! Flow control: the stored queue settings (`{prefix}queue_flow`), which claims read through
//! the storage handle's [`FlowCache`](switchyard_core::adapter::FlowCache).

use chrono::DateTime;
use sqlx::{QueryBuilder, Row, Sqlite};
use switchyard_core::adapter::LimitedQueue;
use switchyard_core::{ClaimRequest, JobId, JobRecord, Partition, QueueFlow, Result};

use crate::connection::Db;
use crate::error::db_err;
use crate::row::{decode, millis};

/// `Storage::queue_flows`: every stored record, by queue name.
pub(crate) async fn load(db: &Db) -> Result<Vec<QueueFlow>> {
    let rows = sqlx::query(&format!(
        "SELECT queue, paused, updated_at, concurrency, partition FROM {}queue_flow ORDER BY queue",
        db.prefix
    ))
    .fetch_all(&db.reader)
    .await
    .map_err(db_err("read queue settings"))?;
    rows.iter()
        .map(|r| {
            Ok(QueueFlow {
                queue: r.get(0),
                paused: r.get::<i64, _>(1) != 0,
                updated_at: DateTime::from_timestamp_millis(r.get(2)),
                concurrency: r.get::<Option<i64>, _>(3).map(|n| n as u32),
                partition: r.get::<String, _>(4).parse()?,
            })
        })
        .collect()
}

/// `Storage::set_queue_flow`: upserts the record, or deletes it when it holds only defaults.
pub(crate) async fn store(db: &Db, flow: &QueueFlow) -> Result<()> {
    let sql = if flow.is_default() {
        format!("DELETE FROM {}queue_flow WHERE queue = ?", db.prefix)
    } else {
        format!(
            "INSERT INTO {}queue_flow (queue, paused, updated_at, concurrency, partition) \
             VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (queue) DO UPDATE SET paused = excluded.paused, \
             updated_at = excluded.updated_at, concurrency = excluded.concurrency, \
             partition = excluded.partition",
            db.prefix
        )
    };
    let mut q = sqlx::query(&sql).bind(&flow.queue);
    if !flow.is_default() {
        q = q
            .bind(flow.paused as i64)
            .bind(millis(db.now()))
            .bind(flow.concurrency.map(i64::from))
            .bind(flow.partition.as_str());
    }
    q.execute(&db.writer)
        .await
        .map_err(db_err("store queue settings"))?;
    // A resumed queue's jobs can be claimed again.
    db.wake.notify();
    Ok(())
}

/// Claims up to `limit` jobs of one queue with a concurrency limit (among `ids`, when given)
/// in one `UPDATE`, which SQLite runs under its write lock, so the count of running jobs and
/// the claim are one atomic step: per partition, the best pending jobs (priority, run_at, id)
/// up to the partition's free slots (its limit less its jobs running with a valid lease), so
/// a full partition never holds back another's jobs.
pub(crate) async fn claim_limited(
    db: &Db,
    lq: &LimitedQueue,
    req: &ClaimRequest,
    limit: usize,
    ids: Option<&[JobId]>,
) -> Result<Vec<JobRecord>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let now = millis(db.now());
    let jobs = format!("{}jobs", db.prefix);
    let (part, same) = match lq.partition {
        Partition::None => ("''", ""),
        Partition::Kind => ("kind", " AND r.kind = c.p"),
    };
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(&db.sql.claim_set);
    qb.push_bind(now);
    qb.push(", lease_expires_at = ");
    qb.push_bind(now + req.lease.as_millis() as i64);
    qb.push(", worker_id = ");
    qb.push_bind(&req.worker_id);
    qb.push(format!(
        " WHERE id IN (SELECT c.id FROM (SELECT id, priority, run_at, {part} AS p, \
         ROW_NUMBER() OVER (PARTITION BY {part} ORDER BY priority DESC, run_at, id) AS rn \
         FROM {jobs} WHERE queue = "
    ));
    qb.push_bind(&lq.queue);
    qb.push(" AND state IN ('scheduled', 'available', 'retrying') AND run_at <= ");
    qb.push_bind(now);
    if let Some(ids) = ids {
        qb.push(" AND id IN (");
        let mut sep = qb.separated(", ");
        for id in ids {
            sep.push_bind(*id);
        }
        qb.push(")");
    }
    qb.push(") c WHERE c.rn <= ");
    qb.push_bind(i64::from(lq.limit));
    qb.push(format!(
        " - (SELECT COUNT(*) FROM {jobs} r WHERE r.queue = "
    ));
    qb.push_bind(&lq.queue);
    qb.push(" AND r.state = 'running' AND r.lease_expires_at > ");
    qb.push_bind(now);
    qb.push(same);
    qb.push(") ORDER BY c.priority DESC, c.run_at, c.id LIMIT ");
    qb.push_bind(limit.min(db.caps.max_claim_batch) as i64);
    qb.push(&db.sql.claim_returning);
    let rows = qb
        .build()
        .fetch_all(&db.writer)
        .await
        .map_err(db_err("claim (limited queue)"))?;
    rows.iter().map(decode).collect()
}
