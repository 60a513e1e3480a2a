//! Driver errors → [`switchyard_core::Error`]: a locked database or a lost connection is
//! `Unavailable`, a missing table is `Config` (not migrated yet).

use switchyard_core::{Error, ErrorKind};

/// Maps a sqlx error to Switchyard's, naming the operation.
pub(crate) fn db_err(what: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |e| {
        let kind = match &e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                ErrorKind::Unavailable
            }
            sqlx::Error::Database(d) if d.message().contains("locked") => ErrorKind::Unavailable,
            sqlx::Error::Database(d) if d.message().contains("no such table") => ErrorKind::Config,
            _ => ErrorKind::Internal,
        };
        let mut msg = format!("SQLite {what} failed");
        if kind == ErrorKind::Config {
            msg.push_str("; run `switchyard migrate` (or call `migrate()`) first");
        }
        Error::new(kind, msg).with_source(e)
    }
}
