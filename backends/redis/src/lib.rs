//! # switchyard-redis
//!
//! Switchyard's [`Storage`](switchyard_core::Storage) (and with it the storage's own queue) on
//! Redis through the `redis` crate: async, Tokio, one multiplexed connection manager that
//! reconnects by itself.
//!
//! * **Atomic transitions**: every state change is one Lua script; all keys of an instance
//!   share the `{prefix}` hash tag, so they live in one Redis Cluster slot.
//! * **Reliable fetch**: a claimed job sits in the lease set `{prefix}:leases` scored by its
//!   deadline, its token in the job hash — never only in a client's memory. The rescuer moves
//!   expired leases back; completions are fenced by the token. One claim script takes many
//!   jobs; one completion script records many.
//! * **Wake-ups** across processes through Pub/Sub on `{prefix}:wake`, with polling as the
//!   backstop.
//! * **Bounded memory**: finished jobs are logged in finishing order and pruned with every index
//!   entry; their hash also expires after `finished_ttl` as a safety net.
//! * **A safe server**, checked at connect: on Redis Cluster the node holding the instance's
//!   slot; no `allkeys-*` eviction that could delete pending jobs; a warning without
//!   persistence. A failover that answers `READONLY` (the connection is replaced), a server
//!   out of memory and a moved slot are errors that say so.
//!
//! [`RedisQueue`] is the [`Queue`](switchyard_core::Queue) on Redis: the external queue of
//! any storage (`queue = "redis://…"`), with leased receives (a message received and never
//! acked comes back when its lease ends), priorities and delays.
//!
//! See `docs/redis.md` for the key layout and the scripts.
//!
//! Source layout (the same file names as the other backend crates): `config.rs` (settings,
//! URL and prefix checks), `error.rs` (Redis errors → Switchyard's), `connection.rs` (the
//! self-reconnecting connection, retries), `checks.rs` (what the server must be like),
//! `listener.rs` (Pub/Sub wake-ups), `storage.rs` and `queue.rs` (the trait impls); the data
//! layer: `keys.rs` (key names), `scripts.rs` + `lua/` (every state change), `record.rs`
//! (script arguments and job hashes), `migrate.rs` (schema versions), `admin.rs` (listing and
//! counts), `dispatch.rs` (the dispatcher's outbox view).

mod admin;
mod checks;
mod config;
mod connection;
mod dispatch;
mod error;
mod flow;
mod keys;
mod listener;
mod migrate;
mod queue;
mod record;
mod schedules;
mod scripts;
mod storage;
mod workflow;

pub use config::RedisConfig;
pub use queue::RedisQueue;
pub use storage::RedisStorage;

/// URL schemes this backend accepts.
pub const URL_SCHEMES: &[&str] = &["redis", "rediss"];

#[cfg(test)]
mod tests {
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<super::RedisStorage>();
        assert_send_sync::<super::RedisConfig>();
        assert_send_sync::<super::RedisQueue>();
    }
}
