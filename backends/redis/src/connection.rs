//! What the storage and the queue share about talking to Redis: opening a client and its
//! self-reconnecting connection manager, mapping errors, and retrying idempotent calls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisError;
use switchyard_core::{Error, ErrorKind, Result};

use crate::config::{redact, RedisConfig};

/// Maps a Redis error to Switchyard's, naming the operation: `Unavailable` for connection
/// trouble (the caller may try again), `Internal` otherwise. A Redis Cluster redirection says
/// where the instance's slot went.
pub(crate) fn redis_err(what: &'static str) -> impl Fn(RedisError) -> Error {
    move |e| {
        let kind = if is_transient(&e) {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Internal
        };
        let (kind, msg) = match (e.redirect_node(), e.code()) {
            (Some((addr, slot)), _) => (
                kind,
                format!(
                    "Redis {what} failed: Redis Cluster serves this instance's keys (slot \
                     {slot}) on {addr} now; point the URL at that node"
                ),
            ),
            // Redis refuses a script's first write when over maxmemory (and lets a script
            // that has written finish), so nothing was written; pruning may free room.
            (None, Some("OOM")) => (
                ErrorKind::Unavailable,
                format!(
                    "Redis {what} refused: the server is out of memory (used memory above \
                     maxmemory) and wrote nothing; prune finished jobs (pruner.retention_secs), \
                     raise maxmemory, or give Redis more memory"
                ),
            ),
            (None, _) => (kind, format!("Redis {what} failed")),
        };
        Error::new(kind, msg).with_source(e)
    }
}

/// On Redis Cluster, checks that the node `url` names holds the slot of the instance's keys
/// (all of them share the hash tag `{prefix}`): switchyard-redis talks to that one node. A
/// cluster that redirects is a `Config` error naming the node to use. A server that is not
/// a cluster answers as any other.
pub(crate) async fn check_slot(
    conn: &ConnectionManager,
    url: &str,
    key: &str,
    prefix: &str,
) -> Result<()> {
    let probe = format!("{{{prefix}}}:meta");
    match redis::cmd("EXISTS")
        .arg(&probe)
        .query_async::<i64>(&mut conn.clone())
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => match e.redirect_node() {
            Some((addr, slot)) => Err(Error::config(format!(
                "key `{key}`: the Redis Cluster node at `{}` does not hold the keys of prefix \
                 `{prefix}` (slot {slot}); accepted: the URL of the node that does, {addr} \
                 (switchyard-redis talks to the one node that holds its instance's slot)",
                redact(url)
            ))),
            None => Err(redis_err("check the instance's slot")(e)),
        },
    }
}

