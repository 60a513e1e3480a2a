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
    /// Checks `config` and opens the database (creating the file if missing, when
    /// `config.create_if_missing` says so; else a missing file is `NotFound`): WAL journal,
    /// `synchronous = NORMAL`, the busy timeout; one writer connection and a reader pool.
    pub(crate) async fn open(config: SqliteConfig) -> Result<Self> {
        let opts = config.connect_options()?;
        let in_memory = config.in_memory();
        let file = opts.get_filename();
        if !config.create_if_missing && !in_memory && !file.exists() {
            let dir = file.parent().filter(|d| !d.as_os_str().is_empty());
            let also = match dir {
                Some(d) if !d.exists() => format!(", nor does its directory `{}`", d.display()),
                _ => String::new(),
            };
            return Err(Error::not_found(format!(
                "SQLite database file `{}` does not exist{also}",
                file.display()
            )));
        }
        let opts = opts
            .create_if_missing(config.create_if_missing)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(config.busy_timeout)
            .pragma("temp_store", "memory")
            // Workflows: a step cancelled by the release trigger fires it for its dependents.
            .pragma("recursive_triggers", "ON")
            .pragma("cache_size", "-16000");
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

    /// With `create_if_missing` off, a missing file is `NotFound` and stays missing; an
    /// existing one opens.
    #[tokio::test]
    async fn no_file_is_created_when_asked_not_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.db");
        let url = format!("sqlite://{}", path.display());
        let e = Db::open(SqliteConfig::new(&url).with_create_if_missing(false))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), switchyard_core::ErrorKind::NotFound, "{e}");
        assert!(e.message().contains("absent.db"), "{e}");
        assert!(!path.exists(), "the file was created");
        Db::open(SqliteConfig::new(&url)).await.unwrap();
        assert!(path.exists());
        Db::open(SqliteConfig::new(&url).with_create_if_missing(false))
            .await
            .unwrap();
    }

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
