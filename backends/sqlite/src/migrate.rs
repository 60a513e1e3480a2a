//! Embedded migrations. The SQL files in `migrations/sqlite/` carry a `{prefix}` placeholder
//! for the table prefix, which `sqlx::migrate!` cannot template, so the shared runner
//! (`switchyard_core::adapter::run_migrations`) applies them in order inside one write
//! transaction and records each in `{prefix}migrations`; this file supplies the SQLite side.

use sqlx::{SqliteConnection, SqlitePool};
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
        sql: include_str!("../migrations/0002_schedules.sql"),
    },
    Migration {
        version: 3,
        sql: include_str!("../migrations/0003_flow.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("../migrations/0004_workflows.sql"),
    },
];

/// Applies the migrations not applied yet.
pub(crate) async fn run(pool: &SqlitePool, prefix: &str) -> Result<()> {
    let mut tx = pool.begin().await.map_err(db_err("begin migration"))?;
    run_migrations(&mut Target(&mut tx), &TABLE, MIGRATIONS, prefix, "SQLite").await?;
    // Workflows: the release trigger (not in a migration file: its body has semicolons).
    crate::workflow::install(&mut tx, prefix).await?;
    tx.commit().await.map_err(db_err("commit migration"))?;
    Ok(())
}

/// The versions recorded in `{prefix}migrations`, or `None` when the table does not exist.
/// Only reads.
async fn applied(pool: &SqlitePool, prefix: &str) -> Result<Option<Vec<i64>>> {
    let exists: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?")
            .bind(format!("{prefix}migrations"))
            .fetch_optional(pool)
            .await
            .map_err(db_err("look for the migrations table"))?;
    if exists.is_none() {
        return Ok(None);
    }
    let versions = sqlx::query_scalar(&format!("SELECT version FROM {prefix}migrations"))
        .fetch_all(pool)
        .await
        .map_err(db_err("read applied migrations"))?;
    Ok(Some(versions))
}

/// `Storage::schema`: the latest recorded version, `None` without a migrations table.
pub(crate) async fn schema(pool: &SqlitePool, prefix: &str) -> Result<SchemaStatus> {
    let applied = applied(pool, prefix)
        .await?
        .and_then(|v| v.into_iter().max());
    Ok(SchemaStatus::new(applied, latest_version(MIGRATIONS)))
}

/// `Storage::pending_migrations`: what [`run`] would apply now.
pub(crate) async fn pending(pool: &SqlitePool, prefix: &str) -> Result<Vec<PendingMigration>> {
    let applied = applied(pool, prefix).await?;
    Ok(pending_migrations(
        &TABLE,
        MIGRATIONS,
        applied.as_deref().unwrap_or_default(),
        applied.is_some(),
        prefix,
    ))
}

/// `Storage::prefixes`: the prefixes with a migrations and a jobs table in this file.
pub(crate) async fn prefixes(pool: &SqlitePool) -> Result<Vec<String>> {
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(pool)
            .await
            .map_err(db_err("list tables"))?;
    Ok(prefixes_of_tables(&tables))
}

/// `{prefix}migrations` in SQLite; `applied_at` in Unix milliseconds. Creating it is the
/// runner's first statement, a write, so the transaction holds the write lock from the start.
const TABLE: MigrationTable = MigrationTable {
    create: "CREATE TABLE IF NOT EXISTS {prefix}migrations (version INTEGER PRIMARY KEY NOT NULL, \
             applied_at INTEGER NOT NULL)",
    record: "INSERT INTO {prefix}migrations (version, applied_at) VALUES \
             (?, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))",
};

/// The runner's statements, on the migration's transaction.
struct Target<'a>(&'a mut SqliteConnection);

#[async_trait]
impl MigrationTarget for Target<'_> {
    async fn execute(
        &mut self,
        what: &'static str,
        statement: &str,
        version: Option<i64>,
    ) -> Result<()> {
        let query = sqlx::query(statement);
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

/// Drops every table of the prefix (`Storage::destroy`), in one write transaction.
pub(crate) async fn drop_all(pool: &SqlitePool, prefix: &str) -> Result<()> {
    let mut tx = pool.begin().await.map_err(db_err("begin drop"))?;
    for table in [
        "jobs",
        "leaders",
        "schedules",
        "migrations",
        "workflows",
        "workflow_deps",
        "queue_flow",
        "queue_starts",
    ] {
        sqlx::query(&format!("DROP TABLE IF EXISTS {prefix}{table}"))
            .execute(&mut *tx)
            .await
            .map_err(db_err("drop tables"))?;
    }
    tx.commit().await.map_err(db_err("commit drop"))?;
    Ok(())
}