/// Whether `e` is connection trouble that a later try may not meet. `READONLY` (the server
/// became a replica in a failover) counts: [`Conn`] then reconnects to reach the new primary.
pub(crate) fn is_transient(e: &RedisError) -> bool {
    use redis::ErrorKind as K;
    e.is_io_error()
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
    replacing: AtomicBool,
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

    /// Starts replacing the connection when `e` says the server turned read-only (once at a
    /// time; calls meanwhile keep the old one and fail or are retried).
    pub(crate) fn note(self: &Arc<Self>, e: &RedisError) {
        if e.kind() != redis::ErrorKind::ReadOnly || self.replacing.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::warn!("Redis answered READONLY (a failover made it a replica); reconnecting");
        let this = Arc::clone(self);
        tokio::spawn(async move {
            match ConnectionManager::new_with_config(this.client.clone(), manager_config()).await {
                Ok(fresh) => *this.current.write().expect("poisoned") = fresh,
                Err(e) => tracing::warn!(error = %e, "reconnecting after READONLY failed"),
            }
            this.replacing.store(false, Ordering::SeqCst);
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

/// What a server's eviction policy means for Switchyard's keys (`maxmemory-policy`, which
/// applies only when `maxmemory` is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Eviction {
    /// No memory limit, or `noeviction`: Redis never deletes a key to make room.
    Never,
    /// A `volatile-*` policy: only keys with an expiry (finished jobs' hashes, leadership
    /// locks) may go early.
    KeysWithExpiry(String),
    /// An `allkeys-*` policy: any key, a pending job included, may be deleted to make room.
    AnyKey(String),
}

/// The eviction policy in the text of `INFO memory`.
pub(crate) fn eviction(info: &str) -> Eviction {
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let limited = field("maxmemory").is_some_and(|m| m != "0");
    match field("maxmemory_policy") {
        Some(p) if limited && p.starts_with("allkeys-") => Eviction::AnyKey(p.to_string()),
        Some(p) if limited && p.starts_with("volatile-") => Eviction::KeysWithExpiry(p.to_string()),
        _ => Eviction::Never,
    }
}

/// Whether a server keeps its data over a restart: an append-only file (`aof_enabled:1` in
/// the text of `INFO persistence`) or snapshots (a non-empty `save` setting).
pub(crate) fn persists(info: &str, save: Option<&str>) -> bool {
    let aof = info
        .lines()
        .any(|l| l.trim().strip_prefix("aof_enabled:") == Some("1"));
    aof || save.is_some_and(|s| !s.trim().is_empty())
}

/// Warns when the storage's server keeps nothing over a restart (no append-only file, no
/// snapshots): every job would be lost with it. Servers that refuse `INFO` or `CONFIG GET`
/// (managed services often rename `CONFIG`) are not checked.
pub(crate) async fn check_persistence(conn: &ConnectionManager, url: &str) {
    let mut c = conn.clone();
    let Ok(info) = redis::cmd("INFO")
        .arg("persistence")
        .query_async::<String>(&mut c)
        .await
    else {
        return;
    };
    let Ok(save) = redis::cmd("CONFIG")
        .arg("GET")
        .arg("save")
        .query_async::<Vec<String>>(&mut c)
        .await
    else {
        return;
    };
    if !persists(&info, save.get(1).map(String::as_str)) {
        tracing::warn!(
            url = %redact(url),
            "Redis keeps no append-only file and no snapshots: every job is lost if it \
             restarts; set appendonly yes (see docs/redis.md, Reliability)"
        );
    }
}

/// Checks that the server will not delete Switchyard's keys to make room. For the storage
/// (`key` = `storage`) an `allkeys-*` policy is a `Config` error, since it could delete pending
/// jobs, and a `volatile-*` one a warning (finished jobs may go before their retention, and
/// a leadership lock before its time, briefly allowing two leaders). For
/// the queue an `allkeys-*` policy is a warning: a message it deletes is published again by
/// the dispatcher after `dispatcher.redispatch_after_secs`. A server that refuses `INFO` is
/// not checked.
pub(crate) async fn check_eviction(conn: &ConnectionManager, url: &str, key: &str) -> Result<()> {
    let info: String = match redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn.clone())
        .await
    {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read Redis' eviction policy; not checked");
            return Ok(());
        }
    };
    let url = redact(url);
    match (eviction(&info), key) {
        (Eviction::AnyKey(p), "storage") => Err(Error::config(format!(
            "key `storage`: Redis at `{url}` has a memory limit with maxmemory-policy `{p}`, \
             which may delete pending jobs to make room; accepted: maxmemory-policy noeviction \
             (or a volatile-* policy, which may only drop finished jobs early), or no maxmemory"
        ))),
        (Eviction::AnyKey(p), _) => {
            tracing::warn!(
                %url,
                policy = %p,
                "Redis may delete queued messages to make room (maxmemory-policy); their jobs \
                 wait for dispatcher.redispatch_after_secs. Use noeviction"
            );
            Ok(())
        }
        (Eviction::KeysWithExpiry(p), "storage") => {
            tracing::warn!(
                %url,
                policy = %p,
                "Redis may delete finished jobs before their retention, and leadership locks \
                 before their time, to make room (maxmemory-policy); use noeviction"
            );
            Ok(())
        }
        _ => Ok(()),
    }
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

    #[test]
    fn reads_the_eviction_policy() {
        let info = |max: &str, policy: &str| {
            format!("# Memory\r\nused_memory:1000\r\nmaxmemory:{max}\r\nmaxmemory_human:x\r\nmaxmemory_policy:{policy}\r\n")
        };
        assert_eq!(eviction(&info("0", "allkeys-lru")), Eviction::Never);
        assert_eq!(eviction(&info("1000000", "noeviction")), Eviction::Never);
        assert_eq!(
            eviction(&info("1000000", "allkeys-lru")),
            Eviction::AnyKey("allkeys-lru".into())
        );
        assert_eq!(
            eviction(&info("1000000", "volatile-ttl")),
            Eviction::KeysWithExpiry("volatile-ttl".into())
        );
        assert_eq!(eviction(""), Eviction::Never);
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

    #[test]
    fn tells_whether_the_server_persists() {
        assert!(persists("# Persistence\r\naof_enabled:1\r\n", Some("")));
        assert!(persists("aof_enabled:0\r\n", Some("3600 1 300 100")));
        assert!(!persists("aof_enabled:0\r\n", Some("")));
        assert!(!persists("aof_enabled:0\r\n", None));
    }
}
