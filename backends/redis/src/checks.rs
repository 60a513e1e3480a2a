//! What the server must be like for Switchyard's keys to be safe, checked when the storage or
//! the queue connects: on Redis Cluster, the node that holds the instance's slot; no eviction
//! of pending jobs to make room; persistence (a warning only).

use redis::aio::ConnectionManager;
use switchyard_core::adapter::redact_url;
use switchyard_core::{Error, Result};

use crate::config::RedisConfig;

/// Every check, for the storage (`key` = `storage`) or the queue (`queue`) of `config`,
/// whose key `probe` lies in the instance's slot: the cluster slot, eviction, and for the
/// storage persistence.
pub(crate) async fn check_server(
    conn: &ConnectionManager,
    config: &RedisConfig,
    key: &str,
    probe: &str,
) -> Result<()> {
    check_slot(conn, &config.url, key, &config.prefix, probe).await?;
    check_eviction(conn, &config.url, key).await?;
    if key == "storage" && config.warn_no_persistence {
        check_persistence(conn, &config.url).await;
    }
    Ok(())
}

/// On Redis Cluster, checks that the node `url` names holds the slot of the instance's keys
/// (all of them share the hash tag `{prefix}`; `probe` is one of them): switchyard-redis talks
/// to that one node. A `MOVED` answer is a `Config` error naming the node to use (a replica
/// answers with its primary). A server that is not a cluster answers as any other; any other
/// error (an `ASK` while the slot migrates, an ACL that forbids `EXISTS`) leaves it unchecked.
async fn check_slot(
    conn: &ConnectionManager,
    url: &str,
    key: &str,
    prefix: &str,
    probe: &str,
) -> Result<()> {
    let Err(e) = redis::cmd("EXISTS")
        .arg(probe)
        .query_async::<i64>(&mut conn.clone())
        .await
    else {
        return Ok(());
    };
    match (e.kind(), e.redirect_node()) {
        (redis::ErrorKind::Moved, Some((addr, slot))) => Err(Error::config(format!(
            "key `{key}`: the Redis Cluster node at `{}` does not serve the keys of prefix \
             `{prefix}` (slot {slot}); accepted: the URL of the node that does, {addr} \
             (switchyard-redis talks to the one node that holds its instance's slot)",
            redact_url(url)
        ))),
        _ => {
            tracing::debug!(error = %e, "cannot probe the instance's slot; not checked");
            Ok(())
        }
    }
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
/// Logged at most once per process.
async fn check_persistence(conn: &ConnectionManager, url: &str) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if WARNED.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
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
    if !persists(&info, save.get(1).map(String::as_str))
        && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        tracing::warn!(
            url = %redact_url(url),
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
async fn check_eviction(conn: &ConnectionManager, url: &str, key: &str) -> Result<()> {
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
    let url = redact_url(url);
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

/// One `CONFIG GET` value, or why it could not be read.
async fn config_get(conn: &ConnectionManager, name: &str) -> std::result::Result<String, String> {
    let pair: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query_async(&mut conn.clone())
        .await
        .map_err(|e| format!("CONFIG GET {name} failed: {e}"))?;
    Ok(pair.get(1).cloned().unwrap_or_default())
}

/// The doctor's checks of a Redis server (`Storage::health_checks` with `storage` true, the
/// queue's with false): its version, persistence (storage only), eviction policy and clock.
pub(crate) async fn health_checks(
    conn: &ConnectionManager,
    storage: bool,
) -> Vec<switchyard_core::HealthCheck> {
    use switchyard_core::{clock_skew_check, HealthCheck};
    // The queue's checks are named apart from the storage's: both may be listed together.
    let name = |n: &str| {
        if storage {
            n.to_string()
        } else {
            format!("queue {n}")
        }
    };
    let mut checks = Vec::new();
    let server: std::result::Result<String, _> = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn.clone())
        .await;
    checks.push(match server {
        Ok(info) => {
            let version = info
                .lines()
                .find_map(|l| l.trim().strip_prefix("redis_version:"))
                .unwrap_or("unknown")
                .to_string();
            HealthCheck::ok(name("redis version"), version)
        }
        Err(e) => HealthCheck::fail(name("redis version"), format!("INFO server failed: {e}")),
    });
    if storage {
        let aof = config_get(conn, "appendonly").await;
        let save = config_get(conn, "save").await;
        checks.push(match (aof, save) {
            (Ok(aof), _) if aof == "yes" => {
                HealthCheck::ok(name("redis persistence"), "appendonly yes")
            }
            (Ok(_), Ok(save)) if !save.trim().is_empty() => HealthCheck::warn(
                name("redis persistence"),
                format!(
                    "snapshots only (save `{save}`): a restart loses the jobs changed since the \
                     last snapshot; set appendonly yes"
                ),
            ),
            (Ok(_), Ok(_)) => HealthCheck::warn(
                name("redis persistence"),
                "no append-only file and no snapshots: every job is lost if Redis restarts; \
                 set appendonly yes (see docs/redis.md, Reliability)",
            ),
            (Err(e), _) | (_, Err(e)) => HealthCheck::warn(
                name("redis persistence"),
                format!("not checked ({e}); make sure appendonly is yes"),
            ),
        });
    }
    let policy = config_get(conn, "maxmemory-policy").await;
    let max = config_get(conn, "maxmemory").await;
    checks.push(match (policy, max) {
        (Ok(p), _) if p == "noeviction" => {
            HealthCheck::ok(name("redis eviction"), "maxmemory-policy noeviction")
        }
        (Ok(p), Ok(m)) if m == "0" => HealthCheck::warn(
            name("redis eviction"),
            format!(
                "maxmemory-policy {p} with no memory limit: nothing is evicted now, but once \
                 maxmemory is set Redis may delete keys to make room; set noeviction"
            ),
        ),
        (Ok(p), Ok(m)) if p.starts_with("allkeys-") && storage => HealthCheck::fail(
            name("redis eviction"),
            format!(
                "maxmemory {m} with maxmemory-policy {p}: pending jobs may be deleted to make \
                 room; set noeviction"
            ),
        ),
        (Ok(p), Ok(m)) => HealthCheck::warn(
            name("redis eviction"),
            format!("maxmemory {m} with maxmemory-policy {p}: keys may be deleted to make room; set noeviction"),
        ),
        (Err(e), _) | (_, Err(e)) => HealthCheck::warn(
            name("redis eviction"),
            format!("not checked ({e}); make sure maxmemory-policy is noeviction"),
        ),
    });
    let sent = chrono::Utc::now();
    let time: std::result::Result<(i64, i64), _> =
        redis::cmd("TIME").query_async(&mut conn.clone()).await;
    let received = chrono::Utc::now();
    checks.push(
        match time
            .ok()
            .and_then(|(s, us)| chrono::DateTime::from_timestamp(s, (us * 1000) as u32))
        {
            Some(server) => HealthCheck {
                name: name("clock skew"),
                ..clock_skew_check(server, sent, received)
            },
            None => HealthCheck::warn(name("clock skew"), "cannot read the server's clock (TIME)"),
        },
    );
    checks
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
    fn tells_whether_the_server_persists() {
        assert!(persists("# Persistence\r\naof_enabled:1\r\n", Some("")));
        assert!(persists("aof_enabled:0\r\n", Some("3600 1 300 100")));
        assert!(!persists("aof_enabled:0\r\n", Some("")));
        assert!(!persists("aof_enabled:0\r\n", None));
    }
}
