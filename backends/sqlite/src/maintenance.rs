//! Maintenance, the leader's services: deleting old finished jobs ([`prune`]) and the
//! leadership lease ([`try_lead`], [`resign`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use switchyard_core::Result;

use crate::connection::Db;
use crate::error::db_err;
use crate::row::millis;

/// `Storage::prune`.
pub(crate) async fn prune(db: &Db, before: DateTime<Utc>, limit: usize) -> Result<u64> {
    let res = sqlx::query(&db.sql.prune)
        .bind(millis(before))
        .bind(limit as i64)
        .execute(&db.writer)
        .await
        .map_err(db_err("prune"))?;
    // Workflows go as a unit, once every step finished before the cutoff.
    let rest = limit.saturating_sub(res.rows_affected() as usize);
    Ok(res.rows_affected() + crate::workflow::prune(db, before, rest).await?)
}

/// `Storage::try_lead`: the lease row taken when free, expired or already ours.
pub(crate) async fn try_lead(db: &Db, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
    let now = millis(db.now());
    let row: Option<String> = sqlx::query_scalar(&db.sql.try_lead)
        .bind(name)
        .bind(holder)
        .bind(now + ttl.as_millis() as i64)
        .bind(now)
        .fetch_optional(&db.writer)
        .await
        .map_err(db_err("leadership"))?;
    Ok(row.as_deref() == Some(holder))
}

/// `Storage::resign`.
pub(crate) async fn resign(db: &Db, name: &str, holder: &str) -> Result<()> {
    sqlx::query(&db.sql.resign)
        .bind(name)
        .bind(holder)
        .execute(&db.writer)
        .await
        .map_err(db_err("resign leadership"))?;
    Ok(())
}
