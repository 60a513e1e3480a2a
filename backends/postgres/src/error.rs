//! Driver errors → [`switchyard_core::Error`]: which sqlx errors mean "unavailable", "conflict"
//! or "not migrated", and [`retrying`], which runs an idempotent operation again on a fresh
//! connection when the one it got had been lost.

use std::future::Future;

use switchyard_core::adapter::redact_url;
use switchyard_core::{Error, ErrorKind, Result};

/// The error of a failed connect to `url`: a TLS failure says what was wrong and which URL key
/// fixes it (a `Config` error: trying again does not help); anything else is `Unavailable`.
pub(crate) fn connect_err(url: &str, e: sqlx::Error) -> Error {
    let at = format!("cannot connect to PostgreSQL at `{}`", redact_url(url));
    if let Some(why) = tls_failure(&e) {
        return Error::config(format!("{at}: {why}")).with_source(e);
    }
    Error::unavailable(at, e)
}

/// What a failed TLS handshake means, with the fix.
#[cfg(feature = "tls")]
fn tls_failure(e: &sqlx::Error) -> Option<String> {
    use switchyard_core::adapter::{tls_problem, TlsProblem};
    if let sqlx::Error::Tls(inner) = e {
        if inner.to_string().contains("does not support TLS") {
            return Some(
                "the server does not accept TLS (its `ssl` setting is off), and the URL's \
                 sslmode requires it; turn `ssl = on` on the server, or use sslmode=prefer \
                 or sslmode=disable to connect without TLS"
                    .to_string(),
            );
        }
    }
    let problem = tls_problem(e)?;
    let fix = match problem {
        TlsProblem::NotTrusted => {
            "name the CA that signed it with `sslrootcert=/path/to/ca.pem` in the URL \
             (managed providers publish theirs, e.g. RDS's global-bundle.pem), or use \
             sslmode=require to encrypt without checking the certificate"
        }
        // sqlx 0.8.6 checks the name under verify-ca too (it misses the name-mismatch error
        // rustls reports since 0.23.24; fixed in sqlx after 0.8.6), so verify-ca is no way out.
        TlsProblem::WrongName => {
            "connect with the host name the certificate names (in this release sslmode=verify-ca \
             checks the name too), or use sslmode=require without `sslrootcert` to encrypt \
             without checking the certificate"
        }
        TlsProblem::Expired => "renew the server's certificate",
        TlsProblem::NotTls => "check the host and port",
        TlsProblem::Refused => {
            "if the server wants a client certificate, name it with `sslcert=…&sslkey=…`"
        }
        _ => "check the certificate, or `sslrootcert=…` / `sslmode=…` in the URL",
    };
    Some(format!("{}; {fix}", problem.describe()))
}

/// Without TLS compiled in, no handshake is ever attempted (URLs that require TLS are refused
/// when they are read).
#[cfg(not(feature = "tls"))]
fn tls_failure(_: &sqlx::Error) -> Option<String> {
    None
}

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
