//! Maintenance, the leader's services: deleting old finished jobs ([`prune`]) and the
//! leadership lease ([`try_lead`], [`resign`]), and the doctor's health checks.

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
    // Workflows go as a unit, once every step finished before the cutoff.
    let rest = (limit as u64).saturating_sub(res.rows_affected()) as usize;
    Ok(res.rows_affected() + crate::workflow::prune(db, before, rest).await?)
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

/// `Storage::health_checks`: the server's version, its clock against this host's, and (with
/// `listen` on) whether the wake-up listener is subscribed.
pub(crate) async fn health_checks(db: &Db) -> Vec<switchyard_core::HealthCheck> {
    use std::sync::atomic::Ordering;
    use switchyard_core::{clock_skew_check, HealthCheck};
    let mut checks = Vec::new();
    match sqlx::query_scalar::<_, String>("SHOW server_version")
        .fetch_one(&db.pool)
        .await
    {
        Ok(v) => checks.push(HealthCheck::ok("postgres version", v)),
        Err(e) => checks.push(HealthCheck::fail(
            "postgres version",
            format!("cannot read server_version: {e}"),
        )),
    }
    let sent = Utc::now();
    match sqlx::query_scalar::<_, DateTime<Utc>>("SELECT clock_timestamp()")
        .fetch_one(&db.pool)
        .await
    {
        Ok(server) => checks.push(clock_skew_check(server, sent, Utc::now())),
        Err(e) => checks.push(HealthCheck::warn(
            "clock skew",
            format!("cannot read the server's clock: {e}"),
        )),
    }
    if db.listener.is_some() {
        // The listener connects in the background: give it a moment after connect.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
        while !db.listener_status.connected.load(Ordering::SeqCst)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        checks.push(if db.listener_status.connected.load(Ordering::SeqCst) {
            HealthCheck::ok(
                "postgres listen",
                format!("LISTEN on channel `{}` works", db.sql.channel),
            )
        } else {
            HealthCheck::warn(
                "postgres listen",
                format!(
                    "the wake-up listener is not subscribed to `{}` after 3 s; workers fall \
                     back to polling (behind PgBouncer in transaction mode set \
                     postgres.listen = false)",
                    db.sql.channel
                ),
            )
        });
    }
    checks
}
