//! Redis errors → [`switchyard_core::Error`]: which are connection trouble worth another try
//! ([`is_transient`]), and what a failover to a replica, a server out of memory or a moved
//! Redis Cluster slot mean, said in the message ([`redis_err`]). Retrying idempotent calls
//! stays with the connection (`connection::retrying`), which also reconnects after `READONLY`.

use redis::RedisError;
use switchyard_core::{Error, ErrorKind};

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
/// became a replica in a failover) counts: the connection (`connection::Conn`) then
/// reconnects to reach the new primary.
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
