//! Flow control: the stored queue settings (`{prefix}queue_flow`), which claims read through
//! the storage handle's [`FlowCache`](switchyard_core::adapter::FlowCache), and the claim of a
//! queue with limits ([`claim_limited`]), with the rate limit's window of attempt starts in
//! `{prefix}queue_starts`.

use chrono::{DateTime, Utc};
use switchyard_core::adapter::LimitedQueue;
use switchyard_core::{ClaimRequest, JobId, JobRecord, Partition, QueueFlow, RateLimit, Result};

use crate::connection::Db;
use crate::error::{db_err, retrying};
use crate::row::{columns, decode};
use crate::sql::millis_f64;

/// One stored row: queue, paused, updated_at, concurrency, partition, rate_limit,
/// rate_period_ms.
type FlowRow = (
    String,
    bool,
    DateTime<Utc>,
    Option<i32>,
    String,
    Option<i32>,
    Option<i64>,
    Option<DateTime<Utc>>,
);

/// `Storage::queue_flows`: every stored record, by queue name.
pub(crate) async fn load(db: &Db) -> Result<Vec<QueueFlow>> {
    let sql = format!(
        "SELECT queue, paused, updated_at, concurrency, partition, rate_limit, rate_period_ms, \
         paused_until FROM {}queue_flow ORDER BY queue",
        db.prefix
    );
    let (sql, pool) = (&sql, &db.pool);
    let rows: Vec<FlowRow> = retrying("read queue settings", move || {
        sqlx::query_as(sql).fetch_all(pool)
    })
    .await?;
    rows.into_iter()
        .map(
            |(queue, paused, updated_at, concurrency, partition, rate, period, paused_until)| {
                Ok(QueueFlow {
                    queue,
                    paused,
                    paused_until,
                    updated_at: Some(updated_at),
                    concurrency: concurrency.map(|n| n as u32),
                    rate: match (rate, period) {
                        (Some(limit), Some(p)) => Some(RateLimit {
                            limit: limit as u32,
                            period_ms: p as u64,
                        }),
                        _ => None,
                    },
                    partition: partition.parse()?,
                })
            },
        )
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
            "INSERT INTO {}queue_flow (queue, paused, updated_at, concurrency, partition, \
             rate_limit, rate_period_ms, paused_until) VALUES ($1, $2, now(), $3, $4, $5, $6, $7) \
             ON CONFLICT (queue) DO UPDATE SET paused = excluded.paused, updated_at = now(), \
             concurrency = excluded.concurrency, partition = excluded.partition, \
             rate_limit = excluded.rate_limit, rate_period_ms = excluded.rate_period_ms, \
             paused_until = excluded.paused_until",
            db.prefix
        );
        let up = &up;
        let int = |n: u32| n.min(i32::MAX as u32) as i32;
        retrying("store queue settings", move || {
            sqlx::query(up)
                .bind(&flow.queue)
                .bind(flow.paused)
                .bind(flow.concurrency.map(int))
                .bind(flow.partition.to_string())
                .bind(flow.rate.map(|r| int(r.limit)))
                .bind(flow.rate.map(|r| r.period_ms as i64))
                .bind(flow.paused_until)
                .execute(pool)
        })
        .await?;
    }
    db.announce().await;
    Ok(())
}

