//! Embedded migrations. The SQL files in `migrations/sqlite/` carry a `{prefix}` placeholder
//! for the table prefix, which `sqlx::migrate!` cannot template, so the shared runner
//! (`switchyard_core::adapter::run_migrations`) applies them in order inside one write
//! transaction and records each in `{prefix}migrations`; this file supplies the SQLite side.

use sqlx::{SqliteConnection, SqlitePool};
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
        version: 4,
        sql: include_str!("../migrations/0004_flow.sql"),
    },
];

/// Applies the migrations not applied yet.
pub(crate) async fn run(pool: &SqlitePool, prefix: &str) -> Result<()> {
    let mut tx = pool.begin().await.map_err(db_err("begin migration"))?;
    run_migrations(&mut Target(&mut tx), &TABLE, MIGRATIONS, prefix, "SQLite").await?;
    tx.commit().await.map_err(db_err("commit migration"))?;
    Ok(())
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
        "migrations",
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
