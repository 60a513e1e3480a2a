//! # switchyard-postgres
//!
//! Switchyard's [`Storage`](switchyard_core::Storage) on PostgreSQL through sqlx: the backend
//! for production. It delivers its own jobs (`queue = "storage"`), so no broker is needed.
//!
//! * **Claims** take a batch in one statement: a CTE picks runnable ids
//!   `FOR UPDATE SKIP LOCKED LIMIT n` from a partial index that holds only pending rows, and an
//!   `UPDATE … RETURNING` leases them. Concurrent workers never wait on each other.
//! * **Completions** of many jobs, whatever their outcomes, are one
//!   `UPDATE … FROM unnest($1::uuid[], …)` fenced by state and lease token.
//! * **Enqueue** of any number of jobs is one `INSERT … SELECT FROM unnest(…)`, with one
//!   coalesced `pg_notify` per statement (never one per row: NOTIFY serialises commits).
//! * **Transactional enqueue**: [`PostgresStorage::enqueue_in`] takes the caller's own
//!   connection or transaction, so a job exists if and only if that transaction commits.
//! * **Wake-ups**: a background `LISTEN` task bumps the workers' [`WakeHub`](switchyard_core::WakeHub);
//!   it reconnects by itself after a database restart while workers keep polling. With
//!   `listen = false` (e.g. behind PgBouncer in transaction mode) workers poll alone.
//! * **No session advisory locks**: leadership is a lease row with an expiry, rescue is fenced
//!   by state and lease token, and migrations take a transaction-scoped advisory lock.
//! * A **table prefix** lets several independent instances share one database.
//!
//! See `docs/postgres.md` in the repository for set-up, tuning and operations.
//!
//! ## Where things are
//!
//! | file | holds |
//! |---|---|
//! | `config.rs` | [`PostgresConfig`], URL parsing and checks |
//! | `error.rs` | sqlx errors → [`switchyard_core::Error`], `retrying` on a lost connection |
//! | `connection.rs` | the pool and the state every operation shares |
//! | `listener.rs` | the `LISTEN` task that wakes workers |
//! | `storage.rs` | [`PostgresStorage`] and its `Storage` impl, which delegates by area |
//! | `enqueue.rs` | `enqueue` and [`PostgresStorage::enqueue_in`] |
//! | `admin.rs` | `get`, `cancel`, `retry`, `list`, `counts` |
//! | `claim.rs` | `claim`, `claim_ids` |
//! | `lease.rs` | `heartbeat`, `complete`, `rescue_expired` |
//! | `maintenance.rs` | `prune`, `try_lead`, `resign` |
//! | `dispatch.rs` | the outbox: `due_for_dispatch`, `take_for_dispatch`, `mark_dispatched` |
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
mod listener;
mod maintenance;
mod migrate;
mod row;
mod schedules;
mod sql;
mod storage;
mod workflow;

pub use config::PostgresConfig;
pub use storage::PostgresStorage;

/// URL schemes this backend accepts.
pub const URL_SCHEMES: &[&str] = &["postgres", "postgresql"];
