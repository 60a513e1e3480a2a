//! Flow control: the stored queue settings (`{prefix}queue_flow`), which claims read through
//! the storage handle's [`FlowCache`](switchyard_core::adapter::FlowCache), and the claim of a
//! queue with limits ([`claim_limited`]), with the rate limit's window of attempt starts in
//! `{prefix}queue_starts`.

use chrono::DateTime;
use sqlx::{QueryBuilder, Row, Sqlite};
use switchyard_core::adapter::LimitedQueue;
use switchyard_core::{ClaimRequest, JobId, JobRecord, Partition, QueueFlow, RateLimit, Result};

use crate::connection::Db;
use crate::error::db_err;
use crate::row::{decode, millis};

/// `Storage::queue_flows`: every stored record, by queue name.
pub(crate) async fn load(db: &Db) -> Result<Vec<QueueFlow>> {
    let rows = sqlx::query(&format!(
        "SELECT queue, paused, updated_at, concurrency, partition, rate_limit, rate_period_ms, \
         paused_until FROM {}queue_flow ORDER BY queue",
        db.prefix
    ))
    .fetch_all(&db.reader)
    .await
    .map_err(db_err("read queue settings"))?;
    rows.iter()
        .map(|r| {
            let rate = match (r.get::<Option<i64>, _>(5), r.get::<Option<i64>, _>(6)) {
                (Some(limit), Some(period)) => Some(RateLimit {
                    limit: limit as u32,
                    period_ms: period as u64,
                }),
                _ => None,
            };
            Ok(QueueFlow {
                queue: r.get(0),
                paused: r.get::<i64, _>(1) != 0,
                paused_until: r
                    .get::<Option<i64>, _>(7)
                    .and_then(DateTime::from_timestamp_millis),
                updated_at: DateTime::from_timestamp_millis(r.get(2)),
                concurrency: r.get::<Option<i64>, _>(3).map(|n| n as u32),
                rate,
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
            "INSERT INTO {}queue_flow (queue, paused, updated_at, concurrency, partition, \
             rate_limit, rate_period_ms, paused_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (queue) DO UPDATE SET paused = excluded.paused, \
             updated_at = excluded.updated_at, concurrency = excluded.concurrency, \
             partition = excluded.partition, rate_limit = excluded.rate_limit, \
             rate_period_ms = excluded.rate_period_ms, paused_until = excluded.paused_until",
            db.prefix
        )
    };
    let mut q = sqlx::query(&sql).bind(&flow.queue);
    if !flow.is_default() {
        q = q
            .bind(flow.paused as i64)
            .bind(millis(db.now()))
            .bind(flow.concurrency.map(i64::from))
            .bind(flow.partition.to_string())
            .bind(flow.rate.map(|r| i64::from(r.limit)))
            .bind(flow.rate.map(|r| r.period_ms as i64))
            .bind(flow.paused_until.map(millis));
    }
    q.execute(&db.writer)
        .await
        .map_err(db_err("store queue settings"))?;
    // A resumed queue's jobs can be claimed again.
    db.wake.notify();
    Ok(())
}

/// Claims up to `limit` jobs of one queue with limits (among `ids`, when given) in one write
/// transaction, so the counts and the claim are one atomic step: per partition, the best
/// pending jobs (priority, run_at, id) up to the partition's free budget — its concurrency
/// limit less its jobs running with a valid lease, and its rate limit less its attempt starts
/// inside the window — so a full partition never holds back another's jobs. The claimed
/// attempts are recorded as starts, and starts older than the window are deleted.
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
    // safe inside the JSON path literal.
    let part_of = |x: &str| match &lq.partition {
        Partition::None => "''".to_string(),
        Partition::Kind => format!("{x}kind"),
        Partition::Payload(f) => {
            format!("COALESCE(CAST(json_extract({x}payload, '$.\"{f}\"') AS TEXT), '')")
        }
    };
    let part = part_of("");
    let (same, same_start) = match &lq.partition {
        Partition::None => (String::new(), String::new()),
        _ => (
            format!(" AND {} = c.p", part_of("r.")),
            " AND s.part = c.p".to_string(),
        ),
    };
    // The write lock first, then the claim's time: the starts of one queue are stamped in
    // the order their claims ran, whichever process made them.
    let mut tx = db
        .writer
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(db_err("begin limited claim"))?;
    let now = millis(db.now());
    if let Some(rate) = lq.rate {
        sqlx::query(&format!("DELETE FROM {starts} WHERE queue = ? AND at <= ?"))
            .bind(&lq.queue)
            .bind(now - rate.period_ms as i64)
            .execute(&mut *tx)
            .await
            .map_err(db_err("age out rate-limit starts"))?;
    }
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
    qb.push(") c WHERE 1");
    if let Some(n) = lq.concurrency {
        qb.push(" AND c.rn <= ");
        qb.push_bind(i64::from(n));
        qb.push(format!(
            " - (SELECT COUNT(*) FROM {jobs} r WHERE r.queue = "
        ));
        qb.push_bind(&lq.queue);
        qb.push(" AND r.state = 'running' AND r.lease_expires_at > ");
        qb.push_bind(now);
        qb.push(&same);
        qb.push(")");
    }
    if let Some(rate) = lq.rate {
        qb.push(" AND c.rn <= ");
        qb.push_bind(i64::from(rate.limit));
        qb.push(format!(
            " - (SELECT COUNT(*) FROM {starts} s WHERE s.queue = "
        ));
        qb.push_bind(&lq.queue);
        qb.push(&same_start);
        qb.push(")");
    }
    qb.push(" ORDER BY c.priority DESC, c.run_at, c.id LIMIT ");
    qb.push_bind(limit.min(db.caps.max_claim_batch) as i64);
    qb.push(&db.sql.claim_returning);
    let rows = qb
        .build()
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err("claim (limited queue)"))?;
    let claimed = rows.iter().map(decode).collect::<Result<Vec<_>>>()?;
    if lq.rate.is_some() && !claimed.is_empty() {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("INSERT INTO {starts} (queue, part, at) "));
        qb.push_values(&claimed, |mut b, j| {
            b.push_bind(&lq.queue);
            b.push_bind(lq.partition.key_of(&j.kind, &j.payload));
            b.push_bind(now);
        });
        qb.build()
            .execute(&mut *tx)
            .await
            .map_err(db_err("record rate-limit starts"))?;
    }
    tx.commit().await.map_err(db_err("commit limited claim"))?;
    Ok(claimed)
}
