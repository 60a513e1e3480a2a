//! Delivery: claiming runnable jobs with a lease, from the storage's own queue ([`claim`]) or
//! by the ids an external queue delivered ([`claim_ids`]), in claim order.

use sqlx::{QueryBuilder, Sqlite};
use switchyard_core::adapter::{claim_id_chunks, sort_claimed};
use switchyard_core::{ClaimRequest, JobId, JobRecord, Result};

use crate::connection::Db;
use crate::error::db_err;
use crate::row::{decode, millis};
use crate::sql::CHUNK;

/// `Storage::claim`.
pub(crate) async fn claim(db: &Db, req: &ClaimRequest) -> Result<Vec<JobRecord>> {
    claim_where(db, req, None).await
}

/// `Storage::claim_ids`: the ids in chunks of at most [`CHUNK`], one statement each.
pub(crate) async fn claim_ids(
    db: &Db,
    ids: &[JobId],
    req: &ClaimRequest,
) -> Result<Vec<JobRecord>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (r, chunk) in claim_id_chunks(ids, req, CHUNK) {
        out.extend(claim_where(db, &r, Some(chunk)).await?);
    }
    Ok(out)
}

/// Claims up to `req.limit` jobs of `req.queues` (among `ids`, when given) in one
/// `UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING`.
async fn claim_where(db: &Db, req: &ClaimRequest, ids: Option<&[JobId]>) -> Result<Vec<JobRecord>> {
    if req.queues.is_empty() || req.limit == 0 {
        return Ok(Vec::new());
    }
    let now = db.now();
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(&db.sql.claim_set);
    qb.push_bind(millis(now));
    qb.push(", lease_expires_at = ");
    qb.push_bind(millis(now) + req.lease.as_millis() as i64);
    qb.push(", worker_id = ");
    qb.push_bind(&req.worker_id);
    qb.push(&db.sql.claim_pick);
    qb.push_bind(millis(now));
    qb.push(" AND queue IN (");
    let mut sep = qb.separated(", ");
    for q in &req.queues {
        sep.push_bind(q);
    }
    qb.push(")");
    if let Some(ids) = ids {
        qb.push(" AND id IN (");
        let mut sep = qb.separated(", ");
        for id in ids {
            sep.push_bind(*id);
        }
        qb.push(")");
    }
    qb.push(" ORDER BY priority DESC, run_at, id LIMIT ");
    qb.push_bind(req.limit.min(db.caps.max_claim_batch) as i64);
    qb.push(&db.sql.claim_returning);
    let rows = qb
        .build()
        .fetch_all(&db.writer)
        .await
        .map_err(db_err("claim"))?;
    let mut out = rows.iter().map(decode).collect::<Result<Vec<_>>>()?;
    // RETURNING order is unspecified: restore claim order.
    sort_claimed(&mut out);
    Ok(out)
}