/// Claims up to `limit` jobs of one queue with limits (among `ids`, when given) in one
/// transaction that first takes a transaction-scoped advisory lock on the queue, so
/// concurrent limited claims of the queue, from any process, run one after another: each
/// statement's snapshot starts after the lock is granted, so it sees the claims committed
/// before it. Per partition it takes the best pending jobs up to the free budget — the
/// concurrency limit less the jobs running with a valid lease, the rate limit less the
/// attempt starts inside the window — so a full partition never holds back another's jobs;
/// it records the claimed attempts as starts and deletes starts older than the window.
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
    let (jobs, starts) = (
        format!("{}jobs", db.prefix),
        format!("{}queue_starts", db.prefix),
    );
    // The partition of a row (`x.` prefixed, or bare inside the window); a payload field's
    // name is letters, digits, `_` and `-` (checked when the record was parsed), so it is
    // safe inside the literal.
    let part_of = |x: &str| match &lq.partition {
        Partition::None => "''::text".to_string(),
        Partition::Kind => format!("{x}kind"),
        Partition::Payload(f) => format!("COALESCE({x}payload ->> '{f}', '')"),
    };
    let part = part_of("");
    let (same, same_start) = match &lq.partition {
        Partition::None => (String::new(), String::new()),
        _ => (
            format!(" AND {} = c.p", part_of("r.")),
            " AND s.part = c.p".to_string(),
        ),
    };
    let by_ids = if ids.is_some() {
        " AND id = ANY($9::uuid[])"
    } else {
        ""
    };
    let mut budget = String::new();
    if lq.concurrency.is_some() {
        budget.push_str(&format!(
            " AND c.rn <= $5 - (SELECT count(*) FROM {jobs} r WHERE r.queue = $1 \
             AND r.state = 'running' AND r.lease_expires_at > $8::timestamptz{same})"
        ));
    }
    if lq.rate.is_some() {
        budget.push_str(&format!(
            " AND c.rn <= $6 - (SELECT count(*) FROM {starts} s WHERE s.queue = $1 \
             AND s.at > $8::timestamptz - $7::float8 * interval '1 millisecond'{same_start})"
        ));
    }
    let sql = format!(
        "UPDATE {jobs} j SET state = 'running', attempt = j.attempt + 1, \
           lease_token = gen_random_uuid(), started_at = $8::timestamptz, \
           lease_expires_at = $8::timestamptz + $3::float8 * interval '1 millisecond', worker_id = $4 \
         FROM ( \
           SELECT c.id FROM ( \
             SELECT id, priority, run_at, {part} AS p, \
               row_number() OVER (PARTITION BY {part} ORDER BY priority DESC, run_at, id) AS rn \
             FROM {jobs} \
             WHERE queue = $1 AND state IN ('scheduled', 'available', 'retrying') \
               AND run_at <= $8::timestamptz{by_ids} \
           ) c \
           WHERE true{budget} \
           ORDER BY c.priority DESC, c.run_at, c.id LIMIT $2 \
         ) picked \
         WHERE j.id = picked.id AND j.state IN ('scheduled', 'available', 'retrying') \
           AND $5::int8 IS NOT DISTINCT FROM $5 AND $6::int8 IS NOT DISTINCT FROM $6 \
           AND $7::float8 IS NOT DISTINCT FROM $7 \
         RETURNING {cols}",
        cols = columns("j."),
    );
    let period = lq.rate.map(|r| r.period_ms as f64).unwrap_or(0.0);
    let mut tx = db
        .pool
        .begin()
        .await
        .map_err(db_err("begin limited claim"))?;
    // The claim's time is read once the lock is held, so the starts of one queue are stamped
    // in the order their claims ran (`now()` would be the transaction's start, before the
    // wait for the lock).
    let t: DateTime<Utc> = sqlx::query_scalar(
        "SELECT clock_timestamp() FROM (SELECT pg_advisory_xact_lock(hashtextextended($1, 0))) l",
    )
    .bind(format!("switchyard-limit:{}:{}", db.prefix, lq.queue))
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err("lock a limited queue"))?;
    let mut q = sqlx::query(&sql)
        .bind(&lq.queue)
        .bind(limit.min(db.caps.max_claim_batch) as i64)
        .bind(millis_f64(req.lease))
        .bind(&req.worker_id)
        .bind(lq.concurrency.map(i64::from).unwrap_or(0))
        .bind(lq.rate.map(|r| i64::from(r.limit)).unwrap_or(0))
        .bind(period)
        .bind(t);
    if let Some(ids) = ids {
        q = q.bind(ids);
    }
    let rows = q
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err("claim (limited queue)"))?;
    let claimed = rows.iter().map(decode).collect::<Result<Vec<_>>>()?;
    if lq.rate.is_some() {
        sqlx::query(&format!(
            "DELETE FROM {starts} WHERE queue = $1 \
             AND at <= $3::timestamptz - $2::float8 * interval '1 millisecond'"
        ))
        .bind(&lq.queue)
        .bind(period)
        .bind(t)
        .execute(&mut *tx)
        .await
        .map_err(db_err("age out rate-limit starts"))?;
        if !claimed.is_empty() {
            let parts: Vec<String> = claimed
                .iter()
                .map(|j| lq.partition.key_of(&j.kind, &j.payload))
                .collect();
            sqlx::query(&format!(
                "INSERT INTO {starts} (queue, part, at) SELECT $1, p, $3::timestamptz FROM unnest($2::text[]) AS u(p)"
            ))
            .bind(&lq.queue)
            .bind(&parts)
            .bind(t)
            .execute(&mut *tx)
            .await
            .map_err(db_err("record rate-limit starts"))?;
        }
    }
    tx.commit().await.map_err(db_err("commit limited claim"))?;
    Ok(claimed)
}
