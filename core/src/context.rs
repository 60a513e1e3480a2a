//! What a job body sees while it runs ([`JobContext`]: who it is, its cancellation, the
//! application state) and how it reports failure ([`JobError`]).

use std::fmt;
use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::job::{JobId, JobRecord, DEFAULT_MAX_ATTEMPTS, DEFAULT_QUEUE};
use crate::state::StateMap;

/// The context handed to a running job: who it is, which attempt this is, and a cancellation
/// token that fires when a user cancels the job, its timeout passes or the worker shuts down
/// hard. Cancellation is co-operative: a job that never looks at the token runs to its end (or
/// to its timeout).
///
/// It also carries the application state the worker's registry holds
/// ([`JobContext::state`]): every job of a worker shares one map, so building a context costs
/// one reference count, not a copy.
///
/// In a unit test, [`JobContext::for_test`] builds one in a line:
///
/// ```
/// use switchyard_core::JobContext;
///
/// struct Greeting(&'static str);
///
/// let ctx = JobContext::for_test().with_attempt(2).with_state(Greeting("hello"));
/// assert_eq!(ctx.attempt, 2);
/// assert_eq!(ctx.state::<Greeting>().unwrap().0, "hello");
/// ```
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
    state: Arc<StateMap>,
}

/// The one empty map every context without state shares (no allocation per context).
fn empty_state() -> Arc<StateMap> {
    static EMPTY: OnceLock<Arc<StateMap>> = OnceLock::new();
    EMPTY.get_or_init(|| Arc::new(StateMap::new())).clone()
}

impl JobContext {
    /// A context for one attempt of `job`, with its cancellation token and no state.
    pub fn new(job: &JobRecord, cancel: CancellationToken) -> Self {
        Self {
            id: job.id,
            kind: job.kind.clone(),
            queue: job.queue.clone(),
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            cancel,
            state: empty_state(),
        }
    }

    /// A context for a unit test: a fresh id, kind `test`, the default queue, attempt 1 of
    /// the default maximum, a token nobody fires, no state. Adjust it with the `with_*`
    /// methods.
    pub fn for_test() -> Self {
        Self {
            id: Uuid::now_v7(),
            kind: "test".to_string(),
            queue: DEFAULT_QUEUE.to_string(),
            attempt: 1,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            cancel: CancellationToken::new(),
            state: empty_state(),
        }
    }

    /// Sets the kind.
    pub fn with_kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = kind.into();
        self
    }

    /// Sets the queue.
    pub fn with_queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// Sets the attempt (1-based).
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// Sets the maximum attempts.
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets the cancellation token (a test fires it to see the body stop).
    pub fn with_cancellation_token(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Adds `value` as the state of type `T` (copying the map once; for tests and one-off
    /// contexts, not for the worker's hot path).
    pub fn with_state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        Arc::make_mut(&mut self.state).insert(value);
        self
    }

    /// Replaces the whole state map (what a worker does: one shared map for every job).
    pub fn with_state_map(mut self, state: Arc<StateMap>) -> Self {
        self.state = state;
        self
    }

    /// The application state of type `T`, registered with `Registry::with_state`.
    ///
    /// A job that lists `T` in its `required_state` gets it whenever it runs: a worker whose
    /// registry lacks it refuses to start. For a type it did not list and nobody registered,
    /// this returns a non-retryable error naming the type, so `?` fails the job saying why.
    pub fn state<T: Send + Sync + 'static>(&self) -> Result<&T, JobError> {
        self.state
            .get::<T>()
            .ok_or_else(|| missing_state::<T>(&self.state))
    }

    /// The application state of type `T`, if there is one.
    pub fn try_state<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.state.get::<T>()
    }

    /// The whole state map.
    pub fn state_map(&self) -> &Arc<StateMap> {
        &self.state
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

fn missing_state<T>(state: &StateMap) -> JobError {
    let name = std::any::type_name::<T>();
    JobError::permanent(format!(
        "this job asked for application state `{name}`, which its worker does not have; \
         register it with `Registry::with_state(value)` and list it in the job's \
         `required_state()` so that a worker without it refuses to start; registered: {}",
        if state.is_empty() {
            "(none)".to_string()
        } else {
            state.type_names().join(", ")
        }
    ))
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
    /// Set by [`JobError::snooze`]: run again after this long, not a failure.
    snooze: Option<std::time::Duration>,
    /// Set by [`JobError::rate_limited`]: the snooze also pauses the job's queue.
    pauses_queue: bool,
}

impl JobError {
    /// A failure that is retried while attempts are left.
    pub fn retryable(message: impl fmt::Display) -> Self {
        Self {
            kind: JobErrorKind::Error,
            message: message.to_string(),
            retryable: true,
            snooze: None,
            pauses_queue: false,
        }
    }

    /// Not a failure: run the job again after `delay` (snooze). The attempt is given back
    /// (the job's `attempt` is what it was before this one, so snoozing never uses up
    /// `max_attempts`), no error is recorded, and the job is `scheduled` until then.
    /// Return it from the body: `return Err(JobError::snooze(Duration::from_secs(60)))`.
    pub fn snooze(delay: std::time::Duration) -> Self {
        Self {
            kind: JobErrorKind::Error,
            message: format!("snoozed for {delay:?}"),
            retryable: true,
            snooze: Some(delay),
            pauses_queue: false,
        }
    }

    /// The delay of a [`snooze`](JobError::snooze), `None` for a failure.
    pub fn snooze_for(&self) -> Option<std::time::Duration> {
        self.snooze
    }

    /// The service the job calls said "too many requests, retry after `retry_after`" (an HTTP
    /// 429): the attempt is given back as by [`snooze`](JobError::snooze), and the job's
    /// whole queue is paused until then for every worker (stored as the queue's
    /// `paused_until`), so no other job of it hits the service meanwhile. Jobs already
    /// claimed by a worker still start.
    pub fn rate_limited(retry_after: std::time::Duration) -> Self {
        Self {
            message: format!("rate limited; retry after {retry_after:?}"),
            pauses_queue: true,
            ..Self::snooze(retry_after)
        }
    }

    /// Whether this is a [`rate_limited`](JobError::rate_limited) snooze.
    pub fn pauses_queue(&self) -> bool {
        self.pauses_queue
    }

    /// A failure that fails the job at once.
    pub fn permanent(message: impl fmt::Display) -> Self {
        Self {
            kind: JobErrorKind::Error,
            message: message.to_string(),
            retryable: false,
            snooze: None,
            pauses_queue: false,
        }
    }

    /// A failure of a given kind.
    pub fn of_kind(kind: JobErrorKind, message: impl fmt::Display, retryable: bool) -> Self {
        Self {
            kind,
            message: message.to_string(),
            retryable,
            snooze: None,
            pauses_queue: false,
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Pool;

    #[test]
    fn a_missing_state_is_an_error_naming_the_type() {
        let ctx = JobContext::for_test().with_state(7u8);
        let e = ctx.state::<Pool>().err().expect("no Pool");
        assert!(!e.is_retryable());
        assert!(e.message().contains("Pool"), "{e}");
        assert!(e.message().contains("u8"), "lists what is registered: {e}");
        assert_eq!(ctx.state::<u8>().copied().unwrap(), 7);
        assert!(ctx.try_state::<Pool>().is_none());
        // Contexts without state share one empty map.
        assert!(Arc::ptr_eq(
            JobContext::for_test().state_map(),
            JobContext::for_test().state_map()
        ));
    }
}
