//! Driver errors → [`switchyard_core::Error`]: which sqlx errors mean "unavailable", "conflict"
//! or "not migrated", and [`retrying`], which runs an idempotent operation again on a fresh
//! connection when the one it got had been lost.

use std::future::Future;

use switchyard_core::{Error, ErrorKind, Result};

/// Whether the error means the connection is gone (terminated backend, reset socket, server
/// shutting down) before the statement could run, so running it again on another connection is
/// safe.
pub(crate) fn is_connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// The portable kind of a sqlx error: connection and resource trouble is `Unavailable`,
/// serialization failures and lock timeouts are `Conflict`, a missing table is `Config`.
fn classify(e: &sqlx::Error) -> ErrorKind {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed => ErrorKind::Unavailable,
        sqlx::Error::Database(d) => match d.code().as_deref() {
            Some(c) if c.starts_with("08") || c.starts_with("57P") || c.starts_with("53") => {
                ErrorKind::Unavailable
            }
            Some("40001" | "40P01" | "55P03") => ErrorKind::Conflict,
            Some("42P01") => ErrorKind::Config,
            _ => ErrorKind::Internal,
        },
        _ => ErrorKind::Internal,
    }
}

/// Maps a sqlx error to Switchyard's, naming the operation.
pub(crate) fn db_err(what: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |e| {
        let kind = classify(&e);
        let mut msg = format!("PostgreSQL {what} failed");
        if kind == ErrorKind::Config {
            msg.push_str("; run `switchyard migrate` (or call `migrate()`) first");
        }
        Error::new(kind, msg).with_source(e)
    }
}

/// How many times an operation is re-run after its connection was found dead (each dead pooled
/// connection fails once and is then discarded by the pool).
pub(crate) const RECONNECT_ATTEMPTS: usize = 4;

/// Runs `op`, re-running it on a fresh connection when the one it got had been lost.
pub(crate) async fn retrying<T, F, Fut>(what: &'static str, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = sqlx::Result<T>>,
{
    let mut attempt = 0;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < RECONNECT_ATTEMPTS && is_connection_lost(&e) => {
                attempt += 1;
                tracing::debug!(error = %e, what, attempt, "postgres connection lost; retrying");
            }
            Err(e) => return Err(db_err(what)(e)),
        }
    }
}
