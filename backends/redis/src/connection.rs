//! What the storage and the queue share about talking to Redis: opening a client and its
//! self-reconnecting connection ([`Conn`], which also reconnects after a failover answers
//! `READONLY`), and retrying idempotent calls on it. The error mapping is in `error.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisError;
use switchyard_core::adapter::redact_url;
use switchyard_core::{Error, Result};

use crate::config::RedisConfig;
use crate::error::{is_transient, redis_err, server_code};

/// How long one attempt to open a connection may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(CONNECTION_TIMEOUT)
        .set_response_timeout(Duration::from_secs(30))
        .set_number_of_retries(6)
        .set_max_delay(2_000)
}

/// The connection the storage or the queue sends its commands on: a [`ConnectionManager`],
/// which reconnects by itself when the connection drops, replaced by a new one when the server
/// answers `READONLY`. A failover that demotes the primary to a replica leaves the connection
/// open, so only a new connection reaches the new primary (through the DNS name or proxy the
/// URL names); Sidekiq's client reconnects on `READONLY` for the same reason.
pub(crate) struct Conn {
    client: redis::Client,
    current: RwLock<ConnectionManager>,
    /// Set while a replacement runs, and until [`REPLACE_EVERY`] after it started, so a fleet
    /// of failing calls during a failover reconnects once a second, not once per call.
    replacing: AtomicBool,
}

/// The shortest time between two replacements of a [`Conn`]'s connection.
const REPLACE_EVERY: Duration = Duration::from_secs(1);

/// Clears [`Conn::replacing`] when the replacement task ends, even if it is dropped (its
/// runtime shut down), so replacements are never off for good.
struct ClearOnDrop(Arc<Conn>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.replacing.store(false, Ordering::SeqCst);
    }
}

impl Conn {
    /// A handle on the current connection (cheap: a clone of the manager).
    pub(crate) fn get(&self) -> ConnectionManager {
        self.current.read().expect("poisoned").clone()
    }

    /// Switchyard's error for a failed `what` (see [`redis_err`]); a `READONLY` answer first
    /// starts the replacement of the connection.
    pub(crate) fn error(self: &Arc<Self>, what: &'static str, e: RedisError) -> Error {
        self.note(&e);
        redis_err(what)(e)
    }

    /// Starts replacing the connection when `e` says the server turned read-only: at most one
    /// replacement at a time and one per [`REPLACE_EVERY`]; calls meanwhile keep the old
    /// connection and fail or are retried. The wake-up listener keeps its own connection
    /// (Pub/Sub messages reach replicas too; polling is the backstop).
    pub(crate) fn note(self: &Arc<Self>, e: &RedisError) {
        if server_code(e) != Some("READONLY") || self.replacing.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::warn!("Redis answered READONLY (a failover made it a replica); reconnecting");
        let guard = ClearOnDrop(Arc::clone(self));
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            match ConnectionManager::new_with_config(guard.0.client.clone(), manager_config()).await
            {
                Ok(fresh) => *guard.0.current.write().expect("poisoned") = fresh,
                Err(e) => tracing::warn!(error = %e, "reconnecting after READONLY failed"),
            }
            tokio::time::sleep_until(started + REPLACE_EVERY).await;
            drop(guard);
        });
    }
}

/// Checks `config` and connects. `key` is the configuration key the URL came from
/// (`storage` or `queue`), for messages: a malformed URL or prefix is a `Config` error naming
/// it; an unreachable server is `Unavailable`. The manager reconnects by itself afterwards.
pub(crate) async fn open(config: &RedisConfig, key: &str) -> Result<(redis::Client, Arc<Conn>)> {
    config.validate_as(key)?;
    let client = redis::Client::open(config.url.as_str()).map_err(|e| {
        Error::config(format!(
            "key `{key}`: `{}` is not a valid Redis URL; accepted: \
             redis://[user:password@]host[:port][/db], rediss://… (TLS)",
            redact_url(&config.url)
        ))
        .with_source(e)
    })?;
    // One direct attempt first: the manager retries its first connection for many seconds
    // before it reports why it failed; an unreachable server should say so at once
    // ("connection refused") or after the connection timeout.
    let probe = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(CONNECTION_TIMEOUT)
        .set_response_timeout(CONNECTION_TIMEOUT);
    client
        .get_multiplexed_async_connection_with_config(&probe)
        .await
        .map_err(|e| {
            Error::unavailable(
                format!("cannot connect to Redis at `{}`", redact_url(&config.url)),
                e,
            )
        })?;
    let conn = ConnectionManager::new_with_config(client.clone(), manager_config())
        .await
        .map_err(|e| {
            Error::unavailable(
                format!("cannot connect to Redis at `{}`", redact_url(&config.url)),
                e,
            )
        })?;
    let conn = Arc::new(Conn {
        client: client.clone(),
        current: RwLock::new(conn),
        replacing: AtomicBool::new(false),
    });
    Ok((client, conn))
}

/// Runs an idempotent call on `conn`, trying again a few times while the connection is being
/// re-established (a killed connection fails the request in flight).
pub(crate) async fn retrying<T, F, Fut>(
    conn: &Arc<Conn>,
    what: &'static str,
    mut op: F,
) -> Result<T>
where
    F: FnMut(ConnectionManager) -> Fut,
    Fut: std::future::Future<Output = redis::RedisResult<T>>,
{
    let mut delay = Duration::from_millis(25);
    let mut tries = 0;
    loop {
        match op(conn.get()).await {
            Ok(v) => return Ok(v),
            Err(e) if is_transient(&e) && tries < 4 => {
                conn.note(&e);
                tracing::debug!(error = %e, what, "Redis call failed; trying again");
                tries += 1;
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => return Err(conn.error(what, e)),
        }
    }
}
