//! # switchyard-sqlite
//!
//! Switchyard's [`Storage`](switchyard_core::Storage) on SQLite through sqlx with the bundled
//! library: the embedded default, no server needed.
//!
//! * WAL journal, `synchronous = NORMAL`, a busy timeout; one writer connection (SQLite has one
//!   writer at a time anyway, so writes queue in-process instead of spinning on `SQLITE_BUSY`)
//!   and a pool of readers.
//! * Claims take many jobs in one `UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING`;
//!   successful completions of many jobs are one `UPDATE … FROM (VALUES …)`.
//! * Wake-ups are in-process (enqueue notifies idle workers of the same process); workers in
//!   other processes poll.
//! * A table prefix lets several independent instances share one file.

mod migrate;
mod row;
mod storage;

pub use storage::{SqliteConfig, SqliteStorage};

/// URL schemes this backend accepts.
pub const URL_SCHEMES: &[&str] = &["sqlite"];
