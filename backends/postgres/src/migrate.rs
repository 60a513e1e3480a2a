//! Embedded migrations. The SQL files in `migrations/postgres/` carry a `{prefix}` placeholder
//! for the table prefix, which `sqlx::migrate!` cannot template, so the shared runner
//! (`switchyard_core::adapter::run_migrations`) applies them in order and records each in
//! `{prefix}migrations`; this file supplies the PostgreSQL side of it.
//!
//! Safe to run from several processes at once: everything happens in one transaction that
//! first takes `pg_advisory_xact_lock` on a key derived from the prefix. The lock is
//! transaction-scoped (released at commit or rollback), so it works through PgBouncer in
//! transaction mode and can never leak with a pooled session.

use sqlx::{PgConnection, PgPool};
use switchyard_core::adapter::{run_migrations, Migration, MigrationTarget};
use switchyard_core::{async_trait, Result};

use crate::error::db_err;

/// Every migration, in order.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("../../../migrations/postgres/0001_jobs.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("../../../migrations/postgres/0002_outbox.sql"),
    },
];

/// Applies the migrations not applied yet.
pub(crate) async fn run(pool: &PgPool, prefix: &str) -> Result<()> {
    let mut tx = pool.begin().await.map_err(db_err("begin migration"))?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("switchyard-migrate:{prefix}"))
        .execute(&mut *tx)
        .await
        .map_err(db_err("take the migration lock"))?;
    let mut target = Target {
        conn: &mut tx,
        prefix,
    };
    run_migrations(&mut target, MIGRATIONS, prefix, "PostgreSQL").await?;
    tx.commit().await.map_err(db_err("commit migration"))?;
    Ok(())
}

/// The PostgreSQL dialect of the migration runner, on the migration's transaction (which
/// holds the advisory lock).
struct Target<'a> {
    conn: &'a mut PgConnection,
    prefix: &'a str,
}

#[async_trait]
impl MigrationTarget for Target<'_> {
    async fn create_table(&mut self) -> Result<()> {
        let prefix = self.prefix;
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {prefix}migrations (version bigint PRIMARY KEY, \
             applied_at timestamptz NOT NULL DEFAULT now())"
        ))
        .execute(&mut *self.conn)
        .await
        .map_err(db_err("create migrations table"))?;
        Ok(())
    }

    async fn applied(&mut self) -> Result<Vec<i64>> {
        let prefix = self.prefix;
        sqlx::query_scalar(&format!("SELECT version FROM {prefix}migrations"))
            .fetch_all(&mut *self.conn)
            .await
            .map_err(db_err("read applied migrations"))
    }

    async fn execute(
        &mut self,
        statement: &str,
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
        // Unprepared: DDL is run once, and must not fill the statement cache.
        sqlx::query(statement)
            .persistent(false)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    async fn record(&mut self, version: i64) -> Result<()> {
        let prefix = self.prefix;
        sqlx::query(&format!(
            "INSERT INTO {prefix}migrations (version) VALUES ($1) ON CONFLICT DO NOTHING"
        ))
        .bind(version)
        .execute(&mut *self.conn)
        .await
        .map_err(db_err("record migration"))?;
        Ok(())
    }
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
