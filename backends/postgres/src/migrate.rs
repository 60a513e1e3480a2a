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
use switchyard_core::adapter::{run_migrations, Migration, MigrationTable, MigrationTarget};
use switchyard_core::{async_trait, Result};

use crate::error::db_err;

/// Every migration, in order.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("../migrations/0001_jobs.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("../migrations/0002_outbox.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("../migrations/0004_flow.sql"),
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
    run_migrations(
        &mut Target(&mut tx),
        &TABLE,
        MIGRATIONS,
        prefix,
        "PostgreSQL",
    )
    .await?;
    tx.commit().await.map_err(db_err("commit migration"))?;
    Ok(())
}

/// `{prefix}migrations` in PostgreSQL.
const TABLE: MigrationTable = MigrationTable {
    create: "CREATE TABLE IF NOT EXISTS {prefix}migrations (version bigint PRIMARY KEY, \
             applied_at timestamptz NOT NULL DEFAULT now())",
    record: "INSERT INTO {prefix}migrations (version) VALUES ($1) ON CONFLICT DO NOTHING",
};

/// The runner's statements, on the migration's transaction (which holds the advisory lock).
struct Target<'a>(&'a mut PgConnection);

#[async_trait]
impl MigrationTarget for Target<'_> {
    async fn execute(
        &mut self,
        what: &'static str,
        statement: &str,
        version: Option<i64>,
    ) -> Result<()> {
        // Unprepared: DDL is run once, and must not fill the statement cache.
        let query = sqlx::query(statement).persistent(false);
        let query = match version {
            Some(v) => query.bind(v),
            None => query,
        };
        query.execute(&mut *self.0).await.map_err(db_err(what))?;
        Ok(())
    }

    async fn versions(&mut self, query: &str) -> Result<Vec<i64>> {
        sqlx::query_scalar(query)
            .fetch_all(&mut *self.0)
            .await
            .map_err(db_err("read applied migrations"))
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
        "DROP TABLE IF EXISTS {prefix}jobs, {prefix}leaders, {prefix}migrations, \
         {prefix}queue_flow, {prefix}queue_starts"
    ))
    .persistent(false)
    .execute(&mut *tx)
    .await
    .map_err(db_err("drop tables"))?;
    tx.commit().await.map_err(db_err("commit drop"))?;
    Ok(())
}
