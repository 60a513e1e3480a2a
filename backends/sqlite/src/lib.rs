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
//! * **Transactional enqueue**: [`SqliteStorage::enqueue_in`] takes the caller's own
//!   connection or transaction, so a job exists if and only if that transaction commits.
//! * A table prefix lets several independent instances share one file.

//!
//! ## Where things are
//!
//! The same file names as the PostgreSQL backend, each for the same role:
//!
//! | file | holds |
//! |---|---|
//! | `config.rs` | [`SqliteConfig`], URL checks |
//! | `error.rs` | sqlx errors → [`switchyard_core::Error`] |
//! | `connection.rs` | the pragmas, the writer and reader pools, the state every operation shares |
//! | `storage.rs` | [`SqliteStorage`] and its `Storage` impl, which delegates by area |
//! | `enqueue.rs` | `enqueue` and [`SqliteStorage::enqueue_in`] |
//! | `admin.rs` | `get`, `cancel`, `retry`, `list`, `counts` |
//! | `claim.rs` | `claim`, `claim_ids` |
//! | `lease.rs` | `heartbeat`, `complete`, `rescue_expired` |
//! | `maintenance.rs` | `prune`, `try_lead`, `resign` |
//! | `dispatch.rs` | the outbox: `due_for_dispatch`, `mark_dispatched` |
//! | `sql.rs`, `row.rs`, `migrate.rs` | the statements, row decoding, the migrations |

mod admin;
mod claim;
mod config;
mod connection;
mod dispatch;
mod enqueue;
mod error;
mod flow;
mod lease;
mod maintenance;
mod migrate;
mod row;
mod schedules;
mod sql;
mod storage;
mod workflow;

pub use config::SqliteConfig;
pub use storage::SqliteStorage;

/// URL schemes this backend accepts.
pub const URL_SCHEMES: &[&str] = &["sqlite"];
