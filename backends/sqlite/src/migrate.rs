//! Embedded migrations. The SQL files in `migrations/sqlite/` carry a `{prefix}` placeholder
//! for the table prefix, which `sqlx::migrate!` cannot template, so the shared runner
//! (`switchyard_core::adapter::run_migrations`) applies them in order inside one write
//! transaction and records each in `{prefix}migrations`; this file supplies the SQLite side.

use sqlx::{SqliteConnection, SqlitePool};
use switchyard_core::adapter::{run_migrations, Migration, MigrationTarget};
use switchyard_core::{async_trait, Result};

use crate::error::db_err;

/// Every migration, in order.
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    sql: include_str!("../../../migrations/sqlite/0001_jobs.sql"),
}];

/// Applies the migrations not applied yet.
pub(crate) async fn run(pool: &SqlitePool, prefix: &str) -> Result<()> {
    let mut tx = pool.begin().await.map_err(db_err("begin migration"))?;
    let mut target = Target {
        conn: &mut tx,
        prefix,
    };
    run_migrations(&mut target, MIGRATIONS, prefix, "SQLite").await?;
    tx.commit().await.map_err(db_err("commit migration"))?;
    Ok(())
}

/// The SQLite dialect of the migration runner, on the migration's transaction.
struct Target<'a> {
    conn: &'a mut SqliteConnection,
    prefix: &'a str,
}

#[async_trait]
impl MigrationTarget for Target<'_> {
    /// A write first (the runner starts with it), so this transaction holds the write lock
    /// from the start.
    async fn create_table(&mut self) -> Result<()> {
        let prefix = self.prefix;
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {prefix}migrations (version INTEGER PRIMARY KEY NOT NULL, applied_at INTEGER NOT NULL)"
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
        sqlx::query(statement).execute(&mut *self.conn).await?;
        Ok(())
    }

    async fn record(&mut self, version: i64) -> Result<()> {
        let prefix = self.prefix;
        sqlx::query(&format!(
            "INSERT INTO {prefix}migrations (version, applied_at) VALUES (?, ?)"
        ))
        .bind(version)
        .bind(chrono::Utc::now().timestamp_millis())
        .execute(&mut *self.conn)
        .await
        .map_err(db_err("record migration"))?;
        Ok(())
    }
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
