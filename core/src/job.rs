//! The job model: what is enqueued ([`NewJob`]), what is stored ([`JobRecord`]) and the states a
//! job moves through ([`JobState`]).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

/// A job's id: a UUID v7, time-ordered, the token a user keeps to ask about the job.
pub type JobId = Uuid;

/// The queue a job goes to when none is named.
pub const DEFAULT_QUEUE: &str = "default";
/// The priority of a job when none is given. Higher runs first.
pub const DEFAULT_PRIORITY: i16 = 0;
/// Attempts a job gets when none is given.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 20;

/// The life cycle of a job.
///
/// (`blocked` →) `scheduled` → `available` → `running` → `completed` | `retrying` (→ `available` at `run_at`)
/// | `failed` | `cancelled` | `dropped`.
///
/// A `scheduled` or `retrying` job whose `run_at` has passed is runnable: claims take it
/// directly, so no separate promotion step is needed for correctness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// A workflow step waiting for its dependencies; released (to `available`) by the
    /// completion of its last one, in the same storage operation.
    Blocked,
    /// Waits for its `run_at`.
    Scheduled,
    /// Runnable now.
    Available,
    /// Claimed by a worker that holds its lease.
    Running,
    /// Finished successfully.
    Completed,
    /// Failed an attempt; runs again at `run_at`.
    Retrying,
    /// Failed its last attempt, or failed with a non-retryable error.
    Failed,
    /// Cancelled by a user.
    Cancelled,
    /// Its worker died or was shut down hard and the job cannot run again.
    Dropped,
}

impl JobState {
    /// Every state, in life-cycle order.
    pub const ALL: [JobState; 9] = [
        JobState::Blocked,
        JobState::Scheduled,
        JobState::Available,
        JobState::Running,
        JobState::Completed,
        JobState::Retrying,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Dropped,
    ];

    /// The lowercase name stored by backends and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Blocked => "blocked",
            JobState::Scheduled => "scheduled",
            JobState::Available => "available",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Retrying => "retrying",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Dropped => "dropped",
        }
    }

    /// Whether the job will never run again without a user's `retry`.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled | JobState::Dropped
        )
    }

    /// Whether a claim may take the job once its `run_at` has passed.
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            JobState::Scheduled | JobState::Available | JobState::Retrying
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown job state `{s}`; accepted: blocked, scheduled, available, running, completed, \
                     retrying, failed, cancelled, dropped"
                ))
            })
    }
}

/// One failed attempt, kept in the job's error history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptError {
    /// The attempt (1-based) that failed.
    pub attempt: u32,
    /// When it failed.
    pub at: DateTime<Utc>,
    /// What kind of failure: `error`, `panic`, `timeout`, `unknown_kind`, `decode`, `cancelled`,
    /// `lease_expired`, `aborted`, `unrecordable_outcome` (the storage refused to record how the
    /// attempt ended).
    pub kind: String,
    /// The error's message.
    pub message: String,
}

/// A job to enqueue. Build it with [`NewJob::new`] and the `with_*` methods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// Its id, chosen by the client (UUID v7).
    pub id: JobId,
    /// The job kind, the name its handler is registered under.
    pub kind: String,
    /// The queue it runs on.
    pub queue: String,
    /// Its arguments as JSON.
    pub payload: serde_json::Value,
    /// Higher runs first within a queue.
    pub priority: i16,
    /// Attempts before it fails for good (at least 1).
    pub max_attempts: u32,
    /// Not runnable before this instant. `None` means now (the storage's clock).
    pub run_at: Option<DateTime<Utc>>,
    /// While a job with this key is live (not finished), enqueueing another returns its id.
    pub unique_key: Option<String>,
    /// Per-attempt timeout in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Free-form labels.
    pub tags: Vec<String>,
}

impl NewJob {
    /// A job of `kind` with `payload`, with default options and a fresh UUID v7.
    pub fn new(kind: impl Into<String>, payload: serde_json::Value) -> Self {
        Self {
            id: Uuid::now_v7(),
            kind: kind.into(),
            queue: DEFAULT_QUEUE.to_string(),
            payload,
            priority: DEFAULT_PRIORITY,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            run_at: None,
            unique_key: None,
            timeout_ms: None,
            tags: Vec::new(),
        }
    }

    /// Sets the queue.
    pub fn with_queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// Sets the priority (higher first).
    pub fn with_priority(mut self, priority: i16) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the maximum number of attempts.
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Runs the job no earlier than `at`.
    pub fn with_run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Runs the job no earlier than `delay` from now.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.run_at = Some(Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default());
        self
    }

    /// Sets the unique key.
    pub fn with_unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Sets the per-attempt timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = Some(timeout.as_millis() as u64);
        self
    }

    /// Adds a tag.
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }
}

/// A stored job, as every backend returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Its id (UUID v7).
    pub id: JobId,
    /// Its kind.
    pub kind: String,
    /// Its queue.
    pub queue: String,
    /// Its arguments.
    pub payload: serde_json::Value,
    /// Higher runs first.
    pub priority: i16,
    /// Where it is in its life cycle.
    pub state: JobState,
    /// Attempts started so far (the running one included).
    pub attempt: u32,
    /// Attempts it may have.
    pub max_attempts: u32,
    /// Not runnable before this instant.
    pub run_at: DateTime<Utc>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When its latest attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a finished state.
    pub finished_at: Option<DateTime<Utc>>,
    /// While running: when its lease runs out unless renewed.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// While running: the token that fences its completion.
    pub lease_token: Option<Uuid>,
    /// While running: the worker holding the lease.
    pub worker_id: Option<String>,
    /// One entry per failed attempt, oldest first.
    pub errors: Vec<AttemptError>,
    /// The job's output, when it completed with one.
    pub result: Option<serde_json::Value>,
    /// Its unique key, if any.
    pub unique_key: Option<String>,
    /// A user asked to cancel it while it was running.
    pub cancel_requested: bool,
    /// Per-attempt timeout in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Free-form labels.
    pub tags: Vec<String>,
}

impl JobRecord {
    /// The per-attempt timeout, if any.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_ms.map(Duration::from_millis)
    }

    /// Whether another attempt is allowed after the current one.
    pub fn has_attempts_left(&self) -> bool {
        self.attempt < self.max_attempts
    }
}
