//! The one error type of Switchyard: a portable [`ErrorKind`], a message that says what is wrong
//! and what is accepted, a retryable flag, and the backend's own error as `source`.

use std::fmt;

/// Result with Switchyard's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, independent of the backend. Callers match on this, never on a driver error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The job, queue or object does not exist.
    NotFound,
    /// A request was malformed: bad payload, bad filter, bad argument.
    InvalidInput,
    /// Configuration is wrong: unknown key, bad URL, unsupported combination.
    Config,
    /// The payload is larger than the configured or backend limit.
    PayloadTooLarge,
    /// The backend cannot do this (see its capabilities).
    Unsupported,
    /// The backend could not be reached or went away; the operation may succeed later.
    Unavailable,
    /// A conflicting concurrent change (e.g. a lease was lost).
    Conflict,
    /// Stored data could not be decoded (corrupt row, schema mismatch).
    Corrupt,
    /// Anything else.
    Internal,
    /// A wait ran out of time before what it waited for happened (e.g. a job reaching a
    /// finished state); waiting again may succeed.
    Timeout,
    /// The job has not finished yet (it is pending or running), so it has no result.
    NotFinished,
    /// The job finished without completing (`failed`, `cancelled` or `dropped`), so it has no
    /// result; the message names its state and last error.
    JobFailed,
}

impl ErrorKind {
    fn default_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Unavailable
                | ErrorKind::Conflict
                | ErrorKind::Timeout
                | ErrorKind::NotFinished
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Config => "configuration error",
            ErrorKind::PayloadTooLarge => "payload too large",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Unavailable => "backend unavailable",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Corrupt => "corrupt data",
            ErrorKind::Internal => "internal error",
            ErrorKind::Timeout => "timed out",
            ErrorKind::NotFinished => "job not finished",
            ErrorKind::JobFailed => "job did not complete",
        };
        f.write_str(s)
    }
}

/// Switchyard's error: a portable kind, a human message, whether retrying may help, and the
/// underlying cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub struct Error {
    kind: ErrorKind,
    message: String,
    retryable: bool,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if let Some(src) = &self.source {
            write!(f, " ({src})")?;
        }
        Ok(())
    }
}

impl Error {
    /// A new error of `kind`; retryable by default only for `Unavailable` and `Conflict`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retryable: kind.default_retryable(),
            source: None,
        }
    }

    /// Attaches the backend's own error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Overrides the retryable flag.
    pub fn set_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Shorthand for [`ErrorKind::Config`].
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// Shorthand for [`ErrorKind::InvalidInput`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for [`ErrorKind::Unavailable`] with a source.
    pub fn unavailable(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::new(ErrorKind::Unavailable, message).with_source(source)
    }

    /// Shorthand for [`ErrorKind::Corrupt`].
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }

    /// Shorthand for [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// The portable kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind or source.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether retrying the same operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::new(
            ErrorKind::InvalidInput,
            "JSON could not be encoded or decoded",
        )
        .with_source(e)
    }
}
