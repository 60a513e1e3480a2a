//! Delivery: claiming runnable jobs with a lease, from the storage's own queue ([`claim`]) or
//! by the ids an external queue delivered ([`claim_ids`]), in claim order.

use switchyard_core::adapter::{claim_id_chunks, sort_claimed};
use switchyard_core::{ClaimRequest, JobId, JobRecord, Result};

use crate::connection::Db;
use crate::error::retrying;
use crate::row::decode;
use crate::sql::millis_f64;

/// `Storage::claim`.
pub(crate) async fn claim(db: &Db, req: &ClaimRequest) -> Result<Vec<JobRecord>> {
    claim_rows(db, req, None).await
}

/// `Storage::claim_ids`: the ids in chunks of at most `max_claim_batch`, one statement each.
pub(crate) async fn claim_ids(
    db: &Db,
    ids: &[JobId],
    req: &ClaimRequest,
) -> Result<Vec<JobRecord>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (r, chunk) in claim_id_chunks(ids, req, db.caps.max_claim_batch) {
        out.extend(claim_rows(db, &r, Some(chunk)).await?);
    }
    Ok(out)
}

/// Claims up to `req.limit` jobs of `req.queues` (among `ids`, when given) with the statement
/// that fits: by ids, one queue, or several queues.
async fn claim_rows(db: &Db, req: &ClaimRequest, ids: Option<&[JobId]>) -> Result<Vec<JobRecord>> {
    if req.queues.is_empty() || req.limit == 0 {
        return Ok(Vec::new());
    }
    let (sql, pool) = (&db.sql, &db.pool);
    let limit = req.limit.min(db.caps.max_claim_batch) as i64;
    let lease = millis_f64(req.lease);
    let worker = req.worker_id.as_str();
    let mut queues: Vec<&str> = req.queues.iter().map(String::as_str).collect();
    queues.sort_unstable();
    queues.dedup();
    let queues = &queues;
    let rows = match ids {
        Some(ids) => {
            retrying("claim", move || {
                sqlx::query(&sql.claim_ids)
                    .bind(queues)
                    .bind(limit)
                    .bind(lease)
                    .bind(worker)
                    .bind(ids)
                    .fetch_all(pool)
            })
            .await?
        }
        None if queues.len() == 1 => {
            retrying("claim", move || {
                sqlx::query(&sql.claim_one_queue)
                    .bind(queues[0])
                    .bind(limit)
                    .bind(lease)
                    .bind(worker)
                    .fetch_all(pool)
            })
            .await?
        }
        None => {
            retrying("claim", move || {
                sqlx::query(&sql.claim_many_queues)
                    .bind(queues)
                    .bind(limit)
                    .bind(lease)
                    .bind(worker)
                    .fetch_all(pool)
            })
            .await?
        }
    };
    let mut out = rows.iter().map(decode).collect::<Result<Vec<_>>>()?;
    // RETURNING order is unspecified: restore claim order.
    sort_claimed(&mut out);
    Ok(out)
}
