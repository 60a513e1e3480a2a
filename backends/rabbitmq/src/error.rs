//! lapin errors → [`switchyard_core::Error`]: every broker error while the connection or a
//! channel may be gone is `Unavailable`, so the worker and the dispatcher retry.

use switchyard_core::Error;

/// An error from the broker while the connection or channel may be gone.
pub(crate) fn unavailable(what: &str, e: lapin::Error) -> Error {
    Error::unavailable(format!("RabbitMQ: {what}"), e)
}
