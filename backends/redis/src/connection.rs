//! What the storage and the queue share about talking to Redis: opening a client and its
//! self-reconnecting connection manager, mapping errors, and retrying idempotent calls.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisError;
use switchyard_core::{Error, ErrorKind, Result};

use crate::config::{redact, RedisConfig};

/// Maps a Redis error to Switchyard's, naming the operation: `Unavailable` for connection
/// trouble (the caller may try again), `Internal` otherwise.
pub(crate) fn redis_err(what: &'static str) -> impl Fn(RedisError) -> Error {
    move |e| {
        let kind = if is_transient(&e) {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Internal
        };
        Error::new(kind, format!("Redis {what} failed")).with_source(e)
    }
}

/// Whether `e` is connection trouble that a later try may not meet.
pub(crate) fn is_transient(e: &RedisError) -> bool {
    use redis::ErrorKind as K;
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(
            e.kind(),
            K::TryAgain | K::ClusterDown | K::BusyLoadingError | K::MasterDown | K::IoError
        )
}

/// Checks `config` and connects. `key` is the configuration key the URL came from
/// (`storage` or `queue`), for messages: a malformed URL or prefix is a `Config` error naming
/// it; an unreachable server is `Unavailable`. The manager reconnects by itself afterwards.
pub(crate) async fn open(
    config: &RedisConfig,
    key: &str,
) -> Result<(redis::Client, ConnectionManager)> {
    config.validate_as(key)?;
    let client = redis::Client::open(config.url.as_str()).map_err(|e| {
        Error::config(format!(
            "key `{key}`: `{}` is not a valid Redis URL; accepted: \
             redis://[user:password@]host[:port][/db], rediss://… (TLS)",
            redact(&config.url)
        ))
        .with_source(e)
    })?;
    let cm_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(5))
        .set_response_timeout(Duration::from_secs(30))
        .set_number_of_retries(6)
        .set_max_delay(2_000);
    let conn = ConnectionManager::new_with_config(client.clone(), cm_config)
        .await
        .map_err(|e| {
            Error::unavailable(
                format!("cannot connect to Redis at `{}`", redact(&config.url)),
                e,
            )
        })?;
    Ok((client, conn))
}

/// Runs an idempotent call on `conn`, trying again a few times while the connection is being
/// re-established (a killed connection fails the request in flight).
pub(crate) async fn retrying<T, F, Fut>(
    conn: &ConnectionManager,
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
        match op(conn.clone()).await {
            Ok(v) => return Ok(v),
            Err(e) if is_transient(&e) && tries < 4 => {
                tracing::debug!(error = %e, what, "Redis call failed; trying again");
                tries += 1;
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => return Err(redis_err(what)(e)),
        }
    }
}
