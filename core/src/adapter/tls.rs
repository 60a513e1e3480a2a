//! What a failed TLS handshake means, read from the rustls error inside a driver's error
//! (only with the `tls` feature, which the server backends turn on with theirs). Each backend
//! words its own advice (the URL key or setting that names a CA); this module only finds out
//! which kind of failure it was, so the advice is the same across backends.

use std::error::Error as StdError;

use rustls::{CertificateError, Error as TlsError, InvalidMessage};

/// Why a TLS handshake failed, in the terms a user can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsProblem {
    /// The server's certificate is not signed by a CA this client trusts (self-signed, a
    /// private CA, or the wrong CA file).
    NotTrusted,
    /// The certificate is trusted but made out for another host name.
    WrongName,
    /// The certificate expired, or is not valid yet (check the clocks).
    Expired,
    /// The certificate was refused for another reason (revoked, bad signature, wrong purpose).
    BadCertificate,
    /// The server did not answer in TLS: the port is most likely a plain (non-TLS) one.
    NotTls,
    /// The server refused the handshake (an alert), e.g. it wants a client certificate or
    /// offers no protocol version or cipher this client accepts.
    Refused,
}

impl TlsProblem {
    /// What went wrong, as a clause for a message ("the server's TLS certificate is …").
    pub fn describe(self) -> &'static str {
        match self {
            TlsProblem::NotTrusted => {
                "the server's TLS certificate is not trusted: it is not signed by a CA this \
                 client trusts (a self-signed certificate, a private CA, or the wrong CA file)"
            }
            TlsProblem::WrongName => {
                "the server's TLS certificate is not valid for this host name (it was made out \
                 for another name)"
            }
            TlsProblem::Expired => {
                "the server's TLS certificate has expired or is not valid yet (check it, and \
                 this machine's clock)"
            }
            TlsProblem::BadCertificate => "the server's TLS certificate was refused",
            TlsProblem::NotTls => {
                "the server did not answer in TLS: this is most likely a plain (non-TLS) port"
            }
            TlsProblem::Refused => {
                "the server refused the TLS handshake (it may require a client certificate, or \
                 accept no TLS version this client offers)"
            }
        }
    }
}

/// The TLS problem behind `error`, if rustls' error is somewhere in its chain of sources
/// (also inside an `std::io::Error`, whose `source` skips the error it wraps).
pub fn tls_problem(error: &(dyn StdError + 'static)) -> Option<TlsProblem> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<TlsError>() {
            return Some(classify(tls));
        }
        next = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    None
}

fn classify(e: &TlsError) -> TlsProblem {
    use CertificateError as C;
    match e {
        TlsError::InvalidCertificate(c) => match c {
            C::UnknownIssuer | C::BadSignature => TlsProblem::NotTrusted,
            C::NotValidForName | C::NotValidForNameContext { .. } => TlsProblem::WrongName,
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => TlsProblem::Expired,
            _ => TlsProblem::BadCertificate,
        },
        TlsError::InvalidMessage(
            InvalidMessage::InvalidContentType
            | InvalidMessage::UnknownProtocolVersion
            | InvalidMessage::MessageTooLarge
            | InvalidMessage::MessageTooShort,
        )
        | TlsError::InappropriateMessage { .. }
        | TlsError::PeerSentOversizedRecord => TlsProblem::NotTls,
        TlsError::AlertReceived(_)
        | TlsError::PeerIncompatible(_)
        | TlsError::NoCertificatesPresented => TlsProblem::Refused,
        _ => TlsProblem::BadCertificate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("driver failed")]
    struct Driver(#[source] std::io::Error);

    #[test]
    fn finds_rustls_errors_inside_io_errors() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            TlsError::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert_eq!(tls_problem(&Driver(io)), Some(TlsProblem::NotTrusted));
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            TlsError::InvalidMessage(InvalidMessage::InvalidContentType),
        );
        assert_eq!(tls_problem(&io), Some(TlsProblem::NotTls));
        let plain = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(tls_problem(&Driver(plain)), None);
    }

    #[test]
    fn names_each_kind_of_certificate_failure() {
        for (e, want) in [
            (CertificateError::NotValidForName, TlsProblem::WrongName),
            (CertificateError::Expired, TlsProblem::Expired),
            (CertificateError::Revoked, TlsProblem::BadCertificate),
        ] {
            assert_eq!(classify(&TlsError::InvalidCertificate(e)), want);
        }
        assert!(TlsProblem::NotTrusted.describe().contains("not trusted"));
    }
}
