//! The connection side of the backend: [`Db`], the state every operation works on (the one
//! writer connection, the reader pool, the statements and the wake-ups), opened by
//! [`Db::open`] with the pragmas and the pool options.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use switchyard_core::adapter::WakeHub;
use switchyard_core::{Error, Result, SharedClock, StorageCapabilities};

use crate::config::SqliteConfig;
use crate::sql::Statements;

/// What one storage (and all its clones) shares.
#[derive(Debug)]
pub(crate) struct Db {
    pub writer: SqlitePool,
    pub reader: SqlitePool,
    pub prefix: String,
    pub sql: Statements,
    pub caps: StorageCapabilities,
    pub wake: WakeHub,
    /// The configured clock; `None` reads the system clock without a dynamic call.
    pub clock: Option<SharedClock>,
}

impl Db {
    /// Checks `config` and opens (creating if missing) the database: WAL journal,
    /// `synchronous = NORMAL`, the busy timeout; one writer connection and a reader pool.
    pub(crate) async fn open(config: SqliteConfig) -> Result<Self> {
        let opts = config
            .connect_options()?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(config.busy_timeout)
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-16000");
        let in_memory = config.in_memory();
        // The one writer connection is never recycled: an in-memory database lives only as long
        // as its connection (sqlx's default 30-minute lifetime and 10-minute idle timeout would
        // silently swap it for an empty one), and a file's writer gains nothing from it.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.clone())
            .await
            .map_err(|e| {
                Error::unavailable(format!("cannot open SQLite database `{}`", config.url), e)
            })?;
        // An in-memory database exists only on its one connection: read through the writer.
        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(config.readers.max(1))
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts.read_only(true))
                .await
                .map_err(|e| {
                    Error::unavailable(format!("cannot open SQLite database `{}`", config.url), e)
                })?
        };
        Ok(Self {
            writer,
            reader,
            sql: Statements::new(&config.prefix),
            prefix: config.prefix,
            caps: StorageCapabilities::full()
                .with_max_payload_bytes(config.max_payload_bytes)
                .with_transactional_enqueue(true),
            wake: WakeHub::new(),
            clock: config.clock,
        })
    }

    /// The current time, from the configured clock.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        match &self.clock {
            Some(c) => c.now(),
            None => Utc::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer's connection is kept for the life of the storage: closing it would drop an
    /// in-memory database and every job in it.
    #[tokio::test]
    async fn the_writer_connection_is_never_recycled() {
        let s = Db::open(SqliteConfig::new("sqlite::memory:"))
            .await
            .unwrap();
        let o = s.writer.options();
        assert_eq!(o.get_max_lifetime(), None);
        assert_eq!(o.get_idle_timeout(), None);
    }
}
