//! What the storage and the queue share about talking to Redis: opening a client and its
//! self-reconnecting connection ([`Conn`], which also reconnects after a failover answers
//! `READONLY`), mapping errors, and retrying idempotent calls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisError;
use switchyard_core::{Error, ErrorKind, Result};

use crate::config::{redact, RedisConfig};

/// The server's error code of `e`, also when a script raised it on Redis before 7.0, which
/// reports `ERR Error running script (…): … -READONLY …` for an error inside a script.
pub(crate) fn server_code(e: &RedisError) -> Option<&str> {
    match e.code() {
        Some("ERR") => {
            let detail = e.detail().unwrap_or_default();
            ["READONLY", "OOM"]
                .into_iter()
                .find(|c| detail.contains(&format!("-{c} ")))
        }
        code => code,
    }
}

/// Maps a Redis error to Switchyard's, naming the operation: `Unavailable` for connection
/// trouble (the caller may try again), `Internal` otherwise. The message says what a failover
/// to a replica, a server out of memory or a moved Redis Cluster slot mean.
pub(crate) fn redis_err(what: &'static str) -> impl Fn(RedisError) -> Error {
    move |e| {
        let kind = if is_transient(&e) {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Internal
        };
        let msg = match (e.kind(), e.redirect_node(), server_code(&e)) {
            (redis::ErrorKind::Moved, Some((addr, slot)), _) => format!(
                "Redis {what} failed: Redis Cluster serves this instance's keys (slot {slot}) on \
                 {addr} now; point the URL at that node"
            ),
            (_, _, Some("READONLY")) => format!(
                "Redis {what} failed: the server is a read-only replica (a failover demoted \
                 it); reconnecting to reach the primary"
            ),
            // Redis refuses a script at its first write when over maxmemory, and lets a
            // script that has written finish, so this call wrote nothing.
            (_, _, Some("OOM")) => format!(
                "Redis {what} refused: the server is out of memory (used memory above \
                 maxmemory) and this call wrote nothing; prune finished jobs \
                 (pruner.retention_secs), raise maxmemory, or give Redis more memory"
            ),
            _ => format!("Redis {what} failed"),
        };
        Error::new(kind, msg).with_source(e)
    }
}

/// Whether `e` is connection trouble that a later try may not meet. `READONLY` (the server
/// became a replica in a failover) counts: [`Conn`] then reconnects to reach the new primary.
pub(crate) fn is_transient(e: &RedisError) -> bool {
    use redis::ErrorKind as K;
    matches!(
        server_code(e),
        Some("READONLY" | "OOM" | "TRYAGAIN" | "LOADING")
    ) || e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(
            e.kind(),
            K::TryAgain
                | K::ClusterDown
                | K::BusyLoadingError
                | K::MasterDown
                | K::IoError
                | K::ReadOnly
        )
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(5))
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
            redact(&config.url)
        ))
        .with_source(e)
    })?;
    let conn = ConnectionManager::new_with_config(client.clone(), manager_config())
        .await
        .map_err(|e| {
            Error::unavailable(
                format!("cannot connect to Redis at `{}`", redact(&config.url)),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Before Redis 7.0 an error raised inside a script came back as `ERR`; its code is read
    /// from the detail.
    #[test]
    fn reads_the_code_of_an_error_raised_in_a_script() {
        let wire = redis::parse_redis_value(
            b"-ERR Error running script (call to f_1): @user_script:9: -READONLY You can't \
              write against a read only replica.\r\n",
        );
        let wire = match wire {
            Ok(redis::Value::ServerError(e)) => RedisError::from(e),
            other => panic!("not a server error: {other:?}"),
        };
        assert_eq!(server_code(&wire), Some("READONLY"), "{wire:?}");
        assert!(is_transient(&wire));
        let err = redis_err("claim")(wire);
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(err.message().contains("read-only replica"), "{err}");
    }

    #[test]
    fn a_cluster_redirection_names_the_node() {
        let e = RedisError::from((
            redis::ErrorKind::Moved,
            "An error was signalled by the server",
            "4242 10.0.0.7:7001".to_string(),
        ));
        let err = redis_err("claim")(e);
        assert!(
            err.message().contains("10.0.0.7:7001") && err.message().contains("slot 4242"),
            "{err}"
        );
    }
}
