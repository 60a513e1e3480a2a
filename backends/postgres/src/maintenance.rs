//! Maintenance, the leader's services: deleting old finished jobs ([`prune`]) and the
//! leadership lease ([`try_lead`], [`resign`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use switchyard_core::Result;

use crate::connection::Db;
use crate::error::retrying;
use crate::sql::millis_f64;

/// `Storage::prune`.
pub(crate) async fn prune(db: &Db, before: DateTime<Utc>, limit: usize) -> Result<u64> {
    if limit == 0 {
        return Ok(0);
    }
    let (sql, pool) = (&db.sql, &db.pool);
    let limit = limit as i64;
    let res = retrying("prune", move || {
        sqlx::query(&sql.prune)
            .bind(before)
            .bind(limit)
            .execute(pool)
    })
    .await?;
    Ok(res.rows_affected())
}

/// `Storage::try_lead`: the lease row taken when free, expired or already ours.
pub(crate) async fn try_lead(db: &Db, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
    let (sql, pool) = (&db.sql, &db.pool);
    let ttl = millis_f64(ttl);
    let row: Option<String> = retrying("leadership", move || {
        sqlx::query_scalar(&sql.try_lead)
            .bind(name)
            .bind(holder)
            .bind(ttl)
            .fetch_optional(pool)
    })
    .await?;
    Ok(row.as_deref() == Some(holder))
}

/// `Storage::resign`.
pub(crate) async fn resign(db: &Db, name: &str, holder: &str) -> Result<()> {
    let (sql, pool) = (&db.sql, &db.pool);
    retrying("resign leadership", move || {
        sqlx::query(&sql.resign)
            .bind(name)
            .bind(holder)
            .execute(pool)
    })
    .await?;
    Ok(())
}
