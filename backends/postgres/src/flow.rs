//! Flow control: the stored queue settings (`{prefix}queue_flow`), which claims read through
//! the storage handle's [`FlowCache`](switchyard_core::adapter::FlowCache).

use chrono::{DateTime, Utc};
use switchyard_core::adapter::LimitedQueue;
use switchyard_core::{ClaimRequest, JobId, JobRecord, Partition, QueueFlow, Result};

use crate::connection::Db;
use crate::error::{db_err, retrying};
use crate::row::{columns, decode};
use crate::sql::millis_f64;

/// `Storage::queue_flows`: every stored record, by queue name.
pub(crate) async fn load(db: &Db) -> Result<Vec<QueueFlow>> {
    let sql = format!(
        "SELECT queue, paused, updated_at, concurrency, partition FROM {}queue_flow ORDER BY queue",
        db.prefix
    );
    let (sql, pool) = (&sql, &db.pool);
    #[allow(clippy::type_complexity)]
    let rows: Vec<(String, bool, DateTime<Utc>, Option<i32>, String)> = retrying("read queue settings", move || {
        sqlx::query_as(sql).fetch_all(pool)
    })
    .await?;
    rows.into_iter()
        .map(|(queue, paused, updated_at, concurrency, partition)| {
            Ok(QueueFlow {
                queue,
                paused,
                updated_at: Some(updated_at),
                concurrency: concurrency.map(|n| n as u32),
                partition: partition.parse()?,
            })
        })
        .collect()
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
            "INSERT INTO {}queue_flow (queue, paused, updated_at, concurrency, partition) \
             VALUES ($1, $2, now(), $3, $4) \
             ON CONFLICT (queue) DO UPDATE SET paused = excluded.paused, updated_at = now(), \
             concurrency = excluded.concurrency, partition = excluded.partition",
            db.prefix
        );
        let up = &up;
        retrying("store queue settings", move || {
            sqlx::query(up)
                .bind(&flow.queue)
                .bind(flow.paused)
                .bind(flow.concurrency.map(|n| n.min(i32::MAX as u32) as i32))
                .bind(flow.partition.as_str())
                .execute(pool)
        })
        .await?;
    }
    db.announce().await;
    Ok(())
}

/// Claims up to `limit` jobs of one queue with a concurrency limit (among `ids`, when given)
/// in one transaction that first takes a transaction-scoped advisory lock on the queue, so
/// concurrent limited claims of the queue, from any process, run one after another: each
/// counts the jobs running with a valid lease (its statement's snapshot starts after the lock
/// is granted, so it sees the claims committed before it) and takes, per partition, the best
/// pending jobs up to the free slots. A full partition never holds back another's jobs.
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
    let jobs = format!("{}jobs", db.prefix);
    let (part, same) = match lq.partition {
        Partition::None => ("''::text", ""),
        Partition::Kind => ("kind", " AND r.kind = c.p"),
    };
    let by_ids = if ids.is_some() {
        " AND id = ANY($6::uuid[])"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE {jobs} j SET state = 'running', attempt = j.attempt + 1, \
           lease_token = gen_random_uuid(), started_at = now(), \
           lease_expires_at = now() + $3::float8 * interval '1 millisecond', worker_id = $4 \
         FROM ( \
           SELECT c.id FROM ( \
             SELECT id, priority, run_at, {part} AS p, \
               row_number() OVER (PARTITION BY {part} ORDER BY priority DESC, run_at, id) AS rn \
             FROM {jobs} \
             WHERE queue = $1 AND state IN ('scheduled', 'available', 'retrying') \
               AND run_at <= now(){by_ids} \
           ) c \
           WHERE c.rn <= $5 - (SELECT count(*) FROM {jobs} r WHERE r.queue = $1 \
             AND r.state = 'running' AND r.lease_expires_at > now(){same}) \
           ORDER BY c.priority DESC, c.run_at, c.id LIMIT $2 \
         ) picked \
         WHERE j.id = picked.id AND j.state IN ('scheduled', 'available', 'retrying') \
         RETURNING {cols}",
        cols = columns("j."),
    );
    let mut tx = db.pool.begin().await.map_err(db_err("begin limited claim"))?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("switchyard-limit:{}:{}", db.prefix, lq.queue))
        .execute(&mut *tx)
        .await
        .map_err(db_err("lock a limited queue"))?;
    let mut q = sqlx::query(&sql)
        .bind(&lq.queue)
        .bind(limit.min(db.caps.max_claim_batch) as i64)
        .bind(millis_f64(req.lease))
        .bind(&req.worker_id)
        .bind(i64::from(lq.limit));
    if let Some(ids) = ids {
        q = q.bind(ids);
    }
    let rows = q
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err("claim (limited queue)"))?;
    tx.commit().await.map_err(db_err("commit limited claim"))?;
    rows.iter().map(decode).collect()
}
