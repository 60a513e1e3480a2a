//! Embedded migrations. The SQL files in `migrations/postgres/` carry a `{prefix}` placeholder
//! for the table prefix, which `sqlx::migrate!` cannot template, so this small runner applies
//! them in order and records each in `{prefix}migrations`.
//!
//! Safe to run from several processes at once: everything happens in one transaction that
//! first takes `pg_advisory_xact_lock` on a key derived from the prefix. The lock is
//! transaction-scoped (released at commit or rollback), so it works through PgBouncer in
//! transaction mode and can never leak with a pooled session.

use sqlx::PgPool;
use switchyard_core::{migration_statements, Error, Result};

use crate::storage::db_err;

/// Every migration, in order: (version, SQL).
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../../migrations/postgres/0001_jobs.sql"),
    ),
    (
        2,
        include_str!("../../../migrations/postgres/0002_outbox.sql"),
    ),
];

/// Applies the migrations not applied yet.
pub(crate) async fn run(pool: &PgPool, prefix: &str) -> Result<()> {
    let mut tx = pool.begin().await.map_err(db_err("begin migration"))?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("switchyard-migrate:{prefix}"))
        .execute(&mut *tx)
        .await
        .map_err(db_err("take the migration lock"))?;
    sqlx::query(&format!(
        "CREATE TABLE IF NOT EXISTS {prefix}migrations (version bigint PRIMARY KEY, \
         applied_at timestamptz NOT NULL DEFAULT now())"
    ))
    .execute(&mut *tx)
    .await
    .map_err(db_err("create migrations table"))?;
    let applied: Vec<i64> = sqlx::query_scalar(&format!("SELECT version FROM {prefix}migrations"))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err("read applied migrations"))?;
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        for statement in migration_statements(sql, prefix) {
            // Unprepared: DDL is run once, and must not fill the statement cache.
            sqlx::query(&statement)
                .persistent(false)
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    Error::config(format!("PostgreSQL migration {version} failed")).with_source(e)
                })?;
        }
        sqlx::query(&format!(
            "INSERT INTO {prefix}migrations (version) VALUES ($1) ON CONFLICT DO NOTHING"
        ))
        .bind(version)
        .execute(&mut *tx)
        .await
        .map_err(db_err("record migration"))?;
    }
    tx.commit().await.map_err(db_err("commit migration"))?;
    Ok(())
}

/// Drops every table of the prefix (`Storage::destroy`). A lock held elsewhere (a transaction
/// still open on the jobs table) makes it fail after a few seconds instead of waiting forever.
pub(crate) async fn drop_all(pool: &PgPool, prefix: &str) -> Result<()> {
    let mut tx = pool.begin().await.map_err(db_err("begin drop"))?;
    sqlx::query("SET LOCAL lock_timeout = '10s'")
        .execute(&mut *tx)
        .await
        .map_err(db_err("set lock timeout"))?;
    sqlx::query(&format!(
        "DROP TABLE IF EXISTS {prefix}jobs, {prefix}leaders, {prefix}migrations"
    ))
    .persistent(false)
    .execute(&mut *tx)
    .await
    .map_err(db_err("drop tables"))?;
    tx.commit().await.map_err(db_err("commit drop"))?;
    Ok(())
}
