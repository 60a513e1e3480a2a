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
use switchyard_core::adapter::{
    latest_version, pending_migrations, prefixes_of_tables, run_migrations, Migration,
    MigrationTable, MigrationTarget,
};
use switchyard_core::{async_trait, PendingMigration, Result, SchemaStatus};

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
        version: 3,
        sql: include_str!("../migrations/0003_schedules.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("../migrations/0004_flow.sql"),
    },
    Migration {
        version: 5,
        sql: include_str!("../migrations/0005_workflows.sql"),
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
    // Workflows: the release trigger (not in a migration file: its body has semicolons).
    crate::workflow::install(&mut tx, prefix).await?;
    tx.commit().await.map_err(db_err("commit migration"))?;
    Ok(())
}

/// The versions recorded in `{prefix}migrations`, or `None` when the table does not exist
/// (looked up on the `search_path`, where `migrate` creates it). Only reads.
async fn applied(pool: &PgPool, prefix: &str) -> Result<Option<Vec<i64>>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("{prefix}migrations"))
        .fetch_one(pool)
        .await
        .map_err(db_err("look for the migrations table"))?;
    if !exists {
        return Ok(None);
    }
    let versions = sqlx::query_scalar(&format!("SELECT version FROM {prefix}migrations"))
        .persistent(false)
        .fetch_all(pool)
        .await
        .map_err(db_err("read applied migrations"))?;
    Ok(Some(versions))
}

/// `Storage::schema`: the latest recorded version, `None` without a migrations table.
pub(crate) async fn schema(pool: &PgPool, prefix: &str) -> Result<SchemaStatus> {
    let applied = applied(pool, prefix)
        .await?
        .and_then(|v| v.into_iter().max());
    Ok(SchemaStatus::new(applied, latest_version(MIGRATIONS)))
}

/// `Storage::pending_migrations`: what [`run`] would apply now.
pub(crate) async fn pending(pool: &PgPool, prefix: &str) -> Result<Vec<PendingMigration>> {
    let applied = applied(pool, prefix).await?;
    Ok(pending_migrations(
        &TABLE,
        MIGRATIONS,
        applied.as_deref().unwrap_or_default(),
        applied.is_some(),
        prefix,
    ))
}

/// `Storage::prefixes`: the prefixes with a migrations and a jobs table on the `search_path`.
pub(crate) async fn prefixes(pool: &PgPool) -> Result<Vec<String>> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = ANY(current_schemas(false))",
    )
    .fetch_all(pool)
    .await
    .map_err(db_err("list tables"))?;
    Ok(prefixes_of_tables(&tables))
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
        "DROP TABLE IF EXISTS {prefix}jobs, {prefix}leaders, {prefix}schedules, \
         {prefix}migrations, {prefix}workflows, {prefix}workflow_deps, {prefix}queue_flow, \
         {prefix}queue_starts"
    ))
    .persistent(false)
    .execute(&mut *tx)
    .await
    .map_err(db_err("drop tables"))?;
    sqlx::query(&format!(
        "DROP FUNCTION IF EXISTS {prefix}workflow_release()"
    ))
    .persistent(false)
    .execute(&mut *tx)
    .await
    .map_err(db_err("drop the workflow trigger function"))?;
    tx.commit().await.map_err(db_err("commit drop"))?;
    Ok(())
}
