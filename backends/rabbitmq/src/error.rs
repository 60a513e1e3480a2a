//! lapin errors → [`switchyard_core::Error`]: every broker error while the connection or a
//! channel may be gone is `Unavailable`, so the worker and the dispatcher retry.

use switchyard_core::Error;

/// An error from the broker while the connection or channel may be gone.
pub(crate) fn unavailable(what: &str, e: lapin::Error) -> Error {
    Error::unavailable(format!("RabbitMQ: {what}"), e)
}

/// A failed connect to `url`: a TLS failure says what was wrong and what to set (a `Config`
/// error: trying again does not help); anything else is `Unavailable`, naming the URL
/// without its password.
pub(crate) fn connect_err(url: &str, e: lapin::Error) -> Error {
    let at = format!(
        "RabbitMQ: cannot connect to `{}`",
        switchyard_core::adapter::redact_url(url)
    );
    match tls_failure(&e) {
        Some(why) => Error::config(format!("{at}: {why}")).with_source(e),
        None => Error::unavailable(at, e),
    }
}

/// What a failed TLS handshake means, with the fix.
#[cfg(feature = "tls")]
fn tls_failure(e: &lapin::Error) -> Option<String> {
    use switchyard_core::adapter::{tls_problem, TlsProblem};
    let problem = tls_problem(e)?;
    let fix = match problem {
        TlsProblem::NotTrusted => {
            "name the CA that signed it with `?cacertfile=/path/to/ca.pem` in the URL \
             (`RabbitConfig::tls_ca_file` in code)"
        }
        TlsProblem::WrongName => "connect with the host name the certificate names",
        TlsProblem::NotTls => {
            "use the broker's TLS port (5671 by default), or amqp:// for a plain port (5672)"
        }
        TlsProblem::Refused => {
            "the broker may require a client certificate (`fail_if_no_peer_cert`), which \
             Switchyard does not send"
        }
        _ => "check the broker's certificate, or `?cacertfile=…`",
    };
    Some(format!("{}; {fix}", problem.describe()))
}

/// Without TLS compiled in, `amqps://` is refused when the URL is read.
#[cfg(not(feature = "tls"))]
fn tls_failure(_: &lapin::Error) -> Option<String> {
    None
}
