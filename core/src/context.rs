//! What a job body sees while it runs ([`JobContext`]) and how it reports failure
//! ([`JobError`]).

use std::fmt;

use tokio_util::sync::CancellationToken;

use crate::job::{JobId, JobRecord};

/// The context handed to a running job: who it is, which attempt this is, and a cancellation
/// token that fires when a user cancels the job, its timeout passes or the worker shuts down
/// hard. Cancellation is co-operative: a job that never looks at the token runs to its end (or
/// to its timeout).
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The job's id.
    pub id: JobId,
    /// The job's kind.
    pub kind: String,
    /// The job's queue.
    pub queue: String,
    /// This attempt, 1-based.
    pub attempt: u32,
    /// Attempts the job may have.
    pub max_attempts: u32,
    cancel: CancellationToken,
}

impl JobContext {
    /// A context for one attempt of `job`, with its cancellation token.
    pub fn new(job: &JobRecord, cancel: CancellationToken) -> Self {
        Self {
            id: job.id,
            kind: job.kind.clone(),
            queue: job.queue.clone(),
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            cancel,
        }
    }

    /// Whether the job has been asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves when the job is asked to stop. Use it in `tokio::select!` beside the work.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// The token itself, to hand to sub-tasks.
    pub fn cancellation_token(&self) -> &CancellationToken {
        &self.cancel
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobErrorKind {
    /// The body returned an error.
    Error,
    /// The body panicked.
    Panic,
    /// The attempt ran past its timeout.
    Timeout,
    /// No handler is registered for the job's kind.
    UnknownKind,
    /// The payload did not decode into the job type.
    Decode,
    /// The job stopped because it was cancelled.
    Cancelled,
}

impl JobErrorKind {
    /// The name stored in [`AttemptError::kind`](crate::AttemptError::kind).
    pub fn as_str(self) -> &'static str {
        match self {
            JobErrorKind::Error => "error",
            JobErrorKind::Panic => "panic",
            JobErrorKind::Timeout => "timeout",
            JobErrorKind::UnknownKind => "unknown_kind",
            JobErrorKind::Decode => "decode",
            JobErrorKind::Cancelled => "cancelled",
        }
    }
}

/// The error a job body returns. Any `std::error::Error` converts into a retryable one with `?`;
/// [`JobError::permanent`] fails the job at once, whatever attempts are left.
pub struct JobError {
    kind: JobErrorKind,
    message: String,
    retryable: bool,
}

impl JobError {
    /// A failure that is retried while attempts are left.
    pub fn retryable(message: impl fmt::Display) -> Self {
        Self {
            kind: JobErrorKind::Error,
            message: message.to_string(),
            retryable: true,
        }
    }

    /// A failure that fails the job at once.
    pub fn permanent(message: impl fmt::Display) -> Self {
        Self {
            kind: JobErrorKind::Error,
            message: message.to_string(),
            retryable: false,
        }
    }

    /// A failure of a given kind.
    pub fn of_kind(kind: JobErrorKind, message: impl fmt::Display, retryable: bool) -> Self {
        Self {
            kind,
            message: message.to_string(),
            retryable,
        }
    }

    /// A failure saying the job was cancelled (not retried).
    pub fn cancelled() -> Self {
        Self::of_kind(JobErrorKind::Cancelled, "the job was cancelled", false)
    }

    /// Why it failed.
    pub fn kind(&self) -> JobErrorKind {
        self.kind
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether another attempt may be made.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl fmt::Debug for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobError({}: {})", self.kind.as_str(), self.message)
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for JobError {
    fn from(e: E) -> Self {
        let mut message = e.to_string();
        let mut src = e.source();
        while let Some(s) = src {
            message.push_str(": ");
            message.push_str(&s.to_string());
            src = s.source();
        }
        JobError::retryable(message)
    }
}
