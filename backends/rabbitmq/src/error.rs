//! lapin errors → [`switchyard_core::Error`]: every broker error while the connection or a
//! channel may be gone is `Unavailable`, so the worker and the dispatcher retry; a connect the
//! broker refuses for the login or the TLS setup is `Config`, since retrying cannot help.

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
    if let Some(why) = tls_failure(&e) {
        return Error::config(format!("{at}: {why}")).with_source(e);
    }
    if refused_login(&e) {
        return Error::config(format!(
            "{at}: the broker refused the login (ACCESS_REFUSED); check the user name and \
             password in the URL (`amqp://user:password@host/vhost`) and that the user may use \
             the vhost"
        ))
        .with_source(e);
    }
    Error::unavailable(at, e)
}

/// Whether the broker turned the credentials (or the vhost) down: retrying cannot help, so
/// it is a `Config` error, not `Unavailable`.
fn refused_login(e: &lapin::Error) -> bool {
    let text = e.to_string();
    text.contains("ACCESS_REFUSED")
        || text.contains("ACCESS-REFUSED")
        || text.contains("NOT_ALLOWED")
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
