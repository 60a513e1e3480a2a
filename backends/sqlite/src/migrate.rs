//! Embedded migrations. The SQL files in `migrations/sqlite/` carry a `{prefix}` placeholder
//! for the table prefix, which `sqlx::migrate!` cannot template, so this small runner applies
//! them in order inside one write transaction and records each in `{prefix}migrations`.

use sqlx::SqlitePool;
use switchyard_core::{migration_statements, Error, Result};

use crate::storage::db_err;

/// Every migration, in order: (version, SQL).
const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../../../migrations/sqlite/0001_jobs.sql"))];

/// Applies the migrations not applied yet.
pub(crate) async fn run(pool: &SqlitePool, prefix: &str) -> Result<()> {
    let mut tx = pool.begin().await.map_err(db_err("begin migration"))?;
    // A write first, so this transaction holds the write lock from the start.
    sqlx::query(&format!(
        "CREATE TABLE IF NOT EXISTS {prefix}migrations (version INTEGER PRIMARY KEY NOT NULL, applied_at INTEGER NOT NULL)"
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
            sqlx::query(&statement)
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    Error::config(format!("SQLite migration {version} failed")).with_source(e)
                })?;
        }
        sqlx::query(&format!(
            "INSERT INTO {prefix}migrations (version, applied_at) VALUES (?, ?)"
        ))
        .bind(version)
        .bind(chrono::Utc::now().timestamp_millis())
        .execute(&mut *tx)
        .await
        .map_err(db_err("record migration"))?;
    }
    tx.commit().await.map_err(db_err("commit migration"))?;
    Ok(())
}

/// Drops every table of the prefix (`Storage::destroy`), in one write transaction.
pub(crate) async fn drop_all(pool: &SqlitePool, prefix: &str) -> Result<()> {
    let mut tx = pool.begin().await.map_err(db_err("begin drop"))?;
    for table in ["jobs", "leaders", "migrations"] {
        sqlx::query(&format!("DROP TABLE IF EXISTS {prefix}{table}"))
            .execute(&mut *tx)
            .await
            .map_err(db_err("drop tables"))?;
    }
    tx.commit().await.map_err(db_err("commit drop"))?;
    Ok(())
}
